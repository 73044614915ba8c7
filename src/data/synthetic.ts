// Generated image-folder data sets, for tests, the pipeline benchmark and trying things out without a download:
// drawn shapes (a class per shape, random colours, sizes and places) or photo-sized noise, as JPEG, PNG or WebP.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { sharpModule } from './image';
import { mulberry32 } from './sampler';

export type Shape = 'circle' | 'square' | 'triangle' | 'cross';
export const SHAPES: Shape[] = ['circle', 'square', 'triangle', 'cross'];

export interface SyntheticOptions {
  /** The classes: shapes (default circle, square, triangle) or 'noise' photos for benchmarks. */
  shapes?: Shape[];
  perClass: number;
  width?: number;
  height?: number;
  /** Formats used in turn (default jpeg and png). */
  formats?: ('jpeg' | 'png' | 'webp')[];
  seed?: number;
  /** Give each class its own colour family as well as its shape (an easier task, for quick tests). */
  colourByClass?: boolean;
}

/** A random colour with every channel in [lo, lo + 100). */
const colour = (rand: () => number, lo: number) =>
  '#' +
  Array.from({ length: 3 }, () =>
    Math.floor(lo + rand() * 100)
      .toString(16)
      .padStart(2, '0'),
  ).join('');

function shapeSvg(shape: Shape, w: number, h: number, rand: () => number, classColour?: number): string {
  const s = Math.min(w, h) * (0.35 + 0.35 * rand());
  const cx = s / 2 + rand() * (w - s);
  const cy = s / 2 + rand() * (h - s);
  // Keep the shape visible: light on dark or dark on light.
  const light = classColour === undefined ? rand() < 0.5 : true;
  let fg = colour(rand, light ? 150 : 0);
  const bg = colour(rand, light ? 0 : 150);
  if (classColour !== undefined) {
    // Saturate the class's own channel on a dark background: red, green or blue family.
    const ch = ['ff', '40', '40'];
    const k = classColour % 3;
    [ch[0], ch[k]] = [ch[k], ch[0]];
    fg = '#' + ch.join('');
  }
  const r = s / 2;
  const body = {
    circle: `<circle cx="${cx}" cy="${cy}" r="${r}"/>`,
    square: `<rect x="${cx - r}" y="${cy - r}" width="${s}" height="${s}"/>`,
    triangle: `<polygon points="${cx},${cy - r} ${cx + r},${cy + r} ${cx - r},${cy + r}"/>`,
    cross: `<path d="M${cx - r},${cy - r / 3}h${s}v${(2 * r) / 3}h${-s}zM${cx - r / 3},${cy - r}h${(2 * r) / 3}v${s}h${(-2 * r) / 3}z"/>`,
  }[shape];
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}"><rect width="100%" height="100%" fill="${bg}"/><g fill="${fg}">${body}</g></svg>`;
}

/** Writes root/<shape>/<n>.<ext> and returns the files written. */
export async function writeShapesFolder(root: string, o: SyntheticOptions): Promise<string[]> {
  const shapes = o.shapes ?? ['circle', 'square', 'triangle'];
  const formats = o.formats ?? ['jpeg', 'png'];
  const w = o.width ?? 96;
  const h = o.height ?? 80;
  const sharp = sharpModule();
  const files: string[] = [];
  for (const [ci, shape] of shapes.entries()) {
    const rand = mulberry32((o.seed ?? 0) * 7919 + ci + 1);
    fs.mkdirSync(path.join(root, shape), { recursive: true });
    for (let i = 0; i < o.perClass; i++) {
      const fmt = formats[i % formats.length];
      const file = path.join(root, shape, `${String(i).padStart(4, '0')}.${fmt === 'jpeg' ? 'jpg' : fmt}`);
      await sharp(Buffer.from(shapeSvg(shape, w, h, rand, o.colourByClass ? ci : undefined)))
        .toFormat(fmt, fmt === 'jpeg' ? { quality: 90 } : {})
        .toFile(file);
      files.push(file);
    }
  }
  return files;
}

/**
 * Photo-sized images for the pipeline benchmark: smooth colour fields with noise, so JPEG decoding costs what a
 * camera photo of that size costs. root/class<k>/<n>.jpg.
 */
export async function writeNoisePhotos(
  root: string,
  o: { classes: number; perClass: number; width?: number; height?: number; seed?: number },
): Promise<string[]> {
  const w = o.width ?? 500;
  const h = o.height ?? 375;
  const sharp = sharpModule();
  const files: string[] = [];
  const rand = mulberry32(o.seed ?? 0);
  for (let c = 0; c < o.classes; c++) {
    fs.mkdirSync(path.join(root, `class${c}`), { recursive: true });
    for (let i = 0; i < o.perClass; i++) {
      const px = Buffer.allocUnsafe(w * h * 3);
      const base = [rand() * 255, rand() * 255, rand() * 255];
      const grad = [rand() - 0.5, rand() - 0.5, rand() - 0.5];
      for (let y = 0, p = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          for (let k = 0; k < 3; k++, p++)
            px[p] = Math.max(0, Math.min(255, base[k] + grad[k] * (x + y) * 0.5 + (rand() - 0.5) * 60));
        }
      }
      const file = path.join(root, `class${c}`, `${String(i).padStart(5, '0')}.jpg`);
      await sharp(px, { raw: { width: w, height: h, channels: 3 } })
        .jpeg({ quality: 90 })
        .toFile(file);
      files.push(file);
    }
  }
  return files;
}
