// Inference on oneDNN plans (src/runtime/inference.ts, native/onednn.cc): what predict, eval, serve and bench run
// on the CPU. The plan must give the model's logits: checked against PyTorch's torchvision AlexNet run live in
// float64 (the reference) with PyTorch's own float32 and bfloat16 errors as the yardstick (test/helpers/tolerance.ts),
// and, for the other variants, against our own libtorch path in float64 (itself held to PyTorch's float64 at ~1e-14
// by models.test.ts). Then what a plan must also get right: several batch sizes and both input layouts through one
// plan, batch normalisation folded into the convolution, weights packed once (a snapshot), and falling back to
// libtorch's ops, saying why, where a plan cannot run.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AlexNet, AlexNetOptions } from '../src/models/alexnet';
import { getModel } from '../src/models/registry';
import { Linear } from '../src/nn';
import { prepareModel } from '../src/runtime/device';
import { InferenceRunner } from '../src/runtime/inference';
import { native } from '../src/tensor/binding';
import { manualSeed, noGrad, randint, randn, Tensor, tidy } from '../src/tensor/tensor';
import { cli } from './helpers/cli';
import { bf16ConvMissing } from './helpers/cpu';
import { maxAbs, maxAbsDiff, oracleMissing, runOracle } from './helpers/oracle';
import { judge } from './helpers/tolerance';

const noPlans = native().onednnAvailable ? undefined : 'the addon was built without oneDNN (libdnnl-dev)';

test('the addon has oneDNN plans where setup.sh builds it (Debian libtorch-dev with libdnnl-dev)', () => {
  // CI builds with scripts/setup.sh: there the plans must exist, or every test below would skip.
  if (process.env.CI === 'true') assert.equal(noPlans, undefined);
  // `alexnet info` says whether they are there.
  const info = cli(['info']);
  assert.equal(info.code, 0, info.stderr);
  assert.equal(JSON.parse(info.stdout).onednnPlans, noPlans === undefined);
});

// float32: ours within 4 × PyTorch's own float32 (channels-last) error + 1e-5, largest element (as models.test.ts).
const FP32 = { c: 4, floor: 1e-5, metric: 'max' as const };
// bfloat16: as precision.test.ts holds autocast, 2 × torch.autocast's error + one bfloat16 unit (largest element:
// the logits of a batch are few, so the single ones a flipped ReLU mask moves do not dominate).
const BF16 = { c: 2, floor: 2 ** -8, metric: 'max' as const };

function model(name: string, options: AlexNetOptions = {}): AlexNet {
  manualSeed(11);
  return prepareModel(getModel(name, options), 'cpu').eval();
}

/** The model's logits in float64 through libtorch's ops (a float64 copy of the same weights). */
function float64Logits(m: AlexNet, x: Tensor, options: AlexNetOptions = {}): Tensor {
  const copy = getModel(m.name, options);
  copy.loadStateDict(m.stateDict());
  copy.eval().to('float64');
  const y = noGrad(() => tidy(() => copy.forward(x.to('float64')).keep()));
  copy.dispose();
  return y;
}

test(
  "a oneDNN plan gives torchvision's logits as closely as PyTorch itself does, in float32 and bfloat16",
  { skip: noPlans ?? oracleMissing() },
  () => {
    const m = model('alexnet-torchvision');
    const x = randn([3, 3, 224, 224]);
    const tensors: Record<string, Tensor> = { x, target: randint(0, 1000, [3]) };
    for (const [k, t] of m.stateDict()) tensors[k] = t;
    const runs = [
      { name: 'f64', dtype: 'float64' },
      { name: 'f32', dtype: 'float32', channels_last: true },
      ...(bf16ConvMissing() ? [] : [{ name: 'bf16', autocast: 'bfloat16', channels_last: true }]),
    ];
    const ref = runOracle([
      { id: 'm', op: 'model_torchvision', args: { runs, peer_errors: { ref: 'f64', metric: 'max' } }, tensors },
    ]);
    const y64 = ref.get('m.f64.y')!;
    const fp32 = new InferenceRunner(m, 'cpu', 'fp32');
    assert.equal(fp32.engine, 'onednn', fp32.reason);
    const v32 = judge('oneDNN fp32 logits', fp32.forward(x), y64, ref.get('m.f32.err.y')!.item(), FP32);
    if (process.env.ALEXNET_VERBOSE) console.log(v32.message);
    assert.ok(v32.ok, v32.message);
    if (!bf16ConvMissing()) {
      const bf16 = new InferenceRunner(m, 'cpu', 'bf16');
      const y = bf16.forward(x);
      assert.equal(bf16.engine, 'onednn', bf16.reason);
      const vb = judge('oneDNN bf16 logits', y, y64, ref.get('m.bf16.err.y')!.item(), BF16);
      if (process.env.ALEXNET_VERBOSE) console.log(vb.message);
      assert.ok(vb.ok, vb.message);
      bf16.dispose();
    }
    fp32.dispose();
    m.dispose();
  },
);

test('the other variants, batch norm folded in, match their float64 logits through libtorch', { skip: noPlans }, () => {
  // The paper's network at 99×99 (every layer kept, models.test.ts says why): its LRN normalises each tower alone.
  const variants: [string, AlexNetOptions][] = [
    ['alexnet-d2l', {}],
    ['alexnet-half', {}],
    ['alexnet-bn', {}],
    ['alexnet-2012', { inputSize: 99 }],
  ];
  for (const [name, options] of variants) {
    const m = model(name, options);
    if (name === 'alexnet-bn') {
      // Running statistics far from (0, 1) and affine parameters far from (1, 0), so that folding them matters.
      m.train();
      noGrad(() =>
        tidy(() =>
          m.forward(
            randn([8, ...m.inputShape])
              .mul(3)
              .add(1),
          ),
        ),
      );
      m.eval();
      for (const [k, p] of m.namedParameters())
        if (/^features\.\d+\.(weight|bias)$/.test(k) && p.shape.length === 1)
          noGrad(() => p.copy_(randn(p.shape).add(1)));
    }
    const x = randn([2, ...m.inputShape]);
    const y64 = float64Logits(m, x, options);
    const runner = new InferenceRunner(m, 'cpu', 'fp32');
    assert.equal(runner.engine, 'onednn', `${name}: ${runner.reason}`);
    // The yardstick: libtorch's own float32 error on these weights.
    const peer = noGrad(() => m.forward(x));
    const v = judge(`${name} oneDNN fp32 logits`, runner.forward(x), y64, peer, FP32);
    if (process.env.ALEXNET_VERBOSE) console.log(v.message);
    assert.ok(v.ok, v.message);
    runner.dispose();
    m.dispose();
  }
});

test('one plan serves several batch sizes and both input layouts; weights are a snapshot', { skip: noPlans }, () => {
  const m = model('alexnet-d2l');
  const runner = new InferenceRunner(m, 'cpu', 'fp32');
  runner.prepare(1);
  const x = randn([5, ...m.inputShape]);
  const whole = runner.forward(x);
  const scale = maxAbs(whole);
  for (const [start, n] of [
    [0, 1],
    [1, 3],
    [4, 1],
  ]) {
    const part = runner.forward(x.narrow(0, start, n));
    assert.ok(maxAbsDiff(part, whole.narrow(0, start, n)) <= 1e-5 * scale, `batch of ${n} from ${start}`);
  }
  const cl = runner.forward(x.to({ memoryFormat: 'channelsLast' }));
  assert.ok(maxAbsDiff(cl, whole) <= 1e-5 * scale, 'channels-last input');
  const kinds = runner.kernels(x).map((k) => k.split(':')[0]);
  assert.deepEqual(
    ['conv', 'pool', 'linear'].map((k) => kinds.filter((x) => x === k).length),
    [5, 3, 3],
    `five convolutions (ReLU fused), three poolings, three inner products (ReLU fused): ${kinds}`,
  );
  // Training on after the plan was built does not change it: a plan is rebuilt when the weights are final.
  const fc8 = m.classifier.layers[m.classifier.layers.length - 1] as Linear;
  noGrad(() => tidy(() => fc8.bias!.copy_(fc8.bias!.add(1))));
  assert.ok(maxAbsDiff(runner.forward(x), whole) <= 1e-5 * scale, 'the packed weights are a snapshot');
  const fresh = new InferenceRunner(m, 'cpu', 'fp32');
  const moved = maxAbsDiff(fresh.forward(x), whole);
  assert.ok(Math.abs(moved - 1) < 1e-4, `a new plan sees the new bias (logits moved by ${moved})`);
  fresh.dispose();
  runner.dispose();
  // After dispose the runner still answers, through libtorch's ops.
  assert.equal(runner.forward(x).shape.join(), '5,10');
  m.dispose();
});

test('where a plan cannot run, libtorch does, and the runner says why', { skip: noPlans }, () => {
  // tanh (the paper's Figure 1 comparison) is not fused here.
  const tanh = model('alexnet-d2l', { activation: 'tanh' });
  const r = new InferenceRunner(tanh, 'cpu', 'fp32');
  assert.equal(r.engine, 'libtorch');
  assert.match(r.reason!, /Tanh/);
  const x = randn([1, ...tanh.inputShape]);
  assert.equal(
    maxAbsDiff(
      r.forward(x),
      noGrad(() => tanh.forward(x)),
    ),
    0,
  );
  tanh.dispose();

  const m = model('alexnet-torchvision');
  // Another input size (the adaptive pool makes it valid): that call runs libtorch's ops, the plan stays.
  const big = randn([1, 3, 256, 256]);
  const runner = new InferenceRunner(m, 'cpu', 'fp32');
  assert.equal(
    maxAbsDiff(
      runner.forward(big),
      noGrad(() => m.forward(big)),
    ),
    0,
  );
  assert.equal(runner.engine, 'onednn');
  runner.dispose();
  m.train();
  assert.match(new InferenceRunner(m, 'cpu', 'fp32').reason!, /training mode/);
  m.eval();
  process.env.ALEXNET_INFERENCE = 'libtorch';
  try {
    assert.match(new InferenceRunner(m, 'cpu', 'fp32').reason!, /ALEXNET_INFERENCE=libtorch/);
  } finally {
    delete process.env.ALEXNET_INFERENCE;
  }
  m.dispose();
});

test('a plan whose first layer is linear reads its 4-D input as the flatten', { skip: noPlans }, () => {
  // The input's buffer is known only per run: the plan copies it before reading it under other dimensions.
  const w = randn([5, 12]);
  const plan = native().onednnPlan!([{ kind: 'linear', weight: 0 }], [w.handle], false);
  for (const x of [randn([2, 3, 2, 2]), randn([4, 3, 2, 2])]) {
    const y = new Tensor(native().onednnRun!(plan, x.handle));
    assert.ok(maxAbsDiff(y, x.flatten(1).matmul(w.transpose(0, 1))) <= 1e-5 * maxAbs(y));
  }
  native().onednnRelease!(plan);
  assert.throws(() => native().onednnRun!(plan, w.view(5, 12, 1, 1).handle), /released/);
});
