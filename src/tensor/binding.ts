// The native addon's exact surface, typed by hand, and its loader. This is the only file that touches the addon.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EngineError, SetupError } from '../errors';

/** An opaque native tensor handle. Only src/tensor uses it. */
export interface NativeTensor {
  readonly __brand: 'NativeTensor';
}

export type H = NativeTensor;
export type Opt<T> = T | null | undefined;

export interface RuntimeInfo {
  libtorchVersion: string;
  cudaAvailable: boolean;
  cudaDeviceCount: number;
  cudnnAvailable: boolean;
  mkldnnAvailable: boolean;
  numThreads: number;
}

/** sgdStep's settings; `firstStep` starts PyTorch's momentum buffers from the gradient. */
export interface SgdStepOptions {
  lr: number;
  momentum: number;
  weightDecay: number;
  dampening: number;
  nesterov: boolean;
  form: 'paper' | 'pytorch';
  firstStep: boolean;
}

/** adamStep's settings; `step` counts from 1, `decoupled` is AdamW. */
export interface AdamStepOptions {
  step: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  decoupled: boolean;
}

export interface JpegHeader {
  width: number;
  height: number;
  colorspace: string;
  orientation: number;
}

/**
 * jpegDecode's plan: resize the whole image to resizeW×resizeH and cut output-sized crops from it, or (sizes equal
 * to the image's) cut the crops from the image and resize each to outW×outH. `crops` is flat: left, top, width,
 * height per crop. dctScaling lets the decoder shrink by 2, 4 or 8 when the resize allows it; fastDct trades
 * accuracy for speed (libjpeg-turbo's TJFLAG_FASTDCT).
 */
export interface JpegDecodeOptions {
  channels: number;
  resizeW: number;
  resizeH: number;
  outW: number;
  outH: number;
  crops: number[];
  dctScaling: boolean;
  fastDct: boolean;
  /** Mirror every crop left to right (training's flips, made here at no cost). */
  flip: boolean;
  maxPixels: number;
  /**
   * A scale then a bias per channel: the output is float32, each pixel v (0–255, rounded as the uint8 output would
   * be) written as v · scale + bias — the batch's normalisation, done while the pixel is at hand.
   */
  affine?: number[];
  /** Where to write the output when it is exactly the output's size (a recycled buffer); else a new one. */
  into?: ArrayBuffer;
  /**
   * Decode only the rows and columns the crops read (default true; used when the addon has libjpeg's API and the
   * file ends with its end-of-image marker). The pixels are the whole decode's either way.
   */
  regionDecode?: boolean;
}

/**
 * crops × outH × outW × channels bytes (floats with affine); the DCT scaling used (1, 2, 4, 8); whether only the
 * crops' region was decoded; time spent decoding and resizing.
 */
export interface JpegDecoded {
  data: ArrayBuffer;
  scale: number;
  region: boolean;
  decodeNs: number;
  resizeNs: number;
}

/** new C10dStore(options): a c10d TCPStore; the master binds host:port (0: any free port). Blocking. */
export interface C10dStoreOptions {
  host: string;
  port: number;
  worldSize: number;
  isMaster: boolean;
  timeoutMs: number;
}

export interface NativeC10dStore {
  set(key: string, value: string | Uint8Array): void;
  /** Waits (up to the store's timeout) until some rank has set the key. */
  get(key: string): Buffer;
  /** Adds to a counter (a missing key counts from 0); returns the new value. */
  add(key: string, delta: number): number;
  /** The port the store uses (the one the master bound when asked for port 0). */
  port(): number;
}

/** new C10dProcessGroup(store, options): every rank constructs it (blocking, up to the timeout). */
export interface C10dGroupOptions {
  rank: number;
  worldSize: number;
  timeoutMs: number;
  backend?: string;
  /** Gloo binds to this network interface (GLOO_SOCKET_IFNAME's meaning)… */
  iface?: string;
  /** …or to this address or name of the machine; neither: what the hostname resolves to. */
  host?: string;
}

export interface NativeC10dGroup {
  allreduce(ts: H[], average: boolean): void;
  allreduceAsync(ts: H[], average: boolean): Promise<void>;
  broadcast(ts: H[], root: number): void;
  broadcastCoalesced(ts: H[], root: number): void;
  allgather(t: H): H[];
  barrier(): void;
  send(t: H, dst: number, tag: number): void;
  recv(t: H, src: number, tag: number): void;
  destroy(): void;
}

/** new C10dReducer(group, params, options): c10d::Reducer, DDP's bucketed gradient averaging. */
export interface C10dReducerOptions {
  bucketCapMB: number;
  firstBucketMB: number;
}

export interface ReducerTimings {
  backwardComputeMs: number;
  backwardCommMs: number;
  commAfterComputeMs: number;
}

export interface NativeC10dReducer {
  prepareForForward(): void;
  prepareForBackward(): void;
  timings(): ReducerTimings;
  bucketCount(): number;
  dispose(): void;
}

export interface Native {
  abiVersion: number;
  // common.cc
  /** The class of the tensor handles (H): the addon makes its instances, JavaScript never constructs one. */
  NativeTensor: unknown;
  setErrorClass(cls: new (message: string) => Error): void;
  // tensor.cc
  fromBuffer(data: ArrayBufferView, shape: number[], dtype: string): H;
  /** One tensor from ArrayBuffers laid end to end (one copy). */
  fromBuffers(parts: ArrayBuffer[], shape: number[], dtype: string): H;
  toBuffer(t: H): ArrayBuffer;
  item(t: H): number;
  meta(t: H): { shape: number[]; dtype: string; device: string };
  isContiguous(t: H, channelsLast?: boolean): boolean;
  dispose(t: H): void;
  zeros(shape: number[], dtype?: string, device?: string): H;
  ones(shape: number[], dtype?: string, device?: string): H;
  full(shape: number[], value: number, dtype?: string, device?: string): H;
  randn(shape: number[], dtype?: string, device?: string): H;
  rand(shape: number[], dtype?: string, device?: string): H;
  randint(low: number, high: number, shape: number[], device?: string): H;
  randperm(n: number, device?: string): H;
  arange(start: number, end: number, step: number, dtype?: string, device?: string): H;
  to(t: H, device: Opt<string>, dtype: Opt<string>, memoryFormat: Opt<string>): H;
  contiguous(t: H): H;
  clone(t: H): H;
  detach(t: H): H;
  normal_(t: H, mean: number, std: number): void;
  uniform_(t: H, low: number, high: number): void;
  fill_(t: H, value: number): void;
  copy_(dst: H, src: H): void;
  // ops.cc
  reshape(t: H, shape: number[]): H;
  permute(t: H, dims: number[]): H;
  transpose(t: H, a: number, b: number): H;
  flatten(t: H, start: number, end: number): H;
  squeeze(t: H, dim: number): H;
  unsqueeze(t: H, dim: number): H;
  expand(t: H, shape: number[]): H;
  narrow(t: H, dim: number, start: number, length: number): H;
  asStrided(t: H, size: number[], stride: number[], offset: number): H;
  indexSelect(t: H, dim: number, index: H): H;
  gather(t: H, dim: number, index: H): H;
  cat(ts: H[], dim: number): H;
  stack(ts: H[], dim: number): H;
  flip(t: H, dims: number[]): H;
  pad(t: H, pads: number[], value: number): H;
  unary(op: string, t: H): H;
  binary(op: string, a: H, b: H | number): H;
  clamp(t: H, min: Opt<number>, max: Opt<number>): H;
  where(cond: H, a: H, b: H): H;
  matmul(a: H, b: H): H;
  reduce(op: string, t: H, dims: Opt<number[]>, keepdim: boolean): H;
  argmax(t: H, dim: Opt<number>, keepdim: boolean): H;
  topk(t: H, k: number, dim: number, largest: boolean, sorted: boolean): [H, H];
  softmax(t: H, dim: number): H;
  logSoftmax(t: H, dim: number): H;
  bincount(t: H, minlength: number): H;
  // nn.cc
  conv2d(x: H, w: H, b: Opt<H>, stride: number[], padding: number[], dilation: number[], groups: number): H;
  linear(x: H, w: H, b: Opt<H>): H;
  maxPool2d(x: H, kernel: number[], stride: number[], padding: number[], ceilMode: boolean): H;
  avgPool2d(
    x: H,
    kernel: number[],
    stride: number[],
    padding: number[],
    ceilMode: boolean,
    countIncludePad: boolean,
  ): H;
  adaptiveAvgPool2d(x: H, size: number[]): H;
  dropout(x: H, p: number, training: boolean): H;
  batchNorm(
    x: H,
    w: Opt<H>,
    b: Opt<H>,
    runningMean: Opt<H>,
    runningVar: Opt<H>,
    training: boolean,
    momentum: number,
    eps: number,
  ): H;
  localResponseNorm(x: H, size: number, alpha: number, beta: number, k: number, alphaPerSize: boolean): H;
  crossEntropy(logits: H, target: H, reduction: string, labelSmoothing: number): H;
  mseLoss(a: H, b: H, reduction: string): H;
  resize(x: H, size: number[], mode: string, antialias: boolean): H;
  // autograd.cc
  backward(t: H, grad: Opt<H>, retainGraph: boolean): void;
  grad(t: H): H | undefined;
  requiresGrad(t: H): boolean;
  setRequiresGrad(t: H, on: boolean): void;
  setGradEnabled(on: boolean): boolean;
  zeroGrad(params: H[]): void;
  gradsFinite(params: H[]): boolean;
  // optim.cc
  sgdStep(params: H[], bufs: H[], o: SgdStepOptions): void;
  adamStep(params: H[], expAvg: H[], expAvgSq: H[], o: AdamStepOptions): void;
  // amp.cc
  setAutocast(device: 'cpu' | 'cuda', enabled: boolean, dtype: 'bfloat16' | 'float16'): boolean;
  unscaleGrads(params: H[], invScale: number): boolean;
  // runtime.cc
  manualSeed(seed: number): void;
  getRngState(): H;
  setRngState(state: H): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  setCudnnBenchmark(on: boolean): void;
  cudaSynchronize(): void;
  runtimeInfo(): RuntimeInfo;
  memoryStats(): {
    handles: number;
    liveTensors: number;
    heapBytes?: number;
    heapInUse?: number;
    heapFree?: number;
    mmapBytes?: number;
  };
  // allocator.cc
  /** The caching CPU allocator's state (libtorch 1.x builds); undefined where it is not used. */
  allocatorStats():
    { enabled: boolean; cachedBytes: number; largeBlocks: number; hits: number; misses: number } | undefined;
  // cuda_graph.cc: present only in CUDA builds that found the CUDA headers (build-info.json: cudaGraphs)
  /** Moves this thread's CUDA work to a side stream (graphs are recorded there, after warm-up steps there). */
  cudaUseSideStream?(device: number): void;
  /** Starts recording the CUDA work queued on this thread's (side) stream; returns the graph's id. */
  cudaGraphBegin?(): number;
  /** Ends the recording: the graph can be replayed. */
  cudaGraphEnd?(id: number): void;
  /** Runs the recorded work again on the current stream. */
  cudaGraphReplay?(id: number): void;
  /** Frees the graph and its memory pool. */
  cudaGraphRelease?(id: number): void;
  // distributed.cc: c10d, present when the addon was built with Gloo's headers (build-info.json: c10d)
  C10dStore?: new (options: C10dStoreOptions) => NativeC10dStore;
  C10dProcessGroup?: new (store: NativeC10dStore, options: C10dGroupOptions) => NativeC10dGroup;
  C10dReducer?: new (group: NativeC10dGroup, params: H[], options: C10dReducerOptions) => NativeC10dReducer;
  /** Why there is no c10d in this build (set instead of the classes above). */
  c10dUnavailable?: string;
  // onednn.cc: inference plans on oneDNN primitives, when built against libdnnl-dev (build-info.json: onednn)
  onednnAvailable?: boolean;
  /** Compiles layers (tensors referenced by index into `tensors`) into a plan; bf16 runs it in bfloat16. */
  onednnPlan?(layers: object[], tensors: H[], bf16: boolean): unknown;
  /** (N, C, H, W) float32 CPU -> (N, classes) float32. */
  onednnRun?(plan: unknown, x: H): H;
  /** The kernel each primitive runs for x's geometry. */
  onednnImplementations?(plan: unknown, x: H): string[];
  /** Frees the plan's packed weights and primitives now (it cannot run afterwards). */
  onednnRelease?(plan: unknown): void;
  /** linear() on oneDNN's GEMM with libtorch autograd (2-D float32 CPU, no autocast; else at::linear). */
  onednnLinear?(x: H, w: H, b: Opt<H>): H;
  // jpeg.cc: TurboJPEG decoding, present when the addon was built with turbojpeg.h (build-info.json: turbojpeg)
  /** A JPEG's header alone: size, colour space ('ycbcr', 'gray', 'rgb', 'cmyk', 'ycck') and EXIF orientation (1–8). */
  jpegHeader?(bytes: Uint8Array): JpegHeader;
  /** Decodes a JPEG and applies a plan (crop, antialiased bilinear resize) to uint8 HWC pixels. */
  jpegDecode?(bytes: Uint8Array, options: JpegDecodeOptions): JpegDecoded;
  /** jpegDecode on libuv's thread pool (the JS thread is not held); argument and header errors throw at once. */
  jpegDecodeAsync?(bytes: Uint8Array, options: JpegDecodeOptions): Promise<JpegDecoded>;
}

/** Must equal kAbiVersion in native/addon.cc. */
const ADDON_ABI = 6;
let loaded: Native | undefined;

function projectRoot(): string {
  // dist/src/tensor/binding.js -> project root is three levels up; src/tensor/binding.ts (ts-node) two.
  let dir = __dirname;
  for (let i = 0; i < 5; i++) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    dir = path.dirname(dir);
  }
  return path.resolve(__dirname, '..', '..', '..');
}

/** The addon file that will be loaded: ALEXNET_NATIVE overrides the default build location. */
export function addonPath(): string {
  return process.env.ALEXNET_NATIVE || path.join(projectRoot(), 'build', 'Release', 'alexnet_native.node');
}

/** libtorch aborts with a C++ stack trace on a thread count that is not a positive integer: say it in one line. */
function checkThreadEnv(): void {
  for (const k of ['OMP_NUM_THREADS', 'MKL_NUM_THREADS']) {
    const v = process.env[k];
    if (v !== undefined && v !== '' && !/^[1-9]\d*$/.test(v.trim())) {
      throw new SetupError(
        `${k} must be a positive integer, got '${v}': unset it, or choose the threads with --threads N`,
      );
    }
  }
}

/** Loads the addon once. Fails with a SetupError that says how to fix the problem. */
export function native(): Native {
  if (loaded) return loaded;
  checkThreadEnv();
  // libtorch logs through glog, which c10d uses for what our errors already say in one line ("failed to bind…",
  // "Logging before InitGoogleLogging…"). Only fatal lines show unless GLOG_minloglevel asks for more
  // (glog reads it when libtorch loads, hence before the require).
  process.env.GLOG_minloglevel ??= '3';
  const file = addonPath();
  if (!fs.existsSync(file)) {
    throw new SetupError(
      `the native engine is not built (${file} is missing). Run 'npm run build:addon' ` +
        `(needs libtorch: 'apt-get install libtorch-dev', or LIBTORCH=/path, or LIBTORCH_USE_PYTORCH=1), ` +
        `or run scripts/setup.sh to set everything up.`,
    );
  }
  let mod: Native;
  try {
    mod = require(file) as Native;
  } catch (e) {
    const reason = (e as Error).message.split('\n')[0];
    let builtFor = '';
    try {
      const info = JSON.parse(fs.readFileSync(path.join(path.dirname(file), 'build-info.json'), 'utf8'));
      builtFor = ` It was built against ${info.source} (${info.libDir}).`;
    } catch {
      /* no build info */
    }
    throw new SetupError(
      `the native engine at ${file} cannot be loaded: ${reason}.${builtFor} ` +
        `It was probably built for another libtorch or Node.js: rebuild it with 'npm run build:addon' ` +
        `(set LIBTORCH or LIBTORCH_USE_PYTORCH=1 the same way as for the libtorch you want to use).`,
    );
  }
  if (mod.abiVersion !== ADDON_ABI) {
    throw new SetupError(
      `the native engine at ${file} is out of date (interface ${mod.abiVersion}, expected ${ADDON_ABI}): rebuild it with 'npm run build:addon'.`,
    );
  }
  mod.setErrorClass(EngineError);
  loaded = mod;
  return mod;
}
