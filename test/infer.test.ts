// src/infer/ in process, against hand-computed values: softmax and top-k (ties to the lower index), predictStream's
// rows (an error per bad input, in input order, batches of good ones), the JavaScript preprocessing of the
// onnxruntime path (bilinear resize with half-pixel centres, normalisation) and the input geometry of a record.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../src/errors';
import { sharpModule } from '../src/data/image';
import { preprocessPixels, resizeBilinear } from '../src/infer/onnx';
import {
  ImageInput,
  InputGeometry,
  inputGeometry,
  predictAll,
  Predictor,
  PredictResult,
  predictStream,
  topK,
} from '../src/infer/predictor';
import { ModelRecord } from '../src/persist/record';

const close = (a: ArrayLike<number>, b: number[], tol = 1e-6) => {
  assert.equal(a.length, b.length, `length ${a.length}, expected ${b.length}`);
  for (let i = 0; i < b.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `[${i}] = ${a[i]}, expected ${b[i]}`);
};

test('top-k: softmax probabilities as computed by hand, ties to the lower index, k capped at the class count', () => {
  const classes = ['a', 'b', 'c', 'd'];
  // Row 0: e^0, e^ln3, e^0, e^ln3 = 1, 3, 1, 3 over 8. Row 1: four equal logits, 1/4 each.
  const logits = new Float32Array([0, Math.log(3), 0, Math.log(3), 5, 5, 5, 5]);
  const rows = topK(logits, classes, 3);
  assert.equal(rows.length, 2);
  assert.deepEqual(
    rows[0].map((t) => [t.index, t.class]),
    [
      [1, 'b'],
      [3, 'd'],
      [0, 'a'],
    ],
  );
  close(
    rows[0].map((t) => t.probability),
    [0.375, 0.375, 0.125],
  );
  assert.deepEqual(
    rows[1].map((t) => t.index),
    [0, 1, 2],
  );
  close(
    rows[1].map((t) => t.probability),
    [0.25, 0.25, 0.25],
  );
  // Large logits do not overflow (the row's maximum is subtracted first): 1000 and 1000 - ln 4 give 4/5 and 1/5.
  const big = topK(new Float32Array([1000, 1000 - Math.log(4)]), ['x', 'y'], 10);
  assert.deepEqual(
    big[0].map((t) => t.class),
    ['x', 'y'],
  );
  close(
    big[0].map((t) => t.probability),
    [0.8, 0.2],
    1e-4,
  );
  assert.throws(
    () => topK(new Float32Array(7), classes, 1),
    (e: unknown) => e instanceof UserError && e.message === 'the model gave 7 logits, not a multiple of its 4 classes',
  );
});

const GEOMETRY: InputGeometry = { channels: 1, height: 2, width: 2 };
const RECORD: ModelRecord = {
  model: 'test',
  modelOptions: {},
  classes: ['dark', 'bright'],
  preprocess: { inputSize: [2, 2], resize: 'bilinear', mean: [], std: [] },
  sourceShape: [1, 2, 2],
};

/** A predictor whose logits say how bright each image is: [(255 - mean) / 32, mean / 32]; it records batch sizes. */
function fakePredictor(): Predictor & { batches: number[] } {
  const batches: number[] = [];
  return {
    record: RECORD,
    runtime: 'fake',
    geometry: GEOMETRY,
    batches,
    async logits(pixels: Uint8Array, n: number) {
      batches.push(n);
      assert.equal(pixels.length, n * 4, 'planar 1×2×2 pixels per image');
      const out = new Float32Array(n * 2);
      for (let i = 0; i < n; i++) {
        const mean = pixels.subarray(i * 4, i * 4 + 4).reduce((a, b) => a + b, 0) / 4;
        out.set([(255 - mean) / 32, mean / 32], i * 2);
      }
      return out;
    },
    async close() {},
  };
}

async function png(grey: number): Promise<Buffer> {
  const sharp = sharpModule();
  return sharp({ create: { width: 3, height: 3, channels: 3, background: { r: grey, g: grey, b: grey } } })
    .png()
    .toBuffer();
}

test('predictStream: one row per input in input order, an error row per undecodable input, good ones batched', async () => {
  const inputs: ImageInput[] = [
    { name: 'black.png', data: await png(0) },
    { name: 'garbage.png', data: Buffer.from('not an image at all') },
    { name: 'white.png', data: await png(255) },
    { name: 'grey.png', data: await png(64) },
    { name: 'empty.png', data: Buffer.alloc(0) },
  ];
  const p = fakePredictor();
  const rows: PredictResult[] = [];
  for await (const r of predictStream(p, inputs, { batchSize: 2, k: 1 })) rows.push(r);
  assert.deepEqual(
    rows.map((r) => r.file),
    ['black.png', 'garbage.png', 'white.png', 'grey.png', 'empty.png'],
  );
  // Batches of 2 inputs: [black, garbage] runs black alone, [white, grey] both, [empty] nothing.
  assert.deepEqual(p.batches, [1, 2]);
  for (const i of [1, 4]) {
    assert.ok(rows[i].error instanceof Error, `${rows[i].file} gives an error row`);
    assert.equal(rows[i].prediction, undefined);
  }
  const top = (i: number) => {
    const r = rows[i];
    assert.equal(r.error, undefined, `${r.file}: ${r.error?.message}`);
    assert.equal(r.prediction!.file, r.file);
    assert.equal(r.prediction!.top.length, 1, 'k = 1');
    return r.prediction!.top[0];
  };
  // Black: logits [255/32, 0]: p(dark) = 1 / (1 + e^(-255/32)). White: the mirror image. Grey 64: [191/32, 2].
  assert.equal(top(0).class, 'dark');
  close([top(0).probability], [1 / (1 + Math.exp(-255 / 32))]);
  assert.equal(top(2).class, 'bright');
  close([top(2).probability], [1 / (1 + Math.exp(-255 / 32))]);
  assert.equal(top(3).class, 'dark');
  close([top(3).probability], [1 / (1 + Math.exp(-(191 - 64) / 32))]);
});

test('predictAll gives the predictions of readable inputs and throws the first unreadable one', async () => {
  const p = fakePredictor();
  const good = [
    { name: 'w.png', data: await png(255) },
    { name: 'b.png', data: await png(0) },
  ];
  const all = await predictAll(p, good, { k: 2 });
  assert.deepEqual(
    all.map((r) => [r.file, r.top.map((t) => t.class)]),
    [
      ['w.png', ['bright', 'dark']],
      ['b.png', ['dark', 'bright']],
    ],
  );
  const bad = { name: 'bad.png', data: Buffer.from('GIF89a, but no') };
  await assert.rejects(predictAll(p, [...good, bad, { name: 'bad2.png', data: Buffer.alloc(3) }]), (e: unknown) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, /bad\.png/, 'the first bad input is named');
    return true;
  });
});

test('resizeBilinear: half-pixel centres and edge clamping, as computed by hand (align_corners=False)', () => {
  // 2×2 -> 4×4: along each axis the source positions are -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to the
  // last pixel), so one row [0, 1] becomes [0, 0.25, 0.75, 1]; the plane [[0, 1], [2, 3]] is 2·row(y) + row(x).
  const r = [0, 0.25, 0.75, 1];
  const up = resizeBilinear(new Float32Array([0, 1, 2, 3]), 2, 2, 4, 4);
  close(
    up,
    r.flatMap((y) => r.map((x) => 2 * y + x)),
  );
  // 4 -> 2 along x (one row): positions 0.5 and 2.5, the means of the neighbouring pairs.
  close(resizeBilinear(new Float32Array([0, 1, 2, 3]), 1, 4, 1, 2), [0.5, 2.5]);
  // Same size: the input unchanged.
  const same = new Float32Array([1, 2, 3, 4, 5, 6]);
  close(resizeBilinear(same, 2, 3, 2, 3), [...same]);
});

test('preprocessPixels: /255, resized when the decoded size differs, then (x - mean) / std per channel', () => {
  const pre = (inputSize: [number, number], mean: number[], std: number[]) => ({
    inputSize,
    resize: 'bilinear' as const,
    mean,
    std,
  });
  // One channel at the model's size: ((x / 255) - 0.5) / 0.25 for 0, 255, 51, 102.
  close(preprocessPixels(new Uint8Array([0, 255, 51, 102]), 1, 2, 2, pre([2, 2], [0.5], [0.25])), [-2, 2, -1.2, -0.4]);
  // Two channels 1×2 -> 1×4 with their own mean and std: channel 0 [0, 255] -> [0, 0.25, 0.75, 1] -> (x - 0) / 1;
  // channel 1 [255, 255] -> 1 everywhere -> (1 - 0.5) / 0.5 = 1.
  close(
    preprocessPixels(new Uint8Array([0, 255, 255, 255]), 2, 1, 2, pre([1, 4], [0, 0.5], [1, 0.5])),
    [0, 0.25, 0.75, 1, 1, 1, 1, 1],
  );
  // No mean and std (d2l): only the scaling.
  close(preprocessPixels(new Uint8Array([255, 0]), 1, 1, 2, pre([1, 2], [], [])), [1, 0]);
});

test("inputGeometry: a data-set model resizes to its examples' shape, a photo model takes short side + crop", () => {
  assert.deepEqual(inputGeometry(RECORD, [1, 224, 224]), { channels: 1, height: 2, width: 2 });
  const photo: ModelRecord = {
    ...RECORD,
    sourceShape: undefined,
    preprocess: { inputSize: [224, 224], resize: 'bilinear', mean: [], std: [], shortSide: 256 },
  };
  assert.deepEqual(inputGeometry(photo, [3, 224, 224]), { channels: 3, height: 224, width: 224, shortSide: 256 });
});
