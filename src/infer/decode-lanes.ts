// Decode lanes for predictStream: one worker thread that decodes images (files or bytes) to a predictor's planar
// uint8 input while the main thread runs the engine. libtorch's forward pass holds the main thread for the whole
// batch, so images decoded on libuv's pool from the main thread would wait for it between their steps (header,
// pixels); a worker's own event loop keeps them going. `lanes` bounds the images decoding at once, so decoding takes
// that many cores at most away from the engine.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { UserError } from '../errors';
import { ImageError, ImageInput } from '../data/image';

/** The geometry an image is decoded to (the predictor's InputGeometry). */
export interface LaneGeometry {
  channels: number;
  height: number;
  width: number;
  shortSide?: number;
}

export interface LaneRequest {
  id: number;
  geometry: LaneGeometry;
  inputs: ImageInput[];
}

/** One input's outcome, as it crosses threads: its pixels, or its error rebuilt on this side with its class. */
export type LaneResult =
  | { ok: true; px: Uint8Array }
  | { ok: false; kind: 'image'; file: string; reason: string }
  | { ok: false; kind: 'user' | 'other'; message: string };

export interface LaneReply {
  id: number;
  results: LaneResult[];
}

/** The decoded pixels, or the error that decoding threw (an ImageError naming the file, as inline decoding). */
export type Decoded = { px: Uint8Array } | { error: Error };

export function fromLane(r: LaneResult): Decoded {
  if (r.ok) return { px: r.px };
  if (r.kind === 'image') return { error: new ImageError(r.file, r.reason) };
  return { error: r.kind === 'user' ? new UserError(r.message) : new Error(r.message) };
}

export function toLane(e: unknown): LaneResult {
  if (e instanceof ImageError) return { ok: false, kind: 'image', file: e.file, reason: e.reason };
  const message = String((e as Error)?.message ?? e);
  return { ok: false, kind: e instanceof UserError ? 'user' : 'other', message };
}

export class DecodeLanes {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve: (r: Decoded[]) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private failure: Error | undefined;

  constructor(readonly lanes = 1) {
    this.worker = new Worker(path.join(__dirname, 'decode-lanes-worker.js'), { workerData: { lanes } });
    this.worker.on('message', (reply: LaneReply) => {
      const p = this.pending.get(reply.id);
      this.pending.delete(reply.id);
      p?.resolve(reply.results.map(fromLane));
      if (!this.pending.size) this.worker.unref();
    });
    const fail = (e: Error) => {
      this.failure ??= e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    this.worker.on('error', (e) => fail(new Error(`the image decoding thread failed: ${e.message}`)));
    this.worker.on('exit', (code) => fail(new Error(`the image decoding thread stopped (exit code ${code})`)));
    // An idle worker does not keep the process alive; one with work does.
    this.worker.unref();
  }

  /** Decodes `inputs` to `geometry`, results in input order: pixels, or the error each input's decoding threw. */
  decode(inputs: ImageInput[], geometry: LaneGeometry): Promise<Decoded[]> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.ref();
      const request: LaneRequest = { id, geometry, inputs };
      this.worker.postMessage(request);
    });
  }

  async close(): Promise<void> {
    this.failure ??= new Error('the image decoding thread was closed');
    await this.worker.terminate();
  }
}
