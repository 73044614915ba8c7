import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import * as zlib from 'node:zlib';
import { FormatError } from '../src/errors';
import { loadIdxDataset } from '../src/data/fashion-mnist';
import { readIdx, readIdxPair } from '../src/data/idx';
import { preprocessBatch } from '../src/data/loader';
import { epochOrder } from '../src/data/sampler';
import { tensor } from '../src/tensor/tensor';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-idx-'));
// Removed when the file's tests end (a run leaves nothing in the temporary folder; io's alone was 2.6 GB).
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function idx(dims: number[], data: Uint8Array, magicType = 0x08): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = magicType;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, Buffer.from(data)]);
}
function write(name: string, buf: Buffer): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, buf);
  return p;
}

test('IDX files are read raw or gzipped', () => {
  const data = Uint8Array.from({ length: 2 * 3 * 3 }, (_, i) => i);
  const raw = write('a-images', idx([2, 3, 3], data));
  const gz = write('a-images.gz', zlib.gzipSync(idx([2, 3, 3], data)));
  for (const f of [raw, gz]) {
    const r = readIdx(f);
    assert.deepEqual(r.dims, [2, 3, 3]);
    assert.deepEqual(Array.from(r.data), Array.from(data));
  }
});

test('truncated, wrong-magic and mismatched IDX files are errors naming the file', () => {
  const good = idx([4, 2, 2], new Uint8Array(16));
  const truncated = write('trunc', good.subarray(0, good.length - 3));
  assert.throws(
    () => readIdx(truncated),
    (e: unknown) =>
      e instanceof FormatError &&
      e.message.includes(truncated) &&
      /truncated/.test(e.message) &&
      /16 bytes/.test(e.message),
  );
  const magic = write('magic', Buffer.concat([Buffer.from([0x50, 0x4b, 3, 4]), good.subarray(4)]));
  assert.throws(
    () => readIdx(magic),
    (e: unknown) => e instanceof FormatError && e.message.includes(magic) && /magic number 0x504b0304/.test(e.message),
  );
  const floats = write('floats', idx([4], new Uint8Array(4), 0x0d));
  assert.throws(() => readIdx(floats), /element type 0xd/);
  const images = write('imgs', idx([10, 2, 2], new Uint8Array(40)));
  const labels = write('labels', idx([9], new Uint8Array(9)));
  assert.throws(
    () => readIdxPair(images, labels),
    (e: unknown) => e instanceof FormatError && /has 10 images but .*labels has 9 labels/.test(e.message),
  );
  const badLabel = write(
    'labels11',
    idx(
      [10],
      Uint8Array.from({ length: 10 }, (_, i) => (i === 3 ? 12 : 1)),
    ),
  );
  assert.throws(() => readIdxPair(images, badLabel, 10), /label 12/);
  const gzBroken = write('broken.gz', zlib.gzipSync(good).subarray(0, 20));
  assert.throws(() => readIdx(gzBroken), /damaged gzip/);
  assert.throws(() => readIdx(path.join(dir, 'nope')), /no such file/);
  const trailing = write('trailing', Buffer.concat([good, Buffer.from([1, 2])]));
  assert.throws(() => readIdx(trailing), /trailing/);
});

test("Debian's Fashion-MNIST loads with its class names", () => {
  const ds = loadIdxDataset({ split: 'test', limit: 100 });
  assert.deepEqual(ds.images.shape, [100, 1, 28, 28]);
  assert.equal(ds.images.dtype, 'uint8');
  assert.equal(ds.labels.dtype, 'int64');
  assert.equal(ds.classes[9], 'Ankle boot');
  // the first test image of Fashion-MNIST is an ankle boot, the second a pullover
  assert.deepEqual(ds.labels.toArray().slice(0, 2), [9, 2]);
});

test('shuffling is seeded per epoch and is a permutation', () => {
  const a = epochOrder(1000, 7, 3, true);
  assert.deepEqual(Array.from(a), Array.from(epochOrder(1000, 7, 3, true)));
  assert.notDeepEqual(Array.from(a), Array.from(epochOrder(1000, 7, 4, true)));
  assert.deepEqual(
    Array.from(a).sort((x, y) => x - y),
    Array.from({ length: 1000 }, (_, i) => i),
  );
});

test('batch preprocessing scales, resizes (bilinear or with padding) and normalises', () => {
  const img = tensor(Uint8Array.from([0, 255, 255, 0]), [1, 1, 2, 2], 'uint8');
  const x = preprocessBatch(img, { inputSize: [2, 2], resize: 'bilinear', mean: [0.5], std: [0.5] });
  assert.deepEqual(x.toArray(), [-1, 1, 1, -1]);
  const wide = tensor(new Uint8Array(2 * 4).fill(255), [1, 1, 2, 4], 'uint8');
  const padded = preprocessBatch(wide, { inputSize: [4, 4], resize: 'pad', mean: [], std: [] });
  // 2×4 scaled by 1 fits 4×4 with one padded row above and below
  assert.deepEqual(padded.toArray(), [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
  const up = preprocessBatch(img, { inputSize: [4, 4], resize: 'bilinear', mean: [], std: [] });
  assert.deepEqual(up.shape, [1, 1, 4, 4]);
  // half-pixel centres: the corner output pixel copies the corner input pixel
  assert.equal(up.toArray()[0], 0);
});

test('photos: short side resized then centre-cropped, EXIF rotation honoured, bad files named', async () => {
  const sharp = (await import('sharp')).default;
  const { loadImageAs } = await import('../src/data/image');
  // 40×20: black left half, white right half. Short side 10 -> 20×10, centre crop 10×10 = columns 5..14.
  const w = 40;
  const h = 20;
  const px = Buffer.alloc(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px[y * w + x] = x < w / 2 ? 0 : 255;
  const file = path.join(dir, 'halves.png');
  await sharp(px, { raw: { width: w, height: h, channels: 1 } })
    .png()
    .toFile(file);
  const out = await loadImageAs(file, 1, 10, 10, 10);
  assert.equal(out.length, 100);
  assert.ok(out[0] < 30 && out[10 * 5] < 30, 'left columns of the crop are dark');
  assert.ok(out[9] > 225 && out[10 * 5 + 9] > 225, 'right columns of the crop are bright');
  // The same picture stored rotated 90° counter-clockwise (20 wide × 40 tall: bright top, dark bottom) with EXIF
  // orientation 6 (display rotated 90° clockwise): honoured, it shows as the original again, left dark and right
  // bright; ignored, the crop's top row would be bright.
  const rotated = path.join(dir, 'rotated.jpg');
  // Stored 20 wide × 40 tall; orientation 6 displays it rotated 90° clockwise: D(x, y) = S(y, 39 − x).
  const stored = Buffer.alloc(20 * 40);
  for (let y = 0; y < 40; y++) for (let x = 0; x < 20; x++) stored[y * 20 + x] = y < 20 ? 255 : 0;
  await sharp(stored, { raw: { width: 20, height: 40, channels: 1 } })
    .jpeg({ quality: 100 })
    .withMetadata({ orientation: 6 })
    .toFile(rotated);
  const r = await loadImageAs(rotated, 1, 10, 10, 10);
  assert.ok(
    r[0] < 40 && r[9] > 215 && r[90] < 40 && r[99] > 215,
    `rotation honoured (corners ${r[0]} ${r[9]} ${r[90]} ${r[99]})`,
  );
  const rgb = await loadImageAs(file, 3, 10, 10, 10);
  assert.equal(rgb.length, 300);
  const txt = path.join(dir, 'fake.jpg');
  fs.writeFileSync(txt, 'not an image');
  await assert.rejects(
    loadImageAs(txt, 1, 10, 10),
    (e: unknown) => (e as Error).message.includes(txt) && /not an image/.test((e as Error).message),
  );
});
