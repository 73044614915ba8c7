// In-place random fills for weight initialisation (nn/init.ts), drawn from libtorch's generator (manualSeed).
import { native } from './binding';
import { Tensor } from './tensor';

/** Fills `t` with draws from N(mean, std²), in place. */
export function fillNormal_(t: Tensor, mean: number, std: number): Tensor {
  native().normal_(t.handle, mean, std);
  return t;
}

/** Fills `t` with draws from U(low, high), in place. */
export function fillUniform_(t: Tensor, low: number, high: number): Tensor {
  native().uniform_(t.handle, low, high);
  return t;
}
