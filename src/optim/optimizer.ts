// Optimisers: each step is one native call over all parameters (no per-parameter JavaScript loop).
import { UserError } from '../errors';
import { adamStep, gradsFinite, sgdStep, zeroGrad } from '../tensor/grads';
import { Tensor, zerosLike } from '../tensor/tensor';

export abstract class Optimizer {
  lr: number;
  steps = 0;

  constructor(
    readonly params: Tensor[],
    lr: number,
  ) {
    if (!(lr > 0)) throw new UserError(`learning rate must be positive, got ${lr}`);
    if (!params.length) throw new UserError('the optimiser got no parameters');
    this.lr = lr;
  }

  abstract step(): void;

  zeroGrad(): void {
    zeroGrad(this.params);
  }

  /** False when a gradient holds NaN or infinity. */
  gradsFinite(): boolean {
    return gradsFinite(this.params);
  }

  /** State tensors by name, for checkpoints. */
  abstract stateTensors(): [string, Tensor][];

  stateScalars(): Record<string, number> {
    return { lr: this.lr, steps: this.steps };
  }

  loadState(tensors: Map<string, Tensor>, scalars: Record<string, number>): void {
    const own = this.stateTensors();
    for (const [k, t] of own) {
      const src = tensors.get(k);
      if (!src) throw new UserError(`the checkpoint has no optimiser state '${k}'`);
      t.copy_(src);
    }
    this.lr = scalars.lr ?? this.lr;
    this.steps = scalars.steps ?? 0;
  }

  protected buffers(): Tensor[] {
    return this.params.map((p) => zerosLike(p).keep());
  }
}

export interface SgdOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
  dampening?: number;
  nesterov?: boolean;
  /**
   * 'paper': Krizhevsky et al.'s update v ← μv − λεw − ε∇, w ← w + v (the learning rate is inside the velocity).
   * 'pytorch': torch.optim.SGD's v ← μv + (∇ + λw), w ← w − εv. They agree while ε is constant.
   */
  form?: 'paper' | 'pytorch';
}

export class SGD extends Optimizer {
  readonly momentum: number;
  readonly weightDecay: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  readonly form: 'paper' | 'pytorch';
  readonly #bufs: Tensor[];

  constructor(params: Tensor[], o: SgdOptions) {
    super(params, o.lr);
    this.momentum = o.momentum ?? 0;
    this.weightDecay = o.weightDecay ?? 0;
    this.dampening = o.dampening ?? 0;
    this.nesterov = o.nesterov ?? false;
    this.form = o.form ?? 'pytorch';
    if (this.momentum < 0 || this.weightDecay < 0) throw new UserError('momentum and weight decay must be >= 0');
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0))
      throw new UserError('Nesterov momentum needs momentum > 0 and no dampening');
    this.#bufs = this.buffers();
  }

  step(): void {
    sgdStep(this.params, this.#bufs, {
      lr: this.lr,
      momentum: this.momentum,
      weightDecay: this.weightDecay,
      dampening: this.dampening,
      nesterov: this.nesterov,
      form: this.form,
      firstStep: this.steps === 0,
    });
    this.steps++;
  }

  stateTensors(): [string, Tensor][] {
    return this.#bufs.map((b, i) => [`momentum.${i}`, b]);
  }
}

export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** AdamW: weight decay applied to the weights directly rather than added to the gradient. */
  decoupled?: boolean;
}

export class Adam extends Optimizer {
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  readonly decoupled: boolean;
  readonly #m: Tensor[];
  readonly #v: Tensor[];

  constructor(params: Tensor[], o: AdamOptions = {}) {
    super(params, o.lr ?? 1e-3);
    this.betas = o.betas ?? [0.9, 0.999];
    this.eps = o.eps ?? 1e-8;
    this.weightDecay = o.weightDecay ?? 0;
    this.decoupled = o.decoupled ?? false;
    this.#m = this.buffers();
    this.#v = this.buffers();
  }

  step(): void {
    this.steps++;
    adamStep(this.params, this.#m, this.#v, {
      step: this.steps,
      lr: this.lr,
      beta1: this.betas[0],
      beta2: this.betas[1],
      eps: this.eps,
      weightDecay: this.weightDecay,
      decoupled: this.decoupled,
    });
  }

  stateTensors(): [string, Tensor][] {
    return [
      ...this.#m.map((t, i) => [`exp_avg.${i}`, t] as [string, Tensor]),
      ...this.#v.map((t, i) => [`exp_avg_sq.${i}`, t] as [string, Tensor]),
    ];
  }
}

/**
 * Two parameter groups with their own learning rates, as torch.optim's param groups: the body at `lr`, the head at
 * `lr × ratio` (ratio: the head's rate over the body's when built). A schedule that changes `lr` scales both, as
 * PyTorch's schedulers scale every group. State tensors are the body's names and the head's with "head." before.
 */
export class TwoGroups extends Optimizer {
  readonly ratio: number;

  constructor(
    readonly body: Optimizer,
    readonly head: Optimizer,
  ) {
    super([...body.params, ...head.params], body.lr);
    this.ratio = head.lr / body.lr;
  }

  step(): void {
    this.body.lr = this.lr;
    this.head.lr = this.lr * this.ratio;
    this.body.steps = this.head.steps = this.steps;
    this.body.step();
    this.head.step();
    this.steps++;
  }

  stateTensors(): [string, Tensor][] {
    return [
      ...this.body.stateTensors(),
      ...this.head.stateTensors().map(([k, t]) => [`head.${k}`, t] as [string, Tensor]),
    ];
  }
}
