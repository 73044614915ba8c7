// The libtorch engine's worker thread: the model lives here, so a forward pass (tens of milliseconds to seconds)
// never blocks the server's event loop. The main thread sends requests with transferable ArrayBuffers and gets
// answers the same way (src/serve/engine.ts's TorchEngine is the other side).
import { parentPort, workerData } from 'node:worker_threads';
import { preprocessBatch } from '../data/loader';
import { UserError } from '../errors';
import { exportOnnx } from '../io/onnx';
import { inputGeometry } from '../infer/predictor';
import { AlexNet } from '../models/alexnet';
import { Conv2d, ReLU } from '../nn';
import { Tanh } from '../nn/basic';
import { BatchNorm2d } from '../nn/batchnorm';
import { loadModel } from '../persist/load';
import { ModelRecord, recordMetadata } from '../persist/record';
import { DeviceRequest, prepareDevice, prepareModel } from '../runtime/device';
import { InferenceRunner } from '../runtime/inference';
import { autocast, Precision } from '../runtime/precision';
import { Device } from '../tensor/dtype';
import { noGrad, Tensor, tensor, tidy } from '../tensor/tensor';
import { writeFileAtomic } from '../util/files';

/** What the worker is started with. */
export interface WorkerSetup {
  weights: string;
  model?: string;
  precision: Precision;
  device?: DeviceRequest;
  threads?: number;
  /** Export mode: write the model as ONNX to this file, answer ready, and stop (for the onnxruntime engine). */
  exportTo?: string;
}

/** A request from the main thread: `pixels` is n planar uint8 images of the model's input geometry. */
export type WorkerRequest =
  | { id: number; op: 'infer'; pixels: ArrayBuffer; n: number }
  | { id: number; op: 'featureMaps' | 'embedding'; pixels: ArrayBuffer }
  | { id: number; op: 'filters' }
  | { id: number; op: 'close' };

/** The answer to one request: float32 arrays with their shapes, or the error's message. */
export interface WorkerReply {
  id: number;
  error?: string;
  outputs?: { layer: string; shape: number[]; data: ArrayBuffer }[];
}

/** The first message after loading: the record and the model's input shape, or why it could not load. */
export interface WorkerReady {
  ready: true;
  record?: ModelRecord;
  inputShape?: number[];
  device?: string;
  error?: string;
  /** The error is the operator's (a missing or unreadable weights file), not the engine's. */
  userError?: boolean;
}

class Session {
  private readonly layers: [string, { forward(x: Tensor): Tensor }][];
  private readonly runner: InferenceRunner;

  constructor(
    readonly model: AlexNet,
    readonly record: ModelRecord,
    readonly device: Device,
    readonly precision: Precision,
  ) {
    this.layers = model.layers();
    // The forward pass: a oneDNN plan on the CPU (src/runtime/inference.ts), packed now from the fp32 weights.
    this.runner = new InferenceRunner(model, device, precision);
    this.runner.prepare();
    // bf16 on the CPU: autocast casts every fp32 weight to bf16 on every forward pass (46M of them for AlexNet:
    // as long as the batch-1 forward itself); cast once here instead. Batch norm keeps its fp32 statistics, so
    // models with it cast under autocast as before.
    if (precision === 'bf16' && !this.layers.some(([, m]) => m instanceof BatchNorm2d)) model.to({ dtype: 'bfloat16' });
  }

  close(): void {
    this.runner.dispose();
    this.model.dispose();
  }

  /** Planar uint8 images -> the model's float input on its device (the same preprocessing as predict). */
  private input(pixels: ArrayBuffer, n: number): Tensor {
    const { channels: c, height: h, width: w } = inputGeometry(this.record, this.model.inputShape);
    return preprocessBatch(tensor(new Uint8Array(pixels), [n, c, h, w], 'uint8'), this.record.preprocess, this.device);
  }

  private out(layer: string, t: Tensor): { layer: string; shape: number[]; data: ArrayBuffer } {
    const f = t.float().to('cpu').contiguous();
    // A copy of our own: the addon's buffer may be external memory, which cannot be transferred.
    const data = new Float32Array(f.data() as Float32Array).buffer;
    return { layer, shape: [...f.shape], data };
  }

  infer(pixels: ArrayBuffer, n: number): WorkerReply['outputs'] {
    return noGrad(() => tidy(() => [this.out('logits', this.runner.forward(this.input(pixels, n)))]));
  }

  /** Each convolution's output after its activation (named by the convolution), for one image. */
  featureMaps(pixels: ArrayBuffer): WorkerReply['outputs'] {
    const outs: { layer: string; shape: number[]; data: ArrayBuffer }[] = [];
    const run = () => {
      let h = this.input(pixels, 1);
      let conv: string | undefined;
      for (const [name, layer] of this.layers) {
        if (name === 'flatten') break;
        h = layer.forward(h);
        if (layer instanceof Conv2d) conv = name;
        else if (conv && (layer instanceof ReLU || layer instanceof Tanh)) {
          const o = this.out(conv, h);
          outs.push({ ...o, shape: o.shape.slice(1) });
          conv = undefined;
        }
      }
    };
    noGrad(() => tidy(() => autocast(this.device, this.precision, run)));
    return outs;
  }

  /** The last hidden layer (the classifier's last activation, as `alexnet features` chooses), for one image. */
  embedding(pixels: ArrayBuffer): WorkerReply['outputs'] {
    const names = this.layers.filter(([n, m]) => n.startsWith('classifier.') && m instanceof ReLU).map(([n]) => n);
    const layer = names[names.length - 1] ?? this.layers[this.layers.length - 2][0];
    const run = () => this.model.forwardTo(this.input(pixels, 1), layer).flatten(1);
    return noGrad(() => tidy(() => [this.out(layer, autocast(this.device, this.precision, run))]));
  }

  filters(): WorkerReply['outputs'] {
    const conv = this.layers.find(([, m]) => m instanceof Conv2d);
    if (!conv) throw new Error(`${this.record.model} has no convolution`);
    return noGrad(() => tidy(() => [this.out(conv[0], (conv[1] as Conv2d).weight)]));
  }
}

function handle(s: Session, r: WorkerRequest): WorkerReply {
  try {
    switch (r.op) {
      case 'infer':
        return { id: r.id, outputs: s.infer(r.pixels, r.n) };
      case 'featureMaps':
        return { id: r.id, outputs: s.featureMaps(r.pixels) };
      case 'embedding':
        return { id: r.id, outputs: s.embedding(r.pixels) };
      case 'filters':
        return { id: r.id, outputs: s.filters() };
      default:
        s.close();
        return { id: r.id };
    }
  } catch (e) {
    return { id: r.id, error: String((e as Error)?.message ?? e).split('\n')[0] };
  }
}

function start(): void {
  const port = parentPort;
  if (!port) return;
  const setup = workerData as WorkerSetup;
  let session: Session;
  try {
    const { device } = prepareDevice(setup.device ?? 'auto', setup.threads);
    const { model, record } = loadModel(setup.weights, { model: setup.model });
    if (setup.exportTo) {
      writeFileAtomic(setup.exportTo, exportOnnx(model, recordMetadata(record)).bytes);
      model.dispose();
      port.postMessage({ ready: true, record } satisfies WorkerReady);
      return;
    }
    session = new Session(prepareModel(model, device), record, device, setup.precision);
    port.postMessage({ ready: true, record, inputShape: [...model.inputShape], device } satisfies WorkerReady);
  } catch (e) {
    const error = String((e as Error)?.message ?? e).split('\n')[0];
    port.postMessage({ ready: true, error, userError: e instanceof UserError } satisfies WorkerReady);
    return;
  }
  port.on('message', (r: WorkerRequest) => {
    const reply = handle(session, r);
    port.postMessage(
      reply,
      (reply.outputs ?? []).map((o) => o.data),
    );
    if (r.op === 'close') port.close();
  });
}

start();
