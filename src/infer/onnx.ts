// The onnxruntime backend: inference with onnxruntime-node alone, no libtorch and no native engine of ours. The ONNX
// file carries the model record (classes, preprocessing) in its metadata; preprocessing is done here in plain
// JavaScript, as training's engine-side preprocessing does it (bilinear, half-pixel centres, then mean/std).
import * as os from 'node:os';
import type { InferenceSession } from 'onnxruntime-node';
import { FormatError, SetupError, UserError } from '../errors';
import { Preprocess } from '../data/loader';
import { readOnnxMetadata } from '../io/onnx-metadata';
import { ModelRecord, readRecord } from '../persist/record';
import { InputGeometry, inputGeometry, Predictor, tensorShape } from './predictor';

/** Bilinear resize of one plane with half-pixel centres and edge clamping (PyTorch's align_corners=False). */
export function resizeBilinear(src: Float32Array, h: number, w: number, oh: number, ow: number): Float32Array {
  const out = new Float32Array(oh * ow);
  const sy = h / oh;
  const sx = w / ow;
  for (let y = 0; y < oh; y++) {
    const fy = Math.max(0, (y + 0.5) * sy - 0.5);
    const y0 = Math.min(Math.floor(fy), h - 1);
    const y1 = Math.min(y0 + 1, h - 1);
    const ly = fy - y0;
    for (let x = 0; x < ow; x++) {
      const fx = Math.max(0, (x + 0.5) * sx - 0.5);
      const x0 = Math.min(Math.floor(fx), w - 1);
      const x1 = Math.min(x0 + 1, w - 1);
      const lx = fx - x0;
      out[y * ow + x] =
        (1 - ly) * ((1 - lx) * src[y0 * w + x0] + lx * src[y0 * w + x1]) +
        ly * ((1 - lx) * src[y1 * w + x0] + lx * src[y1 * w + x1]);
    }
  }
  return out;
}

/** uint8 planar pixels (C, h, w) -> float32 (C, H, W) as training saw them: /255, resized, normalised. */
export function preprocessPixels(px: Uint8Array, c: number, h: number, w: number, p: Preprocess): Float32Array {
  const [oh, ow] = p.inputSize;
  const out = new Float32Array(c * oh * ow);
  for (let ch = 0; ch < c; ch++) {
    const mean = p.mean.length ? p.mean[ch] : 0;
    const std = p.std.length ? p.std[ch] : 1;
    const src = px.subarray(ch * h * w, (ch + 1) * h * w);
    const dst = out.subarray(ch * oh * ow, (ch + 1) * oh * ow);
    if (h === oh && w === ow) {
      // The usual case (the image was decoded at the model's size): one pass, as ((x / 255) - mean) / std.
      for (let i = 0; i < dst.length; i++) dst[i] = (src[i] / 255 - mean) / std;
      continue;
    }
    const plane = new Float32Array(h * w);
    for (let i = 0; i < plane.length; i++) plane[i] = src[i] / 255;
    const resized = resizeBilinear(plane, h, w, oh, ow);
    for (let i = 0; i < dst.length; i++) dst[i] = (resized[i] - mean) / std;
  }
  return out;
}

type Ort = typeof import('onnxruntime-node');

function loadOrt(): Ort {
  try {
    return require('onnxruntime-node') as Ort;
  } catch (e) {
    const why = (e as Error).message.split('\n')[0];
    throw new SetupError(
      `onnxruntime-node cannot be loaded (${why}): run 'npm ci' (ONNXRUNTIME_NODE_INSTALL=skip keeps its installer from downloading GPU binaries)`,
    );
  }
}

/** onnxruntime's message without its C++ decoration ("[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : …"). */
function ortReason(e: unknown): string {
  const line = String((e as Error)?.message ?? e).split('\n')[0];
  return line
    .replace(/^\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*/, '')
    .replace(/^Load model from \S+ failed:\s*/, '');
}

export class OnnxPredictor implements Predictor {
  readonly runtime = 'onnxruntime';
  readonly geometry: InputGeometry;

  private constructor(
    private readonly ort: Ort,
    private readonly session: InferenceSession,
    readonly record: ModelRecord,
  ) {
    const inChannels = record.sourceShape?.[0] ?? record.modelOptions.inChannels ?? 3;
    this.geometry = inputGeometry(record, [inChannels, ...record.preprocess.inputSize]);
    if (
      record.preprocess.resize === 'pad' &&
      (this.geometry.height !== record.preprocess.inputSize[0] ||
        this.geometry.width !== record.preprocess.inputSize[1])
    ) {
      throw new UserError("ONNX inference does not support the 'pad' resize mode; use the libtorch runtime");
    }
  }

  /**
   * Opens an ONNX file written by `alexnet export --format onnx` (its metadata holds the model record). onnxruntime's
   * defaults are set explicitly (one intra-op thread per core, no inter-op pool, every graph optimisation): left to
   * itself, onnxruntime-node ran AlexNet at half that speed on a 2-core Zen 5 (110 against 212 img/s, batch 16).
   */
  static async open(modelFile: string, o: { threads?: number } = {}): Promise<OnnxPredictor> {
    const record = readRecord(readOnnxMetadata(modelFile), modelFile);
    const ort = loadOrt();
    let session: InferenceSession;
    try {
      session = await ort.InferenceSession.create(modelFile, {
        intraOpNumThreads: o.threads ?? os.availableParallelism(),
        interOpNumThreads: 1,
        graphOptimizationLevel: 'all',
        extra: { session: { intra_op: { allow_spinning: '0' } } },
      });
    } catch (e) {
      throw new FormatError(`${modelFile} is not an ONNX model onnxruntime can load: ${ortReason(e)}`);
    }
    return new OnnxPredictor(ort, session, record);
  }

  async logits(pixels: Uint8Array, n: number): Promise<Float32Array> {
    const { channels: c, height: h, width: w } = this.geometry;
    const [oh, ow] = this.record.preprocess.inputSize;
    const batch = new Float32Array(n * c * oh * ow);
    for (let i = 0; i < n; i++) {
      const one = preprocessPixels(
        pixels.subarray(i * c * h * w, (i + 1) * c * h * w),
        c,
        h,
        w,
        this.record.preprocess,
      );
      batch.set(one, i * c * oh * ow);
    }
    return this.forward(batch, n);
  }

  /** Logits of N preprocessed inputs (float32 N × C × H × W at the model's input size). */
  async forward(input: Float32Array, n: number): Promise<Float32Array> {
    const shape = [n, ...tensorShape(this.record, this.geometry)];
    const out = await this.session.run({ input: new this.ort.Tensor('float32', input, shape) });
    return out.logits.data as Float32Array;
  }

  async close(): Promise<void> {
    await this.session.release();
  }
}
