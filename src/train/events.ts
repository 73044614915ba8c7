// The training run's event stream: the loop says what happened, subscribers decide what to do with it (the
// progress bar, the log lines, the JSONL metrics file; later a web page or, in distributed runs, only rank 0).
import { Device } from '../tensor/dtype';
import { Progress } from '../persist/checkpoint';
import { Precision } from '../runtime/precision';
import { EvalResult } from './evaluate';

/** One finished epoch: what `--metrics` writes per epoch and checkpoints keep as history. */
export interface EpochRecord {
  epoch: number;
  train_loss: number;
  train_acc: number;
  test_loss: number;
  test_acc: number;
  test_top5: number;
  lr: number;
  images_per_sec: number;
  epoch_seconds: number;
  elapsed_seconds: number;
  /** Images left out in this epoch because they could not be read. */
  skipped: number;
  /** Time the training loop waited for the input pipeline. */
  data_wait_seconds: number;
  [k: string]: number;
}

export interface RunStart {
  runId: string;
  model: string;
  dataset: string;
  trainSize: number;
  testSize: number;
  classes: number;
  input: number[];
  device: Device;
  threads: number;
  /** The CPU and the instruction set the engine uses (e.g. "AMD EPYC (Zen 5), avx512_core_bf16 (native bf16)"). */
  cpu: string;
  precision: Precision;
  /** Why `--precision auto` chose `precision` (absent when it was asked for). */
  precisionReason?: string;
  /** --head-lr: the classifier's last layer learns at this rate. */
  headLr?: number;
  /** The training step runs as a CUDA graph (replayed after a few ordinary steps). */
  cudaGraph?: boolean;
  optimizer: string;
  lr: number;
  batchSize: number;
  epochs: number;
  recipe?: string;
  /** Set when the run continues a checkpoint. */
  resumed?: { file: string; progress: Progress };
  /** A run over several processes: its strategy (e.g. global batch and learning-rate rule), in words. */
  parallel?: string;
}

export type TrainEvent =
  | ({ type: 'start' } & RunStart)
  | { type: 'estimate'; seconds: number; steps: number; secondsPerStep: number }
  | { type: 'epoch-start'; epoch: number; epochs: number; batches: number; startBatch: number }
  /** Running means over the epoch so far; emitted a few times a second and every `metricsEvery` steps. */
  | {
      type: 'step';
      epoch: number;
      batch: number;
      batches: number;
      globalStep: number;
      loss: number;
      acc: number;
      lr: number;
      imagesPerSec: number;
    }
  | { type: 'evaluating'; done: number; total: number }
  | { type: 'evaluation'; epoch: number; result: EvalResult }
  | { type: 'epoch'; record: EpochRecord; lrAfter: number; epochs: number }
  | { type: 'stopped'; progress: Progress; batches: number; train: { loss: number; acc: number }; eval: EvalResult }
  | { type: 'checkpoint'; file: string; progress: Progress }
  /** weights: what was saved is a weights file (model parallelism), not a checkpoint to resume. */
  | { type: 'interrupted'; progress: Progress; saved?: string; weights?: boolean }
  | { type: 'warning'; message: string };

export type Listener = (e: TrainEvent) => void;

export class TrainEvents {
  readonly #listeners: Listener[] = [];

  /** Subscribes; returns the function that unsubscribes. */
  on(listener: Listener): () => void {
    this.#listeners.push(listener);
    return () => {
      const i = this.#listeners.indexOf(listener);
      if (i >= 0) this.#listeners.splice(i, 1);
    };
  }

  emit(e: TrainEvent): void {
    for (const l of this.#listeners) l(e);
  }
}
