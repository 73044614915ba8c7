// Uploads checked before they are decoded: the format from the first bytes (an allow-list: sharp would decode SVG,
// and an SVG can pull in other files), the pixel count from the header alone (an image bomb is refused before
// any decoding), and then decoding as `alexnet predict` does it (EXIF rotation, alpha, grayscale, CMYK, 16-bit).
import { decodeInput, InputGeometry } from '../infer/predictor';
import { ALLOWED_FORMATS, decodeFailure, formatProblem, ImageError, sharpModule } from '../data/image';
import { jpegSize } from '../data/jpeg';
import { ServeError } from './errors';

export { ALLOWED_FORMATS } from '../data/image';
const EXPECTED = 'expected a JPEG, PNG, WebP, GIF or TIFF image';

export interface CheckedImage {
  format: string;
  width: number;
  height: number;
}

/** Checks an upload's format and size from its header only; throws a ServeError (415, 413 or 400). */
export async function checkUpload(b: Buffer, maxPixels: number): Promise<CheckedImage> {
  if (!b.length) throw new ServeError('empty_body', `${EXPECTED}, got an empty body`);
  // The allow-list and its words are `alexnet predict`'s (src/data/image.ts).
  const problem = formatProblem(b);
  if (problem) throw new ServeError('unsupported_format', problem);
  // A JPEG's header by TurboJPEG (microseconds); anything else, or a header it cannot read, by sharp.
  const jpeg = jpegSize(b);
  let m: { width?: number; height?: number; format?: string } = { ...jpeg, format: 'jpeg' };
  if (!jpeg)
    try {
      // No pixel limit here: the header is read, never the pixels, and the count is checked below with our limit.
      m = await sharpModule()(b, { limitInputPixels: false }).metadata();
    } catch (e) {
      throw new ServeError('corrupt_image', decodeFailure('upload', e).reason);
    }
  if (!m.width || !m.height)
    throw new ServeError('corrupt_image', 'damaged or truncated image (no size in the header)');
  const seen = m.format === 'jpg' ? 'jpeg' : m.format;
  if (!seen || !(ALLOWED_FORMATS as readonly string[]).includes(seen))
    throw new ServeError('unsupported_format', `${EXPECTED}, got ${m.format ?? 'an unknown format'}`);
  if (m.width * m.height > maxPixels)
    throw new ServeError(
      'too_many_pixels',
      `at most ${maxPixels.toLocaleString('en-US')} pixels (--max-pixels), got ${m.width}×${m.height} = ` +
        `${(m.width * m.height).toLocaleString('en-US')}`,
    );
  return { format: seen, width: m.width, height: m.height };
}

/**
 * Decodes a checked upload to the model's planar uint8 input, exactly as `alexnet predict` decodes a file
 * (sharp runs on libuv's threadpool: the event loop is not blocked). Damaged or truncated data: 400.
 */
export async function decodeUpload(b: Buffer, g: InputGeometry): Promise<Uint8Array> {
  try {
    return await decodeInput({ name: 'upload', data: b }, g);
  } catch (e) {
    // As `alexnet predict` words it (src/data/image.ts): 'damaged or truncated image (…)'.
    const reason = e instanceof ImageError ? e.reason : decodeFailure('upload', e).reason;
    throw new ServeError('corrupt_image', reason);
  }
}

/**
 * A bound on decodes running at once. sharp runs on libuv's pool (4 threads by default); on a small machine those
 * threads preempt the engine's own, and every preempted thread stalls the others at oneDNN's barriers: measured on
 * 2 cores (bf16, 32 clients, 500×375 JPEGs), 93 req/s with both cores for each, 137 with one core for the engine
 * and one decode at a time. With `yieldToEngine` (an engine on every core), no decode starts while a forward pass
 * runs (`engineRuns`): decoding takes the cores between forward passes instead of stalling them, so each image costs
 * its engine time and its decoding time on the whole machine, the ideal pipelined rate. Waiters are served in
 * arrival order.
 */
export class DecodeGate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  /** Forward passes running now (counted only with yieldToEngine). */
  private forwards = 0;

  constructor(
    readonly limit: number,
    readonly yieldToEngine = false,
  ) {}

  /** Decodes running or waiting: images a batcher will soon be given (or refused). */
  get pending(): number {
    return this.running + this.waiting.length;
  }

  /** A forward pass runs until `done` settles: with yieldToEngine, decodes wait meanwhile (running ones finish). */
  engineRuns(done: Promise<unknown>): void {
    if (!this.yieldToEngine) return;
    this.forwards++;
    const end = () => {
      this.forwards--;
      this.admit();
    };
    done.then(end, end);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running < this.limit && !this.forwards) this.running++;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await fn();
    } finally {
      this.running--;
      this.admit();
    }
  }

  /** Starts waiters, oldest first, while there is room and no forward pass to yield to. */
  private admit(): void {
    while (this.running < this.limit && !this.forwards && this.waiting.length) {
      this.running++;
      this.waiting.shift()!();
    }
  }
}
