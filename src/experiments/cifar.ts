// Figure 1's setting: the four-layer CIFAR-10 network (models/convnet-cifar.ts, cuda-convnet's layers-18pct.cfg),
// no regularisation of any kind, SGD with momentum, inputs as cuda-convnet fed them (0–255 pixels minus the
// per-pixel mean of the training images), training error recorded per window of steps against epochs.
// Its own small loop over trainStep because the curves module's arms are one-channel Fashion-MNIST networks.
import { TensorDataset } from '../data/fashion-mnist';
import { TensorSource } from '../data/source';
import { Activation } from '../models/alexnet';
import { getModel } from '../models/registry';
import { SGD } from '../optim/optimizer';
import { prepareModel } from '../runtime/device';
import { Device } from '../tensor/dtype';
import { manualSeed, noGrad, Tensor, tidy } from '../tensor/tensor';
import { StepSums, trainStep } from '../train/step';
import { Curve } from './curves';

export interface CifarSetting {
  activation: Activation;
  /** cuda-convnet's rnorm layers (layers-18pct) or none (Figure 1 says no regularisation; rnorm is not one). */
  lrn: boolean;
  lr: number;
  momentum: number;
  batchSize: number;
  steps: number;
  /** Steps per point of the curve. */
  window: number;
  seed: number;
  device: Device;
}

/** The per-pixel mean of the training images in 0–255, (1, 3, 32, 32): what cuda-convnet subtracted. */
export function meanImage(ds: TensorDataset): Tensor {
  return noGrad(() => tidy(() => ds.images.float().mean(0, true).keep()));
}

/** Points (epochs at the window's end, training error over the window) of one arm from one seed. */
export async function trainCifarCurve(ds: TensorDataset, mean: Tensor, s: CifarSetting): Promise<Curve> {
  manualSeed(s.seed);
  const options = { activation: s.activation, lrn: s.lrn ? ('paper' as const) : ('none' as const) };
  const model = prepareModel(getModel('convnet-cifar', options), s.device).train();
  const source = new TensorSource(
    { ...ds, images: ds.images.clone(), labels: ds.labels.clone() },
    { inputSize: [32, 32], resize: 'bilinear', mean: [], std: [] },
    { batchSize: s.batchSize, shuffle: true, seed: s.seed, device: s.device },
  );
  const optimizer = new SGD(model.parameters(), { lr: s.lr, momentum: s.momentum, weightDecay: 0 });
  const ctx = { model, device: s.device, precision: 'fp32' as const, optimizer };
  const m = mean.to({ device: s.device });
  const perEpoch = source.numBatches;
  const curve: Curve = [];
  let window = new StepSums(s.device);
  let step = 0;
  try {
    for (let epoch = 0; step < s.steps; epoch++) {
      for await (const b of source.batches(epoch)) {
        // The source gives pixels / 255: back to 0–255, minus the mean image.
        const x = step < s.steps ? tidy(() => b.x.mul(255).sub(m).keep()) : undefined;
        try {
          if (x) trainStep(ctx, x, b.y, window);
        } finally {
          x?.dispose();
          b.x.dispose();
          b.y.dispose();
        }
        if (!x) continue;
        step++;
        if (step % s.window === 0 || step === s.steps) {
          curve.push([step / perEpoch, 1 - window.read().acc]);
          window.dispose();
          window = new StepSums(s.device);
        }
      }
    }
  } finally {
    window.dispose();
    if (m !== mean) m.dispose();
    model.dispose();
    await source.close();
  }
  return curve;
}
