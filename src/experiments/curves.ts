// One arm of an experiment: a model trained from a seed on a data set held in memory (Fashion-MNIST, CIFAR-10) for a
// number of steps, with the training error measured over consecutive windows of steps (the paper's Figure 1 plots
// training error against epochs).
import { loadIdxDataset, TensorDataset } from '../data/fashion-mnist';
import { TensorSource } from '../data/source';
import { AlexNetOptions } from '../models/alexnet';
import { getModel } from '../models/registry';
import { Adam, SGD } from '../optim/optimizer';
import { prepareModel } from '../runtime/device';
import { Precision } from '../runtime/precision';
import { AlexNet } from '../models/alexnet';
import { Device } from '../tensor/dtype';
import { Progress } from '../persist/checkpoint';
import { manualSeed, Tensor } from '../tensor/tensor';
import { trainOneEpoch } from '../train/epoch';
import { TrainEvents } from '../train/events';
import { StepSums, trainStep } from '../train/step';

export interface CurveSetting {
  model: string;
  options: AlexNetOptions;
  steps: number;
  /** Training error is averaged over windows of this many steps. */
  window: number;
  batchSize: number;
  /** SGD with momentum (the paper's), or Adam (fast out of the start on a short budget). */
  optimizer?: 'sgd' | 'adam';
  lr: number;
  momentum: number;
  weightDecay?: number;
  seed: number;
  device: Device;
  /** The side images are resized to before `augment` (default: the model's input). */
  loadSize?: number;
  /** Autocast precision of the training steps (default fp32). */
  precision?: Precision;
  /** Training augmentation of a batch (e.g. random crops to the model's input); returns a new tensor. */
  augment?: (x: Tensor) => Tensor;
  /** Called after each whole epoch (0-based) with the model; true stops training there (e.g. once it settled). */
  afterEpoch?: (model: AlexNet, epoch: number) => Promise<boolean>;
  /** Stop once a window's training error is at most this (a time-to-threshold run needs nothing after it). */
  stopBelow?: number;
}

/** Points (step at the window's end, training error over the window). */
export type Curve = [number, number][];

export function loadTrainSubset(limit: number, dir?: string): TensorDataset {
  return loadIdxDataset({ dir, split: 'train', limit });
}

/** A model trained per the setting, with its training-error curve; the caller disposes the model. */
export async function trainModel(ds: TensorDataset, s: CurveSetting): Promise<{ model: AlexNet; curve: Curve }> {
  manualSeed(s.seed);
  const inChannels = ds.images.shape[1];
  const model = prepareModel(getModel(s.model, { ...s.options, inChannels, numClasses: 10 }), s.device).train();
  const side = s.loadSize ?? model.inputShape[1];
  // The source owns (and disposes) its tensors: each run gets its own copy of the images (uint8, small).
  const source = new TensorSource(
    { ...ds, images: ds.images.clone(), labels: ds.labels.clone() },
    { inputSize: [side, side], resize: 'bilinear', mean: [], std: [] },
    { batchSize: s.batchSize, shuffle: true, seed: s.seed, device: s.device },
  );
  const weightDecay = s.weightDecay ?? 0;
  const optimizer =
    s.optimizer === 'adam'
      ? new Adam(model.parameters(), { lr: s.lr, weightDecay })
      : new SGD(model.parameters(), { lr: s.lr, momentum: s.momentum, weightDecay });
  const ctx = { model, device: s.device, precision: s.precision ?? 'fp32', optimizer };
  const windows = new Windows(s.window, s.steps);
  const step = (x: Tensor, y: Tensor, sums: StepSums) => {
    const input = s.augment ? s.augment(x) : x;
    try {
      trainStep(ctx, input, y, sums);
    } finally {
      if (input !== x) input.dispose();
    }
  };
  try {
    const events = new TrainEvents();
    let progress: Progress = { epoch: 0, batch: 0, globalStep: 0 };
    while (progress.globalStep < s.steps) {
      const r = await trainOneEpoch({
        step,
        device: s.device,
        lr: () => optimizer.lr,
        source,
        events,
        progress,
        epochs: Infinity,
        maxSteps: s.steps,
        statsEvery: 0,
        afterStep: (p, sums) => windows.afterStep(p, sums, source.numBatches),
        shouldStop: () => windows.reached(s.stopBelow),
      });
      if (windows.reached(s.stopBelow)) break;
      progress = { epoch: progress.epoch + 1, batch: 0, globalStep: r.progress.globalStep };
      const whole = r.stopped === 'completed' || r.progress.batch === source.numBatches;
      if (whole && (await s.afterEpoch?.(model, progress.epoch - 1))) break;
    }
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    await source.close();
  }
  return { model, curve: windows.curve };
}

/**
 * The training error over consecutive windows of steps, from the epochs' running sums: read at a window's end and
 * at an epoch's last step (a window may span two epochs).
 */
class Windows {
  readonly curve: Curve = [];
  /** The epoch's sums at the last read, and what the open window carried over from earlier epochs. */
  #read = { correct: 0, seen: 0 };
  #carried = { correct: 0, seen: 0 };

  constructor(
    readonly window: number,
    readonly steps: number,
  ) {}

  /** Whether the last closed window's error is at most `threshold` (never, without one). */
  reached(threshold: number | undefined): boolean {
    const last = this.curve.at(-1);
    return threshold !== undefined && last !== undefined && last[1] <= threshold;
  }

  afterStep(p: Progress, sums: StepSums, batches: number): void {
    const ends = p.globalStep % this.window === 0 || p.globalStep === this.steps;
    const epochEnds = p.batch === batches;
    if (!ends && !epochEnds) return;
    const correct = sums.correct.item();
    const open = {
      correct: this.#carried.correct + correct - this.#read.correct,
      seen: this.#carried.seen + sums.seen - this.#read.seen,
    };
    this.#read = { correct, seen: sums.seen };
    this.#carried = open;
    if (ends) {
      this.curve.push([p.globalStep, 1 - open.correct / Math.max(1, open.seen)]);
      this.#carried = { correct: 0, seen: 0 };
    }
    if (epochEnds) this.#read = { correct: 0, seen: 0 };
  }
}

/** The training-error curve of a model trained per the setting (the model is not kept). */
export async function trainCurve(ds: TensorDataset, s: CurveSetting): Promise<Curve> {
  const { model, curve } = await trainModel(ds, s);
  model.dispose();
  return curve;
}

/** The first step whose window's training error is at most `threshold`; undefined when never reached. */
export function stepsToReach(curve: Curve, threshold: number): number | undefined {
  return curve.find(([, e]) => e <= threshold)?.[0];
}

/** The mean curve of several seeds (same steps). */
export function meanCurve(curves: Curve[]): Curve {
  return curves[0].map(([x], i) => [x, curves.reduce((a, c) => a + c[i][1], 0) / curves.length]);
}
