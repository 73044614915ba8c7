// What a data-parallel run adds to the trainer. The trainer knows nothing of process groups: src/distributed
// implements this interface over c10d (PyTorch DDP's semantics) and hands it to `train`/`resume`; a one-process run
// has none. Every method that communicates is a collective: all ranks call it at the same point of the run.
import { Sampler } from '../data/sampler';
import { AlexNet } from '../models/alexnet';
import { EvalSums } from './evaluate';

export interface DataParallel {
  readonly rank: number;
  readonly worldSize: number;
  /** Global batch = per-rank batch × world size; printed at the start with the learning-rate rule. */
  describe(perRankBatch: number, lr: number): string;
  /** The shard of the training set this rank visits each epoch (padded to equal length, reshuffled per epoch). */
  trainSampler(n: number, seed: number): Sampler;
  /** The shard of the test set this rank evaluates (no padding: the shards cover each example once). */
  evalSampler(n: number): Sampler;
  /** Every rank runs the same settings on the same data: throws a one-line error naming what differs. */
  checkSameConfig(summary: Record<string, unknown>): void;
  /** Parameters and buffers from rank 0 to every rank (at the start, after a restore). */
  syncModel(model: AlexNet): void;
  /** Before each forward (DDP broadcasts BatchNorm's buffers from rank 0 here). */
  beforeForward(model: AlexNet): void;
  /** After the forward, before backward: arms the gradient buckets that backward's hooks will all-reduce. */
  beforeBackward(model: AlexNet): void;
  /** True on every rank when any rank asks to stop (Ctrl-C reaches the ranks at slightly different steps). */
  anyStop(local: boolean): boolean;
  /** Element-wise sums over the ranks. */
  sum(values: number[]): number[];
  /** The evaluation sums of every rank's shard, merged. */
  reduceEval(s: EvalSums): EvalSums;
  /** Time spent in the gradients' all-reduce so far (seconds), when known. */
  commSeconds?(): number;
  /** Releases the process group. */
  close(): void;
}
