// Speed measurement, the one set of timing loops behind `alexnet bench` (src/cli/bench.ts) and `npm run bench`
// (bench/bench.ts): warm-up calls first, the device synchronised before and after the timed ones.
import { AlexNet } from '../models/alexnet';
import { Device } from '../tensor/dtype';
import { Tensor, tidy } from '../tensor/tensor';
import { synchronize } from './device';
import { InferenceRunner } from './inference';
import { Precision } from './precision';

/** Images/s of `step` (a batch of `batch` images) over `iters` calls after `warmup`, the device synchronised. */
export function imagesPerSecond(
  device: Device,
  batch: number,
  warmup: number,
  iters: number,
  step: () => void,
): number {
  for (let i = 0; i < warmup; i++) step();
  synchronize(device);
  const t = performance.now();
  for (let i = 0; i < iters; i++) step();
  synchronize(device);
  return (batch * iters) / ((performance.now() - t) / 1000);
}

/**
 * Images/s of an asynchronous `step` that says how many images it processed (undefined: its input ran out, and
 * the timing ends there), over `iters` calls after `warmup`, the device synchronised.
 */
export async function imagesPerSecondAsync(
  device: Device,
  warmup: number,
  iters: number,
  step: () => Promise<number | undefined>,
): Promise<number> {
  for (let i = 0; i < warmup; i++) if ((await step()) === undefined) return 0;
  synchronize(device);
  const t = performance.now();
  let images = 0;
  for (let i = 0; i < iters; i++) {
    const n = await step();
    if (n === undefined) break;
    images += n;
  }
  synchronize(device);
  return images / ((performance.now() - t) / 1000);
}

/**
 * Inference images/s of `model` on the batch `x` as predict, eval and serve run it (src/runtime/inference.ts), and
 * which engine ran ("onednn", or "libtorch (why)").
 */
export function inferenceSpeed(
  model: AlexNet,
  device: Device,
  precision: Precision,
  x: Tensor,
  warmup: number,
  iters: number,
): { imagesPerSecond: number; engine: string } {
  model.eval();
  const runner = new InferenceRunner(model, device, precision);
  try {
    const ips = imagesPerSecond(device, x.size(0), warmup, iters, () => tidy(() => void runner.forward(x)));
    return { imagesPerSecond: ips, engine: runner.description };
  } finally {
    runner.dispose();
  }
}
