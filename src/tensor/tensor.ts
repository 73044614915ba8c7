// Tensor: a TypeScript handle on a libtorch tensor. Memory is released deterministically with dispose() or a
// tidy() scope; a finalizer in the addon releases whatever is garbage-collected without either.
import { EngineError, UserError } from '../errors';
import { H, native } from './binding';
import { checkDevice, checkDtype, Device, DType, DTYPE_SIZE, isFloating, TypedArray, typedArrayFor } from './dtype';

// ---- scopes ---------------------------------------------------------------------------------------------------
const scopes: Set<Tensor>[] = [];

function track(t: Tensor): void {
  const s = scopes[scopes.length - 1];
  if (s) s.add(t);
}

function collectTensors(value: unknown, into: Set<Tensor>, seen = new Set<unknown>()): void {
  if (value instanceof Tensor) {
    into.add(value);
  } else if (value && typeof value === 'object' && !seen.has(value)) {
    seen.add(value);
    const items = value instanceof Map ? value.values() : Array.isArray(value) ? value : Object.values(value);
    for (const v of items) collectTensors(v, into, seen);
  }
}

/**
 * Runs `fn` and disposes every tensor created inside it, except the tensors it returns (directly, or inside
 * arrays, Maps and plain objects), which move to the enclosing scope. `fn` must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    throw new UserError('tidy() needs a synchronous function: await outside it, and tidy each synchronous step');
  }
  const kept = new Set<Tensor>();
  collectTensors(result, kept);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (kept.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/** Takes tensors out of every open scope: they live until dispose() or garbage collection. */
export function keep<T extends Tensor | Tensor[]>(t: T): T {
  for (const x of Array.isArray(t) ? t : [t]) for (const s of scopes) s.delete(x);
  return t;
}

/** Runs `fn` without recording autograd history. */
export function noGrad<T>(fn: () => T): T {
  const prev = native().setGradEnabled(false);
  try {
    return fn();
  } finally {
    native().setGradEnabled(prev);
  }
}

// ---- the Tensor class ------------------------------------------------------------------------------------------
type Meta = { shape: number[]; dtype: DType; device: Device };
type Operand = Tensor | number;

function h(x: Operand): H | number {
  return typeof x === 'number' ? x : x.handle;
}

function normDim(dim: number, ndim: number): number {
  return dim < 0 ? dim + ndim : dim;
}

export class Tensor {
  #h: H | null;
  #meta: Meta | undefined;

  /** Internal: wraps a native handle. Use the factory functions (tensor, zeros, randn, …) instead. */
  constructor(handle: H) {
    this.#h = handle;
    track(this);
  }

  get handle(): H {
    if (this.#h === null) throw new UserError('this tensor was disposed and cannot be used any more');
    return this.#h;
  }

  private get meta(): Meta {
    if (!this.#meta) this.#meta = native().meta(this.handle) as Meta;
    return this.#meta;
  }

  get shape(): number[] {
    return this.meta.shape.slice();
  }
  get dtype(): DType {
    return this.meta.dtype;
  }
  get device(): Device {
    return this.meta.device;
  }
  get ndim(): number {
    return this.meta.shape.length;
  }
  get numel(): number {
    return this.meta.shape.reduce((a, b) => a * b, 1);
  }
  size(dim: number): number {
    return this.meta.shape[normDim(dim, this.ndim)];
  }
  get isDisposed(): boolean {
    return this.#h === null;
  }

  /** Releases the native memory now. Safe to call twice. */
  dispose(): void {
    if (this.#h !== null) {
      native().dispose(this.#h);
      this.#h = null;
    }
  }

  /**
   * Internal: makes this tensor hold `other`'s data (as PyTorch's `param.data = other`), so that every reference
   * to this Tensor object sees the moved or converted data; `other` is emptied. Used by Module.to().
   */
  _adopt(other: Tensor): this {
    const h = other.handle;
    other.#h = null;
    if (this.#h !== null) native().dispose(this.#h);
    this.#h = h;
    this.#meta = undefined;
    return this;
  }

  /** Keeps this tensor alive past the enclosing tidy() scopes. */
  keep(): this {
    return keep(this);
  }

  toString(): string {
    return this.isDisposed
      ? 'Tensor(disposed)'
      : `Tensor(shape=[${this.meta.shape.join(', ')}], dtype=${this.dtype}, device=${this.device})`;
  }

  // ---- conversion and data ----
  /** Moves and/or converts: to('cuda'), to('float16'), to({ device, dtype, memoryFormat }). */
  to(
    target: Device | DType | { device?: Device; dtype?: DType; memoryFormat?: 'contiguous' | 'channelsLast' },
  ): Tensor {
    let device: string | undefined;
    let dtype: string | undefined;
    let mf: string | undefined;
    if (typeof target === 'string') {
      if (target === 'cpu' || target.startsWith('cuda')) device = checkDevice(target);
      else dtype = checkDtype(target);
    } else {
      device = target.device && checkDevice(target.device);
      dtype = target.dtype && checkDtype(target.dtype);
      mf = target.memoryFormat;
    }
    return new Tensor(native().to(this.handle, device, dtype, mf));
  }
  float(): Tensor {
    return this.to('float32');
  }
  cpu(): Tensor {
    return this.to('cpu');
  }
  contiguous(): Tensor {
    return new Tensor(native().contiguous(this.handle));
  }
  clone(): Tensor {
    return new Tensor(native().clone(this.handle));
  }
  detach(): Tensor {
    return new Tensor(native().detach(this.handle));
  }
  isContiguous(memoryFormat: 'contiguous' | 'channelsLast' = 'contiguous'): boolean {
    return native().isContiguous(this.handle, memoryFormat === 'channelsLast');
  }

  /** The elements in row-major order, copied to a new TypedArray (16-bit floats as raw bits, int64 as BigInt). */
  data(): TypedArray {
    return typedArrayFor(this.dtype, native().toBuffer(this.handle));
  }
  /** The elements as plain numbers (16-bit floats converted through float32). */
  toArray(): number[] {
    if (this.dtype === 'float16' || this.dtype === 'bfloat16') return this.to('float32').keepless((t) => t.toArray());
    const d = this.data();
    return d instanceof BigInt64Array ? Array.from(d, Number) : Array.from(d as ArrayLike<number>);
  }
  item(): number {
    return native().item(this.handle);
  }
  private keepless<R>(f: (t: Tensor) => R): R {
    try {
      return f(this);
    } finally {
      this.dispose();
    }
  }

  // ---- autograd ----
  get requiresGrad(): boolean {
    return native().requiresGrad(this.handle);
  }
  requiresGrad_(on = true): this {
    native().setRequiresGrad(this.handle, on);
    return this;
  }
  /** The accumulated gradient, or undefined. A new handle on each call: dispose it or use it inside tidy(). */
  get grad(): Tensor | undefined {
    const g = native().grad(this.handle);
    return g ? new Tensor(g) : undefined;
  }
  backward(gradient?: Tensor, retainGraph = false): void {
    native().backward(this.handle, gradient?.handle, retainGraph);
  }

  // ---- shape ----
  reshape(...shape: number[] | [number[]]): Tensor {
    const s = Array.isArray(shape[0]) ? (shape[0] as number[]) : (shape as number[]);
    return new Tensor(native().reshape(this.handle, s));
  }
  view(...shape: number[] | [number[]]): Tensor {
    return this.reshape(...shape);
  }
  permute(...dims: number[]): Tensor {
    return new Tensor(native().permute(this.handle, dims));
  }
  transpose(a: number, b: number): Tensor {
    return new Tensor(native().transpose(this.handle, a, b));
  }
  flatten(start = 0, end = -1): Tensor {
    return new Tensor(native().flatten(this.handle, start, end));
  }
  squeeze(dim: number): Tensor {
    return new Tensor(native().squeeze(this.handle, dim));
  }
  unsqueeze(dim: number): Tensor {
    return new Tensor(native().unsqueeze(this.handle, dim));
  }
  expand(...shape: number[]): Tensor {
    return new Tensor(native().expand(this.handle, shape));
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return new Tensor(native().narrow(this.handle, dim, start, length));
  }
  /** A view of this (contiguous) tensor's elements with the given size, strides and offset, in elements. */
  asStrided(size: number[], stride: number[], offset = 0): Tensor {
    return new Tensor(native().asStrided(this.handle, size, stride, offset));
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return new Tensor(native().indexSelect(this.handle, dim, index.handle));
  }
  gather(dim: number, index: Tensor): Tensor {
    return new Tensor(native().gather(this.handle, dim, index.handle));
  }
  flip(...dims: number[]): Tensor {
    return new Tensor(native().flip(this.handle, dims));
  }

  // ---- elementwise ----
  private bin(op: string, other: Operand): Tensor {
    return new Tensor(native().binary(op, this.handle, h(other)));
  }
  private un(op: string): Tensor {
    return new Tensor(native().unary(op, this.handle));
  }
  add(o: Operand): Tensor {
    return this.bin('add', o);
  }
  sub(o: Operand): Tensor {
    return this.bin('sub', o);
  }
  mul(o: Operand): Tensor {
    return this.bin('mul', o);
  }
  div(o: Operand): Tensor {
    return this.bin('div', o);
  }
  pow(o: Operand): Tensor {
    return this.bin('pow', o);
  }
  maximum(o: Operand): Tensor {
    return this.bin('maximum', o);
  }
  minimum(o: Operand): Tensor {
    return this.bin('minimum', o);
  }
  eq(o: Operand): Tensor {
    return this.bin('eq', o);
  }
  ne(o: Operand): Tensor {
    return this.bin('ne', o);
  }
  lt(o: Operand): Tensor {
    return this.bin('lt', o);
  }
  le(o: Operand): Tensor {
    return this.bin('le', o);
  }
  gt(o: Operand): Tensor {
    return this.bin('gt', o);
  }
  ge(o: Operand): Tensor {
    return this.bin('ge', o);
  }
  neg(): Tensor {
    return this.un('neg');
  }
  exp(): Tensor {
    return this.un('exp');
  }
  log(): Tensor {
    return this.un('log');
  }
  sqrt(): Tensor {
    return this.un('sqrt');
  }
  rsqrt(): Tensor {
    return this.un('rsqrt');
  }
  abs(): Tensor {
    return this.un('abs');
  }
  relu(): Tensor {
    return this.un('relu');
  }
  /** ReLU in place: the returned tensor shares this one's storage. */
  relu_(): Tensor {
    return this.un('relu_');
  }
  sigmoid(): Tensor {
    return this.un('sigmoid');
  }
  tanh(): Tensor {
    return this.un('tanh');
  }
  square(): Tensor {
    return this.un('square');
  }
  isfinite(): Tensor {
    return this.un('isfinite');
  }
  clamp(min?: number, max?: number): Tensor {
    return new Tensor(native().clamp(this.handle, min, max));
  }
  matmul(o: Tensor): Tensor {
    return new Tensor(native().matmul(this.handle, o.handle));
  }

  // ---- reductions ----
  private red(op: string, dims?: number | number[], keepdim = false): Tensor {
    const d = dims === undefined ? null : Array.isArray(dims) ? dims : [dims];
    return new Tensor(native().reduce(op, this.handle, d, keepdim));
  }
  sum(dims?: number | number[], keepdim = false): Tensor {
    return this.red('sum', dims, keepdim);
  }
  mean(dims?: number | number[], keepdim = false): Tensor {
    return this.red('mean', dims, keepdim);
  }
  max(dims?: number | number[], keepdim = false): Tensor {
    return this.red('amax', dims, keepdim);
  }
  min(dims?: number | number[], keepdim = false): Tensor {
    return this.red('amin', dims, keepdim);
  }
  /** Population variance (divides by N). */
  var(dims?: number | number[], keepdim = false): Tensor {
    return this.red('var', dims, keepdim);
  }
  std(dims?: number | number[], keepdim = false): Tensor {
    return this.red('std', dims, keepdim);
  }
  argmax(dim?: number, keepdim = false): Tensor {
    return new Tensor(native().argmax(this.handle, dim, keepdim));
  }
  topk(k: number, dim = -1, largest = true, sorted = true): { values: Tensor; indices: Tensor } {
    const [v, i] = native().topk(this.handle, k, dim, largest, sorted);
    return { values: new Tensor(v), indices: new Tensor(i) };
  }
  /** Counts of each value 0..minlength-1 in a 1-D int64 tensor. */
  bincount(minlength: number): Tensor {
    return new Tensor(native().bincount(this.handle, minlength));
  }
  softmax(dim: number): Tensor {
    return new Tensor(native().softmax(this.handle, dim));
  }
  logSoftmax(dim: number): Tensor {
    return new Tensor(native().logSoftmax(this.handle, dim));
  }

  // ---- in place (no autograd history) ----
  copy_(src: Tensor): this {
    native().copy_(this.handle, src.handle);
    return this;
  }
  fill_(v: number): this {
    native().fill_(this.handle, v);
    return this;
  }
}

// ---- factories -------------------------------------------------------------------------------------------------
type Numeric = ArrayLike<number> | TypedArray;

function inferDtype(data: Numeric): DType {
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Uint8Array) return 'uint8';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  return 'float32';
}

function toTyped(data: Numeric, dtype: DType): ArrayBufferView {
  const wanted: Partial<Record<DType, new (d: ArrayLike<number>) => ArrayBufferView>> = {
    float32: Float32Array,
    float64: Float64Array,
    uint8: Uint8Array,
    bool: Uint8Array,
    int32: Int32Array,
  };
  if (dtype === 'int64') {
    if (data instanceof BigInt64Array) return data;
    return BigInt64Array.from(Array.from(data as ArrayLike<number>), (x) => BigInt(Math.trunc(x)));
  }
  if (dtype === 'float16' || dtype === 'bfloat16') {
    if (data instanceof Uint16Array) return data; // raw bits
    throw new UserError(
      `${dtype} tensors are created from float32 data and converted: tensor(data, shape).to('${dtype}')`,
    );
  }
  const C = wanted[dtype]!;
  if (data instanceof C) return data as ArrayBufferView;
  return new C(Array.from(data as ArrayLike<number>));
}

/** A tensor from numbers or a TypedArray. The shape defaults to [data.length]; the dtype to the array's own. */
export function tensor(data: Numeric, shape?: number[], dtype?: DType): Tensor {
  const dt = dtype ? checkDtype(dtype) : inferDtype(data);
  const s = shape ?? [data.length];
  const numel = s.reduce((a, b) => a * b, 1);
  if (s.some((x) => !Number.isInteger(x) || x < 0)) throw new UserError(`invalid shape [${s.join(', ')}]`);
  if (numel !== data.length) {
    throw new UserError(`tensor(): ${data.length} values do not fill shape [${s.join(', ')}] (${numel} elements)`);
  }
  const typed = toTyped(data, dt);
  if (typed.byteLength !== numel * DTYPE_SIZE[dt]) throw new UserError(`tensor(): data does not match dtype ${dt}`);
  return new Tensor(native().fromBuffer(typed, s, dt));
}

/** A tensor from ArrayBuffers laid end to end (a batch from its images' buffers), with one copy. */
export function tensorFromBuffers(parts: ArrayBuffer[], shape: number[], dtype: DType): Tensor {
  if (shape.some((x) => !Number.isInteger(x) || x < 0)) throw new UserError(`invalid shape [${shape.join(', ')}]`);
  return new Tensor(native().fromBuffers(parts, shape, checkDtype(dtype)));
}

export function scalar(v: number, dtype: DType = 'float32'): Tensor {
  return tensor([v], [], dtype);
}

export interface CreateOptions {
  dtype?: DType;
  device?: Device;
}

function shapeArg(shape: number[]): number[] {
  if (!Array.isArray(shape) || shape.some((x) => !Number.isInteger(x) || x < 0)) {
    throw new UserError(`invalid shape ${JSON.stringify(shape)}: expected non-negative integers`);
  }
  return shape;
}

export function zeros(shape: number[], o: CreateOptions = {}): Tensor {
  return new Tensor(native().zeros(shapeArg(shape), o.dtype, o.device));
}
export function ones(shape: number[], o: CreateOptions = {}): Tensor {
  return new Tensor(native().ones(shapeArg(shape), o.dtype, o.device));
}
export function full(shape: number[], value: number, o: CreateOptions = {}): Tensor {
  return new Tensor(native().full(shapeArg(shape), value, o.dtype, o.device));
}
export function zerosLike(t: Tensor): Tensor {
  return zeros(t.shape, { dtype: t.dtype, device: t.device });
}
/** Standard normal samples from the global generator (see manualSeed). */
export function randn(shape: number[], o: CreateOptions = {}): Tensor {
  return new Tensor(native().randn(shapeArg(shape), o.dtype, o.device));
}
/** Uniform samples in [0, 1). */
export function rand(shape: number[], o: CreateOptions = {}): Tensor {
  return new Tensor(native().rand(shapeArg(shape), o.dtype, o.device));
}
/** Integers in [low, high) as int64. */
export function randint(low: number, high: number, shape: number[], o: { device?: Device } = {}): Tensor {
  return new Tensor(native().randint(low, high, shapeArg(shape), o.device));
}
/** A random permutation of 0..n-1 as int64. */
export function randperm(n: number, o: { device?: Device } = {}): Tensor {
  return new Tensor(native().randperm(n, o.device));
}
export function arange(start: number, end?: number, step = 1, o: CreateOptions = {}): Tensor {
  const [a, b] = end === undefined ? [0, start] : [start, end];
  return new Tensor(native().arange(a, b, step, o.dtype ?? 'int64', o.device));
}
export function cat(ts: Tensor[], dim = 0): Tensor {
  return new Tensor(
    native().cat(
      ts.map((t) => t.handle),
      dim,
    ),
  );
}
export function stack(ts: Tensor[], dim = 0): Tensor {
  return new Tensor(
    native().stack(
      ts.map((t) => t.handle),
      dim,
    ),
  );
}
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  return new Tensor(native().where(cond.handle, a.handle, b.handle));
}

// ---- global state ----------------------------------------------------------------------------------------------
/** Seeds libtorch's generators (CPU and CUDA): weights, dropout, shuffling and augmentation follow it. */
export function manualSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0) throw new UserError(`seed must be a non-negative integer, got ${seed}`);
  native().manualSeed(seed);
}
export function setNumThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new UserError(`thread count must be a positive integer, got ${n}`);
  native().setNumThreads(n);
}
export function getNumThreads(): number {
  return native().getNumThreads();
}
export function cudaAvailable(): boolean {
  return native().runtimeInfo().cudaAvailable;
}
export function runtimeInfo() {
  return native().runtimeInfo();
}
/** The CPU generator's state as a uint8 tensor (for checkpoints). */
export function getRngState(): Tensor {
  return new Tensor(native().getRngState());
}
export function setRngState(state: Tensor): void {
  native().setRngState(state.handle);
}

export { EngineError, isFloating };
