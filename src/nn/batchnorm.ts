import { UserError } from '../errors';
import { noGrad, ones, Tensor, zeros } from '../tensor/tensor';
import { batchNorm } from './functional';
import { expectRank, fmtShape, LayerShapeError, Module } from './module';
import type { BatchNorm2dSpec } from './spec';

/**
 * Batch normalisation over (N, H, W) per channel. (N, C, H, W) -> (N, C, H, W). Training uses the batch's
 * statistics and updates running_mean / running_var (momentum 0.1, unbiased variance, as PyTorch); eval uses
 * the running statistics. Keys: weight, bias, running_mean, running_var, num_batches_tracked.
 */
export class BatchNorm2d extends Module {
  readonly eps: number;
  readonly momentum: number;
  /** Whether it has the learnt scale and shift (weight, bias). */
  readonly affine: boolean;

  constructor(
    readonly numFeatures: number,
    o: { eps?: number; momentum?: number; affine?: boolean } = {},
  ) {
    super();
    if (!Number.isInteger(numFeatures) || numFeatures < 1)
      throw new UserError(`BatchNorm2d: numFeatures must be a positive integer, got ${numFeatures}`);
    this.eps = o.eps ?? 1e-5;
    this.momentum = o.momentum ?? 0.1;
    this.affine = o.affine ?? true;
    if (this.affine) {
      this.declareParameter('weight', [numFeatures], () => ones([numFeatures]));
      this.declareParameter('bias', [numFeatures], () => zeros([numFeatures]));
    }
    this.declareBuffer('running_mean', () => zeros([numFeatures]));
    this.declareBuffer('running_var', () => ones([numFeatures]));
    this.declareBuffer('num_batches_tracked', () => zeros([], { dtype: 'int64' }));
  }

  /** γ (C), or undefined when built with affine: false. */
  get weight(): Tensor | undefined {
    return this.parameter('weight');
  }
  /** β (C), or undefined when built with affine: false. */
  get bias(): Tensor | undefined {
    return this.parameter('bias');
  }

  forward(x: Tensor): Tensor {
    const rm = this.own('running_mean')!;
    const rv = this.own('running_var')!;
    if (this.training) {
      const n = this.own('num_batches_tracked')!;
      noGrad(() => {
        const next = n.add(1);
        n.copy_(next);
        next.dispose();
      });
    }
    return batchNorm(x, {
      weight: this.weight,
      bias: this.bias,
      runningMean: rm,
      runningVar: rv,
      training: this.training,
      momentum: this.momentum,
      eps: this.eps,
    });
  }
  override outputShape(input: number[]): number[] {
    expectRank('BatchNorm2d', input, 3);
    if (input[0] !== this.numFeatures)
      throw new LayerShapeError(`BatchNorm2d expects ${this.numFeatures} channels, got ${fmtShape(input)}`);
    return input;
  }
  override spec(): BatchNorm2dSpec {
    const { numFeatures, eps, momentum, affine } = this;
    return { kind: 'batchNorm2d', numFeatures, eps, momentum, affine };
  }
  override describe(): string {
    return `BatchNorm2d(${this.numFeatures})`;
  }
}
