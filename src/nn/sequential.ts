import { Tensor, tidy } from '../tensor/tensor';
import { Module } from './module';
import type { SequentialSpec } from './spec';

/** Runs its children in order; they are named "0", "1", … as in PyTorch. */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
    layers.forEach((m, i) => this.registerModule(String(i), m));
  }
  forward(x: Tensor): Tensor {
    // Intermediate activations are released as soon as the next layer has consumed them (autograd keeps what
    // backward needs on its own).
    return tidy(() => {
      let y = x;
      for (const m of this.layers) y = m.forward(y);
      return y;
    });
  }
  override outputShape(input: number[]): number[] {
    return this.layers.reduce((s, m) => m.outputShape(s), input);
  }
  override macs(input: number[]): number {
    let s = input;
    let total = 0;
    for (const m of this.layers) {
      total += m.macs(s);
      s = m.outputShape(s);
    }
    return total;
  }
  override spec(): SequentialSpec {
    return { kind: 'sequential', children: this.layers.map((m) => m.spec()) };
  }
  override describe(): string {
    return `Sequential(${this.layers.length})`;
  }
}
