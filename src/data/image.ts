// Decoding user images (PNG, JPEG, WebP, …) with sharp (libvips), converted to what a model was trained on.
import * as fs from 'node:fs';
import { UserError } from '../errors';

/** Refuse images with more pixels than this (image bombs); sharp enforces it while decoding. */
export const MAX_PIXELS = 100_000_000;

/**
 * Decodes `file` to raw uint8 pixels, C×H×W (planar), with `channels` 1 (grayscale) or 3 (RGB), at
 * height×width: either resized to it directly (the aspect ratio is not kept: as the data set's images were made)
 * or, with `shortSide`, resized so that the short side has that length and then centre-cropped (torchvision's
 * Resize + CenterCrop, for photos).
 */
export async function loadImageAs(file: string, channels: number, height: number, width: number, shortSide?: number): Promise<Uint8Array> {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new UserError(`cannot read ${file}: no such file`);
  }
  if (!stat.isFile()) throw new UserError(`${file} is not a file`);
  if (stat.size === 0) throw new UserError(`${file} is empty (0 bytes), not an image`);
  if (channels !== 1 && channels !== 3) throw new UserError(`models take 1 or 3 channels, this one ${channels}`);
  const sharp = (await import('sharp')).default;
  let data: Buffer;
  try {
    let img = sharp(file, { limitInputPixels: MAX_PIXELS, failOn: 'error' }).rotate().flatten({ background: '#ffffff' });
    img = channels === 1 ? img.grayscale() : img.toColourspace('srgb');
    if (shortSide) {
      const meta = await sharp(file, { limitInputPixels: MAX_PIXELS }).metadata();
      // EXIF orientations 5–8 rotate by 90°: .rotate() above swaps width and height for them.
      const swap = (meta.orientation ?? 1) >= 5;
      const [w0, h0] = swap ? [meta.height ?? 1, meta.width ?? 1] : [meta.width ?? 1, meta.height ?? 1];
      const scale = shortSide / Math.min(w0, h0);
      const rw = Math.max(width, Math.round(w0 * scale));
      const rh = Math.max(height, Math.round(h0 * scale));
      const resized = await img.resize(rw, rh, { fit: 'fill', kernel: 'linear' }).raw().toBuffer({ resolveWithObject: true });
      img = sharp(resized.data, { raw: { width: rw, height: rh, channels: resized.info.channels } })
        .extract({ left: Math.floor((rw - width) / 2), top: Math.floor((rh - height) / 2), width, height });
      data = await img.raw().toBuffer();
    } else {
      data = await img.resize(width, height, { fit: 'fill', kernel: 'linear' }).raw().toBuffer();
    }
  } catch (e) {
    const why = (e as Error).message.replace(/^Input file /, '');
    throw new UserError(`${file} is not an image that can be read (${why}); expected PNG, JPEG, WebP, GIF or TIFF`);
  }
  const hw = height * width;
  const got = data.length / hw;
  const out = new Uint8Array(channels * hw);
  // sharp gives interleaved HWC; the engine wants planar CHW.
  for (let c = 0; c < channels; c++) for (let i = 0; i < hw; i++) out[c * hw + i] = data[i * got + Math.min(c, got - 1)];
  return out;
}
