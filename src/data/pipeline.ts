// The photo input pipeline: worker threads decode and crop images (JPEGs with TurboJPEG, the rest with sharp:
// decode-worker.ts) while the main thread runs the engine; batches are requested `prefetch` ahead. On the CPU the
// workers also finish each image (to float, PCA colour noise, normalisation: as PyTorch's DataLoader workers do),
// and the main thread copies the finished images into the batch tensor (NHWC, which the engine reads as
// channels-last without a copy) and hands their buffers back to be written into again. On a GPU the workers send
// uint8 pixels (4× less to move) and the engine finishes the batch there (finishBatch). Training's flips are made
// by the workers on each crop (free in TurboJPEG's resize).
//
// Everything random is decided from (seed, epoch, image index) — by whichever worker — so the same seed gives the
// same batches, with any number of workers, and a resumed run continues with the batches it would have seen.
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { UserError } from '../errors';
import { Device } from '../tensor/dtype';
import { cat, tensor, Tensor, tensorFromBuffers, tidy, where } from '../tensor/tensor';
import type { DecodeMode, DecodeReply, DecodeRequest, DecodeResult } from './decode-worker';
import { Problem, Sample } from './image-folder';
import { JpegDecoder, jpegDecoderFromEnv } from './jpeg';
import { checkNormalization } from './loader';
import { defaultSampler, Sampler } from './sampler';
import { BatchSource, ReadyBatch } from './source';
import { imageSeed, imageShift, PhotoTransform, pixelAffine, TEN_CROP_MIRRORED } from './transforms';

/** Decode workers: min(8, cores − 1), at least one. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(8, os.cpus().length - 1));
}

/** A pool of decode worker threads; each request goes to the worker with the least outstanding work. */
export class DecodePool {
  #workers: {
    w: Worker;
    pending: Map<number, { resolve: (r: DecodeResult[]) => void; reject: (e: Error) => void; items: number }>;
  }[] = [];
  #nextId = 1;
  #closed = false;
  /** Result buffers given back (recycle), sent to the workers with the next requests to be written into again. */
  #spare: ArrayBuffer[] = [];
  readonly #inFlight = new Set<Promise<unknown>>();

  /**
   * `jpegDecoder`: 'turbojpeg' (JPEGs decoded by libjpeg-turbo in the addon, where it was built with it) or 'sharp'
   * (every image by sharp); default: ALEXNET_JPEG_DECODER, else turbojpeg.
   */
  constructor(
    readonly size = defaultWorkers(),
    readonly inFlight = 2,
    readonly jpegDecoder: JpegDecoder = jpegDecoderFromEnv(),
  ) {
    if (!Number.isInteger(size) || size < 1) throw new UserError(`--workers must be a positive integer, got ${size}`);
    for (let i = 0; i < size; i++) this.#spawn(i);
  }

  #spawn(i: number): void {
    const w = new Worker(path.join(__dirname, 'decode-worker.js'), {
      workerData: { inFlight: this.inFlight, jpegDecoder: this.jpegDecoder },
    });
    const slot = { w, pending: new Map() };
    this.#workers[i] = slot;
    w.on('message', (reply: DecodeReply) => {
      const p = slot.pending.get(reply.id);
      slot.pending.delete(reply.id);
      p?.resolve(reply.results);
    });
    const fail = (err: Error) => {
      for (const p of slot.pending.values()) p.reject(err);
      slot.pending.clear();
      if (!this.#closed) this.#spawn(i);
    };
    w.on('error', (e) => fail(new UserError(`an image decoder thread failed: ${e.message}`)));
    w.on('exit', (code) => {
      if (!this.#closed) fail(new UserError(`an image decoder thread stopped (exit code ${code})`));
    });
    // Idle workers must not keep the process alive.
    w.unref();
  }

  /**
   * Decodes `items`, split into one request per worker. Results come back in the order of `items`: uint8 HWC
   * pixels, or with `output` 'float32' the finished, normalised float32 HWC image (see DecodeRequest).
   */
  async decode(
    mode: DecodeMode,
    transform: PhotoTransform,
    items: DecodeRequest['items'],
    output: DecodeRequest['output'] = 'uint8',
  ): Promise<DecodeResult[]> {
    if (this.#closed) throw new UserError('the decode pool is closed');
    const parts = Math.min(this.size, items.length);
    const per = Math.ceil(items.length / Math.max(1, parts));
    const jobs: Promise<DecodeResult[]>[] = [];
    for (let p = 0; p < parts; p++) {
      const chunk = items.slice(p * per, (p + 1) * per);
      if (!chunk.length) continue;
      const slot = this.#workers.reduce((a, b) => (load(b) < load(a) ? b : a));
      const id = this.#nextId++;
      const job = new Promise<DecodeResult[]>((resolve, reject) => {
        slot.pending.set(id, { resolve, reject, items: chunk.length });
        slot.w.ref();
        // As many spare buffers as the chunk has images (the worker keeps those of the size it needs).
        const spare = this.#spare.splice(0, chunk.length);
        const req: DecodeRequest = { id, mode, transform, items: chunk, output, spare };
        slot.w.postMessage(req, spare);
      }).finally(() => {
        this.#inFlight.delete(job);
        if (!slot.pending.size) slot.w.unref();
      });
      this.#inFlight.add(job);
      jobs.push(job);
    }
    return (await Promise.all(jobs)).flat();
  }

  /**
   * Gives result buffers back once their contents are copied elsewhere: later requests carry them to the workers
   * (transferred, so they must not be used here afterwards). At most 128 MiB are kept waiting.
   */
  recycle(buffers: ArrayBuffer[]): void {
    let held = this.#spare.reduce((a, b) => a + b.byteLength, 0);
    for (const b of buffers) {
      if (b.byteLength === 0 || held + b.byteLength > 128 << 20) continue;
      this.#spare.push(b);
      held += b.byteLength;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#spare = [];
    // Requests still being decoded (batches prefetched for an epoch that ended early) finish first: terminating a
    // worker in the middle of a native sharp call does not reliably end it.
    await Promise.allSettled([...this.#inFlight]);
    await Promise.all(this.#workers.map((s) => s.w.terminate()));
  }
}

function load(s: { pending: Map<number, { items: number }> }): number {
  let n = 0;
  for (const p of s.pending.values()) n += p.items;
  return n;
}

export interface FolderSourceOptions {
  batchSize: number;
  shuffle: boolean;
  /** Seeds the order (unless `sampler` is given) and every random choice of augmentation. */
  seed: number;
  /** The epoch order (default: shuffled with `seed` when `shuffle`, else in order). */
  sampler?: Sampler;
  /** train: random crops, flips, PCA noise; center: the evaluation crop; ten-crop: 10 inputs per image. */
  mode: 'train' | 'center' | 'ten-crop';
  transform: PhotoTransform;
  device: Device;
  pool: DecodePool;
  /** Batches requested ahead of the one being used (default 3). */
  prefetch?: number;
  /** Fail at the first unreadable image (naming it) instead of skipping it. */
  strict?: boolean;
  /** Called once per unreadable image, the first time it is met. */
  onProblem?: (p: Problem) => void;
  /**
   * Where pixels become normalised floats: 'workers' (each decode worker finishes its images, as PyTorch's
   * DataLoader workers do: the main thread only joins them) or 'engine' (uint8 batches finished by finishBatch: 4×
   * less to move, which pays on a GPU). Default: workers on the CPU, engine elsewhere; ten-crop always engine.
   */
  finish?: 'workers' | 'engine';
}

/** The engine's part of the transform, on a batch of uint8 NHWC pixels: flip, to float, PCA noise, normalise. */
export function finishBatch(
  u8: Tensor,
  o: { flips?: boolean[]; shifts?: number[][]; mean: number[]; std: number[]; tenCrop?: boolean; device: Device },
): Tensor {
  return tidy(() => {
    let x = u8.to({ device: o.device });
    if (o.tenCrop) {
      // (n, 6, H, W, C) -> the five crops, then the mirrored image's five: (n·10, H, W, C), TenCrop's order.
      const [n, , h, w, c] = x.shape;
      const mirrored = x.indexSelect(1, tensor(TEN_CROP_MIRRORED, [5], 'int64').to({ device: o.device })).flip(3);
      x = cat([x.narrow(1, 0, 5), mirrored], 1).reshape(n * 10, h, w, c);
    } else if (o.flips?.some((f) => f)) {
      const mask = tensor(
        o.flips.map((f) => (f ? 1 : 0)),
        [o.flips.length, 1, 1, 1],
        'uint8',
      )
        .to({ device: o.device })
        .to('bool');
      x = where(mask, x.flip(2), x);
    }
    // NHWC viewed as NCHW is the channels-last layout: no copy.
    const f = x.permute(0, 3, 1, 2).float();
    const [n, c] = f.shape;
    checkNormalization(o.mean, o.std, c);
    // (x/255 + shift − mean)/std as x·(1/(255·std)) + (shift − mean)/std: one multiply and one add over the batch.
    const affines = (o.shifts ?? [undefined]).map((sh) => pixelAffine(o.mean, o.std, c, sh));
    const scale = tensor(affines[0].scale, [1, c, 1, 1]).to({ device: o.device });
    const bias = affines.flatMap((a) => a.bias);
    return f.mul(scale).add(tensor(bias, [o.shifts ? n : 1, c, 1, 1]).to({ device: o.device }));
  });
}

interface RawBatch {
  index: number;
  /** One buffer per image: uint8 HWC pixels, or finished float32 HWC images (FolderSource's `finish` workers). */
  parts: ArrayBuffer[];
  labels: number[];
  files: string[];
  seeds: number[];
  skipped: number;
}

/** Batches of an image folder, decoded by a DecodePool and finished in the engine. */
export class FolderSource implements BatchSource {
  readonly numBatches: number;
  skipped = 0;
  /** Files that failed once: skipped without another try in later epochs (and counted again). */
  readonly bad = new Set<string>();
  readonly sampler: Sampler;

  constructor(
    readonly samples: Sample[],
    readonly classes: string[],
    readonly o: FolderSourceOptions,
  ) {
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1)
      throw new UserError(`batch size must be a positive integer, got ${o.batchSize}`);
    if (!samples.length) throw new UserError('the data set split is empty');
    this.sampler = o.sampler ?? defaultSampler(samples.length, o.shuffle, o.seed);
    this.numBatches = Math.ceil(this.sampler.size / o.batchSize);
    // Checked before any image is decoded.
    checkNormalization(o.transform.mean, o.transform.std, o.transform.channels);
  }

  get size(): number {
    return this.sampler.size;
  }

  /** Whether the decode workers finish the images (FolderSourceOptions.finish). */
  get #inWorkers(): boolean {
    if (this.o.mode === 'ten-crop') return false;
    return (this.o.finish ?? (this.o.device === 'cpu' ? 'workers' : 'engine')) === 'workers';
  }

  get crops(): number {
    return this.o.mode === 'ten-crop' ? 10 : 1;
  }

  /** Decodes batch `b` of `epoch` to pixels; unreadable images are dropped (or, strict, refused). */
  async #decode(epoch: number, b: number, order: Int32Array): Promise<RawBatch> {
    const t = this.o.transform;
    const lo = b * this.o.batchSize;
    const idx = Array.from(order.subarray(lo, Math.min(this.size, lo + this.o.batchSize)));
    let skipped = 0;
    const todo = idx.filter((i) => {
      const known = this.bad.has(this.samples[i].file);
      if (known) skipped++;
      return !known;
    });
    const mode: DecodeMode = this.o.mode;
    const items = todo.map((i) => ({ file: this.samples[i].file, seed: imageSeed(this.o.seed, epoch, i) }));
    const results = await this.o.pool.decode(mode, t, items, this.#inWorkers ? 'float32' : 'uint8');
    const per = (mode === 'ten-crop' ? 6 : 1) * t.size * t.size * t.channels * (this.#inWorkers ? 4 : 1);
    const ok: number[] = [];
    results.forEach((r, k) => {
      if (r.ok) {
        if (r.data.byteLength !== per)
          throw new UserError(`${items[k].file}: decoded to ${r.data.byteLength} bytes, expected ${per}`);
        ok.push(k);
        return;
      }
      const file = items[k].file;
      if (this.o.strict)
        throw new UserError(
          `${file}: ${r.reason} (--strict stops at unreadable images; without it they are skipped with a warning)`,
        );
      skipped++;
      if (!this.bad.has(file)) {
        this.bad.add(file);
        this.o.onProblem?.({ file, reason: r.reason });
      }
    });
    return {
      index: b,
      parts: ok.map((k) => (results[k] as { data: ArrayBuffer }).data),
      labels: ok.map((k) => this.samples[todo[k]].label),
      files: ok.map((k) => items[k].file),
      seeds: ok.map((k) => items[k].seed),
      skipped,
    };
  }

  async *batches(epoch: number, start = 0): AsyncGenerator<ReadyBatch> {
    const order = this.sampler.indices(epoch);
    const prefetch = Math.max(1, this.o.prefetch ?? 3);
    const queue: Promise<RawBatch>[] = [];
    let next = start;
    this.skipped = 0;
    const fill = () => {
      while (queue.length < prefetch && next < this.numBatches) {
        const p = this.#decode(epoch, next++, order);
        // Handled where it is awaited; this keeps an abandoned epoch's failures from being "unhandled".
        p.catch(() => undefined);
        queue.push(p);
      }
    };
    fill();
    const t = this.o.transform;
    while (queue.length) {
      const raw = await queue.shift()!;
      fill();
      this.skipped += raw.skipped;
      const n = raw.labels.length;
      if (!n) continue;
      const ten = this.o.mode === 'ten-crop';
      const shape = ten ? [n, 6, t.size, t.size, t.channels] : [n, t.size, t.size, t.channels];
      const train = this.o.mode === 'train';
      // Flips were made by the decode workers (decodeOne), and with `finish` workers everything else too: NHWC
      // viewed as NCHW is the channels-last layout the model takes, without a copy.
      const x = tidy(() =>
        this.#inWorkers
          ? tensorFromBuffers(raw.parts, shape, 'float32').permute(0, 3, 1, 2).to({ device: this.o.device })
          : finishBatch(tensorFromBuffers(raw.parts, shape, 'uint8'), {
              shifts: train && imageShift(t, 0) ? raw.seeds.map((s) => imageShift(t, s)!) : undefined,
              mean: t.mean,
              std: t.std,
              tenCrop: ten,
              device: this.o.device,
            }),
      );
      // The images are in the batch tensor now: their buffers go back to the workers.
      this.o.pool.recycle(raw.parts);
      const y = tensor(raw.labels, [n], 'int64').to({ device: this.o.device });
      yield { index: raw.index, x, y, crops: this.crops, files: raw.files };
    }
  }

  async close(): Promise<void> {
    // The pool is shared (train and validation): its owner closes it.
  }
}
