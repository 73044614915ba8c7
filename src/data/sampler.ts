// Samplers: the order in which an epoch visits a data set's examples. IDX and image-folder sources both take one,
// so another order (a distributed sampler that gives each process its shard) drops in without touching them.
// Every order is a pure function of (seed, epoch): a resumed run sees the batches it would have seen.
import { UserError } from '../errors';

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

export interface DistributedSamplerOptions {
  /** Ranks sharing the data set (WORLD_SIZE). */
  worldSize: number;
  /** This process's rank, 0 ≤ rank < worldSize. */
  rank: number;
  /** Seeds the epoch order; every rank must pass the same. */
  seed: number;
  /** Shuffle each epoch (training, default) or keep 0..n−1 (evaluation). */
  shuffle?: boolean;
  /**
   * Pad the order to ceil(n / worldSize)·worldSize by repeating its start, so every rank gets as many examples and
   * takes as many steps (training, default: collectives need every rank at every step). false: uneven shards that
   * together visit each example exactly once, so sums reduced across ranks are exact (evaluation).
   */
  pad?: boolean;
}

/**
 * One rank's shard of an epoch, as PyTorch's DistributedSampler (drop_last=False): every rank computes the same
 * epoch order from (seed, epoch) — the single-process order, so one rank sees what RandomSampler gives — pads it
 * and takes positions rank, rank + worldSize, rank + 2·worldSize, … Shards are disjoint except for the padding,
 * and step s of a world of W ranks with per-rank batch B visits exactly the order's positions [s·B·W, (s+1)·B·W),
 * which is what lets a run resume at the same sample position with another world size (`resumePosition`).
 */
export class DistributedSampler implements Sampler {
  readonly size: number;
  readonly worldSize: number;
  readonly rank: number;
  readonly pad: boolean;

  constructor(
    /** Examples in the data set (all ranks). */
    readonly total: number,
    readonly o: DistributedSamplerOptions,
  ) {
    checkShard(total, o.worldSize, o.rank);
    this.worldSize = o.worldSize;
    this.rank = o.rank;
    this.pad = o.pad ?? true;
    this.size = this.pad ? Math.ceil(total / o.worldSize) : Math.ceil(Math.max(0, total - o.rank) / o.worldSize);
  }

  indices(epoch: number): Int32Array {
    const order = epochOrder(this.total, this.o.seed, epoch, this.o.shuffle ?? true);
    const shard = new Int32Array(this.size);
    // Padded position p holds order[p mod n]: the start repeated (several times over when n < worldSize).
    for (let j = 0; j < this.size; j++) shard[j] = order[(j * this.worldSize + this.rank) % this.total];
    return shard;
  }
}

function checkShard(total: number, worldSize: number, rank: number): void {
  if (!Number.isInteger(worldSize) || worldSize < 1)
    throw new UserError(`the world size must be a positive integer, got ${worldSize}`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
    throw new UserError(
      `the rank must be an integer from 0 to ${worldSize - 1} (world size ${worldSize}), got ${rank}`,
    );
  if (!Number.isInteger(total) || total < 1)
    throw new UserError(`a distributed sampler needs a non-empty data set, got ${total} examples`);
}

/**
 * Where an epoch stands, in samples of its (world-size independent) order: after `batch` steps of `worldSize` ranks
 * with `perRankBatch` examples each, the positions [0, batch·perRankBatch·worldSize) were visited (at most the
 * data set's `total`: positions past it are padding, repeats of the start).
 */
export function samplesConsumed(p: { batch: number; perRankBatch: number; worldSize: number; total: number }): number {
  return Math.min(p.total, p.batch * p.perRankBatch * p.worldSize);
}

export interface ResumePosition {
  epoch: number;
  /** The first batch (step) the new world takes in `epoch`. */
  batch: number;
  /** True when the new world starts exactly where the old one stopped. */
  exact: boolean;
  /** Samples the new world visits a second time this epoch because its step boundary fell before the old one's. */
  repeated: number;
}

/**
 * The position to resume at with another world size or per-rank batch. The rule: the sample position carries over.
 * With an equal global batch (perRankBatch × worldSize) the step boundaries coincide and the run continues exactly;
 * otherwise it rounds down to the last whole step of the new world that does not pass the old position, so no
 * sample of the epoch is skipped and up to one global batch less one is seen twice (`repeated`). A finished epoch
 * continues at the next epoch's first batch.
 */
export function resumePosition(
  old: { epoch: number; batch: number; perRankBatch: number; worldSize: number; total: number },
  next: { perRankBatch: number; worldSize: number },
): ResumePosition {
  const consumed = samplesConsumed(old);
  if (consumed >= old.total) return { epoch: old.epoch + 1, batch: 0, exact: true, repeated: 0 };
  const global = next.perRankBatch * next.worldSize;
  const batch = Math.floor(consumed / global);
  const repeated = consumed - batch * global;
  return { epoch: old.epoch, batch, exact: repeated === 0, repeated };
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
