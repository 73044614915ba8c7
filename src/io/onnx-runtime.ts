// Inference with onnxruntime-node alone: no libtorch, no native engine of ours. The ONNX file carries the model
// record (classes, preprocessing) in its metadata; preprocessing is done here in plain JavaScript (a few images,
// not a training pipeline).
import { SetupError, UserError } from '../errors';
import { loadImageAs } from '../data/image';
import { Preprocess } from '../data/loader';
import { recordFromMetadata } from '../train/checkpoint';

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
      out[y * ow + x] = (1 - ly) * ((1 - lx) * src[y0 * w + x0] + lx * src[y0 * w + x1]) + ly * ((1 - lx) * src[y1 * w + x0] + lx * src[y1 * w + x1]);
    }
  }
  return out;
}

/** uint8 planar pixels (C, h, w) -> float32 (C, H, W) as training saw them: /255, resized, normalised. */
export function preprocessPixels(px: Uint8Array, c: number, h: number, w: number, p: Preprocess): Float32Array {
  const [oh, ow] = p.inputSize;
  if (p.resize === 'pad' && (h !== oh || w !== ow)) throw new UserError("ONNX inference does not support the 'pad' resize mode; use the libtorch runtime");
  const out = new Float32Array(c * oh * ow);
  for (let ch = 0; ch < c; ch++) {
    const plane = new Float32Array(h * w);
    for (let i = 0; i < h * w; i++) plane[i] = px[ch * h * w + i] / 255;
    const resized = h === oh && w === ow ? plane : resizeBilinear(plane, h, w, oh, ow);
    const mean = p.mean.length ? p.mean[ch] : 0;
    const std = p.std.length ? p.std[ch] : 1;
    for (let i = 0; i < oh * ow; i++) out[ch * oh * ow + i] = (resized[i] - mean) / std;
  }
  return out;
}

export interface OnnxPrediction {
  file: string;
  top: { class: string; index: number; probability: number }[];
}

export async function predictWithOnnx(modelFile: string, files: string[], k = 5): Promise<OnnxPrediction[]> {
  let ort: typeof import('onnxruntime-node');
  try {
    ort = await import('onnxruntime-node');
  } catch (e) {
    throw new SetupError(`onnxruntime-node cannot be loaded (${(e as Error).message.split('\n')[0]}): run 'npm ci' (ONNXRUNTIME_NODE_INSTALL=skip keeps its installer from downloading GPU binaries)`);
  }
  let session: import('onnxruntime-node').InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelFile);
  } catch (e) {
    throw new UserError(`${modelFile} is not an ONNX model onnxruntime can load (${(e as Error).message.split('\n')[0]})`);
  }
  const meta = await readOnnxMetadata(modelFile);
  const record = recordFromMetadata(meta, modelFile);
  const c = record.sourceShape?.[0] ?? record.modelOptions.inChannels ?? 3;
  const [h, w] = record.sourceShape ? record.sourceShape.slice(1) : record.preprocess.inputSize;
  const [oh, ow] = record.preprocess.inputSize;
  const batch = new Float32Array(files.length * c * oh * ow);
  for (let i = 0; i < files.length; i++) {
    const px = await loadImageAs(files[i], c, h, w, record.sourceShape ? undefined : record.preprocess.shortSide);
    batch.set(preprocessPixels(px, c, h, w, record.preprocess), i * c * oh * ow);
  }
  const out = await session.run({ input: new ort.Tensor('float32', batch, [files.length, c, oh, ow]) });
  const logits = out.logits.data as Float32Array;
  const n = record.classes.length;
  return files.map((file, i) => {
    const row = Array.from(logits.subarray(i * n, (i + 1) * n));
    const max = Math.max(...row);
    const exp = row.map((v) => Math.exp(v - max));
    const sum = exp.reduce((a, b) => a + b, 0);
    const order = exp.map((v, j) => [v / sum, j]).sort((a, b) => b[0] - a[0]).slice(0, Math.min(k, n));
    return { file, top: order.map(([p, j]) => ({ class: record.classes[j], index: j, probability: p })) };
  });
}

/** metadata_props of an ONNX file (field 14 of ModelProto), read with a minimal protobuf scan. */
export async function readOnnxMetadata(file: string): Promise<Record<string, string>> {
  const buf = (await import('node:fs')).readFileSync(file);
  const out: Record<string, string> = {};
  let p = 0;
  const varint = () => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      if (p >= buf.length) throw new UserError(`${file} is truncated`);
      const b = buf[p++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  const fields = (end: number, visit: (field: number, start: number, len: number) => void) => {
    while (p < end) {
      const key = Number(varint());
      const field = key >> 3;
      const wire = key & 7;
      if (wire === 0) varint();
      else if (wire === 1) p += 8;
      else if (wire === 5) p += 4;
      else if (wire === 2) {
        const len = Number(varint());
        const start = p;
        visit(field, start, len);
        p = start + len;
      } else throw new UserError(`${file}: unexpected protobuf wire type ${wire}`);
    }
  };
  fields(buf.length, (field, start, len) => {
    if (field !== 14) return;
    let k = '';
    let v = '';
    fields(start + len, (f, s, l) => {
      if (f === 1) k = buf.toString('utf8', s, s + l);
      if (f === 2) v = buf.toString('utf8', s, s + l);
    });
    out[k] = v;
  });
  return out;
}
