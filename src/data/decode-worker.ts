// A decode worker: turns (file, per-image seed) into the transformed pixels, off the main thread, so that images
// keep coming while the main thread runs the engine: JPEGs with TurboJPEG in the addon (src/data/jpeg.ts), the
// rest — and JPEGs TurboJPEG leaves to it — with sharp. Started by DecodePool (pipeline.ts).
import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { ImageError, ImageInput, imageSize, renderPlan, sharpModule } from './image';
import { decodeJpeg, isJpegName, JpegDecoder, turboAvailable } from './jpeg';
import {
  imageShift,
  Plan,
  PhotoTransform,
  pixelAffine,
  planCenter,
  planTenCrop,
  planTrain,
  trainFlip,
} from './transforms';
import { mapInLanes } from '../util/lanes';

export type DecodeMode = 'train' | 'center' | 'ten-crop';

export interface DecodeRequest {
  id: number;
  mode: DecodeMode;
  transform: PhotoTransform;
  items: { file: string; seed: number }[];
  /**
   * uint8 (default): the crops' pixels, HWC. float32: the finished image, HWC — to float, training's PCA colour
   * shift and the transform's normalisation applied here (pixelAffine), so the main thread only joins the batch.
   */
  output?: 'uint8' | 'float32';
  /** Buffers of earlier results the main thread has finished with, transferred back to be written into again. */
  spare?: ArrayBuffer[];
}

export type DecodeResult = { ok: true; data: ArrayBuffer } | { ok: false; reason: string };

export interface DecodeReply {
  id: number;
  results: DecodeResult[];
}

export function planFor(mode: DecodeMode, w: number, h: number, t: PhotoTransform, seed: number): Plan {
  if (mode === 'train') return planTrain(w, h, t, seed);
  if (mode === 'ten-crop') return planTenCrop(w, h, t);
  return planCenter(w, h, t);
}

/** The bytes of a JPEG file, read for TurboJPEG; undefined for other files and unreadable ones (sharp says why). */
function jpegBytes(file: string): Buffer | undefined {
  if (!isJpegName(file)) return undefined;
  try {
    return fs.readFileSync(file);
  } catch {
    return undefined;
  }
}

/** `src` (rows of `width` pixels of `channels` bytes) mirrored left to right, into `dst`. */
function mirrorRows(src: Uint8Array, dst: Uint8Array, width: number, channels: number): void {
  const row = width * channels;
  for (let r = 0; r < src.length; r += row)
    for (let x = 0; x < width; x++) {
      const from = r + x * channels;
      const to = r + (width - 1 - x) * channels;
      for (let c = 0; c < channels; c++) dst[to + c] = src[from + c];
    }
}

/**
 * Result buffers handed back by the main thread, by size, for the next results: a fresh 600 KB buffer per image
 * costs page faults and zeroing (a fifth of the pipeline's CPU time, measured), a recycled one nothing.
 */
export class SpareBuffers {
  readonly #bySize = new Map<number, ArrayBuffer[]>();
  #bytes = 0;
  /** At most `limit` bytes kept (64 MiB: a hundred 224×224 float images); the rest are left to the collector. */
  constructor(readonly limit = 64 << 20) {}

  add(buffers: ArrayBuffer[]): void {
    for (const b of buffers) {
      if (this.#bytes + b.byteLength > this.limit || b.byteLength === 0) continue;
      const list = this.#bySize.get(b.byteLength) ?? [];
      list.push(b);
      this.#bySize.set(b.byteLength, list);
      this.#bytes += b.byteLength;
    }
  }

  take(bytes: number): ArrayBuffer | undefined {
    const b = this.#bySize.get(bytes)?.pop();
    if (b) this.#bytes -= b.byteLength;
    return b;
  }
}

const spares = new SpareBuffers();

/** uint8 pixels as floats v · scale[c] + bias[c], rounded as the engine's float32 multiply and add round them. */
function affineFloats(src: Uint8Array, channels: number, a: { scale: number[]; bias: number[] }): ArrayBuffer {
  const spare = spares.take(src.length * 4);
  const out = spare ? new Float32Array(spare) : new Float32Array(src.length);
  for (let i = 0; i < src.length; i += channels)
    for (let c = 0; c < channels; c++) out[i + c] = Math.fround(Math.fround(src[i + c] * a.scale[c]) + a.bias[c]);
  return out.buffer;
}

/**
 * Decodes one image (JPEGs with TurboJPEG unless `decoder` is 'sharp'); failures become a reason, not an exception.
 * Training's flips (trainFlip) are made here, on the crop; with `output` float32 the normalisation too, else the
 * engine converts and normalises the batch (finishBatch).
 */
export async function decodeOne(
  item: { file: string; seed: number },
  mode: DecodeMode,
  t: PhotoTransform,
  decoder: JpegDecoder = 'turbojpeg',
  output: DecodeRequest['output'] = 'uint8',
): Promise<DecodeResult> {
  const flip = mode === 'train' && trainFlip(item.seed, t);
  const affine =
    output === 'float32'
      ? pixelAffine(t.mean, t.std, t.channels, mode === 'train' ? imageShift(t, item.seed) : undefined)
      : undefined;
  let input: ImageInput = item.file;
  if (decoder === 'turbojpeg' && t.channels === 3 && turboAvailable()) {
    const bytes = jpegBytes(item.file);
    if (bytes?.length) {
      const data = decodeJpeg(bytes, t.channels, (w, h) => planFor(mode, w, h, t, item.seed), {
        flip,
        affine,
        into: (bytes) => spares.take(bytes),
      });
      if (data) return { ok: true, data };
      // sharp takes over from the bytes already read.
      input = { name: item.file, data: bytes };
    }
  }
  try {
    const size = await imageSize(input);
    const plan = planFor(mode, size.width, size.height, t, item.seed);
    const buf = await renderPlan(input, plan, t.channels, size);
    // A standalone ArrayBuffer, so it can be transferred without copying.
    const data = new ArrayBuffer(buf.length);
    if (flip) mirrorRows(buf, new Uint8Array(data), plan.outW, t.channels);
    else new Uint8Array(data).set(buf);
    return { ok: true, data: affine ? affineFloats(new Uint8Array(data), t.channels, affine) : data };
  } catch (e) {
    return { ok: false, reason: e instanceof ImageError ? e.reason : String((e as Error)?.message ?? e) };
  }
}

if (parentPort) {
  const port = parentPort;
  const data = workerData as { inFlight?: number; jpegDecoder?: JpegDecoder } | undefined;
  const inFlight = data?.inFlight ?? 2;
  const decoder = data?.jpegDecoder ?? 'turbojpeg';
  // One libvips thread per image: the pool's parallelism comes from images in flight, not from each image.
  sharpModule().concurrency(1);
  sharpModule().cache(false);
  port.on('message', async (req: DecodeRequest) => {
    if (req.spare) spares.add(req.spare);
    const results = await mapInLanes(req.items, inFlight, (item) =>
      decodeOne(item, req.mode, req.transform, decoder, req.output),
    );
    const reply: DecodeReply = { id: req.id, results };
    port.postMessage(
      reply,
      results.flatMap((r) => (r.ok ? [r.data] : [])),
    );
  });
}
