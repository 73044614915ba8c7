// predictStream's look-ahead (src/infer/predictor.ts, src/infer/decode-lanes.ts): the next batch is taken from the
// inputs and decoding before the engine runs this one, never more than one batch ahead; rows keep input order and
// every bad input keeps its own error, whether the look-ahead decodes in a worker thread (1 or 2 lanes) or in this
// thread (0); a consumer that stops early stops the worker.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ImageError, sharpModule } from '../src/data/image';
import { ImageInput, Predictor, PredictResult, predictStream } from '../src/infer/predictor';
import { ModelRecord } from '../src/persist/record';

const RECORD: ModelRecord = {
  model: 'test',
  modelOptions: {},
  classes: ['dark', 'bright'],
  preprocess: { inputSize: [2, 2], resize: 'bilinear', mean: [], std: [] },
  sourceShape: [1, 2, 2],
};

/** Logits [(255 − mean) / 32, mean / 32] of each 1×2×2 image; `onBatch` sees every batch's size first. */
function brightness(onBatch: (n: number) => void = () => {}): Predictor {
  return {
    record: RECORD,
    runtime: 'fake',
    geometry: { channels: 1, height: 2, width: 2 },
    async logits(pixels: Uint8Array, n: number) {
      onBatch(n);
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

const png = (grey: number) =>
  sharpModule()({ create: { width: 3, height: 3, channels: 3, background: { r: grey, g: grey, b: grey } } })
    .png()
    .toBuffer();

/** Rows as comparable values: the file, then the top class and its probability, or the error's class and message. */
const view = (r: PredictResult) =>
  r.error
    ? [r.file, r.error.constructor.name, r.error.message]
    : [r.file, r.prediction.top[0].class, r.prediction.top[0].probability.toFixed(6)];

test('predictStream decodes ahead in a worker (1 or 2 lanes) or here (0) with the same rows, errors and batches', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-predict-stream-'));
  try {
    const greys = [0, 255, 64, 200, 30, 128, 90];
    const files = await Promise.all(
      greys.map(async (g, i) => {
        const f = path.join(dir, `g${i}.png`);
        fs.writeFileSync(f, await png(g));
        return f;
      }),
    );
    fs.writeFileSync(path.join(dir, 'garbage.png'), 'not an image at all');
    fs.mkdirSync(path.join(dir, 'folder.png'));
    const inputs: ImageInput[] = [
      files[0],
      path.join(dir, 'missing.png'),
      files[1],
      { name: 'bytes.png', data: await png(220) },
      path.join(dir, 'garbage.png'),
      files[2],
      path.join(dir, 'folder.png'),
      ...files.slice(3),
      { name: 'empty.png', data: Buffer.alloc(0) },
    ];
    const runs = new Map<number, { rows: unknown[][]; batches: number[] }>();
    for (const lanes of [0, 1, 2]) {
      const batches: number[] = [];
      const rows: unknown[][] = [];
      const seen: PredictResult[] = [];
      for await (const r of predictStream(
        brightness((n) => batches.push(n)),
        inputs,
        {
          batchSize: 3,
          k: 1,
          decodeLanes: lanes,
        },
      )) {
        rows.push(view(r));
        seen.push(r);
      }
      runs.set(lanes, { rows, batches });
      // Independent of the path: input order, an ImageError naming each bad input, the brightness of each good one.
      assert.deepEqual(
        seen.map((r) => r.file),
        inputs.map((i) => (typeof i === 'string' ? i : i.name)),
      );
      for (const [i, why] of [
        [1, 'no such file'],
        [4, 'not an image that can be read'],
        [6, 'not a file'],
        [11, 'empty (0 bytes), not an image'],
      ] as const) {
        const e = seen[i].error;
        assert.ok(e instanceof ImageError, `${seen[i].file}: an ImageError (lanes ${lanes})`);
        assert.ok(e.message.startsWith(`${seen[i].file}: ${why}`), `${e.message} (lanes ${lanes})`);
      }
      const expected = [0, 2, 3, 5, 7, 8, 9, 10].map((i, j) => [i, [0, 255, 220, 64, 200, 30, 128, 90][j]]);
      for (const [i, grey] of expected) {
        const top = seen[i].prediction!.top[0];
        const p = 1 / (1 + Math.exp(-Math.abs(255 - 2 * grey) / 32));
        assert.equal(top.class, grey >= 128 ? 'bright' : 'dark', `${seen[i].file} (lanes ${lanes})`);
        assert.ok(Math.abs(top.probability - p) < 1e-5, `${seen[i].file}: ${top.probability}, expected ${p}`);
      }
      // Batches of 3 inputs, bad ones left out: [g0, missing, g1] [bytes, garbage, g2] [folder, g3, g4] [g5, g6, empty].
      assert.deepEqual(batches, [2, 2, 2, 2]);
    }
    assert.deepEqual(runs.get(1), runs.get(0));
    assert.deepEqual(runs.get(2), runs.get(0));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('predictStream takes the next batch before the engine runs this one, and never more than one ahead (none, taking turns)', async () => {
  const data = await png(100);
  let pulled = 0;
  function* inputs(): Generator<ImageInput> {
    for (let i = 0; i < 10; i++) {
      pulled++;
      yield { name: `i${i}.png`, data };
    }
  }
  const atEngine: number[] = [];
  let rows = 0;
  for await (const r of predictStream(
    brightness(() => atEngine.push(pulled)),
    inputs(),
    { batchSize: 3, decodeLanes: 1 },
  )) {
    assert.equal(r.error, undefined);
    rows++;
  }
  assert.equal(rows, 10);
  // Batch i (3 inputs each, the last 1) runs with batch i + 1 taken already: 6, 9, 10, 10 inputs pulled.
  assert.deepEqual(atEngine, [6, 9, 10, 10]);
  // Without lanes, decoding and the engine take turns: a batch runs with nothing after it taken yet.
  pulled = 0;
  const turns: number[] = [];
  for await (const r of predictStream(
    brightness(() => turns.push(pulled)),
    inputs(),
    { batchSize: 3, decodeLanes: 0 },
  ))
    assert.equal(r.error, undefined);
  assert.deepEqual(turns, [3, 6, 9, 10]);
});

test('predictStream stopped after its first row ends cleanly (the decoding thread stops with it)', async () => {
  const data = await png(100);
  const inputs = Array.from({ length: 40 }, (_, i) => ({ name: `i${i}.png`, data }));
  const rows: PredictResult[] = [];
  for await (const r of predictStream(brightness(), inputs, { batchSize: 4, decodeLanes: 2 })) {
    rows.push(r);
    break;
  }
  assert.deepEqual(
    rows.map((r) => [r.file, r.prediction?.top[0].class]),
    [['i0.png', 'dark']],
  );
});
