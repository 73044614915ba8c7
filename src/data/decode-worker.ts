// A decode worker: turns (file, per-image seed) into the transformed pixels with sharp, off the main thread, so
// that images keep coming while the main thread runs the engine. Started by DecodePool (pipeline.ts).
import { parentPort, workerData } from 'node:worker_threads';
import { ImageError, imageSize, renderPlan, sharpModule } from './image';
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

/** Decodes one image; failures become a reason, never an exception. */
export async function decodeOne(
  item: { file: string; seed: number },
  mode: DecodeMode,
  t: PhotoTransform,
): Promise<DecodeResult> {
  try {
    const size = await imageSize(item.file);
    const buf = await renderPlan(item.file, planFor(mode, size.width, size.height, t, item.seed), t.channels, size);
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
  const inFlight = (workerData as { inFlight?: number } | undefined)?.inFlight ?? 2;
  // One libvips thread per image: the pool's parallelism comes from images in flight, not from each image.
  sharpModule().concurrency(1);
  sharpModule().cache(false);
  port.on('message', async (req: DecodeRequest) => {
    const results: DecodeResult[] = new Array(req.items.length);
    let next = 0;
    const lane = async () => {
      while (next < req.items.length) {
        const i = next++;
        results[i] = await decodeOne(req.items[i], req.mode, req.transform);
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
