// Module: the base of every layer and model. Children, parameters and buffers are registered by name, so that
// stateDict() keys follow PyTorch's convention ("features.0.weight") and PyTorch weights load unchanged.
import { ShapeError, StateDictError, UserError } from '../errors';
import { Device, DType, isFloating, sameShape } from '../tensor/dtype';
import { keep, noGrad, Tensor } from '../tensor/tensor';
import type { LayerSpec } from './spec';

export type StateDict = Map<string, Tensor>;

/** A per-sample shape that a layer cannot handle (the batch dimension is left out). */
export class LayerShapeError extends ShapeError {}

export const fmtShape = (s: readonly number[]): string => `[${s.join(', ')}]`;

let shapeOnlyDepth = 0;

/**
 * Runs `build` so that the modules it constructs describe an architecture without allocating anything: each layer
 * records its parameters' shapes (so outputShape(), macs(), describe(), ownParameterCount() and numParameters()
 * work) but creates no tensors and skips initialisation. Such modules are `shapeOnly` and cannot run: reading a
 * parameter throws. For summaries and size checks of models too large to allocate. `build` must be synchronous.
 */
export function withoutWeights<T>(build: () => T): T {
  shapeOnlyDepth++;
  try {
    return build();
  } finally {
    shapeOnlyDepth--;
  }
}

const numelOf = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export abstract class Module {
  training = true;
  /** Built inside withoutWeights(): the module has shapes and parameter counts but no tensors, and cannot run. */
  readonly shapeOnly = shapeOnlyDepth > 0;
  readonly #children = new Map<string, Module>();
  readonly #params = new Map<string, Tensor | undefined>();
  /** The declared shape of every parameter (also of a shape-only module's, which has no tensors). */
  readonly #paramShapes = new Map<string, number[]>();
  readonly #buffers = new Map<string, Tensor>();

  /** (N, ...) -> (N, ...): each layer's doc comment states its shape contract. */
  abstract forward(x: Tensor): Tensor;

  /** Per-sample output shape for a per-sample input shape (no batch dimension), without computing anything. */
  outputShape(input: number[]): number[] {
    return input;
  }

  /** Multiply-accumulates for one sample of the given per-sample input shape (conv and linear layers only). */
  macs(_input: number[]): number {
    return 0;
  }

  /**
   * What this layer is, as data (kind and hyper-parameters; its tensors are read by name from stateDict()). A
   * module without a spec of its own is a 'container' of its children's.
   */
  spec(): LayerSpec {
    const children = this.namedChildren().map(([name, m]) => ({ name, spec: m.spec() }));
    return { kind: 'container', type: this.constructor.name, children };
  }

  /** A one-line description such as "Conv2d(3, 64, kernel=11, stride=4, padding=2)". */
  describe(): string {
    return this.constructor.name;
  }

  // ---- registration ----
  protected registerModule<M extends Module>(name: string, m: M): M {
    this.#children.set(name, m);
    return m;
  }
  protected registerParameter(name: string, t: Tensor | undefined): Tensor | undefined {
    if (t) keep(t).requiresGrad_(true);
    this.#params.set(name, t);
    if (t) this.#paramShapes.set(name, t.shape);
    else this.#paramShapes.delete(name);
    return t;
  }
  /**
   * Declares a parameter of `shape`. `create` makes its tensor (of that shape) unless the module is shape-only
   * (built inside withoutWeights()), when only the shape is recorded and nothing is allocated.
   */
  protected declareParameter(name: string, shape: number[], create: () => Tensor): void {
    if (this.shapeOnly) this.#paramShapes.set(name, shape.slice());
    else this.registerParameter(name, create());
  }
  protected registerBuffer(name: string, t: Tensor): Tensor {
    this.#buffers.set(name, keep(t));
    return t;
  }
  /** Declares a buffer made by `create`; a shape-only module makes none. */
  protected declareBuffer(name: string, create: () => Tensor): void {
    if (!this.shapeOnly) this.registerBuffer(name, create());
  }
  /**
   * The parameter registered under `name` (undefined when the layer has none, e.g. a convolution without bias).
   * A shape-only module has no tensors: asking for one it declared is an error that says so.
   */
  protected parameter(name: string): Tensor | undefined {
    if (this.shapeOnly && this.#paramShapes.has(name)) throw this.shapeOnlyError(name);
    return this.#params.get(name);
  }
  /** Whether a parameter `name` is declared (also on a shape-only module, which has no tensor for it). */
  protected hasParameter(name: string): boolean {
    return this.#paramShapes.has(name);
  }
  /** The error for using a shape-only module's tensors. */
  protected shapeOnlyError(name?: string): UserError {
    const what = name ? `it has no '${name}' tensor and cannot run` : 'it has no tensors and cannot run';
    return new UserError(
      `${this.describe()} was built without weights (withoutWeights(), for a summary): ${what}; build the model normally to use it`,
    );
  }
  /** The parameter or buffer registered under `name` on this module (not its children). */
  protected own(name: string): Tensor | undefined {
    if (this.shapeOnly) throw this.shapeOnlyError(name);
    return this.#params.get(name) ?? this.#buffers.get(name);
  }

  // ---- traversal ----
  namedChildren(): [string, Module][] {
    return [...this.#children];
  }
  child(name: string): Module | undefined {
    return this.#children.get(name);
  }
  /** Every module below and including this one, depth first, with dotted names ('' for this one). */
  namedModules(prefix = ''): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, c] of this.#children) out.push(...c.namedModules(prefix ? `${prefix}.${n}` : n));
    return out;
  }
  namedParameters(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [n, p] of m.#params) if (p) out.push([prefix ? `${prefix}.${n}` : n, p]);
    }
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }
  namedBuffers(): [string, Tensor][] {
    const out: [string, Tensor][] = [];
    for (const [prefix, m] of this.namedModules()) {
      for (const [n, b] of m.#buffers) out.push([prefix ? `${prefix}.${n}` : n, b]);
    }
    return out;
  }
  /** Parameters of this module and all below it (a shape-only module counts its declared shapes). */
  numParameters(): number {
    return this.namedModules().reduce((a, [, m]) => a + m.ownParameterCount(), 0);
  }
  /** Parameters registered on this module itself (not its children): the tensors' sizes, or the declared shapes'. */
  ownParameterCount(): number {
    let n = 0;
    for (const [name, shape] of this.#paramShapes) {
      const p = this.#params.get(name);
      n += p ? p.numel : numelOf(shape);
    }
    return n;
  }

  // ---- modes ----
  train(on = true): this {
    for (const [, m] of this.namedModules()) m.training = on;
    return this;
  }
  eval(): this {
    return this.train(false);
  }

  // ---- state ----
  /**
   * The parameters and buffers by PyTorch key, in PyTorch's order (each module's own parameters, then its
   * buffers, then its children). The tensors are the module's own: do not dispose them.
   */
  stateDict(): StateDict {
    const out: StateDict = new Map();
    for (const [prefix, m] of this.namedModules()) {
      const key = (n: string) => (prefix ? `${prefix}.${n}` : n);
      for (const [n, p] of m.#params) if (p) out.set(key(n), p);
      for (const [n, b] of m.#buffers) out.set(key(n), b);
    }
    return out;
  }

  /**
   * Copies tensors into this module's parameters and buffers. With strict (the default) every key must match:
   * the error lists all missing, unexpected and mis-shaped keys at once, and nothing is copied.
   */
  loadStateDict(sd: StateDict | Record<string, Tensor>, o: { strict?: boolean } = {}): void {
    const strict = o.strict ?? true;
    const given = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = this.stateDict();
    const missing = [...own.keys()].filter((k) => !given.has(k));
    const unexpected = [...given.keys()].filter((k) => !own.has(k));
    const mismatched: { key: string; expected: number[]; got: number[] }[] = [];
    for (const [k, t] of own) {
      const g = given.get(k);
      if (!g) continue;
      if (!sameShape(t.shape, g.shape)) mismatched.push({ key: k, expected: t.shape, got: g.shape });
    }
    const problems: string[] = [];
    if (strict && missing.length) problems.push(`missing keys: ${missing.join(', ')}`);
    if (strict && unexpected.length) problems.push(`unexpected keys: ${unexpected.join(', ')}`);
    if (mismatched.length) {
      problems.push(
        `shape mismatch: ${mismatched.map((m) => `${m.key} expects ${fmtShape(m.expected)} but got ${fmtShape(m.got)}`).join('; ')}`,
      );
    }
    if (problems.length) {
      throw new StateDictError(
        `the state dict does not fit ${this.constructor.name}: ${problems.join('; ')}`,
        missing,
        unexpected,
        mismatched,
      );
    }
    noGrad(() => {
      for (const [k, t] of own) {
        const g = given.get(k);
        if (g) t.copy_(g);
      }
    });
  }

  /**
   * Moves or converts every parameter and buffer in place: the Tensor objects stay the same (layers and user code
   * keep valid references), their data is replaced. Create optimisers after moving a model (they hold the native
   * handles). A memory format applies to 4-D tensors only.
   */
  to(target: Target): this {
    for (const [, m] of this.namedModules()) {
      for (const p of m.#params.values()) {
        if (!p) continue;
        const requiresGrad = p.requiresGrad;
        p._adopt(noGrad(() => p.to(forRank(target, p.ndim))));
        if (requiresGrad) p.requiresGrad_(true);
      }
      for (const b of m.#buffers.values()) {
        const moved = moveBuffer(b, target);
        if (moved) b._adopt(moved);
      }
    }
    return this;
  }

  /** Releases every parameter and buffer. */
  dispose(): void {
    for (const p of this.parameters()) p.dispose();
    for (const [, b] of this.namedBuffers()) b.dispose();
  }

  /** Runs forward(). */
  call(x: Tensor): Tensor {
    return this.forward(x);
  }
}

type Target = Device | DType | { device?: Device; dtype?: DType; memoryFormat?: 'contiguous' | 'channelsLast' };

/** A memory format applies to 4-D tensors only (conv weights); others keep their layout. */
function forRank(target: Target, ndim: number): Target {
  if (typeof target === 'string' || !target.memoryFormat || ndim === 4) return target;
  return { device: target.device, dtype: target.dtype };
}

/** Buffers that are not floating point (num_batches_tracked) change device but keep their dtype. */
function moveBuffer(b: Tensor, target: Target): Tensor | undefined {
  if (isFloating(b.dtype)) return b.to(forRank(target, b.ndim));
  if (typeof target === 'string') return target === 'cpu' || target.startsWith('cuda') ? b.to(target) : undefined;
  return target.device ? b.to({ device: target.device }) : undefined;
}

/** Checks that a per-sample shape has the expected rank; names the layer's kind in the error. */
export function expectRank(layer: string, input: number[], rank: number): void {
  if (input.length !== rank) {
    throw new LayerShapeError(
      `${layer} expects ${rank === 3 ? '(C, H, W)' : `${rank}-D`} samples, got ${fmtShape(input)}`,
    );
  }
}

export { UserError };
