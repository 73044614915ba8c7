// Model descriptions without weights, and the size bounds checked before anything is allocated.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ShapeError, UserError } from '../src/errors';
import { checkBatchFits, parameterLimit } from '../src/models/budget';
import { describeModel, getModel, listModels } from '../src/models/registry';
import { withoutWeights } from '../src/nn';
import { native } from '../src/tensor/binding';
import { randn } from '../src/tensor/tensor';

const liveTensors = () => native().memoryStats().liveTensors;

test('described layer tables and totals equal those of the built models, for every variant and several sizes', () => {
  const cases = [
    {},
    { numClasses: 7, inputSize: 100 },
    { inputSize: [130, 170] as [number, number], numClasses: 3, inChannels: 1 },
  ];
  for (const { name } of listModels()) {
    for (const options of cases) {
      const d = describeModel(name, options);
      const m = getModel(name, options);
      const what = `${name} ${JSON.stringify(options)}`;
      assert.deepEqual(d.input, m.inputShape, what);
      assert.deepEqual(d.rows, m.layerTable(), what);
      assert.equal(d.totalParams, m.numParameters(), what);
      assert.equal(
        d.totalParams,
        m.parameters().reduce((a, p) => a + p.numel, 0),
        `${what}: the tensors' own sizes`,
      );
      assert.equal(
        d.totalMacs,
        d.rows.reduce((a, r) => a + r.macs, 0),
        what,
      );
      assert.equal(d.fixedInputSize, m.fixedInputSize, what);
      m.dispose();
    }
  }
  assert.equal(describeModel('alexnet-torchvision').totalParams, 61_100_840);
  assert.equal(describeModel('alexnet-torchvision').totalMacs, 714_188_480);
  assert.equal(describeModel('alexnet-2012').totalParams, 60_965_224);
});

test('a model built without weights allocates no tensor and refuses to run', () => {
  const before = liveTensors();
  const skeleton = withoutWeights(() =>
    listModels()
      .find((e) => e.name === 'alexnet-bn')!
      .build({ inputSize: 1500 }),
  );
  assert.equal(liveTensors(), before, 'no tensor was created');
  assert.equal(skeleton.parameters().length, 0);
  assert.equal(skeleton.namedBuffers().length, 0);
  assert.ok(skeleton.numParameters() > 1e9, 'its parameters are still counted from their shapes');
  const x = randn([1, 3, 1500, 1500]);
  assert.throws(
    () => skeleton.forward(x),
    (e: unknown) => e instanceof UserError && /built without weights/.test(e.message),
  );
  for (const layer of skeleton.features.layers.slice(0, 2)) {
    assert.throws(
      () => layer.forward(x),
      (e: unknown) => e instanceof UserError && /^(Conv2d|BatchNorm2d)\(.*\) was built without weights/.test(e.message),
    );
  }
  x.dispose();
});

test('a model over the parameter limit is a usage error with its size, the limit and a size that fits, before allocating', () => {
  const before = liveTensors();
  let message = '';
  assert.throws(
    () => getModel('alexnet-2012', { inputSize: 1500 }),
    (e: unknown) => {
      message = (e as Error).message;
      return e instanceof UserError;
    },
  );
  assert.equal(liveTensors(), before, 'nothing was allocated');
  assert.match(
    message,
    /alexnet-2012 at 3×1500×1500 with 1,000 classes would have 2\.15 billion parameters \(8\.6 GB as float32\)/,
  );
  assert.match(
    message,
    /the limit is 1\.07 billion \(4 GiB of float32\)|the limit is [\d.]+ (billion|million) \(half this machine's memory\)/,
  );
  const size = Number(/--input-size (\d+) or less/.exec(message)?.[1]);
  assert.ok(describeModel('alexnet-2012', { inputSize: size }).totalParams <= parameterLimit().params, `${size} fits`);
  assert.ok(
    describeModel('alexnet-2012', { inputSize: size + 1 }).totalParams > parameterLimit().params,
    `${size + 1} does not`,
  );
  // Describing it is fine: nothing is allocated.
  assert.equal(describeModel('alexnet-2012', { inputSize: 1500 }).totalParams, 2_146_582_888);
});

test('sizes and counts out of range are usage errors that name the limit, for building and describing alike', () => {
  const cases: [object, RegExp][] = [
    [{ inputSize: 5000 }, /inputSize must be a positive integer \(at most 4,096\).*got 5000/],
    [{ inputSize: [224, 4097] }, /inputSize .*at most 4,096.*got \[224,4097\]/],
    [{ numClasses: 1e6 }, /numClasses must be a positive integer \(at most 100,000\), got 1000000/],
    [{ numClasses: 2.5 }, /numClasses must be a positive integer/],
    [{ inChannels: 2000 }, /inChannels must be a positive integer \(at most 1,024\), got 2000/],
  ];
  for (const [options, pattern] of cases) {
    for (const f of [getModel, describeModel]) {
      assert.throws(
        () => f('alexnet-torchvision', options),
        (e: unknown) => e instanceof UserError && pattern.test(e.message),
        `${f.name} ${JSON.stringify(options)}`,
      );
    }
  }
  assert.throws(
    () => describeModel('alexnet-torchvision', { inputSize: 40 }),
    (e: unknown) => e instanceof ShapeError && /3×63×63/.test(e.message),
  );
});

test('the batch-size check refuses a batch that cannot fit, naming the option and the largest that does, and accepts a normal one', () => {
  const d = describeModel('alexnet-torchvision');
  const ok = checkBatchFits(d, 32);
  assert.ok(ok.maxBatch! > 32 && ok.bytesNeeded < ok.availableBytes!);
  // torchvision at 224: 1.26 million values per image (the input and every layer's output), × 4 bytes × 3.
  assert.ok(ok.bytesPerImage > 14e6 && ok.bytesPerImage < 16e6, `${ok.bytesPerImage} bytes per image`);
  assert.throws(
    () => checkBatchFits(d, 10_000_000),
    (e: unknown) =>
      e instanceof UserError &&
      /--batch-size 10,000,000 does not fit in memory/.test(e.message) &&
      /the largest batch that fits is about [\d,]+ \(--batch-size \d+ or less\)/.test(e.message),
  );
  // With the memory given, the largest batch is exact arithmetic on the estimate.
  const one = checkBatchFits(d, 1, { mode: 'eval', availableBytes: 1e12 });
  const availableBytes = one.fixedBytes + 10.5 * one.bytesPerImage;
  assert.equal(checkBatchFits(d, 10, { mode: 'eval', availableBytes }).maxBatch, 10);
  assert.throws(
    () => checkBatchFits(d, 11, { mode: 'eval', availableBytes, option: '--eval-batch-size' }),
    (e: unknown) =>
      e instanceof UserError &&
      /--eval-batch-size 11 does not fit/.test(e.message) &&
      /--eval-batch-size 10 or less/.test(e.message),
  );
  assert.ok(one.bytesPerImage < ok.bytesPerImage / 2, 'evaluation needs much less per image than training');
  for (const bad of [0, -3, 1.5, NaN])
    assert.throws(
      () => checkBatchFits(d, bad),
      (e: unknown) => e instanceof UserError && /--batch-size must be a positive integer/.test(e.message),
    );
  // A built model works as well as its description.
  const m = getModel('alexnet-d2l', { inputSize: 96 });
  assert.deepEqual(checkBatchFits(m, 8), checkBatchFits(describeModel('alexnet-d2l', { inputSize: 96 }), 8));
  m.dispose();
});
