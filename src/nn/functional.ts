// Stateless neural-network functions over tensors (the F.* of PyTorch). Each is one libtorch call.
import { native } from '../tensor/binding';
import { Tensor } from '../tensor/tensor';
import type { Pair } from './spec';

export type { Pair };
export const pair = (v: number | Pair): Pair => (typeof v === 'number' ? [v, v] : v);

export function conv2d(
  x: Tensor,
  w: Tensor,
  b: Tensor | undefined,
  o: { stride?: number | Pair; padding?: number | Pair; dilation?: number | Pair; groups?: number } = {},
): Tensor {
  return new Tensor(
    native().conv2d(
      x.handle,
      w.handle,
      b?.handle,
      pair(o.stride ?? 1),
      pair(o.padding ?? 0),
      pair(o.dilation ?? 1),
      o.groups ?? 1,
    ),
  );
}
/**
 * x·wᵀ + b. Where the addon has oneDNN (native/onednn.cc), 2-D float32 CPU inputs outside autocast run on oneDNN's
 * GEMM, forward and backward (OpenBLAS, libtorch's own path here, is 2–3× slower for AlexNet's short, wide
 * products); everything else on libtorch's at::linear.
 */
export function linear(x: Tensor, w: Tensor, b?: Tensor): Tensor {
  const n = native();
  return new Tensor((n.onednnLinear ?? n.linear)(x.handle, w.handle, b?.handle));
}
export function relu(x: Tensor): Tensor {
  return x.relu();
}
export function maxPool2d(
  x: Tensor,
  kernel: number | Pair,
  stride?: number | Pair,
  padding: number | Pair = 0,
  ceilMode = false,
): Tensor {
  return new Tensor(native().maxPool2d(x.handle, pair(kernel), pair(stride ?? kernel), pair(padding), ceilMode));
}
export function avgPool2d(
  x: Tensor,
  kernel: number | Pair,
  stride?: number | Pair,
  padding: number | Pair = 0,
  ceilMode = false,
  countIncludePad = true,
): Tensor {
  return new Tensor(
    native().avgPool2d(x.handle, pair(kernel), pair(stride ?? kernel), pair(padding), ceilMode, countIncludePad),
  );
}
export function adaptiveAvgPool2d(x: Tensor, size: number | Pair): Tensor {
  return new Tensor(native().adaptiveAvgPool2d(x.handle, pair(size)));
}
export function dropout(x: Tensor, p: number, training: boolean): Tensor {
  return new Tensor(native().dropout(x.handle, p, training));
}
export function batchNorm(
  x: Tensor,
  o: {
    weight?: Tensor;
    bias?: Tensor;
    runningMean?: Tensor;
    runningVar?: Tensor;
    training: boolean;
    momentum: number;
    eps: number;
  },
): Tensor {
  return new Tensor(
    native().batchNorm(
      x.handle,
      o.weight?.handle,
      o.bias?.handle,
      o.runningMean?.handle,
      o.runningVar?.handle,
      o.training,
      o.momentum,
      o.eps,
    ),
  );
}
/**
 * Local response normalisation across channels: b = a / (k + s * Σ a²)^β over a window of `size` channels
 * (size/2 before, (size-1)/2 after, clipped at the ends). s = α/size when alphaPerSize (PyTorch, Caffe), else
 * s = α (the paper, TensorFlow).
 */
export function localResponseNorm(
  x: Tensor,
  size: number,
  alpha: number,
  beta: number,
  k: number,
  alphaPerSize: boolean,
): Tensor {
  return new Tensor(native().localResponseNorm(x.handle, size, alpha, beta, k, alphaPerSize));
}
/** Cross-entropy of logits (N, C) against int64 class indices (N). */
export function crossEntropy(
  logits: Tensor,
  target: Tensor,
  o: { reduction?: 'mean' | 'sum' | 'none'; labelSmoothing?: number } = {},
): Tensor {
  return new Tensor(native().crossEntropy(logits.handle, target.handle, o.reduction ?? 'mean', o.labelSmoothing ?? 0));
}
export function mseLoss(a: Tensor, b: Tensor, reduction: 'mean' | 'sum' | 'none' = 'mean'): Tensor {
  return new Tensor(native().mseLoss(a.handle, b.handle, reduction));
}
/** Resizes (N, C, H, W) to [h, w]: bilinear (half-pixel centres, as PyTorch's align_corners=False) or nearest. */
export function resize(x: Tensor, size: Pair, mode: 'bilinear' | 'nearest' = 'bilinear', antialias = false): Tensor {
  return new Tensor(native().resize(x.handle, size, mode, antialias));
}
/** Constant padding, last dimension first: [left, right, top, bottom]. */
export function pad(x: Tensor, pads: number[], value = 0): Tensor {
  return new Tensor(native().pad(x.handle, pads, value));
}
