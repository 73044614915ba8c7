// The embeddings file: one layer's outputs for the images of a data set, as `alexnet features` writes them and the
// server's neighbours search reads them. A safetensors file: features (float32, N × D) and labels (int64, N), with
// the images' files, the classes, the model, the layer and the data set in its metadata.
import * as fs from 'node:fs';
import { FormatError } from '../errors';
import { parseHeader, saveSafetensors } from '../io/safetensors';
import { Tensor } from '../tensor/tensor';
import { readInputFile } from '../util/files';

export const FEATURES_FORMAT = 'alexnet-ts/features';

/** What an embeddings file holds: N rows of D numbers, a label and a file (or `split:index`) per row. */
export interface Embeddings {
  /** float32, N × D, on the CPU. */
  features: Tensor;
  /** int64, N. */
  labels: Tensor;
  files: string[];
  classes: string[];
  model: string;
  layer: string;
  /** The weights file the model was loaded from. */
  weights: string;
  /** The data set the rows come from ('fashion-mnist', 'mnist' or 'folder:PATH'). */
  dataset: string;
  split: string;
}

/** Writes `e` to `file` (atomically); `what` names the file in errors (e.g. the option that gave it). */
export function writeEmbeddings(file: string, e: Embeddings, what?: string): void {
  saveSafetensors(
    file,
    [
      ['features', e.features],
      ['labels', e.labels],
    ],
    {
      format: FEATURES_FORMAT,
      model: e.model,
      layer: e.layer,
      weights: e.weights,
      dataset: e.dataset,
      split: e.split,
      classes: JSON.stringify(e.classes),
      files: JSON.stringify(e.files),
    },
    what,
  );
}

/** An embeddings file as read back: the numbers as plain arrays, ready to search. */
export interface EmbeddingSet {
  file: string;
  rows: number;
  dim: number;
  features: Float32Array;
  labels: number[];
  files: string[];
  classes: string[];
  /** The data set the rows come from ('fashion-mnist', 'mnist' or 'folder:PATH'). */
  dataset: string;
  layer: string;
  model: string;
  /** The weights file the embeddings were computed with (as `alexnet features` was given it). */
  weights: string;
}

/** What an embeddings file says about itself, from its header alone (a gallery can be 1 GB). */
export type EmbeddingsHeader = Pick<
  EmbeddingSet,
  'file' | 'rows' | 'dim' | 'classes' | 'dataset' | 'layer' | 'model' | 'weights'
>;

/** Reads and checks an embeddings file's header only: the shapes and the metadata, not the numbers. */
export function readEmbeddingsHeader(file: string): EmbeddingsHeader {
  const fd = fs.openSync(file, 'r');
  let head: Buffer;
  let size: number;
  try {
    size = fs.fstatSync(fd).size;
    const len = Buffer.alloc(8);
    fs.readSync(fd, len, 0, 8, 0);
    const n = size >= 8 ? Number(len.readBigUInt64LE(0)) : 0;
    head = Buffer.alloc(8 + Math.max(0, Math.min(n, size - 8, MAX_HEADER_READ)));
    fs.readSync(fd, head, 0, head.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  const { entries, metadata } = parseHeader(head, file, size);
  return describe(file, entries, metadata);
}

/** The header's largest size read for a check (safetensors' own limit is larger than any embeddings header). */
const MAX_HEADER_READ = 256 * 1024 * 1024;

type Header = ReturnType<typeof parseHeader>;

/** The shapes and metadata of an embeddings file, checked. */
function describe(file: string, entries: Header['entries'], metadata: Header['metadata']): EmbeddingsHeader {
  const bad = (why: string) => new FormatError(`${file} is not an embeddings file of alexnet features: ${why}`);
  const f = entries.get('features');
  const l = entries.get('labels');
  if (!f || f.dtype !== 'float32' || f.shape.length !== 2) throw bad('expected a float32 tensor features (N × D)');
  const [rows, dim] = f.shape;
  if (!l || !READERS[l.dtype] || l.shape.length !== 1 || l.shape[0] !== rows)
    throw bad(`expected integer labels, one per row (${rows})`);
  const files = jsonList(metadata.files, 'files', bad).map(String);
  const classes = jsonList(metadata.classes, 'classes', bad).map(String);
  if (files.length !== rows) throw bad(`its file list has ${files.length} entries for ${rows} rows`);
  return {
    file,
    rows,
    dim,
    classes,
    dataset: metadata.dataset ?? '',
    layer: metadata.layer ?? '',
    model: metadata.model ?? '',
    weights: metadata.weights ?? '',
  };
}

/** Label readers by dtype: the writer writes int64; int32 and uint8 are accepted too. */
const READERS: Partial<Record<string, (b: Buffer, i: number) => number>> = {
  int64: (b, i) => Number(b.readBigInt64LE(i * 8)),
  int32: (b, i) => b.readInt32LE(i * 4),
  uint8: (b, i) => b[i],
};

function jsonList(value: string | undefined, what: string, bad: (why: string) => FormatError): unknown[] {
  try {
    const v: unknown = JSON.parse(value ?? '');
    if (Array.isArray(v)) return v;
  } catch {
    // reported below
  }
  throw bad(`its metadata has no ${what} list (write it with alexnet features)`);
}

/** Reads and checks an embeddings file (features F32 N × D, labels N, files and classes). */
export function readEmbeddings(file: string): EmbeddingSet {
  const buf = readInputFile(file);
  const { entries, metadata, dataStart } = parseHeader(buf, file);
  const head = describe(file, entries, metadata);
  const { rows, dim } = head;
  const f = entries.get('features')!;
  const l = entries.get('labels')!;
  const read = READERS[l.dtype]!;
  const files = jsonList(metadata.files, 'files', () => new FormatError(file)).map(String);
  // A view when the numbers are 4-byte aligned (the writer pads its header to 8 bytes: a gallery can be 1 GB),
  // else a copy.
  const start = buf.byteOffset + dataStart + f.begin;
  const features =
    start % 4 === 0
      ? new Float32Array(buf.buffer, start, rows * dim)
      : new Float32Array(buf.buffer.slice(start, start + rows * dim * 4));
  const labelBytes = buf.subarray(dataStart + l.begin, dataStart + l.end);
  return { ...head, features, labels: Array.from({ length: rows }, (_, i) => read(labelBytes, i)), files };
}
