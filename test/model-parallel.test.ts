// The paper's two-GPU model parallelism (src/distributed/model-parallel.ts) against the one-process alexnet-2012 on
// the same weights: logits, loss and every parameter's gradient. Two towers in one process (step-locked, the
// exchanges in memory), then two real ranks over c10d (test/helpers/mp-worker.ts).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  assembleGradients,
  assembleStateDict,
  buildTower,
  inProcessExchanges,
  Tower,
  towerBackward,
  towerForward,
  towerLogits,
} from '../src/distributed/model-parallel';
import { UserError } from '../src/errors';
import { AlexNet } from '../src/models/alexnet';
import { loadSafetensors } from '../src/io/safetensors';
import { getModel } from '../src/models/registry';
import { F, StateDict } from '../src/nn';
import { SGD } from '../src/optim/optimizer';
import { DType } from '../src/tensor/dtype';
import { manualSeed, noGrad, randint, randn, runtimeInfo, Tensor } from '../src/tensor/tensor';
import { MP_SGD, mpSetting, MpWorkerArgs } from './helpers/mp-worker';
import { maxAbs, maxAbsDiff, relDiff } from './helpers/oracle';
import { freePort } from '../src/distributed/launch';

// 99×99 keeps every layer of the paper's network (FC6 reads 256·2·2 features, so the flattened maps of both towers
// interleave as in one process) at a fraction of 227×227's time.
const SIZE = 99;

/** The one-process model's logits, loss and gradients on (x, y). */
function reference(model: AlexNet, x: Tensor, y: Tensor) {
  const logits = model.forward(x);
  const loss = F.crossEntropy(logits, y);
  loss.backward();
  return { logits, loss: loss.item(), grads: new Map(model.namedParameters().map(([k, p]) => [k, p.grad!])) };
}

/** Both towers step-locked in this process: forward, loss, backward; then the gradients reassembled on each side. */
async function twoTowers(towers: Tower[], x: Tensor, y: Tensor) {
  const ex = inProcessExchanges();
  const passes = await Promise.all(towers.map((t, r) => towerForward(t, ex[r], x)));
  const losses = passes.map((p) => F.crossEntropy(p.logits, y));
  await Promise.all(towers.map((t, r) => towerBackward(t, ex[r], passes[r], losses[r])));
  const grads = await Promise.all(towers.map((t, r) => assembleGradients(t, ex[r])));
  const evaluated = await Promise.all(towers.map((t, r) => towerLogits(t, ex[r], x))); // no graph: evaluation's path
  return { logits: passes.map((p) => p.logits), evaluated, losses: losses.map((l) => l.item()), grads };
}

/** The largest relative difference (max |a − b| / max |b|) over the keys, and the key where it is. */
function worst(got: StateDict, want: Map<string, Tensor>): { key: string; err: number } {
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), 'the same one-process keys');
  return [...want].reduce(
    (w, [k, t]) => {
      const err = relDiff(got.get(k)!, t);
      return err > w.err ? { key: k, err } : w;
    },
    { key: '', err: 0 },
  );
}

/**
 * How far evaluation's logits (towerLogits) may be from the training pass's, relative to the largest logit. The two
 * run the same layers on the same numbers, but on libtorch 2.x not the same kernels: the addon runs a convolution
 * whose NCHW input needs its gradient in channels-last (native/nn.cc: libtorch 2.6's oneDNN bug; for every dtype),
 * so in the training pass conv2 to conv5 sum their products in another order than in evaluation, where no input
 * needs a gradient (PyTorch 2.6 itself: float64 NCHW and channels-last convolutions differ by ~1e-15). Two orders of
 * a sum of K products can differ by 2·γ(K) ≈ 2·K·u of the products' magnitudes (u = 2^-53, float64's unit
 * roundoff); summed over the layers (K: each weight's fan-in), 3.7e-12 here: a worst case that typical rounding
 * (about √K·u) stays far below, leaving room for the cancellation in random weights' logits (measured on 2.6:
 * 8e-16), while a wrong path (dropout on, a slice off) is off by far more. On libtorch 1.x both passes run the same
 * kernels: the logits must be equal.
 */
function evaluationBound(model: AlexNet, dtype: DType): number {
  if (runtimeInfo().libtorchVersion.startsWith('1.')) return 0;
  assert.equal(dtype, 'float64', "the bound is float64's");
  const fanIns = model.parameters().filter((p) => p.ndim > 1);
  const k = fanIns.reduce((sum, p) => sum + p.shape.slice(1).reduce((a, b) => a * b, 1), 0);
  return 2 * k * 2 ** -53;
}

async function compare(dtype: DType, tolerance: number) {
  manualSeed(21);
  const model = getModel('alexnet-2012', { inputSize: SIZE }).eval(); // dropout off for the comparison
  model.to(dtype);
  const x = randn([2, 3, SIZE, SIZE]).to(dtype);
  const y = randint(0, 1000, [2]);
  const ref = reference(model, x, y);
  const towers = [0, 1].map((r) => buildTower(r, model));
  const got = await twoTowers(towers, x, y);
  const evalBound = evaluationBound(model, dtype);
  for (const r of [0, 1]) {
    const logitsErr = relDiff(got.logits[r], ref.logits);
    assert.ok(logitsErr <= tolerance, `${dtype} rank ${r}: logits ${logitsErr} from one process'`);
    const evalErr = relDiff(got.evaluated[r], got.logits[r]);
    assert.ok(evalErr <= evalBound, `evaluation gives the training pass its logits: ${evalErr} apart (${evalBound})`);
    assert.ok(!got.evaluated[r].requiresGrad);
    assert.ok(Math.abs(got.losses[r] - ref.loss) <= tolerance * ref.loss, `rank ${r}: loss ${got.losses[r]}`);
    const g = worst(got.grads[r], ref.grads);
    if (process.env.ALEXNET_VERBOSE)
      console.log(`${dtype} rank ${r}: logits ${logitsErr}, evaluation ${evalErr}, worst gradient ${g.key} ${g.err}`);
    assert.ok(g.err <= tolerance, `${dtype} rank ${r}: the gradient of ${g.key} is ${g.err} from one process'`);
  }
  for (const t of towers) t.dispose();
  model.dispose();
}

test("two towers in one process give alexnet-2012's logits, loss and gradients in float64 (exact exchanges)", async () => {
  // float64: summation-order differences are ~1e-16 of the values, so a wrong slice, a missing exchange or a
  // gradient summed wrongly across an exchange shows far above the tolerance (float32, the 1e-4, is the
  // two-process test below).
  await compare('float64', 1e-10);
});

test('each tower holds half of every layer: the paper’s 48-128-192-192-128 kernels, 2048-2048 units, FC8 by inputs', async () => {
  manualSeed(2);
  const model = getModel('alexnet-2012', { inputSize: SIZE });
  const towers = [0, 1].map((r) => buildTower(r, model));
  const shapes = (t: Tower) => t.shards.filter((s) => s.param).map((s) => `${s.key} ${s.param!.shape.join('×')}`);
  assert.deepEqual(shapes(towers[0]), [
    'features.0.weight 48×3×11×11',
    'features.0.bias 48',
    'features.4.weight 128×48×5×5',
    'features.4.bias 128',
    'features.8.weight 192×256×3×3',
    'features.8.bias 192',
    'features.10.weight 192×192×3×3',
    'features.10.bias 192',
    'features.12.weight 128×192×3×3',
    'features.12.bias 128',
    'classifier.1.weight 2048×1024',
    'classifier.1.bias 2048',
    'classifier.4.weight 2048×4096',
    'classifier.4.bias 2048',
    'classifier.6.weight 1000×2048',
    'classifier.6.bias 1000',
  ]);
  // Rank 1 holds no FC8 bias (the partial products are summed, the bias added once); halves add up to the model.
  assert.equal(shapes(towers[1]).length, 15);
  assert.equal(towers[0].numParameters() + towers[1].numParameters(), model.numParameters());
  // Exchanges where the paper's GPUs communicate: before conv3, FC6 and FC7 (four segments).
  assert.equal(towers[0].segments.length, 4);
  assert.deepEqual(
    towers[1].segments.map((s) => s.layers[0].describe()),
    [
      'Conv2d(3, 48, kernel=11×11, stride=4)',
      'Conv2d(256, 192, kernel=3×3, padding=1)',
      'Linear(1024, 2048)',
      'Linear(4096, 2048)',
    ],
  );
  // The halves go back together exactly (slicing and concatenation move numbers, they do not round them), on
  // each rank.
  const ex = inProcessExchanges();
  const whole = await Promise.all(towers.map((t, r) => assembleStateDict(t, ex[r])));
  for (const r of [0, 1]) {
    assert.deepEqual([...whole[r].keys()], [...model.stateDict().keys()]);
    for (const [k, t] of model.stateDict()) assert.equal(maxAbsDiff(whole[r].get(k)!, t), 0, `rank ${r}: ${k}`);
  }
  // From a checkpoint's state dict (and the model options) the same tower.
  const fromDict = buildTower(1, model.stateDict(), { inputSize: SIZE });
  const own = towers[1].parameters();
  fromDict.parameters().forEach((p, i) => assert.equal(maxAbsDiff(p, own[i]), 0));
  for (const t of [...towers, fromDict]) t.dispose();
  model.dispose();
});

test('a network that cannot be split the paper’s way is refused with the reason', () => {
  const refused = (f: () => unknown, re: RegExp) =>
    assert.throws(f, (e: unknown) => e instanceof UserError && re.test(e.message));
  const oneGroup = getModel('alexnet-2012', { inputSize: SIZE, groups: 1 });
  refused(() => buildTower(0, oneGroup), /cannot split features\.2 .*LRN must normalise each tower on its own/);
  const bn = getModel('alexnet-bn', { inputSize: 99 });
  refused(() => buildTower(0, bn), /cannot split features\.1 \(BatchNorm2d/);
  refused(() => buildTower(2, oneGroup), /two ranks \(0 and 1\), got rank 2/);
  oneGroup.dispose();
  bn.dispose();
});

/** Runs one rank of test/helpers/mp-worker.ts to its end (killed past `limitMs`: nothing hangs). */
function rank(args: MpWorkerArgs, limitMs: number): Promise<{ code: number | null; output: string }> {
  const worker = path.join(__dirname, 'helpers', 'mp-worker.js');
  const proc = spawn(process.execPath, [worker, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (d) => (output += d));
  proc.stderr.on('data', (d) => (output += d));
  const kill = setTimeout(() => proc.kill('SIGKILL'), limitMs);
  return new Promise((resolve) =>
    proc.on('exit', (code) => {
      clearTimeout(kill);
      resolve({ code, output });
    }),
  );
}

/** The one-process run the workers make: logits, loss and gradients, an SGD step, a second step's loss, the weights. */
function oneProcess() {
  const { model, x, y } = mpSetting();
  const start = new Map([...model.stateDict()].map(([k, t]) => [k, noGrad(() => t.clone())]));
  const first = reference(model, x, y);
  const sgd = new SGD(model.parameters(), MP_SGD);
  sgd.step();
  sgd.zeroGrad();
  const second = F.crossEntropy(model.forward(x), y);
  second.backward();
  sgd.step();
  return { first, loss2: second.item(), start, weights: model.stateDict() };
}

test("two ranks over c10d give alexnet-2012's logits, gradients and SGD steps (the paper's two GPUs as processes)", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-mp-'));
  try {
    const out = path.join(dir, 'rank0.safetensors');
    const port = await freePort();
    const runs = await Promise.all([0, 1].map((r) => rank({ rank: r, port, timeoutMs: 30_000, out }, 90_000)));
    runs.forEach((r, i) => assert.equal(r.code, 0, `rank ${i}: ${r.output}`));
    const got = loadSafetensors(out).tensors;
    const ref = oneProcess();
    const err = relDiff(got.get('logits')!, ref.first.logits);
    assert.ok(err <= 1e-4, `logits ${err} from one process'`);
    const [loss, loss2] = got.get('loss')!.toArray();
    assert.ok(Math.abs(loss - ref.first.loss) <= 1e-5 * ref.first.loss, `loss ${loss} vs ${ref.first.loss}`);
    assert.ok(Math.abs(loss2 - ref.loss2) <= 1e-4 * ref.loss2, `second step's loss ${loss2} vs ${ref.loss2}`);
    const grads = new Map([...got].filter(([k]) => k.startsWith('grad.')).map(([k, t]) => [k.slice(5), t]));
    const g = worst(grads, ref.first.grads);
    assert.ok(g.err <= 1e-4, `the gradient of ${g.key} is ${g.err} from one process'`);
    // After two SGD steps (momentum, weight decay), each tensor's change against one process': the changes agree
    // as the gradients do (1e-4), plus the float32 rounding of the weights they are the difference of.
    const weights = new Map([...got].filter(([k]) => k.startsWith('weight.')).map(([k, t]) => [k.slice(7), t]));
    assert.deepEqual([...weights.keys()].sort(), [...ref.weights.keys()].sort());
    for (const [k, t0] of ref.start) {
      const change = (w: Tensor) => w.to('float64').sub(t0.to('float64'));
      const d = maxAbsDiff(change(weights.get(k)!), change(ref.weights.get(k)!));
      const allowed = 1e-4 * maxAbs(change(ref.weights.get(k)!)) + 4 * 2 ** -24 * maxAbs(t0);
      assert.ok(d <= allowed, `the update of ${k} is ${d} from one process', allowed ${allowed}`);
    }
    if (process.env.ALEXNET_VERBOSE) console.log(`logits ${err}, gradient ${g.key} ${g.err}, losses ${loss} ${loss2}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
