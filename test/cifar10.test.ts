// The CIFAR-10 binary reader on small files written here: records of 1 label byte + 3072 CHW pixel bytes, the five
// training batches in order, a limit across files, and one-line refusals of wrong sizes, labels and folders.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { cifar10Dir, loadCifar10 } from '../src/data/cifar10';
import { FormatError, UserError } from '../src/errors';

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
