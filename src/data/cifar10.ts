// CIFAR-10, binary version (https://www.cs.toronto.edu/~kriz/cifar.html, cifar-10-binary.tar.gz): data_batch_1.bin
// … data_batch_5.bin (training, 10,000 images each) and test_batch.bin, every record one label byte (0–9) and 3072
// pixel bytes, the red, green and blue 32×32 planes in turn (CHW), rows top to bottom. Read whole into uint8
// (N, 3, 32, 32) and int64 labels; nothing here is downloaded (the files are the user's).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FormatError, UserError } from '../errors';
import { tensor } from '../tensor/tensor';
import type { Split, TensorDataset } from './fashion-mnist';

export const CIFAR10_CLASSES = [
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
];
export const CIFAR10_RECORD = 1 + 3 * 32 * 32;
export const CIFAR10_FILES: Record<Split, string[]> = {
  train: [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`),
  test: ['test_batch.bin'],
};

/** The folder of `--dataset cifar10:DIR`, or undefined for another data set. */
export function cifar10Dir(dataset: string | undefined): string | undefined {
  if (dataset === undefined || !dataset.startsWith('cifar10:')) return undefined;
  const dir = dataset.slice('cifar10:'.length);
  if (!dir) throw new UserError('--dataset cifar10:DIR needs the folder of data_batch_1.bin … test_batch.bin');
  return path.resolve(dir);
}

function readBatch(file: string): { labels: Uint8Array; pixels: Uint8Array; n: number } {
  let buf: Buffer;
  try {
    const s = fs.statSync(file);
    if (!s.isFile()) throw new FormatError(`${file}: expected a CIFAR-10 binary batch file, got something else`);
    buf = fs.readFileSync(file);
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(
      `CIFAR-10: ${file} is missing (expected the binary version's data_batch_1.bin … data_batch_5.bin and test_batch.bin)`,
    );
  }
  if (buf.length === 0 || buf.length % CIFAR10_RECORD !== 0)
    throw new FormatError(
      `${file}: expected a whole number of ${CIFAR10_RECORD}-byte records (1 label byte + 3072 pixels; 10,000 records = 30,730,000 bytes), got ${buf.length} bytes`,
    );
  const n = buf.length / CIFAR10_RECORD;
  const labels = new Uint8Array(n);
  const pixels = new Uint8Array(n * 3072);
  for (let i = 0; i < n; i++) {
    const at = i * CIFAR10_RECORD;
    labels[i] = buf[at];
    if (labels[i] > 9) throw new FormatError(`${file}: record ${i} has label ${labels[i]}, expected 0–9`);
    pixels.set(buf.subarray(at + 1, at + CIFAR10_RECORD), i * 3072);
  }
  return { labels, pixels, n };
}

/** A CIFAR-10 split from the binary version's folder; `limit`: the first images only. */
export function loadCifar10(o: { dir: string; split: Split; limit?: number }): TensorDataset {
  if (!fs.existsSync(o.dir) || !fs.statSync(o.dir).isDirectory())
    throw new UserError(`CIFAR-10: ${o.dir} is not a folder (expected the binary version's cifar-10-batches-bin)`);
  const batches = [];
  let n = 0;
  for (const f of CIFAR10_FILES[o.split]) {
    if (o.limit !== undefined && n >= o.limit) break;
    const b = readBatch(path.join(o.dir, f));
    batches.push(b);
    n += b.n;
  }
  const total = o.limit === undefined ? n : Math.min(n, o.limit);
  const labels = new Uint8Array(total);
  const pixels = new Uint8Array(total * 3072);
  let at = 0;
  for (const b of batches) {
    const k = Math.min(b.n, total - at);
    labels.set(b.labels.subarray(0, k), at);
    pixels.set(b.pixels.subarray(0, k * 3072), at * 3072);
    at += k;
  }
  return {
    name: 'cifar10',
    split: o.split,
    images: tensor(pixels, [total, 3, 32, 32], 'uint8'),
    labels: tensor(Array.from(labels), [total], 'int64'),
    classes: CIFAR10_CLASSES,
  };
}
