// One arm of an experiment: a model trained from a seed on Fashion-MNIST for a number of steps, with the training
// error measured over consecutive windows of steps (the paper's Figure 1 plots training error against epochs).
import { loadIdxDataset, TensorDataset } from '../data/fashion-mnist';
import { TensorSource } from '../data/source';
import { AlexNetOptions } from '../models/alexnet';
import { getModel } from '../models/registry';
import { Adam, SGD } from '../optim/optimizer';
import { prepareModel } from '../runtime/device';
import { Precision } from '../runtime/precision';
import { AlexNet } from '../models/alexnet';
import { Device } from '../tensor/dtype';
import { manualSeed, Tensor } from '../tensor/tensor';
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
}

/** Points (step at the window's end, training error over the window). */
export type Curve = [number, number][];

export function loadTrainSubset(limit: number, dir?: string): TensorDataset {
  return loadIdxDataset({ dir, split: 'train', limit });
}

/** A model trained per the setting, with its training-error curve; the caller disposes the model. */
export async function trainModel(ds: TensorDataset, s: CurveSetting): Promise<{ model: AlexNet; curve: Curve }> {
  manualSeed(s.seed);
  const model = prepareModel(getModel(s.model, { ...s.options, inChannels: 1, numClasses: 10 }), s.device).train();
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
  const curve: Curve = [];
  let window = new StepSums(s.device);
  let step = 0;
  try {
    for (let epoch = 0; step < s.steps; epoch++) {
      for await (const b of source.batches(epoch)) {
        const x = step < s.steps && s.augment ? s.augment(b.x) : b.x;
        try {
          if (step < s.steps) trainStep(ctx, x, b.y, window);
        } finally {
          if (x !== b.x) x.dispose();
          b.x.dispose();
          b.y.dispose();
        }
        if (step >= s.steps) continue;
        step++;
        if (step % s.window === 0 || step === s.steps) {
          curve.push([step, 1 - window.read().acc]);
          window.dispose();
          window = new StepSums(s.device);
        }
      }
    }
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    window.dispose();
    await source.close();
  }
  return { model, curve };
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
