// Uploads checked before they are decoded: the format from the first bytes (an allow-list: sharp would decode SVG,
// and an SVG can pull in other files), the pixel count from the header alone (an image bomb is refused before
// any decoding), and then decoding as `alexnet predict` does it (EXIF rotation, alpha, grayscale, CMYK, 16-bit).
import { decodeInput, InputGeometry } from '../infer/predictor';
import { ImageError, sharpModule } from '../data/image';
import { ServeError } from './errors';

export const ALLOWED_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'tiff'] as const;
const EXPECTED = 'expected a JPEG, PNG, WebP, GIF or TIFF image';

const starts = (b: Buffer, ...bytes: number[]) => bytes.every((x, i) => b[i] === x);
const ascii = (b: Buffer, at: number, s: string) => b.toString('latin1', at, at + s.length) === s;

/** The format the first bytes announce, or undefined for anything outside the allow-list. */
export function sniffFormat(b: Buffer): (typeof ALLOWED_FORMATS)[number] | undefined {
  if (starts(b, 0xff, 0xd8, 0xff)) return 'jpeg';
  if (starts(b, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return 'png';
  if (ascii(b, 0, 'RIFF') && ascii(b, 8, 'WEBP')) return 'webp';
  if (ascii(b, 0, 'GIF87a') || ascii(b, 0, 'GIF89a')) return 'gif';
  if (starts(b, 0x49, 0x49, 0x2a, 0x00) || starts(b, 0x4d, 0x4d, 0x00, 0x2a)) return 'tiff';
  return undefined;
}

/** A few words on what a refused upload looks like, for the 415's message. */
function describe(b: Buffer): string {
  const head = b.toString('utf8', 0, Math.min(b.length, 512)).trimStart().toLowerCase();
  if (head.startsWith('<svg') || (head.startsWith('<?xml') && head.includes('<svg'))) return 'an SVG image';
  if (head.startsWith('<')) return 'HTML or XML';
  if (starts(b, 0x25, 0x50, 0x44, 0x46)) return 'a PDF';
  if (ascii(b, 4, 'ftyp')) return 'an HEIF/AVIF or video file';
  if (starts(b, 0x42, 0x4d)) return 'a BMP image';
  if (/^[\x09\x0a\x0d\x20-\x7e]*$/.test(b.toString('latin1', 0, Math.min(b.length, 64)))) return 'text';
  return `unknown bytes (${b.subarray(0, 4).toString('hex')})`;
}

export interface CheckedImage {
  format: string;
  width: number;
  height: number;
}

/** Checks an upload's format and size from its header only; throws a ServeError (415, 413 or 400). */
export async function checkUpload(b: Buffer, maxPixels: number): Promise<CheckedImage> {
  if (!b.length) throw new ServeError('empty_body', `${EXPECTED}, got an empty body`);
  const format = sniffFormat(b);
  if (!format) throw new ServeError('unsupported_format', `${EXPECTED}, got ${describe(b)}`);
  let m: { width?: number; height?: number; format?: string };
  try {
    // No pixel limit here: the header is read, never the pixels, and the count is checked below with our limit.
    m = await sharpModule()(b, { limitInputPixels: false }).metadata();
  } catch (e) {
    throw new ServeError('corrupt_image', `a damaged ${format.toUpperCase()} header (${firstLine(e)})`);
  }
  if (!m.width || !m.height) throw new ServeError('corrupt_image', `a ${format.toUpperCase()} without a size`);
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

const firstLine = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0];

/**
 * Decodes a checked upload to the model's planar uint8 input, exactly as `alexnet predict` decodes a file
 * (sharp runs on libuv's threadpool: the event loop is not blocked). Damaged or truncated data: 400.
 */
export async function decodeUpload(b: Buffer, g: InputGeometry): Promise<Uint8Array> {
  try {
    return await decodeInput({ name: 'upload', data: b }, g);
  } catch (e) {
    const reason = e instanceof ImageError ? e.reason : firstLine(e);
    throw new ServeError('corrupt_image', `the image cannot be decoded: ${reason}`);
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
