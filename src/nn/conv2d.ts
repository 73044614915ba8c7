import { UserError } from '../errors';
import { zeros, Tensor } from '../tensor/tensor';
import { conv2d, Pair, pair } from './functional';
import { pytorchDefault_ } from './init';
import { expectRank, fmtShape, LayerShapeError, Module } from './module';
import type { Conv2dSpec } from './spec';

export interface Conv2dOptions {
  stride?: number | Pair;
  padding?: number | Pair;
  dilation?: number | Pair;
  /** Channels are split into this many independent groups (AlexNet's two-GPU split is groups = 2). */
  groups?: number;
  bias?: boolean;
}

/** 2-D convolution. (N, C_in, H, W) -> (N, C_out, H', W'), H' = ⌊(H + 2P − D(K − 1) − 1) / S⌋ + 1. */
export class Conv2d extends Module {
  readonly kernel: Pair;
  readonly stride: Pair;
  readonly padding: Pair;
  readonly dilation: Pair;
  readonly groups: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: number | Pair,
    o: Conv2dOptions = {},
  ) {
    super();
    this.kernel = pair(kernelSize);
    this.stride = pair(o.stride ?? 1);
    this.padding = pair(o.padding ?? 0);
    this.dilation = pair(o.dilation ?? 1);
    this.groups = o.groups ?? 1;
    for (const [n, v] of [
      ['inChannels', inChannels],
      ['outChannels', outChannels],
      ['groups', this.groups],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new UserError(`Conv2d: ${n} must be a positive integer, got ${v}`);
    }
    if (inChannels % this.groups || outChannels % this.groups) {
      throw new UserError(
        `Conv2d: inChannels (${inChannels}) and outChannels (${outChannels}) must be divisible by groups (${this.groups})`,
      );
    }
    const weightShape = [outChannels, inChannels / this.groups, ...this.kernel];
    this.declareParameter('weight', weightShape, () => zeros(weightShape));
    if (o.bias !== false) this.declareParameter('bias', [outChannels], () => zeros([outChannels]));
    if (!this.shapeOnly) pytorchDefault_(this.weight, this.bias);
  }

  /** (C_out, C_in / groups, K_h, K_w). */
  get weight(): Tensor {
    return this.parameter('weight')!;
  }
  /** (C_out), or undefined when built with bias: false. */
  get bias(): Tensor | undefined {
    return this.parameter('bias');
  }

  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, {
      stride: this.stride,
      padding: this.padding,
      dilation: this.dilation,
      groups: this.groups,
    });
  }

  override outputShape(input: number[]): number[] {
    expectRank('Conv2d', input, 3);
    const [c, h, w] = input;
    if (c !== this.inChannels)
      throw new LayerShapeError(
        `Conv2d expects ${this.inChannels} input channels, got ${c} (input ${fmtShape(input)})`,
      );
    const out = (x: number, i: 0 | 1) =>
      Math.floor((x + 2 * this.padding[i] - this.dilation[i] * (this.kernel[i] - 1) - 1) / this.stride[i]) + 1;
    const shape = [this.outChannels, out(h, 0), out(w, 1)];
    if (shape[1] < 1 || shape[2] < 1) {
      throw new LayerShapeError(
        `Conv2d with kernel ${this.kernel.join('×')} cannot take ${h}×${w}: the output would be ${shape[1]}×${shape[2]}`,
      );
    }
    return shape;
  }

  override macs(input: number[]): number {
    const [, ho, wo] = this.outputShape(input);
    return this.outChannels * ho * wo * (this.inChannels / this.groups) * this.kernel[0] * this.kernel[1];
  }

  override spec(): Conv2dSpec {
    const { inChannels, outChannels, groups } = this;
    const [kernel, stride, padding, dilation] = [this.kernel, this.stride, this.padding, this.dilation].map(
      (p): Pair => [p[0], p[1]],
    );
    return {
      kind: 'conv2d',
      inChannels,
      outChannels,
      kernel,
      stride,
      padding,
      dilation,
      groups,
      bias: this.hasParameter('bias'),
    };
  }

  override describe(): string {
    const parts = [`${this.inChannels}, ${this.outChannels}`, `kernel=${this.kernel.join('×')}`];
    if (this.stride.some((s) => s !== 1))
      parts.push(`stride=${this.stride[0] === this.stride[1] ? this.stride[0] : this.stride.join('×')}`);
    if (this.padding.some((s) => s !== 0))
      parts.push(`padding=${this.padding[0] === this.padding[1] ? this.padding[0] : this.padding.join('×')}`);
    if (this.groups !== 1) parts.push(`groups=${this.groups}`);
    return `Conv2d(${parts.join(', ')})`;
  }
}
