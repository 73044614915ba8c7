// Inference engines for the server: libtorch in a worker thread (src/serve/engine-worker.ts), or onnxruntime,
// whose run() is asynchronous already. Which one runs is chosen once at start by a simple rule (chooseEngine).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { EngineError, UserError } from '../errors';
import type { Insight, LayerOutput, TensorData } from '../infer/introspect';
import { InputGeometry, Predictor } from '../infer/predictor';
import { DeviceRequest } from '../runtime/device';
import { cpuInfo, CpuInfo } from '../runtime/cpu';
import { ModelRecord } from '../persist/record';
import { runtimeInfo } from '../tensor/tensor';
import { checkInputFile } from '../util/files';
import type { WorkerReady, WorkerReply, WorkerRequest, WorkerSetup } from './engine-worker';
import { Engine, ModelCard } from './types';

export type RuntimeRequest = 'libtorch' | 'onnx' | 'auto';
export type PrecisionRequest = 'fp32' | 'bf16' | 'auto';

export interface EngineOptions {
  weights: string;
  /** The variant of a plain PyTorch state dict, when its keys do not tell. */
  model?: string;
  runtime?: RuntimeRequest;
  precision?: PrecisionRequest;
  device?: DeviceRequest;
  threads?: number;
}

export interface EngineChoice {
  runtime: 'libtorch' | 'onnxruntime';
  precision: 'fp32' | 'bf16';
  /** Said in /v1/models and the listening line. */
  reason: string;
  /** Auto chose onnxruntime: fall back to libtorch fp32 if the model cannot be exported to ONNX. */
  fallback?: EngineChoice;
}

/** The rule in words, for --help and /v1/models. */
export const AUTO_RULE =
  'auto: libtorch bf16 where the CPU has native bf16 (AVX-512 BF16 or AMX; a GPU), else onnxruntime fp32, else ' +
  'libtorch fp32 when the model cannot be exported to ONNX';

const isOnnxFile = (f: string) => f.toLowerCase().endsWith('.onnx');

/** Whether libtorch would run on a GPU (--device auto asks the engine whether CUDA is there). */
export function wantsGpu(device: DeviceRequest | undefined): boolean {
  if (device === undefined || device === 'auto') return runtimeInfo().cudaAvailable;
  return device.startsWith('cuda');
}

/**
 * The fastest exact-enough engine here: libtorch bf16 on native-bf16 CPUs and GPUs, else onnxruntime fp32, else
 * libtorch fp32. An .onnx weights file runs on onnxruntime only; onnxruntime runs fp32 only. Measured on a Zen 5 at
 * batch 32 with oneDNN plans (README, Speed): libtorch bf16 500 img/s, libtorch fp32 267, onnxruntime fp32 238. On
 * CPUs without native bf16 (AVX2-only ones) onnxruntime has not been measured against the plans (its kernels ignore
 * DNNL_MAX_CPU_ISA, so an AVX2 machine is needed), so the rule keeps it there for now.
 */
export function chooseEngine(o: EngineOptions, cpu: CpuInfo = cpuInfo(), gpu = wantsGpu(o.device)): EngineChoice {
  const runtime = o.runtime ?? 'auto';
  const precision = o.precision ?? 'auto';
  const onnx: EngineChoice = { runtime: 'onnxruntime', precision: 'fp32', reason: 'asked for' };
  if (isOnnxFile(o.weights)) {
    if (runtime === 'libtorch')
      throw new UserError(`--runtime libtorch takes alexnet-ts or PyTorch weights, got the ONNX file ${o.weights}`);
    if (precision === 'bf16')
      throw new UserError('--precision bf16 needs the libtorch runtime; an .onnx file runs in fp32');
    return { ...onnx, reason: runtime === 'auto' ? 'auto: an .onnx file runs on onnxruntime' : 'asked for' };
  }
  if (runtime === 'onnx') {
    if (precision === 'bf16')
      throw new UserError('--precision bf16 needs --runtime libtorch (onnxruntime runs fp32 here)');
    return onnx;
  }
  const bf16Fast = gpu || cpu.nativeBf16;
  if (runtime === 'libtorch') {
    const p = precision === 'auto' ? (bf16Fast ? 'bf16' : 'fp32') : precision;
    const why =
      precision === 'auto' ? `auto precision: ${bf16Fast ? 'native bf16 here' : 'no native bf16 here'}` : 'asked for';
    return { runtime: 'libtorch', precision: p, reason: why };
  }
  if (precision === 'bf16' || (precision === 'auto' && bf16Fast))
    return { runtime: 'libtorch', precision: 'bf16', reason: `auto: ${gpu ? 'a GPU' : `native bf16 (${cpu.isa})`}` };
  const fp32 = { runtime: 'libtorch', precision: 'fp32', reason: 'auto: the model has no ONNX export' } as const;
  return {
    ...onnx,
    reason: `auto: fp32 on onnxruntime (${cpu.isa}${bf16Fast ? '' : ' has no native bf16'})`,
    fallback: fp32,
  };
}

function card(p: Pick<Predictor, 'record' | 'geometry'>, weights: string, c: EngineChoice): ModelCard {
  const { record, geometry } = p;
  return {
    model: record.model,
    weights: path.basename(weights),
    classes: record.classes,
    geometry,
    preprocessing: { mean: [...record.preprocess.mean], std: [...record.preprocess.std] },
    runtime: c.runtime,
    precision: c.precision,
    selection: c.reason,
  };
}

type Pending = { resolve: (r: WorkerReply) => void; reject: (e: Error) => void };

/** Starts the engine worker and waits for its first message (loaded, exported, or why not). */
function startWorker(setup: WorkerSetup): Promise<{ worker: Worker; ready: WorkerReady }> {
  const worker = new Worker(path.join(__dirname, 'engine-worker.js'), { workerData: setup });
  return new Promise((resolve, reject) => {
    const fail = (e: Error) => reject(new EngineError(`the engine worker stopped while loading: ${e.message}`));
    worker.once('error', fail);
    worker.once('exit', (code) => fail(new Error(`exit code ${code}`)));
    worker.once('message', (ready: WorkerReady) => {
      worker.removeAllListeners('error').removeAllListeners('exit');
      if (!ready.error) return resolve({ worker, ready });
      void worker.terminate();
      reject(ready.userError ? new UserError(ready.error) : new EngineError(ready.error));
    });
  });
}

/**
 * libtorch in a worker thread, which hosts a TorchPredictor: requests and answers carry transferred ArrayBuffers,
 * never copies of the model.
 */
export class TorchEngine implements Engine, Insight {
  readonly runtime = 'libtorch';
  readonly insight: Insight = this;
  readonly card: ModelCard;
  private next = 1;
  private readonly pending = new Map<number, Pending>();
  failure: Error | undefined;
  /** Set once close() began: no new call is sent to the worker after its close request. */
  private closing: Promise<void> | undefined;
  /** Resolved when the last pending call is answered (close waits for calls in flight). */
  private settled: (() => void) | undefined;

  private constructor(
    private readonly worker: Worker,
    readonly record: ModelRecord,
    readonly geometry: InputGeometry,
    weights: string,
    choice: EngineChoice,
  ) {
    this.card = card(this, weights, choice);
    worker.on('message', (r: WorkerReply) => {
      const p = this.pending.get(r.id);
      this.pending.delete(r.id);
      if (!this.pending.size) this.settled?.();
      if (!p) return;
      if (r.error) p.reject(new EngineError(r.error));
      else p.resolve(r);
    });
    const stop = (e: Error) => {
      this.failure = new EngineError(`the engine worker stopped: ${e.message}`);
      for (const p of this.pending.values()) p.reject(this.failure);
      this.pending.clear();
      this.settled?.();
    };
    worker.on('error', stop);
    worker.on('exit', (code) => stop(new Error(`exit code ${code}`)));
  }

  static async open(o: EngineOptions, c: EngineChoice): Promise<TorchEngine> {
    const { worker, ready } = await startWorker({
      weights: o.weights,
      model: o.model,
      precision: c.precision,
      device: o.device,
      threads: o.threads,
    });
    return new TorchEngine(worker, ready.record!, ready.geometry!, o.weights, c);
  }

  private call(r: Omit<WorkerRequest, 'id'>, transfer: ArrayBuffer[] = []): Promise<WorkerReply> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new EngineError('the engine was closed (a reload replaced it)'));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...r, id }, transfer);
    });
  }

  /** A copy of `pixels` in a buffer of its own, which is then transferred (the caller's array stays usable). */
  private static own(pixels: Uint8Array): ArrayBuffer {
    return pixels.slice().buffer;
  }

  async logits(pixels: Uint8Array, n: number): Promise<Float32Array> {
    const buf = TorchEngine.own(pixels);
    const r = await this.call({ op: 'infer', pixels: buf, n } as WorkerRequest, [buf]);
    return new Float32Array(r.outputs![0].data);
  }

  async forward(input: Float32Array, n: number): Promise<Float32Array> {
    const buf = input.slice().buffer;
    const r = await this.call({ op: 'forward', input: buf, n } as WorkerRequest, [buf]);
    return new Float32Array(r.outputs![0].data);
  }

  async filters(): Promise<TensorData> {
    const o = (await this.call({ op: 'filters' } as WorkerRequest)).outputs![0];
    return { shape: o.shape, data: new Float32Array(o.data) };
  }

  async featureMaps(pixels: Uint8Array): Promise<LayerOutput[]> {
    const buf = TorchEngine.own(pixels);
    const r = await this.call({ op: 'featureMaps', pixels: buf } as WorkerRequest, [buf]);
    return r.outputs!.map((o) => ({ layer: o.layer, shape: o.shape, data: new Float32Array(o.data) }));
  }

  async embedding(pixels: Uint8Array): Promise<Float32Array> {
    const buf = TorchEngine.own(pixels);
    const r = await this.call({ op: 'embedding', pixels: buf } as WorkerRequest, [buf]);
    return new Float32Array(r.outputs![0].data);
  }

  /** Waits for the calls in flight, lets the worker dispose of the model, then ends the thread. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      if (this.pending.size) await new Promise<void>((resolve) => (this.settled = resolve));
      if (!this.failure) {
        const id = this.next++;
        await new Promise<unknown>((resolve) => {
          this.pending.set(id, { resolve, reject: resolve });
          this.worker.postMessage({ op: 'close', id });
        });
      }
      await this.worker.terminate();
    })();
    return this.closing;
  }
}

/** onnxruntime-node's session: run() is asynchronous (its own threads), so it needs no worker of ours. */
export class OnnxEngine implements Engine {
  readonly card: ModelCard;
  readonly record: ModelRecord;
  readonly runtime: string;
  readonly geometry: InputGeometry;
  /** Runs not yet answered: close waits for them (disposing a session mid-run fails the run). */
  private readonly running = new Set<Promise<unknown>>();
  private closing: Promise<void> | undefined;

  constructor(
    private readonly predictor: Predictor,
    weights: string,
    choice: EngineChoice,
  ) {
    ({ record: this.record, runtime: this.runtime, geometry: this.geometry } = predictor);
    this.card = card(predictor, weights, choice);
  }

  /** Opens an .onnx file, or exports the weights to a temporary ONNX file first (in a worker: no blocking). */
  static async open(o: EngineOptions, c: EngineChoice): Promise<OnnxEngine> {
    const { OnnxPredictor } = await import('../infer/onnx');
    if (isOnnxFile(o.weights))
      return new OnnxEngine(await OnnxPredictor.open(o.weights, { threads: o.threads }), o.weights, c);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-serve-'));
    try {
      const file = path.join(dir, 'model.onnx');
      const { worker } = await startWorker({ weights: o.weights, model: o.model, precision: 'fp32', exportTo: file });
      await worker.terminate();
      return new OnnxEngine(await OnnxPredictor.open(file, { threads: o.threads }), o.weights, c);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  logits(pixels: Uint8Array, n: number): Promise<Float32Array> {
    return this.track(() => this.predictor.logits(pixels, n));
  }

  forward(input: Float32Array, n: number): Promise<Float32Array> {
    return this.track(() => this.predictor.forward!(input, n));
  }

  /** Runs `f` unless closing, and keeps its promise until it settles (close waits for it). */
  private track(f: () => Promise<Float32Array>): Promise<Float32Array> {
    if (this.closing) return Promise.reject(new EngineError('the engine was closed (a reload replaced it)'));
    const run = f();
    const tracked = run.catch(() => undefined).finally(() => this.running.delete(tracked));
    this.running.add(tracked);
    return run;
  }

  /** Waits for the runs in flight, then disposes of the session. */
  close(): Promise<void> {
    this.closing ??= Promise.all([...this.running]).then(() => this.predictor.close());
    return this.closing;
  }
}

/** Opens the engine the options ask for (see chooseEngine); a missing weights file is a one-line UserError. */
export async function openEngine(o: EngineOptions, choice: EngineChoice = chooseEngine(o)): Promise<Engine> {
  checkInputFile(o.weights, '--weights');
  if (choice.runtime === 'libtorch') return TorchEngine.open(o, choice);
  try {
    return await OnnxEngine.open(o, choice);
  } catch (e) {
    if (!choice.fallback) throw e;
    const why = String((e as Error).message).split('\n')[0];
    return openEngine(o, { ...choice.fallback, reason: `${choice.fallback.reason} (${why})` });
  }
}
