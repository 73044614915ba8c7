// The libtorch engine's worker thread: a TorchPredictor (src/infer/torch.ts) lives here, so a forward pass (tens of
// milliseconds to seconds) never blocks the server's event loop. The main thread sends requests with transferable
// ArrayBuffers and gets answers the same way (src/serve/engine.ts's TorchEngine is the other side).
import { parentPort, workerData } from 'node:worker_threads';
import { UserError } from '../errors';
import { exportOnnx } from '../io/onnx';
import { InputGeometry } from '../infer/predictor';
import { TorchPredictor } from '../infer/torch';
import { loadModel } from '../persist/load';
import { ModelRecord, recordMetadata } from '../persist/record';
import { DeviceRequest, prepareDevice } from '../runtime/device';
import { Precision } from '../runtime/precision';
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

/**
 * A request from the main thread: `pixels` is n planar uint8 images of the model's input geometry, `input` n
 * preprocessed float32 inputs at the model's input size.
 */
export type WorkerRequest =
  | { id: number; op: 'infer'; pixels: ArrayBuffer; n: number }
  | { id: number; op: 'forward'; input: ArrayBuffer; n: number }
  | { id: number; op: 'featureMaps' | 'embedding'; pixels: ArrayBuffer }
  | { id: number; op: 'filters' }
  | { id: number; op: 'close' };

/** One float32 array of an answer, with its shape; `data` is transferred. */
type Output = { layer: string; shape: number[]; data: ArrayBuffer };

/** The answer to one request: float32 arrays with their shapes, or the error's message. */
export interface WorkerReply {
  id: number;
  error?: string;
  outputs?: Output[];
}

/** The first message after loading: the record and the model's input geometry, or why it could not load. */
export interface WorkerReady {
  ready: true;
  record?: ModelRecord;
  geometry?: InputGeometry;
  device?: string;
  error?: string;
  /** The error is the operator's (a missing or unreadable weights file), not the engine's. */
  userError?: boolean;
}

/** An answer's array as a buffer of its own (transferred, so it must not share its buffer with anything else). */
function output(layer: string, shape: number[], data: Float32Array): Output {
  const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
  return { layer, shape, data: own.buffer as ArrayBuffer };
}

async function answer(p: TorchPredictor, r: WorkerRequest): Promise<Output[] | undefined> {
  switch (r.op) {
    case 'infer': {
      const logits = await p.logits(new Uint8Array(r.pixels), r.n);
      return [output('logits', [r.n, logits.length / r.n], logits)];
    }
    case 'forward': {
      const logits = await p.forward(new Float32Array(r.input), r.n);
      return [output('logits', [r.n, logits.length / r.n], logits)];
    }
    case 'featureMaps':
      return (await p.featureMaps(new Uint8Array(r.pixels))).map((o) => output(o.layer, o.shape, o.data));
    case 'embedding': {
      const e = await p.embedding(new Uint8Array(r.pixels));
      return [output(p.embeddingLayer, [1, e.length], e)];
    }
    case 'filters': {
      const f = await p.filters();
      return [output(f.layer, f.shape, f.data)];
    }
    default:
      await p.close();
      return undefined;
  }
}

async function handle(p: TorchPredictor, r: WorkerRequest): Promise<WorkerReply> {
  try {
    const outputs = await answer(p, r);
    return outputs ? { id: r.id, outputs } : { id: r.id };
  } catch (e) {
    return { id: r.id, error: String((e as Error)?.message ?? e).split('\n')[0] };
  }
}

/** Export mode: the weights as an ONNX file with the model record in its metadata. */
function exportModel(setup: WorkerSetup & { exportTo: string }): ModelRecord {
  const { model, record } = loadModel(setup.weights, { model: setup.model });
  try {
    writeFileAtomic(setup.exportTo, exportOnnx(model, recordMetadata(record)).bytes);
  } finally {
    model.dispose();
  }
  return record;
}

function start(): void {
  const port = parentPort;
  if (!port) return;
  const setup = workerData as WorkerSetup;
  let predictor: TorchPredictor;
  try {
    const { device } = prepareDevice(setup.device ?? 'auto', setup.threads);
    if (setup.exportTo) {
      const record = exportModel({ ...setup, exportTo: setup.exportTo });
      port.postMessage({ ready: true, record } satisfies WorkerReady);
      return;
    }
    // The forward pass is packed now (a oneDNN plan on the CPU), so the first request does not wait for it.
    predictor = TorchPredictor.open(setup.weights, {
      model: setup.model,
      device,
      precision: setup.precision,
      prepare: true,
    });
    const { record, geometry } = predictor;
    port.postMessage({ ready: true, record, geometry, device } satisfies WorkerReady);
  } catch (e) {
    const error = String((e as Error)?.message ?? e).split('\n')[0];
    port.postMessage({ ready: true, error, userError: e instanceof UserError } satisfies WorkerReady);
    return;
  }
  // One request at a time, answered in order. A reply that cannot be sent is the worker's end: thrown outside the
  // queue, it stops the thread and the main thread's engine fails readiness.
  let queue = Promise.resolve();
  port.on('message', (r: WorkerRequest) => {
    queue = queue
      .then(async () => {
        const reply = await handle(predictor, r);
        port.postMessage(
          reply,
          (reply.outputs ?? []).map((o) => o.data),
        );
        if (r.op === 'close') port.close();
      })
      .catch((e: unknown) => {
        setImmediate(() => {
          throw e;
        });
      });
  });
}

start();
