import { UserError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { adaptiveAvgPool2d, maxPool2d, Pair, pair } from './functional';
import { expectRank, LayerShapeError, Module } from './module';
import type { AdaptiveAvgPool2dSpec, MaxPool2dSpec } from './spec';

function poolOut(x: number, k: number, s: number, p: number, ceil: boolean): number {
  const span = x + 2 * p - k;
  let out = (ceil ? Math.ceil(span / s) : Math.floor(span / s)) + 1;
  // As PyTorch: with ceil mode the last window must start inside the input or left padding.
  if (ceil && (out - 1) * s >= x + p) out--;
  return out;
}

/**
 * Max pooling. (N, C, H, W) -> (N, C, H', W'), H' = ⌊(H + 2P − K) / S⌋ + 1. Overlapping when S < K, as AlexNet's
 * 3×3 windows with stride 2.
 */
export class MaxPool2d extends Module {
  readonly kernel: Pair;
  readonly stride: Pair;
  readonly padding: Pair;
  readonly ceilMode: boolean;
  constructor(
    kernelSize: number | Pair,
    o: { stride?: number | Pair; padding?: number | Pair; ceilMode?: boolean } = {},
  ) {
    super();
    this.kernel = pair(kernelSize);
    this.stride = pair(o.stride ?? kernelSize);
    this.padding = pair(o.padding ?? 0);
    this.ceilMode = o.ceilMode ?? false;
    if (this.padding.some((p, i) => p > this.kernel[i] / 2))
      throw new UserError('MaxPool2d: padding must be at most half the kernel size');
  }
  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernel, this.stride, this.padding, this.ceilMode);
  }
  override outputShape(input: number[]): number[] {
    expectRank('MaxPool2d', input, 3);
    const [c, h, w] = input;
    const ho = poolOut(h, this.kernel[0], this.stride[0], this.padding[0], this.ceilMode);
    const wo = poolOut(w, this.kernel[1], this.stride[1], this.padding[1], this.ceilMode);
    if (ho < 1 || wo < 1)
      throw new LayerShapeError(`MaxPool2d with kernel ${this.kernel.join('×')} cannot take ${h}×${w}`);
    return [c, ho, wo];
  }
  override spec(): MaxPool2dSpec {
    const [kernel, stride, padding] = [this.kernel, this.stride, this.padding].map((p): Pair => [p[0], p[1]]);
    return { kind: 'maxPool2d', kernel, stride, padding, ceilMode: this.ceilMode };
  }
  override describe(): string {
    return `MaxPool2d(kernel=${this.kernel.join('×')}, stride=${this.stride.join('×')}${this.padding.some((p) => p) ? `, padding=${this.padding.join('×')}` : ''})`;
  }
}

/** Adaptive average pooling to a fixed output size. (N, C, H, W) -> (N, C, h, w). */
export class AdaptiveAvgPool2d extends Module {
  readonly size: Pair;
  constructor(size: number | Pair) {
    super();
    this.size = pair(size);
  }
  forward(x: Tensor): Tensor {
    return adaptiveAvgPool2d(x, this.size);
  }
  override outputShape(input: number[]): number[] {
    expectRank('AdaptiveAvgPool2d', input, 3);
    return [input[0], ...this.size];
  }
  override spec(): AdaptiveAvgPool2dSpec {
    return { kind: 'adaptiveAvgPool2d', size: [this.size[0], this.size[1]] };
  }
  override describe(): string {
    return `AdaptiveAvgPool2d(${this.size.join('×')})`;
  }
}
