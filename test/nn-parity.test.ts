// Every layer type, forward and backward, against PyTorch (test/golden/oracle.py) on random inputs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UserError } from '../src/errors';
import { getModel, listModels } from '../src/models/registry';
import {
  AdaptiveAvgPool2d,
  BatchNorm2d,
  Conv2d,
  Dropout,
  F,
  Flatten,
  LayerKind,
  LayerSpec,
  layerFromSpec,
  Linear,
  LocalResponseNorm,
  MaxPool2d,
  Module,
  ReLU,
  Sequential,
  Tanh,
  withoutWeights,
} from '../src/nn';
import { manualSeed, randint, randn, Tensor, tensor } from '../src/tensor/tensor';
import { Case, maxAbs, maxAbsDiff, oracleMissing, runOracle } from './helpers/oracle';

// 1e-5 absolute for values of order one; for larger values (a weight gradient sums thousands of products) the
// same 1e-5 relative to the reference's largest magnitude, which is float32 rounding of different summation orders.
const TOL = 1e-5;
const within = (ours: Tensor, ref: Tensor) => {
  const d = maxAbsDiff(ours, ref);
  const scale = Math.max(1, maxAbs(ref));
  return { ok: d <= TOL * scale, d, scale };
};

interface LayerCase extends Case {
  /** Our computation from the case's tensors; every tensor input that is floating point gets a gradient. */
  ours: (t: Record<string, Tensor>) => Tensor | Record<string, Tensor>;
  gradOf?: string[];
}

function makeCases(): LayerCase[] {
  manualSeed(7);
  const x4 = (n: number, c: number, h: number, w: number, scale = 1) => randn([n, c, h, w]).mul(scale);
  const cases: LayerCase[] = [];
  const add = (c: LayerCase) => cases.push(c);
  const conv = (
    id: string,
    cin: number,
    cout: number,
    k: number,
    stride: number,
    padding: number,
    groups: number,
    hw: number,
  ) =>
    add({
      id,
      op: 'conv2d',
      args: { stride, padding, groups },
      tensors: { x: x4(2, cin, hw, hw), w: randn([cout, cin / groups, k, k]).mul(0.1), b: randn([cout]).mul(0.1) },
      ours: (t) => F.conv2d(t.x, t.w, t.b, { stride, padding, groups }),
      gradOf: ['x', 'w', 'b'],
    });
  conv('conv_stride4', 3, 8, 11, 4, 2, 1, 31);
  conv('conv_groups2', 8, 12, 5, 1, 2, 2, 9);
  conv('conv_3x3', 6, 4, 3, 1, 1, 1, 7);
  // AlexNet's conv3–conv5 geometry (16-multiple channels, 13×13, padding 1): where oneDNN has Winograd kernels
  // (AVX-512), float32 training runs them (native/onednn.cc, WinogradConv); padding 0 too.
  conv('conv_3x3_winograd', 32, 48, 3, 1, 1, 1, 13);
  conv('conv_3x3_winograd_pad0', 16, 32, 3, 1, 0, 1, 11);
  add({
    id: 'linear',
    op: 'linear',
    tensors: { x: randn([4, 20]), w: randn([7, 20]).mul(0.2), b: randn([7]) },
    ours: (t) => F.linear(t.x, t.w, t.b),
    gradOf: ['x', 'w', 'b'],
  });
  // Wider than tall, without bias: the shape of AlexNet's classifier (float32 runs on oneDNN's GEMM, see linear()).
  add({
    id: 'linear_wide_nobias',
    op: 'linear',
    tensors: { x: randn([3, 300]), w: randn([50, 300]).mul(0.05) },
    ours: (t) => F.linear(t.x, t.w),
    gradOf: ['x', 'w'],
  });
  add({ id: 'relu', op: 'relu', tensors: { x: randn([3, 10]) }, ours: (t) => t.x.relu(), gradOf: ['x'] });
  add({
    id: 'maxpool_overlap',
    op: 'maxpool',
    args: { k: 3, s: 2 },
    tensors: { x: x4(2, 3, 13, 13) },
    ours: (t) => F.maxPool2d(t.x, 3, 2),
    gradOf: ['x'],
  });
  add({
    id: 'maxpool_ceil',
    op: 'maxpool',
    args: { k: 3, s: 2, p: 1, ceil: true },
    tensors: { x: x4(1, 2, 8, 8) },
    ours: (t) => F.maxPool2d(t.x, 3, 2, 1, true),
    gradOf: ['x'],
  });
  add({
    id: 'adaptive_13',
    op: 'adaptiveavg',
    args: { size: [6, 6] },
    tensors: { x: x4(2, 3, 13, 13) },
    ours: (t) => F.adaptiveAvgPool2d(t.x, 6),
    gradOf: ['x'],
  });
  add({
    id: 'adaptive_5',
    op: 'adaptiveavg',
    args: { size: [6, 6] },
    tensors: { x: x4(1, 2, 5, 5) },
    ours: (t) => F.adaptiveAvgPool2d(t.x, 6),
    gradOf: ['x'],
  });
  for (const training of [true, false]) {
    add({
      id: `batchnorm_${training ? 'train' : 'eval'}`,
      op: 'batchnorm',
      args: { training, momentum: 0.1, eps: 1e-5 },
      tensors: {
        x: x4(4, 3, 5, 5, 2).add(1),
        w: randn([3]),
        b: randn([3]),
        rm: randn([3]).mul(0.1),
        rv: randn([3]).abs().add(0.5),
      },
      ours: (t) => {
        const rm = t.rm.clone();
        const rv = t.rv.clone();
        return {
          y: F.batchNorm(t.x, {
            weight: t.w,
            bias: t.b,
            runningMean: rm,
            runningVar: rv,
            training,
            momentum: 0.1,
            eps: 1e-5,
          }),
          rm,
          rv,
        };
      },
      gradOf: ['x', 'w', 'b'],
    });
  }
  // LRN: PyTorch/Caffe convention against torch's own local_response_norm, with AlexNet-scale activations so
  // the normaliser matters (alpha large enough to move the result well beyond the tolerance).
  add({
    id: 'lrn_pytorch',
    op: 'lrn_pytorch',
    args: { size: 5, alpha: 1e-4, beta: 0.75, k: 1 },
    tensors: { x: x4(2, 8, 4, 4, 30) },
    ours: (t) => F.localResponseNorm(t.x, 5, 1e-4, 0.75, 1, true),
    gradOf: ['x'],
  });
  add({
    id: 'lrn_pytorch_even',
    op: 'lrn_pytorch',
    args: { size: 4, alpha: 0.01, beta: 0.75, k: 2 },
    tensors: { x: x4(1, 6, 3, 3, 3) },
    ours: (t) => F.localResponseNorm(t.x, 4, 0.01, 0.75, 2, true),
    gradOf: ['x'],
  });
  // TensorFlow's tf.nn.lrn written out in the oracle (window 2r+1, alpha not divided): the paper's values too.
  add({
    id: 'lrn_tf',
    op: 'lrn_tf',
    args: { depth_radius: 2, bias: 2, alpha: 1e-4, beta: 0.75 },
    tensors: { x: x4(2, 7, 3, 3, 30) },
    ours: (t) => F.localResponseNorm(t.x, 5, 1e-4, 0.75, 2, false),
    gradOf: ['x'],
  });
  add({
    id: 'lrn_tf_r1',
    op: 'lrn_tf',
    args: { depth_radius: 1, bias: 1, alpha: 0.05, beta: 0.5 },
    tensors: { x: x4(1, 5, 2, 2, 2) },
    ours: (t) => F.localResponseNorm(t.x, 3, 0.05, 0.5, 1, false),
    gradOf: ['x'],
  });
  add({
    id: 'cross_entropy',
    op: 'cross_entropy',
    tensors: { x: randn([6, 10]).mul(3), target: randint(0, 10, [6]) },
    ours: (t) => F.crossEntropy(t.x, t.target).reshape(1),
    gradOf: ['x'],
  });
  add({
    id: 'cross_entropy_ls',
    op: 'cross_entropy',
    args: { label_smoothing: 0.1 },
    tensors: { x: randn([5, 4]), target: randint(0, 4, [5]) },
    ours: (t) => F.crossEntropy(t.x, t.target, { labelSmoothing: 0.1 }).reshape(1),
    gradOf: ['x'],
  });
  add({
    id: 'softmax',
    op: 'softmax',
    args: { dim: 1 },
    tensors: { x: randn([3, 5]) },
    ours: (t) => t.x.softmax(1),
    gradOf: ['x'],
  });
  add({
    id: 'log_softmax',
    op: 'log_softmax',
    args: { dim: 1 },
    tensors: { x: randn([3, 5]) },
    ours: (t) => t.x.logSoftmax(1),
    gradOf: ['x'],
  });
  add({
    id: 'resize_up',
    op: 'resize',
    args: { size: [20, 24] },
    tensors: { x: x4(2, 1, 7, 9) },
    ours: (t) => F.resize(t.x, [20, 24]),
    gradOf: ['x'],
  });
  add({
    id: 'resize_down_aa',
    op: 'resize',
    args: { size: [5, 6], antialias: true },
    tensors: { x: x4(1, 2, 16, 17) },
    ours: (t) => F.resize(t.x, [5, 6], 'bilinear', true),
    gradOf: ['x'],
  });
  return cases;
}

test('every layer matches PyTorch forward and backward within 1e-5', { skip: oracleMissing() }, () => {
  const cases = makeCases();
  // Upstream gradients: our output shapes decide them, and the oracle backpropagates the same ones.
  const ours = new Map<string, { out: Record<string, Tensor>; inputs: Record<string, Tensor> }>();
  for (const c of cases) {
    const inputs: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(c.tensors)) {
      inputs[k] = t.clone();
      if (c.gradOf?.includes(k)) inputs[k].requiresGrad_();
    }
    const r = c.ours(inputs);
    const out = r instanceof Tensor ? { y: r } : r;
    const gy = randn(out.y.shape);
    c.tensors.gy = gy;
    out.y.backward(gy);
    ours.set(c.id, { out, inputs });
  }
  const ref = runOracle(cases);
  let checked = 0;
  for (const c of cases) {
    const { out, inputs } = ours.get(c.id)!;
    for (const [k, t] of Object.entries(out)) {
      const r = ref.get(`${c.id}.${k}`);
      assert.ok(r, `oracle returned no ${c.id}.${k}`);
      assert.deepEqual(t.shape, r.shape, `${c.id}.${k} shape`);
      const { ok, d, scale } = within(t, r);
      assert.ok(ok, `${c.id}.${k}: max abs diff ${d} (largest value ${scale})`);
      checked++;
    }
    for (const k of c.gradOf ?? []) {
      const r = ref.get(`${c.id}.grad.${k}`);
      assert.ok(r, `oracle returned no gradient for ${c.id}.${k}`);
      const { ok, d, scale } = within(inputs[k].grad!, r);
      if (process.env.ALEXNET_VERBOSE) console.log(`${c.id} d/d${k}: ${d} (scale ${scale})`);
      assert.ok(ok, `${c.id} d/d${k}: max abs diff ${d} (largest value ${scale})`);
      checked++;
    }
  }
  assert.ok(checked > 50, `only ${checked} comparisons`);
});

test('LRN conventions differ as documented: paper = PyTorch with alpha × size', () => {
  manualSeed(3);
  const x = randn([1, 6, 2, 2]).mul(40);
  const paper = F.localResponseNorm(x, 5, 1e-4, 0.75, 2, false);
  const torchStyle = F.localResponseNorm(x, 5, 5e-4, 0.75, 2, true);
  assert.ok(maxAbsDiff(paper, torchStyle) < 1e-5);
  const naive = F.localResponseNorm(x, 5, 1e-4, 0.75, 2, true);
  assert.ok(maxAbsDiff(paper, naive) > 1e-3, 'dividing alpha by size must change the result at this scale');
  // Hand-computed single-channel case: C = 1, so the window is the channel itself: b = a / (k + α a²)^β.
  const one = tensor([3], [1, 1, 1, 1]);
  const got = F.localResponseNorm(one, 5, 0.1, 0.75, 2, false).item();
  assert.ok(Math.abs(got - 3 / Math.pow(2 + 0.1 * 9, 0.75)) < 1e-6);
});

test('dropout zeroes about p of the elements and scales the rest by 1/(1-p); identity in eval', () => {
  manualSeed(11);
  const x = randn([100000]).abs().add(1);
  const y = F.dropout(x, 0.5, true);
  const zerosFrac = y.eq(0).float().mean().item();
  assert.ok(Math.abs(zerosFrac - 0.5) < 0.01, `zero fraction ${zerosFrac}`);
  const kept = y.gt(0);
  const ratio = y.sum().item() / x.mul(kept.float()).sum().item();
  assert.ok(Math.abs(ratio - 2) < 1e-4);
  assert.equal(maxAbsDiff(F.dropout(x, 0.5, false), x), 0);
});

// Every kind of layer with hyper-parameters away from their defaults, and its spec written out by hand.
const SPEC_CASES: [() => Module, LayerSpec][] = [
  [
    () => new Conv2d(6, 4, [5, 3], { stride: [2, 1], padding: [2, 0], dilation: [1, 2], groups: 2, bias: false }),
    {
      kind: 'conv2d',
      inChannels: 6,
      outChannels: 4,
      kernel: [5, 3],
      stride: [2, 1],
      padding: [2, 0],
      dilation: [1, 2],
      groups: 2,
      bias: false,
    },
  ],
  [
    () => new Conv2d(3, 8, 11, { stride: 4 }),
    {
      kind: 'conv2d',
      inChannels: 3,
      outChannels: 8,
      kernel: [11, 11],
      stride: [4, 4],
      padding: [0, 0],
      dilation: [1, 1],
      groups: 1,
      bias: true,
    },
  ],
  [() => new Linear(9, 7), { kind: 'linear', inFeatures: 9, outFeatures: 7, bias: true }],
  [() => new Linear(9, 7, { bias: false }), { kind: 'linear', inFeatures: 9, outFeatures: 7, bias: false }],
  [() => new ReLU(true), { kind: 'relu', inplace: true }],
  [() => new ReLU(), { kind: 'relu', inplace: false }],
  [() => new Tanh(), { kind: 'tanh' }],
  [() => new Dropout(0.3), { kind: 'dropout', p: 0.3 }],
  [() => new Flatten(), { kind: 'flatten' }],
  [
    () => new MaxPool2d([3, 2], { stride: [2, 1], padding: [1, 0], ceilMode: true }),
    { kind: 'maxPool2d', kernel: [3, 2], stride: [2, 1], padding: [1, 0], ceilMode: true },
  ],
  [() => new MaxPool2d(3), { kind: 'maxPool2d', kernel: [3, 3], stride: [3, 3], padding: [0, 0], ceilMode: false }],
  [() => new AdaptiveAvgPool2d([6, 4]), { kind: 'adaptiveAvgPool2d', size: [6, 4] }],
  [
    () => new LocalResponseNorm({ convention: 'paper', groups: 2 }),
    { kind: 'lrn', convention: 'paper', size: 5, alpha: 1e-4, beta: 0.75, k: 2, alphaPerSize: false, groups: 2 },
  ],
  [
    () => new LocalResponseNorm({ convention: 'pytorch', size: 4, alpha: 0.1, beta: 0.5, k: 3 }),
    { kind: 'lrn', convention: 'pytorch', size: 4, alpha: 0.1, beta: 0.5, k: 3, alphaPerSize: true, groups: 1 },
  ],
  [
    () => new LocalResponseNorm({ convention: 'tensorflow', depthRadius: 2, bias: 1.5, alpha: 0.2, beta: 0.6 }),
    { kind: 'lrn', convention: 'tensorflow', size: 5, alpha: 0.2, beta: 0.6, k: 1.5, alphaPerSize: false, groups: 1 },
  ],
  [
    () => new BatchNorm2d(5, { eps: 1e-3, momentum: 0.2, affine: false }),
    { kind: 'batchNorm2d', numFeatures: 5, eps: 1e-3, momentum: 0.2, affine: false },
  ],
  [() => new BatchNorm2d(5), { kind: 'batchNorm2d', numFeatures: 5, eps: 1e-5, momentum: 0.1, affine: true }],
  [
    () => new Sequential(new Linear(4, 3), new Tanh()),
    {
      kind: 'sequential',
      children: [{ kind: 'linear', inFeatures: 4, outFeatures: 3, bias: true }, { kind: 'tanh' }],
    },
  ],
];

test("every layer's spec states its hyper-parameters, as data, and builds the same layer back", () => {
  manualSeed(4);
  const kinds = new Set<LayerKind>();
  for (const [make, expected] of SPEC_CASES) {
    const m = make();
    const spec = m.spec();
    const what = m.describe();
    kinds.add(spec.kind);
    assert.deepEqual(spec, expected, what);
    assert.deepEqual(JSON.parse(JSON.stringify(spec)), spec, `${what}: plain data, no tensors`);
    const back = layerFromSpec(spec);
    assert.equal(back.constructor, m.constructor, what);
    assert.deepEqual(back.spec(), spec, `${what} built back from its spec`);
    assert.equal(back.describe(), what);
    assert.deepEqual(
      back.namedParameters().map(([k, p]) => [k, p.shape]),
      m.namedParameters().map(([k, p]) => [k, p.shape]),
      `${what}: the same parameters`,
    );
    assert.deepEqual(withoutWeights(make).spec(), spec, `${what} built without weights`);
    m.dispose();
    back.dispose();
  }
  // A spec is a copy: changing it leaves the layer as it was.
  const conv = new Conv2d(2, 2, 3);
  const spec = conv.spec() as { kernel: number[] };
  spec.kernel[0] = 5;
  assert.deepEqual(conv.kernel, [3, 3]);
  conv.dispose();
  const all: LayerKind[] = ['conv2d', 'linear', 'relu', 'tanh', 'dropout', 'flatten', 'maxPool2d'];
  all.push('adaptiveAvgPool2d', 'lrn', 'batchNorm2d', 'sequential');
  assert.deepEqual([...kinds].sort(), all.sort(), 'every layer class is covered');
});

test("every variant's network spec lists its layers in execution order with their shapes, and builds back", () => {
  // The AlexNet variants. convnet-cifar's cuda-convnet layers (within-map rnorm, ceil-mode average pooling) have no
  // spec of their own yet (they describe themselves as containers), so they cannot be built back from one.
  for (const { name } of listModels().filter((e) => e.name !== 'convnet-cifar')) {
    const m = withoutWeights(() => getModel(name, { numClasses: 10 }));
    const net = m.networkSpec();
    assert.equal(net.name, name);
    assert.deepEqual(net.input, m.inputShape);
    const table = m.layerTable();
    assert.deepEqual(
      net.layers.map((l) => [l.name, l.description, l.output]),
      table.map((r) => [r.name, r.layer, r.outputShape]),
      name,
    );
    net.layers.forEach((l, i) => assert.deepEqual(l.input, i ? net.layers[i - 1].output : m.inputShape, l.name));
    assert.equal(net.layers[net.layers.length - 1].output[0], 10);
    // Each layer's spec is the layer's, and the feature stack builds back with the same parameter shapes.
    assert.deepEqual(
      net.layers.filter((l) => l.name.startsWith('features.')).map((l) => l.spec),
      (m.features.spec() as { children: LayerSpec[] }).children,
    );
    const features = withoutWeights(() => layerFromSpec(m.features.spec()));
    const counts = (x: Module) => x.namedModules().map(([k, c]) => [k, c.describe(), c.ownParameterCount()]);
    assert.deepEqual(counts(features), counts(m.features), name);
    // A model is a container of its blocks, and has no constructor to call from a spec.
    const spec = m.spec();
    assert.ok(spec.kind === 'container' && spec.type === 'AlexNet', name);
    assert.deepEqual(
      spec.children.map((c) => c.name),
      m.avgpool ? ['features', 'avgpool', 'classifier'] : ['features', 'classifier'],
    );
    assert.throws(
      () => layerFromSpec(spec),
      (e: Error) => e instanceof UserError && /AlexNet cannot be built/.test(e.message),
    );
  }
});
