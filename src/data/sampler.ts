// Samplers: the order in which an epoch visits a data set's examples. IDX and image-folder sources both take one,
// so another order (a distributed sampler that gives each process its shard) drops in without touching them.
// Every order is a pure function of (seed, epoch): a resumed run sees the batches it would have seen.

export interface Sampler {
  /** Examples per epoch. */
  readonly size: number;
  /** The indices of `epoch`'s examples, in visiting order. */
  indices(epoch: number): Int32Array;
}

/** 0, 1, …, n − 1 every epoch (evaluation). */
export class SequentialSampler implements Sampler {
  constructor(readonly size: number) {}

  indices(): Int32Array {
    return epochOrder(this.size, 0, 0, false);
  }
}

/** A Fisher–Yates shuffle seeded by (seed, epoch) (training). */
export class RandomSampler implements Sampler {
  constructor(
    readonly size: number,
    readonly seed: number,
  ) {}

  indices(epoch: number): Int32Array {
    return epochOrder(this.size, this.seed, epoch, true);
  }
}

/** The sampler a source uses when none is given: shuffled with `seed`, or in order. */
export function defaultSampler(n: number, shuffle: boolean, seed: number): Sampler {
  return shuffle ? new RandomSampler(n, seed) : new SequentialSampler(n);
}

/** A small fast PRNG (mulberry32) for seeded shuffles that do not touch libtorch's generator. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The order of examples in one epoch: a Fisher-Yates shuffle seeded by (seed, epoch), or 0..n-1. */
export function epochOrder(n: number, seed: number, epoch: number, shuffle: boolean): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  if (!shuffle) return order;
  const rand = mulberry32((seed * 0x9e3779b1) ^ (epoch * 0x85ebca6b) ^ 0x5bd1e995);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}
