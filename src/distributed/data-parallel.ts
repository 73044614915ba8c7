// Data-parallel training as PyTorch's DistributedDataParallel does it, over c10d: parameters and buffers broadcast
// from rank 0 at the start; BatchNorm's buffers broadcast from rank 0 before every forward (DDP's
// broadcast_buffers); gradients averaged by c10d's own Reducer — bucketed (25 MB), each bucket's all-reduce
// launched from autograd hooks while backward still runs; each rank a DistributedSampler shard; evaluation sums
// reduced. The trainer sees only its Strategy interface (src/train/parallel.ts).
import { UserError } from '../errors';
import { DistributedSampler, Sampler } from '../data/sampler';
import { AlexNet } from '../models/alexnet';
import { Tensor, tensor, tidy } from '../tensor/tensor';
import { EvalSums } from '../train/evaluate';
import { Strategy } from '../train/parallel';
import { GradientReducer, ProcessGroup, Store } from './c10d';
import { settingsDifference } from './env';

/** DDP's default bucket size (MB): the first bucket is smaller, so communication starts early in backward. */
export const BUCKET_MB = 25;

/** Data parallelism as a strategy of the trainer; its process group is also what model parallelism exchanges over. */
export class DdpGroup implements Strategy {
  readonly rank: number;
  readonly worldSize: number;
  #reducer?: GradientReducer;
  #buffers?: Tensor[];

  constructor(
    readonly pg: ProcessGroup,
    readonly store: Store,
  ) {
    this.rank = pg.rank;
    this.worldSize = pg.size;
  }

  describe(perRankBatch: number, lr: number): string {
    const w = this.worldSize;
    return (
      `data-parallel: ${w} processes × batch ${perRankBatch} = global batch ${perRankBatch * w}; gradients averaged ` +
      `over the ranks (DDP's rule), so lr ${lr} acts on the global batch — Goyal et al.'s linear scaling rule ` +
      `would use lr ${+(lr * w).toPrecision(6)} with warm-up for a recipe tuned at batch ${perRankBatch}`
    );
  }

  /** Each rank's shards: the training set padded to equal length and reshuffled per epoch; the test set unpadded. */
  readonly samplers = {
    train: (n: number, seed: number) => this.trainSampler(n, seed),
    test: (n: number) => this.evalSampler(n),
  };

  /** The shard of the training set this rank visits each epoch (padded to equal length, reshuffled per epoch). */
  trainSampler(n: number, seed: number): Sampler {
    return new DistributedSampler(n, { worldSize: this.worldSize, rank: this.rank, seed, shuffle: true, pad: true });
  }

  /** The shard of the test set this rank evaluates (no padding: the shards cover each example once). */
  evalSampler(n: number): Sampler {
    // Every rank sees the same n, so every rank stops here with the same message.
    if (n < this.worldSize)
      throw new UserError(
        `the test set has ${n} image${n === 1 ? '' : 's'}, fewer than the ${this.worldSize} ranks that share it: ` +
          'give more test images (--test-limit) or fewer ranks',
      );
    return new DistributedSampler(n, {
      worldSize: this.worldSize,
      rank: this.rank,
      seed: 0,
      shuffle: false,
      pad: false,
    });
  }

  meet(summary: Record<string, unknown>): void {
    this.checkSameConfig(summary);
  }

  /** Every rank runs the same settings on the same data: throws a one-line error naming what differs. */
  checkSameConfig(summary: Record<string, unknown>): void {
    const mine = JSON.stringify(summary);
    this.store.set(`alexnet/config/${this.rank}`, mine);
    // Every rank reads every other's: all of them stop with the same message, none waits for a peer that left.
    for (let r = 0; r < this.worldSize; r++) {
      if (r === this.rank) continue;
      const theirs = this.store.get(`alexnet/config/${r}`);
      if (theirs !== mine) throw new UserError(settingsDifference(summary, JSON.parse(theirs), this.rank, r));
    }
  }

  syncModel(model: AlexNet): void {
    broadcastInPlace(this.pg, [...model.stateDict().values()]);
    const params = model.parameters().filter((p) => p.requiresGrad);
    this.#reducer?.dispose();
    this.#reducer = new GradientReducer(this.pg, params, { bucketMB: BUCKET_MB });
    this.#buffers = model.namedBuffers().map(([, b]) => b);
  }

  stepHooks(model: AlexNet): { beforeForward: () => void; beforeBackward: () => void } {
    return { beforeForward: () => this.beforeForward(model), beforeBackward: () => this.beforeBackward() };
  }

  /** Before each forward: BatchNorm's buffers from rank 0 (DDP's broadcast_buffers). */
  beforeForward(model: AlexNet): void {
    if (!this.#buffers) this.#buffers = model.namedBuffers().map(([, b]) => b);
    if (this.#buffers.length) broadcastInPlace(this.pg, this.#buffers);
  }

  /** After the forward, before backward: arms the gradient buckets that backward's hooks will all-reduce. */
  beforeBackward(): void {
    if (!this.#reducer) throw new Error('syncModel() must run before the first step');
    this.#reducer.prepareForBackward();
  }

  anyStop(local: boolean): boolean {
    return this.sum([local ? 1 : 0])[0] > 0;
  }

  sum(values: number[]): number[] {
    return tidy(() => {
      const t = tensor(Float64Array.from(values));
      this.pg.allreduce(t);
      return t.toArray();
    });
  }

  reduceEval(s: EvalSums): EvalSums {
    const [n, lossSum, top5, ...confusion] = this.sum([s.n, s.lossSum, s.top5, ...s.confusion]);
    return { n, lossSum, top5, confusion, seconds: s.seconds };
  }

  /** The last step's communication and backward times (ms) as c10d's Reducer recorded them. */
  timings(): ReturnType<GradientReducer['timings']> | undefined {
    return this.#reducer?.timings();
  }

  /** The gradient buckets the Reducer formed (0 before syncModel). */
  bucketCount(): number {
    return this.#reducer?.bucketCount ?? 0;
  }

  close(): void {
    this.#reducer?.dispose();
    this.#reducer = undefined;
    this.pg.destroy();
  }
}

/**
 * Rank 0's values into `tensors` on every rank. Collectives take densely packed tensors in the default layout;
 * convolution weights kept channels-last on the CPU are sent through a contiguous copy and copied back.
 */
function broadcastInPlace(pg: ProcessGroup, tensors: Tensor[]): void {
  tidy(() => {
    const packed = tensors.map((t) => (t.isContiguous() ? t : t.contiguous()));
    pg.broadcastCoalesced(packed, 0);
    tensors.forEach((t, i) => {
      if (packed[i] !== t) t.copy_(packed[i]);
    });
  });
}
