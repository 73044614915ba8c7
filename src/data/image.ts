// Decoding images (PNG, JPEG, WebP, GIF, TIFF) with sharp (libvips): the size after EXIF rotation, and the pixels
// of a transform plan (resize, crops) as interleaved uint8 HWC — the layout the engine takes as channels-last.
import * as fs from 'node:fs';
import type { Sharp } from 'sharp';
import { UserError } from '../errors';
import { decodeJpegAsync, jpegDecoderFromEnv, turboAvailable } from './jpeg';
import { MAX_PIXELS } from './limits';
import { Plan, planCenter, roundHalfEven } from './transforms';

/** Refuse images with more pixels than this (image bombs): sharp checks it from the header, before decoding. */
export { MAX_PIXELS };
/** libvips gives up on one image after this many seconds (a pathological file never hangs a run). */
export const DECODE_TIMEOUT_S = 60;

/** A file that is not a usable image; `reason` is short and says what is wrong with it. */
export class ImageError extends UserError {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

/**
 * The formats a single image to classify may have (`alexnet predict`, the server's uploads): an allow-list read
 * from the first bytes, because sharp would also render SVG (which can pull in other files) and a dozen formats
 * nobody meant to accept. The one decision both the CLI and the server call.
 */
export const ALLOWED_FORMATS = ['jpeg', 'png', 'webp', 'gif', 'tiff'] as const;

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

/** A few words on what bytes outside the allow-list look like. */
function describeBytes(b: Buffer): string {
  const head = b.toString('utf8', 0, Math.min(b.length, 512)).trimStart().toLowerCase();
  if (head.startsWith('<svg') || (head.startsWith('<?xml') && head.includes('<svg'))) return 'an SVG image';
  if (head.startsWith('<')) return 'HTML or XML';
  if (starts(b, 0x25, 0x50, 0x44, 0x46)) return 'a PDF';
  if (ascii(b, 4, 'ftyp')) return 'an HEIF/AVIF or video file';
  if (starts(b, 0x42, 0x4d)) return 'a BMP image';
  if (/^[\x09\x0a\x0d\x20-\x7e]*$/.test(b.toString('latin1', 0, Math.min(b.length, 64)))) return 'text';
  return `unknown bytes (${b.subarray(0, 4).toString('hex')})`;
}

/** Why an image whose first bytes are `head` is refused, or undefined when its format is on the allow-list. */
export function formatProblem(head: Buffer): string | undefined {
  if (sniffFormat(head)) return undefined;
  return `not an image that can be read (expected a JPEG, PNG, WebP, GIF or TIFF image, got ${describeBytes(head)})`;
}

/** The first bytes of an input (512 of a file). */
function headOf(input: ImageInput): Buffer {
  if (typeof input !== 'string') return input.data.subarray(0, 512);
  const fd = fs.openSync(input, 'r');
  try {
    const b = Buffer.alloc(512);
    return b.subarray(0, fs.readSync(fd, b, 0, b.length, 0));
  } finally {
    fs.closeSync(fd);
  }
}

/** Throws the ImageError of an input that is not a file of the allow-list (see ALLOWED_FORMATS). */
export function checkAllowedFormat(input: ImageInput): void {
  checkFile(input);
  const problem = formatProblem(headOf(input));
  if (problem) throw new ImageError(inputName(input), problem);
}

type SharpFn = typeof import('sharp');
let sharpFn: SharpFn | undefined;
export function sharpModule(): SharpFn {
  sharpFn ??= require('sharp') as SharpFn;
  return sharpFn;
}

/** An image to decode: a file path, or bytes already in memory (an upload) with a name for messages. */
export type ImageInput = string | { name: string; data: Buffer };

export const inputName = (input: ImageInput): string => (typeof input === 'string' ? input : input.name);

function checkFile(input: ImageInput): void {
  if (typeof input !== 'string') {
    if (input.data.length === 0) throw new ImageError(input.name, 'empty (0 bytes), not an image');
    return;
  }
  const file = input;
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ImageError(
      file,
      code === 'ELOOP' ? 'a symbolic link loop' : code === 'EACCES' ? 'permission denied' : 'no such file',
    );
  }
  if (!stat.isFile()) throw new ImageError(file, 'not a file');
  if (stat.size === 0) throw new ImageError(file, 'empty (0 bytes), not an image');
}

/** A decoding failure of `file` as the ImageError that says in a few words what is wrong (the CLI and the server). */
export function decodeFailure(file: string, e: unknown): ImageError {
  if (e instanceof ImageError) return e;
  const msg = String((e as Error)?.message ?? e)
    .replace(/^Input file /, '')
    .replace(/^Input buffer /, '');
  if (/pixel limit/i.test(msg))
    return new ImageError(
      file,
      `too many pixels (over ${MAX_PIXELS.toLocaleString('en-US')}: refused as a possible image bomb)`,
    );
  if (/unsupported image format/i.test(msg))
    return new ImageError(file, 'not an image that can be read (expected PNG, JPEG, WebP, GIF or TIFF)');
  if (/timeout/i.test(msg)) return new ImageError(file, `decoding took over ${DECODE_TIMEOUT_S} s`);
  return new ImageError(file, `damaged or truncated image (${msg.split('\n')[0]})`);
}

/** The decoding pipeline's start: EXIF orientation applied, transparency flattened on white, sRGB or grayscale. */
function open(input: ImageInput, channels: number): Sharp {
  const img = sharpModule()(typeof input === 'string' ? input : input.data, {
    limitInputPixels: MAX_PIXELS,
    failOn: 'error',
  })
    .timeout({ seconds: DECODE_TIMEOUT_S })
    .rotate()
    .flatten({ background: '#ffffff' });
  return channels === 1 ? img.grayscale() : img.toColourspace('srgb');
}

/** Width and height as displayed (EXIF orientations 5–8 turn the stored image by 90°). */
export async function imageSize(input: ImageInput): Promise<{ width: number; height: number }> {
  checkFile(input);
  try {
    const m = await sharpModule()(typeof input === 'string' ? input : input.data, {
      limitInputPixels: MAX_PIXELS,
    }).metadata();
    if (!m.width || !m.height) throw new Error('no image size in the header');
    if (m.width * m.height > MAX_PIXELS) throw new Error('pixel limit');
    return (m.orientation ?? 1) >= 5 ? { width: m.height, height: m.width } : { width: m.width, height: m.height };
  } catch (e) {
    throw decodeFailure(inputName(input), e);
  }
}

/**
 * The pixels of `plan` applied to `file`: crops.length images of outH×outW×channels, one after another.
 * Throws ImageError for anything that is not a readable image.
 */
export async function renderPlan(
  file: ImageInput,
  plan: Plan,
  channels: number,
  size?: { width: number; height: number },
): Promise<Buffer> {
  if (channels !== 1 && channels !== 3) throw new UserError(`models take 1 or 3 channels, this one ${channels}`);
  const { width, height } = size ?? (await imageSize(file));
  const resized = plan.resizeW !== width || plan.resizeH !== height;
  const crop = plan.crops[0];
  const cropIsOut = crop.width === plan.outW && crop.height === plan.outH;
  const raw = async (img: Sharp, w: number, h: number) => {
    const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
    if (info.width !== w || info.height !== h || info.channels !== channels)
      throw new Error(`decoded to ${info.width}×${info.height}×${info.channels}, expected ${w}×${h}×${channels}`);
    return data;
  };
  try {
    if (plan.crops.length === 1) {
      let img = open(file, channels);
      if (resized) img = img.resize(plan.resizeW, plan.resizeH, { fit: 'fill', kernel: 'linear' });
      img = img.extract({ left: crop.left, top: crop.top, width: crop.width, height: crop.height });
      if (!cropIsOut) {
        if (resized) throw new Error('a plan cannot both resize the image and resize its crop');
        img = img.resize(plan.outW, plan.outH, { fit: 'fill', kernel: 'linear' });
      }
      return await raw(img, plan.outW, plan.outH);
    }
    // Several crops (testing): decode and resize once, then copy the crops out row by row.
    const base = await raw(
      resized
        ? open(file, channels).resize(plan.resizeW, plan.resizeH, { fit: 'fill', kernel: 'linear' })
        : open(file, channels),
      plan.resizeW,
      plan.resizeH,
    );
    const row = plan.outW * channels;
    const out = Buffer.allocUnsafe(plan.crops.length * plan.outH * row);
    plan.crops.forEach((c, i) => {
      if (c.width !== plan.outW || c.height !== plan.outH)
        throw new Error('multi-crop plans take crops of the output size');
      for (let y = 0; y < c.height; y++) {
        const src = ((c.top + y) * plan.resizeW + c.left) * channels;
        base.copy(out, (i * plan.outH + y) * row, src, src + row);
      }
    });
    return out;
  } catch (e) {
    throw decodeFailure(inputName(file), e);
  }
}

/**
 * The HWC pixels of a JPEG input decoded by libjpeg-turbo in the addon (src/data/jpeg.ts), or undefined when it is
 * not a JPEG, ALEXNET_JPEG_DECODER=sharp, or TurboJPEG leaves it to sharp (EXIF-rotated, CMYK, damaged: sharp then
 * decodes it or says what is wrong).
 */
async function turboPixels(file: ImageInput, plan: (w: number, h: number) => Plan): Promise<Uint8Array | undefined> {
  if (jpegDecoderFromEnv() !== 'turbojpeg' || !turboAvailable()) return undefined;
  let bytes: Buffer;
  if (typeof file === 'string') {
    if (sniffFormat(headOf(file)) !== 'jpeg') return undefined;
    try {
      bytes = await fs.promises.readFile(file);
    } catch {
      return undefined;
    }
  } else bytes = file.data;
  if (sniffFormat(bytes) !== 'jpeg') return undefined;
  const data = await decodeJpegAsync(bytes, 3, plan);
  return data ? new Uint8Array(data) : undefined;
}

/**
 * Decodes `file` to uint8 pixels, C×H×W (planar), with `channels` 1 (grayscale) or 3 (RGB), at height×width:
 * either resized to it directly (the aspect ratio is not kept: as the data set's images were made) or, with
 * `shortSide`, resized so that the short side has that length and then centre-cropped (torchvision's Resize +
 * CenterCrop, for photos).
 */
export async function loadImageAs(
  file: ImageInput,
  channels: number,
  height: number,
  width: number,
  shortSide?: number,
): Promise<Uint8Array> {
  if (channels !== 1 && channels !== 3) throw new UserError(`models take 1 or 3 channels, this one ${channels}`);
  checkAllowedFormat(file);
  const planFor = (w: number, h: number): Plan => {
    if (!shortSide)
      return {
        resizeW: width,
        resizeH: height,
        outW: width,
        outH: height,
        crops: [{ left: 0, top: 0, width, height }],
      };
    const plan = planCenter(w, h, { size: Math.max(height, width), shortSide });
    // Non-square inputs: centre the height×width window in the resized image.
    plan.outW = width;
    plan.outH = height;
    plan.crops = [
      {
        left: roundHalfEven((plan.resizeW - width) / 2),
        top: roundHalfEven((plan.resizeH - height) / 2),
        width,
        height,
      },
    ];
    return plan;
  };
  // JPEGs in colour: libjpeg-turbo in the addon, as the training pipeline decodes them (one header read, the crop's
  // rows only, torchvision's resize weights); anything it does not take goes on to sharp below.
  const jpeg = channels === 3 ? await turboPixels(file, planFor) : undefined;
  const size = jpeg ? undefined : await imageSize(file);
  const data = jpeg ?? (await renderPlan(file, planFor(size!.width, size!.height), channels, size));
  const hw = height * width;
  const out = new Uint8Array(channels * hw);
  // sharp gives interleaved HWC; the engine's tensor here is planar CHW.
  for (let c = 0; c < channels; c++) for (let i = 0; i < hw; i++) out[c * hw + i] = data[i * channels + c];
  return out;
}
