// Figure 1's setting: the four-layer CIFAR-10 network (models/convnet-cifar.ts, cuda-convnet's layers-18pct.cfg),
// no regularisation of any kind, SGD with momentum, inputs as cuda-convnet fed them (0–255 pixels minus the
// per-pixel mean of the training images), training error recorded per window of steps against epochs.
// Trained through the curves module (its arms take the data set's channels and an input transform).
import { TensorDataset } from '../data/fashion-mnist';
import { Activation } from '../models/alexnet';
import { Device } from '../tensor/dtype';
import { noGrad, Tensor, tidy } from '../tensor/tensor';
import { Curve, trainCurve } from './curves';

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
  /** Stop once a window's training error is at most this. */
  stopBelow?: number;
}

/** The per-pixel mean of the training images in 0–255, (1, 3, 32, 32): what cuda-convnet subtracted. */
export function meanImage(ds: TensorDataset): Tensor {
  return noGrad(() => tidy(() => ds.images.float().mean(0, true).keep()));
}

/** Points (epochs at the window's end, training error over the window) of one arm from one seed. */
export async function trainCifarCurve(ds: TensorDataset, mean: Tensor, s: CifarSetting): Promise<Curve> {
  const m = mean.to({ device: s.device });
  try {
    const curve = await trainCurve(ds, {
      model: 'convnet-cifar',
      options: { activation: s.activation, lrn: s.lrn ? 'paper' : 'none' },
      steps: s.steps,
      window: s.window,
      batchSize: s.batchSize,
      lr: s.lr,
      momentum: s.momentum,
      seed: s.seed,
      device: s.device,
      stopBelow: s.stopBelow,
      // The source gives pixels / 255: back to 0–255, minus the mean image.
      augment: (x) => tidy(() => x.mul(255).sub(m).keep()),
    });
    const perEpoch = Math.ceil(ds.labels.shape[0] / s.batchSize);
    return curve.map(([step, e]) => [step / perEpoch, e]);
  } finally {
    if (m !== mean) m.dispose();
  }
}
