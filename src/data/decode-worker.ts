// A decode worker: turns (file, per-image seed) into the transformed pixels, off the main thread, so that images
// keep coming while the main thread runs the engine: JPEGs with TurboJPEG in the addon (src/data/jpeg.ts), the
// rest — and JPEGs TurboJPEG leaves to it — with sharp. Started by DecodePool (pipeline.ts).
import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { ImageError, ImageInput, imageSize, renderPlan, sharpModule } from './image';
import { decodeJpeg, isJpegName, JpegDecoder, turboAvailable } from './jpeg';
import { Plan, PhotoTransform, planCenter, planTenCrop, planTrain } from './transforms';

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

/** Decodes one image (JPEGs with TurboJPEG unless `decoder` is 'sharp'); failures become a reason, not an exception. */
export async function decodeOne(
  item: { file: string; seed: number },
  mode: DecodeMode,
  t: PhotoTransform,
  decoder: JpegDecoder = 'turbojpeg',
): Promise<DecodeResult> {
  let input: ImageInput = item.file;
  if (decoder === 'turbojpeg' && t.channels === 3 && turboAvailable()) {
    const bytes = jpegBytes(item.file);
    if (bytes?.length) {
      const data = decodeJpeg(bytes, t.channels, (w, h) => planFor(mode, w, h, t, item.seed));
      if (data) return { ok: true, data };
      // sharp takes over from the bytes already read.
      input = { name: item.file, data: bytes };
    }
  }
  try {
    const size = await imageSize(input);
    const buf = await renderPlan(input, planFor(mode, size.width, size.height, t, item.seed), t.channels, size);
    // A standalone ArrayBuffer, so it can be transferred without copying.
    const data = new ArrayBuffer(buf.length);
    new Uint8Array(data).set(buf);
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
    const results: DecodeResult[] = new Array(req.items.length);
    let next = 0;
    const lane = async () => {
      while (next < req.items.length) {
        const i = next++;
        results[i] = await decodeOne(req.items[i], req.mode, req.transform, decoder);
      }
    };
    await Promise.all(Array.from({ length: Math.min(inFlight, req.items.length) }, lane));
    const reply: DecodeReply = { id: req.id, results };
    port.postMessage(
      reply,
      results.flatMap((r) => (r.ok ? [r.data] : [])),
    );
  });
}
