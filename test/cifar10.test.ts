// The CIFAR-10 binary reader on small files written here: records of 1 label byte + 3072 CHW pixel bytes, the five
// training batches in order, a limit across files, and one-line refusals of wrong sizes, labels and folders.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { cifar10Dir, loadCifar10 } from '../src/data/cifar10';
import { FormatError, UserError } from '../src/errors';
import { prepareData } from '../src/train/data';
import { cli } from './helpers/cli';

/** Record r of file f: label (f + r) % 10; pixel (c, y, x) = (f·31 + r·7 + c·50 + y + x) % 256. */
function record(f: number, r: number): Buffer {
  const b = Buffer.alloc(3073);
  b[0] = (f + r) % 10;
  for (let c = 0; c < 3; c++)
    for (let y = 0; y < 32; y++)
      for (let x = 0; x < 32; x++) b[1 + c * 1024 + y * 32 + x] = (f * 31 + r * 7 + c * 50 + y + x) % 256;
  return b;
}

function writeFolder(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-cifar-'));
  for (let f = 1; f <= 5; f++)
    fs.writeFileSync(path.join(dir, `data_batch_${f}.bin`), Buffer.concat([0, 1, 2].map((r) => record(f, r))));
  fs.writeFileSync(path.join(dir, 'test_batch.bin'), Buffer.concat([0, 1].map((r) => record(9, r))));
  return dir;
}

test('CIFAR-10 binary batches: labels, CHW pixels, the five training files in order, a limit', () => {
  const dir = writeFolder();
  try {
    const train = loadCifar10({ dir, split: 'train' });
    assert.deepEqual(train.images.shape, [15, 3, 32, 32]);
    assert.deepEqual(
      train.labels.toArray(),
      [1, 2, 3, 2, 3, 4, 3, 4, 5, 4, 5, 6, 5, 6, 7],
      'file 1 records 0–2, then file 2 …',
    );
    const img = train.images.narrow(0, 4, 1).toArray(); // file 2, record 1
    for (const [c, y, x] of [
      [0, 0, 0],
      [1, 5, 7],
      [2, 31, 31],
    ])
      assert.equal(img[c * 1024 + y * 32 + x], (2 * 31 + 7 + c * 50 + y + x) % 256, `pixel ${c},${y},${x}`);
    assert.equal(train.classes[0], 'airplane');
    const test5 = loadCifar10({ dir, split: 'train', limit: 5 });
    assert.deepEqual(test5.labels.toArray(), [1, 2, 3, 2, 3]);
    assert.deepEqual(loadCifar10({ dir, split: 'test' }).labels.toArray(), [9, 0]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('CIFAR-10: wrong sizes, labels, missing files and folders are one-line errors', () => {
  const dir = writeFolder();
  try {
    const one = (f: () => unknown, type: typeof UserError, re: RegExp) =>
      assert.throws(f, (e: Error) => e instanceof type && re.test(e.message) && !e.message.includes('\n'));
    fs.writeFileSync(path.join(dir, 'test_batch.bin'), Buffer.alloc(3073 + 5));
    one(
      () => loadCifar10({ dir, split: 'test' }),
      FormatError,
      /test_batch\.bin: expected a whole number of 3073-byte records .* got 3078 bytes/,
    );
    const bad = record(0, 0);
    bad[0] = 10;
    fs.writeFileSync(path.join(dir, 'test_batch.bin'), bad);
    one(() => loadCifar10({ dir, split: 'test' }), FormatError, /record 0 has label 10, expected 0–9/);
    fs.rmSync(path.join(dir, 'data_batch_3.bin'));
    one(() => loadCifar10({ dir, split: 'train' }), UserError, /data_batch_3\.bin is missing/);
    one(() => loadCifar10({ dir: path.join(dir, 'nope'), split: 'train' }), UserError, /is not a folder/);
    assert.equal(cifar10Dir('fashion-mnist'), undefined);
    assert.equal(cifar10Dir('cifar10:/data/c'), '/data/c');
    one(() => cifar10Dir('cifar10:'), UserError, /needs the folder/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('train --dataset cifar10:DIR: per-channel statistics of the training images, a 2-step run, eval, a missing folder', async () => {
  const dir = writeFolder();
  try {
    const prepared = prepareData({ dataset: `cifar10:${dir}`, seed: 0 });
    assert.equal(prepared.channels, 3);
    const base = { inputSize: [32, 32] as [number, number], resize: 'bilinear' as const, mean: [], std: [] };
    const opened = prepared.open({
      inputShape: [3, 32, 32],
      device: 'cpu',
      batchSize: 4,
      evalBatchSize: 4,
      preprocess: base,
    });
    try {
      // By hand from the pixel formula: the mean and sample sd over the 15 training images of each channel, in [0, 1]
      // (float32 sums of 15,360 values: within 1e-4).
      for (let c = 0; c < 3; c++) {
        const v: number[] = [];
        for (let f = 1; f <= 5; f++)
          for (let r = 0; r < 3; r++)
            for (let y = 0; y < 32; y++)
              for (let x = 0; x < 32; x++) v.push(((f * 31 + r * 7 + c * 50 + y + x) % 256) / 255);
        const m = v.reduce((a, b) => a + b, 0) / v.length;
        const sd = Math.sqrt(v.reduce((a, b) => a + (b - m) ** 2, 0) / (v.length - 1));
        assert.ok(Math.abs(opened.preprocess.mean[c] - m) < 1e-4, `mean ${c}: ${opened.preprocess.mean[c]} vs ${m}`);
        assert.ok(Math.abs(opened.preprocess.std[c] - sd) < 1e-4, `std ${c}: ${opened.preprocess.std[c]} vs ${sd}`);
      }
      assert.equal(opened.train.size, 15);
      assert.equal(opened.test.size, 2);
    } finally {
      await opened.close();
    }
    const save = path.join(dir, 'm.pt');
    const args = ['--model', 'convnet-cifar', '--dataset', `cifar10:${dir}`, '--max-steps', '2', '--batch-size', '4'];
    const r = cli(['train', ...args, '--precision', 'fp32', '--save', save]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /training convnet-cifar on cifar10:.* \(15 train \/ 2 test images, 10 classes, input 3×32×32\)/,
    );
    assert.match(r.stdout, /stopped after step 2/);
    const ev = cli(['eval', '--weights', save]);
    assert.equal(ev.code, 0, ev.stderr);
    assert.match(ev.stdout, /top-1/);
    const missing = cli([
      'train',
      '--model',
      'convnet-cifar',
      '--dataset',
      `cifar10:${path.join(dir, 'nope')}`,
      '--max-steps',
      '2',
    ]);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr.trim().split('\n').length, 1, missing.stderr);
    assert.match(missing.stderr, /CIFAR-10: .*nope is not a folder/);
    fs.rmSync(path.join(dir, 'test_batch.bin'));
    const noTest = cli(['train', ...args]);
    assert.equal(noTest.code, 2);
    assert.match(noTest.stderr, /CIFAR-10: .*test_batch\.bin is missing/);
    const data = cli(['train', ...args, '--data', dir]);
    assert.equal(data.code, 2);
    assert.match(data.stderr, /--data is for IDX data sets: --dataset cifar10:DIR names its folder/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
