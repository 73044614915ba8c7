// Weights that travel: safetensors written by PyTorch, torch.save import, ONNX export checked by onnx.checker and
// onnxruntime, ONNX-only inference without the native engine (safetensors in process: safetensors.test.ts).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { FormatError, StateDictError, UserError } from '../src/errors';
import { exportOnnx } from '../src/io/onnx';
import { loadPth } from '../src/io/pth';
import { getModel, listModels } from '../src/models/registry';
import {
  AdaptiveAvgPool2d,
  BatchNorm2d,
  Conv2d,
  Dropout,
  Flatten,
  LayerEntry,
  Linear,
  LocalResponseNorm,
  MaxPool2d,
  Module,
  NetworkSpec,
  ReLU,
  Sequential,
  Tanh,
} from '../src/nn';
import { saveWeights } from '../src/persist/checkpoint';
import { loadModel } from '../src/persist/load';
import { manualSeed, noGrad, randn, tensor } from '../src/tensor/tensor';
import { cli } from './helpers/cli';
import { firstPassOnly, maxAbsDiff, OnnxCheck, onnxChecker, oracleMissing, runOracle } from './helpers/oracle';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-io-'));
// Removed when the file's tests end (a run leaves nothing in the temporary folder; io's alone was 2.6 GB).
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const record = (m: ReturnType<typeof getModel>) => ({
  model: m.name,
  modelOptions: { numClasses: 5, inChannels: m.inputShape[0] },
  classes: ['a', 'b', 'c', 'd', 'e'],
  preprocess: {
    inputSize: [m.inputShape[1], m.inputShape[2]] as [number, number],
    resize: 'bilinear' as const,
    mean: [],
    std: [],
  },
});

test("a state dict saved by real torch.save loads and gives torchvision's logits", { skip: oracleMissing() }, () => {
  manualSeed(4);
  const x = randn([2, 3, 224, 224]);
  const pth = path.join(dir, 'tv.pth');
  const nested = path.join(dir, 'nested.pth');
  const ref = runOracle([
    { id: 'a', op: 'save_pth', args: { path: pth, seed: 1 }, tensors: { x } },
    { id: 'b', op: 'save_pth', args: { path: nested, seed: 1, nested: true }, tensors: { x } },
  ]);
  for (const file of [pth, nested]) {
    const { model, record: r } = loadModel(file);
    assert.equal(r.model, 'alexnet-torchvision');
    assert.equal(r.classes[281], 'tabby');
    assert.deepEqual(r.preprocess.mean, [0.485, 0.456, 0.406]);
    const d = maxAbsDiff(
      noGrad(() => model.forward(x)),
      ref.get('a.y')!,
    );
    assert.ok(d <= 1e-4, `${path.basename(file)}: logits differ by ${d}`);
    model.dispose();
  }
  // a mis-shaped state dict: one error naming the keys
  const sd = loadPth(pth);
  sd.delete('classifier.6.bias');
  sd.set('classifier.4.weight', tensor([1], [1]));
  const m = getModel('alexnet-torchvision');
  assert.throws(
    () => m.loadStateDict(sd),
    (e: unknown) =>
      e instanceof StateDictError &&
      /classifier\.6\.bias/.test(e.message) &&
      /classifier\.4\.weight expects \[4096, 4096\] but got \[1\]/.test(e.message),
  );
  m.dispose();
});

test(
  'PyTorch reads the tensors of a safetensors file we wrote',
  { skip: oracleMissing() ?? firstPassOnly('the file format') },
  () => {
    manualSeed(6);
    const m = getModel('alexnet-bn', { inputSize: 67 });
    const file = path.join(dir, 'bn.safetensors');
    saveWeights(file, m, record(m));
    const ref = runOracle([{ id: 'r', op: 'read_safetensors', args: { path: file }, tensors: {} }]);
    for (const [k, t] of m.stateDict()) {
      const r = ref.get(`r.k.${k}`);
      assert.ok(r, `PyTorch did not find ${k}`);
      assert.equal(r.dtype, t.dtype, k);
      assert.equal(maxAbsDiff(r.to('float64'), t.to('float64')), 0, k);
    }
    assert.ok(ref.get('r.meta_len')!.item() >= 5);
  },
);

test(
  'ONNX export of every variant passes onnx.checker and matches in onnxruntime (dynamic batch)',
  { skip: oracleMissing() },
  async (t) => {
    // onnx.checker reads each file in one oracle process while the next variant is exported; the AVX2 repeat leaves
    // it out (the file does not depend on the kernels) and compares with onnxruntime only.
    const structure = firstPassOnly('onnx.checker on the exported file');
    const checker = structure ? undefined : onnxChecker();
    const files = new Map<string, string>();
    let checked: Map<string, OnnxCheck> | undefined;
    try {
      // The AlexNet variants; convnet-cifar's cuda-convnet rnorm has no ONNX mapping: refused in one line (below).
      for (const { name } of listModels().filter((e) => e.name !== 'convnet-cifar')) {
        manualSeed(8);
        const m = getModel(name).eval();
        const file = path.join(dir, `${name}.onnx`);
        const { bytes, opTypes } = exportOnnx(m, { model: name });
        fs.writeFileSync(file, bytes);
        checker?.add(file);
        files.set(name, file);
        assert.ok(!opTypes.includes('Dropout'), 'dropout is gone at inference');
        const session = await ort.InferenceSession.create(file);
        for (const batch of [1, 3]) {
          const x = randn([batch, ...m.inputShape]);
          const ours = noGrad(() => m.forward(x));
          const out = await session.run({ input: new ort.Tensor('float32', x.data() as Float32Array, x.shape) });
          const theirs = tensor(out.logits.data as Float32Array, out.logits.dims as number[]);
          const d = maxAbsDiff(ours, theirs);
          assert.ok(d <= 1e-4, `${name} batch ${batch}: max abs diff ${d}`);
        }
        await session.release();
        if (name === 'alexnet-2012')
          assert.ok(opTypes.includes('LRN') && opTypes.filter((o) => o === 'Conv').length === 5);
        m.dispose();
      }
    } finally {
      checked = await checker?.done(); // also ends the checker when an assertion above failed
    }
    const cifar = getModel('convnet-cifar');
    assert.throws(
      () => exportOnnx(cifar, { model: 'convnet-cifar' }),
      (e: Error) =>
        e instanceof UserError && /^features\.\d+: CudaConvnetResponseNorm\(.*\) has no ONNX mapping$/.test(e.message),
    );
    cifar.dispose();
    for (const [name, file] of checked ? files : []) {
      const c = checked!.get(file);
      assert.ok(c, `onnx.checker gave no answer for ${name}`);
      assert.equal(c.error, undefined, `${name}: ${c.error}`);
      assert.equal(c.opset, 13, name);
    }
    if (structure) t.diagnostic(structure);
  },
);

test('ONNX export takes a network as plain data (layer specs, shapes, weights by key), no model needed', async () => {
  manualSeed(12);
  // A small network that is no AlexNet: every mapped kind, a per-group LRN and pooling, in eval mode.
  const bn = new BatchNorm2d(4);
  noGrad(() => {
    bn.namedBuffers()[0][1].copy_(randn([4]).mul(0.1)); // running_mean
    bn.namedBuffers()[1][1].copy_(randn([4]).abs().add(0.5)); // running_var
  });
  const seq = new Sequential(
    new Conv2d(3, 4, 3, { padding: 1 }),
    bn,
    new ReLU(),
    new LocalResponseNorm({ convention: 'paper', alpha: 0.01, groups: 2 }),
    new MaxPool2d(3, { stride: 2, padding: 1 }),
    new AdaptiveAvgPool2d(2),
    new Flatten(),
    new Dropout(0.5),
    new Linear(16, 5),
  ).eval();
  const net = (input: number[], layers: Module[]): NetworkSpec => {
    let shape = input;
    const entries = layers.map((m, i): LayerEntry => {
      const entry = { name: String(i), spec: m.spec(), description: m.describe(), input: shape };
      shape = m.outputShape(shape);
      return { ...entry, output: shape };
    });
    return { name: 'small', input, layers: entries, weights: seq.stateDict() };
  };
  const { bytes, opTypes } = exportOnnx(net([3, 8, 8], seq.layers));
  assert.deepEqual(opTypes, [
    ...['Conv', 'BatchNormalization', 'Relu', 'Reshape', 'LRN', 'Reshape', 'MaxPool', 'AveragePool', 'Flatten'],
    'Gemm',
  ]);
  const file = path.join(dir, 'small.onnx');
  fs.writeFileSync(file, bytes);
  const session = await ort.InferenceSession.create(file);
  const x = randn([2, 3, 8, 8]);
  const ours = noGrad(() => seq.forward(x));
  const out = await session.run({ input: new ort.Tensor('float32', x.data() as Float32Array, x.shape) });
  await session.release();
  const d = maxAbsDiff(ours, tensor(out.logits.data as Float32Array, out.logits.dims as number[]));
  assert.ok(d <= 1e-5, `max abs diff ${d}`);
  // What ONNX cannot say is a UserError naming the layer.
  const refused = (layers: Module[], input: number[], message: RegExp) =>
    assert.throws(
      () => exportOnnx(net(input, layers)),
      (e: Error) => e instanceof UserError && message.test(e.message),
    );
  // (Tanh and adaptive pooling at every map size export now: test/onnx.test.ts)
  refused([new Flatten(), new Sequential(new Tanh())], [3, 2, 2], /^1: Sequential\(1\) has no ONNX mapping$/);
  refused([new LocalResponseNorm({ convention: 'pytorch', size: 4 })], [3, 4, 4], /^0: LRN with an even window \(4\)/);
  seq.dispose();
});

test('predict --runtime onnx works with the native engine hidden and agrees with libtorch', async () => {
  manualSeed(9);
  const m = getModel('alexnet-d2l', { inputSize: 67 }).eval();
  const weights = path.join(dir, 'd2l.safetensors');
  saveWeights(weights, m, {
    ...record(m),
    modelOptions: { numClasses: 10, inChannels: 1, inputSize: 67 },
    classes: 'abcdefghij'.split(''),
    sourceShape: [1, 28, 28],
    preprocess: { inputSize: [67, 67], resize: 'bilinear', mean: [0.3], std: [0.35] },
  });
  m.dispose();
  const sharp = (await import('sharp')).default;
  const img = path.join(dir, 'shape.png');
  const px = Buffer.alloc(40 * 30 * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 7) % 256;
  await sharp(px, { raw: { width: 40, height: 30, channels: 3 } })
    .png()
    .toFile(img);
  const onnx = path.join(dir, 'd2l.onnx');
  assert.equal(cli(['export', '--weights', weights, '--out', onnx]).code, 0);
  const a = JSON.parse(cli(['predict', '--weights', weights, '--json', img]).stdout);
  const hidden = cli(['predict', '--runtime', 'onnx', '--model-file', onnx, '--json', img], {
    env: { ALEXNET_NATIVE: '/nonexistent/alexnet_native.node' },
  });
  assert.equal(hidden.code, 0, hidden.stderr);
  const b = JSON.parse(hidden.stdout);
  assert.deepEqual(
    b[0].top.map((t: { class: string }) => t.class),
    a[0].top.map((t: { class: string }) => t.class),
  );
  a[0].top.forEach((t: { probability: number }, i: number) =>
    assert.ok(Math.abs(t.probability - b[0].top[i].probability) < 1e-4),
  );
  // without the ONNX runtime flag, the hidden engine is a one-line setup error
  assert.match(
    cli(['predict', '--weights', weights, img], { env: { ALEXNET_NATIVE: '/nonexistent/alexnet_native.node' } }).stderr,
    /npm run build:addon/,
  );
});

test(
  'hostile .pth files: not a zip, truncated, and a pickle asking for os.system (nothing runs)',
  { skip: oracleMissing() ?? firstPassOnly('refusing hostile files') },
  () => {
    const text = path.join(dir, 'text.pth');
    fs.writeFileSync(text, 'definitely not a checkpoint');
    assert.throws(() => loadPth(text), /not a PyTorch checkpoint/);
    const evil = path.join(dir, 'evil.pth');
    const marker = path.join(dir, 'pwned');
    runOracle([{ id: 'h', op: 'hostile_pth', args: { path: evil, marker }, tensors: {} }]);
    assert.throws(
      () => loadPth(evil),
      (e: unknown) => e instanceof FormatError && /global (posix|os)\.system, which is not allowed/.test(e.message),
    );
    assert.equal(fs.existsSync(marker), false, 'the pickle did not run');
    const good = path.join(dir, 'tv.pth');
    if (fs.existsSync(good)) {
      const cut = path.join(dir, 'cut.pth');
      fs.writeFileSync(cut, fs.readFileSync(good).subarray(0, 100000));
      assert.throws(() => loadPth(cut), /not a readable zip archive|truncated/);
    }
    const r = cli(['predict', '--weights', evil, text]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  },
);
