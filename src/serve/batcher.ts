// Dynamic batching as Triton does it: requests wait in a queue; a batch runs when it is full (`maxBatch`) or when
// its oldest request has waited `maxDelayMs`; one forward pass at a time per engine, while the next batch forms.
// Each request gets its own rows of the batch's logits; an engine error fails only that batch's requests. An item
// is an image's pixels or a preprocessed input tensor (the Open Inference Protocol's); a batch holds one kind, oldest
// first.
import { tensorShape } from '../infer/predictor';
import { Engine } from './types';

export interface BatcherOptions {
  maxBatch: number;
  maxDelayMs: number;
  /** Told about every forward pass (metrics). */
  onBatch?: (size: number, seconds: number) => void;
  /** Told when the queue's length changes (metrics). */
  onQueue?: (length: number) => void;
  /** Told of every forward pass as it starts, with its end (the decode gate yields the cores to it). */
  onForward?: (done: Promise<unknown>) => void;
  /**
   * Images being decoded that will be submitted soon (the decode gate's): a batch short of maxBatch waits for them
   * past maxDelayMs, up to FILL_WAIT_MS, rather than run small while they decode.
   */
  upcoming?: () => number;
}

/**
 * How long past maxDelayMs a batch short of maxBatch waits for images still decoding: about a batch's decoding on a
 * slow, loaded 2-core machine (16 × 500×375 JPEGs took 300 ms there). Decodes that fail leave `upcoming` at once.
 */
export const FILL_WAIT_MS = 500;

/** One image's answer: its logits and how long it waited and ran. */
export interface BatchResult {
  logits: Float32Array;
  queueMs: number;
  inferenceMs: number;
  batchSize: number;
}

type Input = { kind: 'pixels'; data: Uint8Array } | { kind: 'tensor'; data: Float32Array };

interface Item {
  input: Input;
  at: number;
  resolve: (r: BatchResult) => void;
  reject: (e: Error) => void;
}

export class Batcher {
  private queue: Item[] = [];
  private running: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private idle: (() => void)[] = [];
  /** Forward passes run so far. */
  forwards = 0;
  /** Set by a reload: new work goes there, while what this batcher had admitted drains on its own engine. */
  private successor: Batcher | undefined;

  constructor(
    readonly engine: Engine,
    readonly o: BatcherOptions,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  /**
   * Classifies one image (planar uint8 of the engine's geometry) in the next batch with room. After `retire`, an
   * image of the successor's geometry goes to the successor (a request that took this batcher before a reload and
   * submits after it is answered by the new model, never by a closed engine).
   */
  submit(pixels: Uint8Array): Promise<BatchResult> {
    const next = this.successor;
    if (next && pixels.length === Batcher.imageSize(next.engine)) return next.submit(pixels);
    return this.enqueue({ kind: 'pixels', data: pixels });
  }

  /**
   * Classifies one preprocessed input (float32 C × H × W at the model's input size) in the next batch of inputs with
   * room; the engine must offer `forward`. After `retire`, an input of the successor's size goes to the successor.
   */
  submitTensor(input: Float32Array): Promise<BatchResult> {
    const next = this.successor;
    if (next && input.length === Batcher.tensorSize(next.engine)) return next.submitTensor(input);
    if (!this.engine.forward) return Promise.reject(new Error('this engine takes decoded images only'));
    return this.enqueue({ kind: 'tensor', data: input });
  }

  private enqueue(input: Input): Promise<BatchResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ input, at: performance.now(), resolve, reject });
      this.o.onQueue?.(this.queue.length);
      this.pump();
    });
  }

  /**
   * Hands new work to `next` (a reload; called in the same tick as the swap, so no image is lost between them):
   * batches running and images queued here still run on this engine, and `drained()` then says it may close.
   */
  retire(next: Batcher): void {
    this.successor = next;
  }

  private static tensorSize(engine: Engine): number {
    return tensorShape(engine.record, engine.geometry).reduce((a, b) => a * b, 1);
  }

  private static imageSize(engine: Engine): number {
    const g = engine.card.geometry;
    return g.channels * g.height * g.width;
  }

  /** Runs every batch size 1..maxBatch once: a size's first forward pass is slow (kernels chosen, memory grown). */
  async warm(): Promise<void> {
    const size = Batcher.imageSize(this.engine);
    for (let n = 1; n <= this.o.maxBatch; n++) await this.engine.logits(new Uint8Array(n * size), n);
  }

  /** Resolves once the queue is empty and no forward pass runs (queued requests are all answered first). */
  drained(): Promise<void> {
    if (!this.running && !this.queue.length) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  private pump(): void {
    if (this.running || !this.queue.length) {
      if (!this.running) this.idle.splice(0).forEach((f) => f());
      return;
    }
    const waited = performance.now() - this.queue[0].at;
    const filling = waited < this.o.maxDelayMs + FILL_WAIT_MS && (this.o.upcoming?.() ?? 0) > 0;
    if (this.queue.length >= this.o.maxBatch || (waited >= this.o.maxDelayMs && !filling)) {
      clearTimeout(this.timer);
      this.timer = undefined;
      const batch = this.takeBatch();
      this.o.onQueue?.(this.queue.length);
      this.running = this.run(batch).finally(() => {
        this.running = undefined;
        this.pump();
      });
      this.o.onForward?.(this.running);
    } else if (!this.timer) {
      // Past maxDelayMs (waiting for decodes), look again every maxDelayMs: a failed decode submits nothing.
      this.timer = setTimeout(
        () => {
          this.timer = undefined;
          this.pump();
        },
        Math.max(1, waited < this.o.maxDelayMs ? this.o.maxDelayMs - waited : this.o.maxDelayMs),
      );
    }
  }

  /** Up to maxBatch items of the oldest item's kind, oldest first; the others keep their places. */
  private takeBatch(): Item[] {
    const kind = this.queue[0].input.kind;
    const batch: Item[] = [];
    const rest: Item[] = [];
    for (const item of this.queue)
      (item.input.kind === kind && batch.length < this.o.maxBatch ? batch : rest).push(item);
    this.queue = rest;
    return batch;
  }

  /** The batch's inputs in one array, through the engine. */
  private forward(batch: Item[]): Promise<Float32Array> {
    const n = batch.length;
    const first = batch[0].input;
    const size = first.data.length;
    if (first.kind === 'pixels') {
      const pixels = new Uint8Array(n * size);
      batch.forEach((b, i) => pixels.set(b.input.data as Uint8Array, i * size));
      return this.engine.logits(pixels, n);
    }
    const input = new Float32Array(n * size);
    batch.forEach((b, i) => input.set(b.input.data as Float32Array, i * size));
    return this.engine.forward!(input, n);
  }

  private async run(batch: Item[]): Promise<void> {
    const n = batch.length;
    const start = performance.now();
    this.forwards++;
    try {
      const logits = await this.forward(batch);
      const end = performance.now();
      this.o.onBatch?.(n, (end - start) / 1000);
      const c = logits.length / n;
      batch.forEach((b, i) =>
        b.resolve({
          logits: logits.slice(i * c, (i + 1) * c),
          queueMs: start - b.at,
          inferenceMs: end - start,
          batchSize: n,
        }),
      );
    } catch (e) {
      batch.forEach((b) => b.reject(e as Error));
    }
  }
}
