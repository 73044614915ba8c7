import { UserError } from '../errors';
import { zeros, Tensor } from '../tensor/tensor';
import { linear } from './functional';
import { pytorchDefault_ } from './init';
import { fmtShape, LayerShapeError, Module } from './module';
import type { LinearSpec } from './spec';

/** Fully connected layer y = x Wᵀ + b. (N, in) -> (N, out). */
export class Linear extends Module {
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    o: { bias?: boolean } = {},
  ) {
    super();
    for (const [n, v] of [
      ['inFeatures', inFeatures],
      ['outFeatures', outFeatures],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new UserError(`Linear: ${n} must be a positive integer, got ${v}`);
    }
    this.declareParameter('weight', [outFeatures, inFeatures], () => zeros([outFeatures, inFeatures]));
    if (o.bias !== false) this.declareParameter('bias', [outFeatures], () => zeros([outFeatures]));
    if (!this.shapeOnly) pytorchDefault_(this.weight, this.bias);
  }

  /** (out, in). */
  get weight(): Tensor {
    return this.parameter('weight')!;
  }
  /** (out), or undefined when built with bias: false. */
  get bias(): Tensor | undefined {
    return this.parameter('bias');
  }

  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
  override outputShape(input: number[]): number[] {
    if (input.length !== 1 || input[0] !== this.inFeatures) {
      throw new LayerShapeError(`Linear expects ${this.inFeatures} features, got ${fmtShape(input)}`);
    }
    return [this.outFeatures];
  }
  override macs(): number {
    return this.inFeatures * this.outFeatures;
  }
  override spec(): LinearSpec {
    const { inFeatures, outFeatures } = this;
    return { kind: 'linear', inFeatures, outFeatures, bias: this.hasParameter('bias') };
  }
  override describe(): string {
    return `Linear(${this.inFeatures}, ${this.outFeatures})`;
  }
}
