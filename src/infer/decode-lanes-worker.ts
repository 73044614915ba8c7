// The decode lanes' worker thread (decode-lanes.ts): decodes each request's inputs exactly as predictStream does in
// the main thread (decodeInput), `lanes` images at a time, and sends the pixels back without copying them.
import { parentPort, workerData } from 'node:worker_threads';
import { ImageInput, sharpModule } from '../data/image';
import type { LaneReply, LaneRequest, LaneResult } from './decode-lanes';
import { toLane } from './decode-lanes';
import { decodeInput } from './predictor';
import { mapInLanes } from '../util/lanes';

/** Bytes cloned across threads arrive as a Uint8Array: sharp is given a Buffer over the same memory. */
function asInput(i: ImageInput): ImageInput {
  if (typeof i === 'string' || Buffer.isBuffer(i.data)) return i;
  const d = i.data as Uint8Array;
  return { name: i.name, data: Buffer.from(d.buffer, d.byteOffset, d.byteLength) };
}

if (parentPort) {
  const port = parentPort;
  const lanes = Math.max(1, (workerData as { lanes?: number } | undefined)?.lanes ?? 1);
  // One libvips thread per image: the lanes are the parallelism.
  sharpModule().concurrency(1);
  port.on('message', async (req: LaneRequest) => {
    const results = await mapInLanes(req.inputs, lanes, (input) =>
      decodeInput(asInput(input), req.geometry).then((px): LaneResult => ({ ok: true, px }), toLane),
    );
    const reply: LaneReply = { id: req.id, results };
    port.postMessage(
      reply,
      results.flatMap((r) => (r.ok ? [r.px.buffer as ArrayBuffer] : [])),
    );
  });
}
