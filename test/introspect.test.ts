// The library's inference pieces in-process: the layer rules of introspection (worked out by hand from the
// architectures), feature maps against the model's own forward pass, the embeddings file read back as written,
// and the timing loops' counting.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { embeddingLayer, featureMaps, firstConvolution, hasBatchNorm } from '../src/infer/introspect';
import { getModel } from '../src/models/registry';
import { FEATURES_FORMAT, readEmbeddings, writeEmbeddings } from '../src/persist/embeddings';
import { imagesPerSecondAsync } from '../src/runtime/timing';
import { parseHeader } from '../src/io/safetensors';
import { manualSeed, noGrad, randn, tensor, tidy } from '../src/tensor/tensor';

test("the rules: the last hidden layer is the classifier's last ReLU, the first convolution is features.0", () => {
  const cases = [
    // name, options, embedding layer, first convolution's kernels, batch norm
    ['alexnet-d2l', { inputSize: 65 }, 'classifier.4', [96, 1, 11, 11], false],
    ['alexnet-2012', { inputSize: 67 }, 'classifier.5', [96, 3, 11, 11], false],
    ['alexnet-bn', { inputSize: 67 }, 'classifier.5', [96, 3, 11, 11], true],
    // No ReLU in the classifier: the layer before the last (its dropout, the identity in eval mode).
    ['alexnet-d2l', { inputSize: 65, activation: 'tanh' }, 'classifier.5', [96, 1, 11, 11], false],
  ] as const;
  for (const [name, options, embedding, kernels, bn] of cases) {
    const m = getModel(name, options);
    try {
      assert.equal(embeddingLayer(m), embedding, name);
      const conv = firstConvolution(m)!;
      assert.deepEqual([conv.layer, [...conv.weight.shape]], ['features.0', kernels], name);
      assert.equal(hasBatchNorm(m), bn, name);
    } finally {
      m.dispose();
    }
  }
});

test('feature maps: each convolution after its activation, shapes by hand, numbers as the forward pass gives them', () => {
  for (const activation of ['relu', 'tanh'] as const) {
    manualSeed(4);
    const m = getModel('alexnet-d2l', { inputSize: 65, activation }).eval();
    try {
      const x = randn([1, 1, 65, 65]).keep();
      const maps = noGrad(() => tidy(() => featureMaps(m, x)));
      // 65 -> conv 11/4 pad 1: 15 -> pool 3/2: 7 -> conv 5 pad 2: 7 -> pool: 3 -> three 3×3 convs pad 1: 3.
      assert.deepEqual(
        maps.map((o) => [o.layer, o.shape]),
        [
          ['features.0', [96, 15, 15]],
          ['features.3', [256, 7, 7]],
          ['features.6', [384, 3, 3]],
          ['features.8', [384, 3, 3]],
          ['features.10', [256, 3, 3]],
        ],
      );
      for (const o of maps) assert.equal(o.data.length, o.shape[0] * o.shape[1] * o.shape[2]);
      // The last map is the output of features.11 (the last activation), as forwardTo computes it on its own.
      const want = noGrad(() => tidy(() => m.forwardTo(x, 'features.11').float().contiguous().toArray()));
      const got = maps[4].data;
      assert.equal(got.length, want.length);
      want.forEach((v, i) => assert.ok(Math.abs(v - got[i]) <= 1e-6 * (1 + Math.abs(v)), `${activation} ${i}`));
      if (activation === 'relu') assert.ok(maps.every((o) => o.data.every((v) => v >= 0)));
      x.dispose();
    } finally {
      m.dispose();
    }
  }
});

test('an embeddings file reads back as written: rows, labels, files, classes, layer, model and data set', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'embeddings-test-'));
  try {
    const file = path.join(dir, 'e.safetensors');
    const features = tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]);
    const labels = tensor(BigInt64Array.from([2n, 0n, 1n]), [3]);
    writeEmbeddings(file, {
      features,
      labels,
      files: ['val:0', 'val:1', 'val:2'],
      classes: ['a', 'b', 'c'],
      model: 'alexnet-d2l',
      layer: 'classifier.4',
      weights: 'w.safetensors',
      dataset: 'fashion-mnist',
      split: 'val',
    });
    features.dispose();
    labels.dispose();
    const e = readEmbeddings(file);
    assert.deepEqual(
      [e.rows, e.dim, [...e.features], e.labels, e.files, e.classes, e.layer, e.model, e.dataset],
      [
        3,
        2,
        [1, 2, 3, 4, 5, 6],
        [2, 0, 1],
        ['val:0', 'val:1', 'val:2'],
        ['a', 'b', 'c'],
        'classifier.4',
        'alexnet-d2l',
        'fashion-mnist',
      ],
    );
    const { metadata } = parseHeader(fs.readFileSync(file), file);
    assert.deepEqual([metadata.format, metadata.split, metadata.weights], [FEATURES_FORMAT, 'val', 'w.safetensors']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the timing loop counts the images of timed steps only, and stops where its source runs dry', async () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  let calls = 0;
  // 1 warm-up + 3 timed steps of 4 images, each at least 20 ms: at most 4 / 0.02 = 200 images/s. Each sleeps 21 ms:
  // Node's timers count from the loop's cached clock and may fire up to 1 ms early (measured: 202.9 images/s).
  const rate = await imagesPerSecondAsync('cpu', 1, 3, async () => {
    calls++;
    await sleep(21);
    return 4;
  });
  assert.equal(calls, 4);
  assert.ok(rate > 0 && rate <= 201, String(rate));
  // A source with 3 batches: 1 warms up, 2 are timed, the third call finds it empty.
  let left = 3;
  calls = 0;
  const dry = await imagesPerSecondAsync('cpu', 1, 5, async () => {
    calls++;
    if (!left) return undefined;
    left--;
    await sleep(21);
    return 4;
  });
  assert.equal(calls, 4);
  assert.ok(dry > 0 && dry <= 201, String(dry));
});
