// Layers without parameters: ReLU, Dropout, Flatten.
import { UserError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { dropout } from './functional';
import { Module } from './module';
import type { DropoutSpec, FlattenSpec, ReluSpec, TanhSpec } from './spec';

/**
 * max(0, x) elementwise. Any shape -> the same shape. With `inplace` (as torchvision's AlexNet) the result
 * overwrites the input, saving a buffer and a pass over memory; use it only where nothing else needs the input
 * (after a convolution or linear layer, whose gradients do not need their output).
 */
export class ReLU extends Module {
  constructor(readonly inplace = false) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.inplace ? x.relu_() : x.relu();
  }
  override spec(): ReluSpec {
    return { kind: 'relu', inplace: this.inplace };
  }
  override describe(): string {
    return 'ReLU';
  }
}

/** tanh, the saturating activation the paper compares ReLU against (its Figure 1). */
export class Tanh extends Module {
  forward(x: Tensor): Tensor {
    return x.tanh();
  }
  override spec(): TanhSpec {
    return { kind: 'tanh' };
  }
  override describe(): string {
    return 'Tanh';
  }
}

/** Zeroes each element with probability p while training and scales the rest by 1/(1 − p); identity in eval. */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (!(p >= 0 && p < 1)) throw new UserError(`Dropout: p must be in [0, 1), got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return this.p === 0 ? x.clone() : dropout(x, this.p, this.training);
  }
  override spec(): DropoutSpec {
    return { kind: 'dropout', p: this.p };
  }
  override describe(): string {
    return `Dropout(p=${this.p})`;
  }
}

/** (N, C, H, W) -> (N, C·H·W). */
export class Flatten extends Module {
  forward(x: Tensor): Tensor {
    return x.flatten(1);
  }
  override outputShape(input: number[]): number[] {
    return [input.reduce((a, b) => a * b, 1)];
  }
  override spec(): FlattenSpec {
    return { kind: 'flatten' };
  }
  override describe(): string {
    return 'Flatten';
  }
}
