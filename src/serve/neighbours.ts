// Nearest neighbours for the page (the paper's Figure 4): embeddings that `alexnet features` wrote for test images
// (the queries) and for training images (the gallery), searched by Euclidean distance as the paper did, and the
// data-set images behind each row as small PNGs so the page can show thumbnails.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FormatError, UserError } from '../errors';
import { DEFAULT_FASHION_MNIST_DIR } from '../data/fashion-mnist';
import { readIdx } from '../data/idx';
import { sharpModule } from '../data/image';
import { folderPath } from '../data/image-folder';
import { EmbeddingSet, readEmbeddings } from '../persist/embeddings';
import { ServeError } from './errors';

// The file `alexnet features` writes, read by src/persist/embeddings.ts.
export { readEmbeddings };
export type { EmbeddingSet };

/** One row of an answer: where it comes from and what it is. */
export interface NeighbourItem {
  index: number;
  /** The image's name: `split:index` for IDX data, the path inside the data set's folder for photos. */
  file: string;
  label: number;
  class: string;
  distance?: number;
}

/** A row's description for an answer (no absolute paths: photos are named inside their data set's folder). */
export function describeRow(set: EmbeddingSet, i: number, distance?: number): NeighbourItem {
  const root = folderPath(set.dataset);
  const f = set.files[i];
  const file = root !== undefined && path.isAbsolute(f) ? path.relative(root, f) : f;
  const label = set.labels[i];
  return {
    index: i,
    file,
    label,
    class: set.classes[label] ?? String(label),
    ...(distance !== undefined && { distance }),
  };
}

/**
 * The k gallery rows nearest to query row `q` by Euclidean distance (ties: the lower index first). The sums run in
 * float64 so the distances do not depend on the order of the D terms.
 */
export function nearest(gallery: EmbeddingSet, query: Float32Array, k: number): { index: number; distance: number }[] {
  if (query.length !== gallery.dim)
    throw new UserError(`the query has ${query.length} numbers per row, the gallery ${gallery.dim}`);
  const d = gallery.dim;
  const g = gallery.features;
  const all: { index: number; distance: number }[] = [];
  for (let r = 0; r < gallery.rows; r++) {
    let s = 0;
    for (let j = 0, o = r * d; j < d; j++, o++) {
      const t = g[o] - query[j];
      s += t * t;
    }
    all.push({ index: r, distance: Math.sqrt(s) });
  }
  return all.sort((a, b) => a.distance - b.distance || a.index - b.index).slice(0, k);
}

/** Row `i` of a set's features. */
export function row(set: EmbeddingSet, i: number): Float32Array {
  return set.features.subarray(i * set.dim, (i + 1) * set.dim);
}

const IDX_SPLITS: Record<string, string> = { val: 't10k', test: 't10k', train: 'train' };

const unavailable = (message: string) => new ServeError('not_found', message);

/** Whether `file` is `root` or lies under it. */
const inside = (root: string, file: string) => {
  const r = path.relative(root, file);
  return r === '' || (!r.startsWith('..') && !path.isAbsolute(r));
};

/**
 * Row `i`'s photo file, checked to lie inside the data set's folder both as written and with symbolic links
 * resolved; a 404 naming it (base name only) when it is outside, gone, or the set has no folder.
 */
function photoPath(set: EmbeddingSet, i: number, what: string): string {
  const f = set.files[i];
  const name = `the ${what} image ${path.basename(f)} (row ${i})`;
  const root = folderPath(set.dataset);
  if (root === undefined)
    throw unavailable(`${name} is not in a folder data set (the embeddings name '${set.dataset || 'none'}')`);
  const base = path.resolve(root);
  const file = path.resolve(base, f);
  if (!inside(base, file)) throw unavailable(`${name} is outside the data set's folder: refused`);
  let real: string;
  try {
    real = fs.realpathSync(file);
  } catch {
    throw unavailable(`${name} is missing: it was moved or deleted after alexnet features ran`);
  }
  let realBase = base;
  try {
    realBase = fs.realpathSync(base);
  } catch {
    // the folder itself is gone: the file above was not found either
  }
  if (!inside(realBase, real)) throw unavailable(`${name} is outside the data set's folder: refused`);
  if (!fs.statSync(real).isFile()) throw unavailable(`${name} is not a file`);
  return real;
}

/**
 * Renders a data-set item as a PNG: an IDX image (`split:index`, read from `dataDir`, each split's file loaded once)
 * or a photo file (fitted inside 160 × 160). The file names come from the embeddings file, never from a request.
 */
export class ImageRenderer {
  readonly #idx = new Map<string, { width: number; height: number; data: Uint8Array }>();

  constructor(readonly dataDir: string = DEFAULT_FASHION_MNIST_DIR) {}

  /**
   * Row `i`'s image as a PNG. A photo must lie inside the data set's folder (symbolic links resolved): a crafted file
   * list never reads anything else. A photo moved, deleted or damaged since `alexnet features` ran is a 404 that
   * names it by its base name (`set` names the file list in the message: gallery or queries).
   */
  async png(set: EmbeddingSet, i: number, what = 'image'): Promise<Buffer> {
    const f = set.files[i];
    const m = /^(\w+):(\d+)$/.exec(f);
    if (m && IDX_SPLITS[m[1]] && folderPath(set.dataset) === undefined) return this.#idxPng(IDX_SPLITS[m[1]], +m[2]);
    const file = photoPath(set, i, what);
    try {
      return await sharpModule()(file, { limitInputPixels: 100_000_000, failOn: 'error' })
        .rotate()
        .resize(160, 160, { fit: 'inside', withoutEnlargement: true })
        .png()
        .toBuffer();
    } catch (e) {
      const why = String((e as Error)?.message ?? e).split('\n')[0];
      throw unavailable(
        `the ${what} image ${path.basename(f)} (row ${i}) cannot be decoded (${why}): it changed after alexnet features ran`,
      );
    }
  }

  #idxPng(prefix: string, index: number): Promise<Buffer> {
    let images = this.#idx.get(prefix);
    if (!images) {
      const base = path.join(this.dataDir, `${prefix}-images-idx3-ubyte`);
      const idx = readIdx(fs.existsSync(base) ? base : `${base}.gz`);
      if (idx.dims.length !== 3) throw new FormatError(`${idx.file}: expected images N×H×W, got ${idx.dims.join('×')}`);
      images = { height: idx.dims[1], width: idx.dims[2], data: idx.data };
      this.#idx.set(prefix, images);
    }
    const size = images.width * images.height;
    if (index * size >= images.data.length)
      throw new FormatError(`${this.dataDir} has no ${prefix} image ${index}: do the embeddings come from this data?`);
    const pixels = images.data.subarray(index * size, (index + 1) * size);
    return sharpModule()(Buffer.from(pixels), { raw: { width: images.width, height: images.height, channels: 1 } })
      .toColourspace('b-w')
      .png()
      .toBuffer();
  }
}
