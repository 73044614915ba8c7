// A decode worker: turns (file, per-image seed) into the transformed pixels, off the main thread, so that images
// keep coming while the main thread runs the engine: JPEGs with TurboJPEG in the addon (src/data/jpeg.ts), the
// rest — and JPEGs TurboJPEG leaves to it — with sharp. Started by DecodePool (pipeline.ts).
import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { ImageError, ImageInput, imageSize, renderPlan, sharpModule } from './image';
import { decodeJpeg, isJpegName, JpegDecoder, turboAvailable } from './jpeg';
import { Plan, PhotoTransform, planCenter, planTenCrop, planTrain, trainFlip } from './transforms';
import { mapInLanes } from '../util/lanes';

export type DecodeMode = 'train' | 'center' | 'ten-crop';

export interface DecodeRequest {
  id: number;
  mode: DecodeMode;
  transform: PhotoTransform;
  items: { file: string; seed: number }[];
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
 * Decodes one image (JPEGs with TurboJPEG unless `decoder` is 'sharp'); failures become a reason, not an exception.
 * Training's flips (trainFlip) are made here, on the crop: the engine only converts and normalises.
 */
export async function decodeOne(
  item: { file: string; seed: number },
  mode: DecodeMode,
  t: PhotoTransform,
  decoder: JpegDecoder = 'turbojpeg',
): Promise<DecodeResult> {
  const flip = mode === 'train' && trainFlip(item.seed, t);
  let input: ImageInput = item.file;
  if (decoder === 'turbojpeg' && t.channels === 3 && turboAvailable()) {
    const bytes = jpegBytes(item.file);
    if (bytes?.length) {
      const data = decodeJpeg(bytes, t.channels, (w, h) => planFor(mode, w, h, t, item.seed), { flip });
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
    return { ok: true, data };
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
    const results = await mapInLanes(req.items, inFlight, (item) => decodeOne(item, req.mode, req.transform, decoder));
    const reply: DecodeReply = { id: req.id, results };
    port.postMessage(
      reply,
      results.flatMap((r) => (r.ok ? [r.data] : [])),
    );
  });
}
