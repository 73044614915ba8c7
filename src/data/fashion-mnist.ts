// Fashion-MNIST and MNIST from IDX folders. The default is Debian's dataset-fashion-mnist package.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { Tensor, tensor } from '../tensor/tensor';
import { readIdxPair } from './idx';

export const DEFAULT_FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top',
  'Trouser',
  'Pullover',
  'Dress',
  'Coat',
  'Sandal',
  'Shirt',
  'Sneaker',
  'Bag',
  'Ankle boot',
];
export const MNIST_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

export type Split = 'train' | 'test';

/** An in-memory image-classification split: uint8 images (N, C, H, W) and int64 labels (N). */
export interface TensorDataset {
  name: string;
  split: Split;
  images: Tensor;
  labels: Tensor;
  classes: string[];
}

function find(dir: string, base: string): string {
  for (const name of [base, `${base}.gz`]) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  }
  throw new UserError(
    `${dir} has no ${base} or ${base}.gz` +
      (dir === DEFAULT_FASHION_MNIST_DIR ? ' (install it with: apt-get install dataset-fashion-mnist)' : ''),
  );
}

/**
 * Loads one split of an IDX folder laid out as MNIST (train-images-idx3-ubyte[.gz], …, t10k-labels-idx1-ubyte[.gz]).
 * `limit` keeps the first N examples.
 */
export function loadIdxDataset(o: {
  dir?: string;
  split: Split;
  name?: 'fashion-mnist' | 'mnist';
  limit?: number;
}): TensorDataset {
  const dir = o.dir ?? DEFAULT_FASHION_MNIST_DIR;
  if (!fs.existsSync(dir)) {
    throw new UserError(
      `data folder ${dir} does not exist` +
        (dir === DEFAULT_FASHION_MNIST_DIR ? ' (install it with: apt-get install dataset-fashion-mnist)' : ''),
    );
  }
  const prefix = o.split === 'train' ? 'train' : 't10k';
  const classes = (o.name ?? 'fashion-mnist') === 'mnist' ? MNIST_CLASSES : FASHION_MNIST_CLASSES;
  const { images, labels } = readIdxPair(
    find(dir, `${prefix}-images-idx3-ubyte`),
    find(dir, `${prefix}-labels-idx1-ubyte`),
    classes.length,
  );
  const [n0, h, w] = images.dims;
  const n = o.limit ? Math.min(o.limit, n0) : n0;
  return {
    name: o.name ?? 'fashion-mnist',
    split: o.split,
    images: tensor(images.data.subarray(0, n * h * w), [n, 1, h, w], 'uint8'),
    labels: tensor(labels.data.subarray(0, n), [n], 'uint8').to('int64'),
    classes,
  };
}
