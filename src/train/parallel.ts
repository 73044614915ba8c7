// How a run is spread over processes: the strategy the trainer is handed. The trainer has one loop; a strategy
// says how a step runs, what the evaluation forward is, which samples each rank reads, how the run is saved and how
// the start line describes it. One process needs none; src/distributed implements data parallelism (PyTorch DDP's
// semantics over c10d) and the paper's two towers (model parallelism) as strategies. Every method that
// communicates is a collective: all ranks call it at the same point of the run.
import { Sampler } from '../data/sampler';
import { AlexNet } from '../models/alexnet';
import { Module, StateDict } from '../nn/module';
import { Optimizer } from '../optim/optimizer';
import { Precision } from '../runtime/precision';
import { Tensor } from '../tensor/tensor';
import { RunConfig } from './config';
import { EvalSums } from './evaluate';
import { StepSums } from './step';

export interface Strategy {
  readonly rank: number;
  readonly worldSize: number;
  /** The start line's words for the split, given the per-rank batch and the learning rate. */
  describe(perRankBatch: number, lr: number): string;
  /**
   * The ranks meet and check that they run the same settings (a one-line error naming what differs). Called once the
   * run is set up on this rank (outputs checked), so every refusal that needs no peer comes first.
   */
  meet(summary: Record<string, unknown>): void;
  /** True on every rank when any rank asks to stop (Ctrl-C reaches the ranks at slightly different steps). */
  anyStop(local: boolean): boolean;
  /** This rank's shards of the training and test sets; absent: every rank reads the whole sets in the same order. */
  samplers?: { train(n: number, seed: number): Sampler; test(n: number): Sampler };
  /** Element-wise sums over the ranks of what each trained on its shard (absent: every rank saw every batch). */
  sum?(values: number[]): number[];
  /** The evaluation sums of every rank's shard, merged (absent: every rank evaluated the whole set). */
  reduceEval?(s: EvalSums): EvalSums;
  /** A precision the strategy runs in whatever is asked, and why (the start line says it). */
  precision?: { fixed: Precision; reason: string };
  /**
   * What this rank trains, from the one-process model as the run built it (from the seed, initialised, on its
   * device). Absent: the model itself, stepped by trainStep with `stepHooks`.
   */
  replicate?(model: AlexNet): Replica;
  /** The data-parallel step's hooks (broadcast buffers before the forward, arm the gradient buckets). */
  stepHooks?(model: AlexNet): { beforeForward?: () => void; beforeBackward?: () => void };
  /** Every rank starts from rank 0's parameters and buffers (after a restore too). */
  syncModel?(model: AlexNet): void;
}

/** What a rank trains when it is not the whole one-process model (a tower of model parallelism). */
export interface Replica {
  /** Its layers: the run switches their training and evaluation modes. */
  module: Module;
  /** Its trainable parameters under their one-process state-dict keys. */
  parameters: [string, Tensor][];
  /** The one-process model's input (channels, height, width). */
  inputShape: number[];
  /** The keys of the classifier's last layer start with this (the head a head learning rate applies to). */
  headPrefix: string;
  /** One step on (x, y): forward, loss, backward, update; adds its loss and correct predictions to `sums`. */
  step(x: Tensor, y: Tensor, sums: StepSums, optimizer: Optimizer): Promise<void>;
  /** The evaluation forward: the logits for `x` (in evaluation mode; the caller disposes them). */
  logits(x: Tensor): Promise<Tensor>;
  /**
   * The one-process weights, assembled; present when the run saves a weights file instead of a checkpoint (every
   * rank calls it; rank 0 writes). The caller disposes the tensors.
   */
  weights(): Promise<StateDict>;
  dispose(): void;
}

/**
 * What every rank of a distributed run must agree on: the model, the data and the recipe (threads and output paths
 * may differ). Compared through the store before anything trains (Strategy.meet).
 */
export function rankSettings(cfg: RunConfig): Record<string, unknown> {
  const { model, data, optimization, precision, runtime } = cfg;
  return {
    model: model.name,
    'model options': model.options,
    'init from': model.initFrom,
    freeze: model.freeze,
    'data set': data.dataset,
    'train limit': data.trainLimit,
    'test limit': data.testLimit,
    folder: data.folder && { ...data.folder, workers: undefined, prefetch: undefined },
    optimisation: optimization,
    precision,
    seed: runtime.seed,
    device: runtime.device,
  };
}
