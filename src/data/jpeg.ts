// JPEG photos decoded by libjpeg-turbo in the addon (src/tensor/jpeg.ts) instead of sharp: the decoder's own
// DCT-domain scaling when the plan shrinks the image by 2, 4 or 8, then crop and antialiased bilinear resize on
// uint8 pixels with torchvision's weights. sharp keeps everything else: PNG, WebP and the other formats, JPEGs
// with an EXIF orientation to apply, CMYK JPEGs, grayscale models, and any JPEG TurboJPEG reports a problem with
// (sharp then decodes it or says what is wrong, as before) — so a file sharp can read never fails here.
//
// Colour: like torchvision's decode_jpeg and PIL, the pixels are the JPEG's RGB; an embedded ICC profile is not
// applied.
//
// ALEXNET_JPEG_DECODER=sharp (or the pool's `jpegDecoder` option) sends every JPEG through sharp, for comparison.
import { UserError } from '../errors';
import { jpegAvailable, jpegDecode, jpegDecodeAsync, JpegDecodeOptions, jpegHeader } from '../tensor/jpeg';
import { MAX_PIXELS } from './limits';
import { Plan } from './transforms';

export type JpegDecoder = 'turbojpeg' | 'sharp';
export const JPEG_DECODERS: JpegDecoder[] = ['turbojpeg', 'sharp'];

/** The decoder chosen by ALEXNET_JPEG_DECODER (default turbojpeg). */
export function jpegDecoderFromEnv(env: NodeJS.ProcessEnv = process.env): JpegDecoder {
  const v = env.ALEXNET_JPEG_DECODER?.trim();
  if (!v) return 'turbojpeg';
  if (!(JPEG_DECODERS as string[]).includes(v))
    throw new UserError(`ALEXNET_JPEG_DECODER must be ${JPEG_DECODERS.join(' or ')}, got '${v}'`);
  return v as JpegDecoder;
}

let available: boolean | undefined;

/** Whether TurboJPEG decoding can be used in this thread (the addon loads and was built with it). */
export function turboAvailable(): boolean {
  if (available === undefined) {
    try {
      available = jpegAvailable();
    } catch {
      available = false;
    }
  }
  return available;
}

/**
 * A JPEG's size from its header alone (TurboJPEG: microseconds, where sharp's metadata sets up a pipeline), or
 * undefined when TurboJPEG is not used here or cannot read the header (sharp then reads it, or says why not).
 */
export function jpegSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  if (jpegDecoderFromEnv() !== 'turbojpeg' || !turboAvailable()) return undefined;
  try {
    const h = jpegHeader(bytes);
    return h.width > 0 && h.height > 0 ? { width: h.width, height: h.height } : undefined;
  } catch {
    return undefined;
  }
}

/** A file name that says JPEG (the bytes are checked too). */
export const isJpegName = (file: string): boolean => /\.jpe?g$/i.test(file);

/** Options of one decode: DCT scaling on by default; FASTDCT (less accurate IDCT) and flipping off. */
export interface TurboOptions {
  dctScaling?: boolean;
  fastDct?: boolean;
  /** Mirror the crops left to right. */
  flip?: boolean;
  /** Float32 output, each pixel v · scale[c] + bias[c] (transforms.ts pixelAffine); default uint8. */
  affine?: { scale: number[]; bias: number[] };
  /** Called with the output's byte length: a recycled buffer of that size to write into, if there is one. */
  into?: (bytes: number) => ArrayBuffer | undefined;
}

/** jpegDecode's options for this JPEG, or undefined when sharp should decode it instead. */
function prepare(
  bytes: Uint8Array,
  channels: number,
  plan: (width: number, height: number) => Plan,
  o: TurboOptions,
): JpegDecodeOptions | undefined {
  if (channels !== 3 || bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  const h = jpegHeader(bytes);
  if (h.orientation !== 1 || (h.colorspace !== 'ycbcr' && h.colorspace !== 'gray' && h.colorspace !== 'rgb'))
    return undefined;
  // Over the pixel limit: sharp refuses it with its own message, before decoding.
  if (h.width * h.height > MAX_PIXELS) return undefined;
  const p = plan(h.width, h.height);
  const size = p.outW * p.outH * channels * p.crops.length * (o.affine ? 4 : 1);
  const into = o.into?.(size);
  return {
    channels,
    resizeW: p.resizeW,
    resizeH: p.resizeH,
    outW: p.outW,
    outH: p.outH,
    crops: p.crops.flatMap((c) => [c.left, c.top, c.width, c.height]),
    dctScaling: o.dctScaling ?? true,
    fastDct: o.fastDct ?? false,
    flip: o.flip ?? false,
    maxPixels: MAX_PIXELS,
    ...(o.affine ? { affine: [...o.affine.scale, ...o.affine.bias] } : {}),
    ...(into ? { into } : {}),
  };
}

/**
 * The pixels of `plan(width, height)` applied to the JPEG in `bytes` (interleaved HWC, crops one after another),
 * or undefined when sharp should decode it instead. Decodes in this thread (the photo pipeline's workers).
 */
export function decodeJpeg(
  bytes: Uint8Array,
  channels: number,
  plan: (width: number, height: number) => Plan,
  o: TurboOptions = {},
): ArrayBuffer | undefined {
  try {
    const options = prepare(bytes, channels, plan, o);
    return options && jpegDecode(bytes, options).data;
  } catch {
    // Truncated, damaged or unusual data: sharp decodes it or reports it.
    return undefined;
  }
}

/** decodeJpeg on libuv's thread pool: for a thread that must stay free meanwhile (the server's, predict's). */
export async function decodeJpegAsync(
  bytes: Uint8Array,
  channels: number,
  plan: (width: number, height: number) => Plan,
  o: TurboOptions = {},
): Promise<ArrayBuffer | undefined> {
  try {
    const options = prepare(bytes, channels, plan, o);
    return options && (await jpegDecodeAsync(bytes, options)).data;
  } catch {
    return undefined;
  }
}
