// Mixed precision: bfloat16 autocast against torch.autocast on the same weights, loss scaling against
// GradScaler's rules worked by hand, and the precision choices a user can make.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getModel } from '../src/models/registry';
import { crossEntropy } from '../src/nn/functional';
import { native } from '../src/tensor/binding';
import { manualSeed, randint, randn, Tensor, tensor } from '../src/tensor/tensor';
import { autocast, GradScaler, resolvePrecision } from '../src/runtime/precision';
import { maxAbsDiff, oracleMissing, relDiff, runOracle } from './helpers/oracle';

test('bf16 autocast gives torch.autocast\'s logits, loss and gradients on the same torchvision weights', { skip: oracleMissing() }, () => {
  manualSeed(11);
  // NCHW, as PyTorch's model runs: then both take the same oneDNN bfloat16 kernels. (Channels-last takes other
  // kernels, whose bfloat16 rounding differs by a few per cent on these random-weight logits.)
  const m = getModel('alexnet-torchvision', { inputSize: 127 }).setMemoryFormat('contiguous').eval();
  const x = randn([2, 3, 127, 127]);
  const target = randint(0, 1000, [2]);
  const tensors: Record<string, Tensor> = { x, target };
  for (const [k, t] of m.stateDict()) tensors[k] = t;
  const ref = runOracle([{ id: 'a', op: 'model_torchvision', args: { autocast: 'bfloat16' }, tensors }]);
  const { logits, loss } = autocast('cpu', 'bf16', () => {
    const out = m.forward(x);
    return { logits: out, loss: crossEntropy(out, target) };
  });
  assert.equal(logits.dtype, 'bfloat16', 'the classifier ran in bfloat16');
  assert.equal(loss.dtype, 'float32', 'cross-entropy runs in float32 under autocast');
  const d = maxAbsDiff(logits, ref.get('a.y')!);
  assert.ok(d < 1e-6, `bf16 logits differ from torch.autocast's by ${d}`);
  // Without autocast they are far off: the comparison can tell the two apart.
  const fp32 = m.forward(x);
  assert.ok(relDiff(fp32, ref.get('a.y')!) > 0.005, 'float32 logits differ from bfloat16 ones');
  assert.ok(Math.abs(loss.item() - ref.get('a.loss')!.item()) < 1e-5);
  loss.backward();
  for (const [k, p] of m.namedParameters()) {
    assert.equal(p.grad!.dtype, 'float32', `${k}: gradients land in float32 parameters`);
    const rd = relDiff(p.grad!, ref.get(`a.grad.${k}`)!);
    assert.ok(rd < 1e-3, `gradient of ${k} differs by ${rd} (relative)`);
  }
  m.dispose();
});

test('autocast is scoped: it ends with its function, restores an enclosing one, and fp32 leaves ops alone', () => {
  const a = randn([4, 4]);
  assert.equal(autocast('cpu', 'bf16', () => a.matmul(a)).dtype, 'bfloat16');
  assert.equal(a.matmul(a).dtype, 'float32');
  autocast('cpu', 'bf16', () => {
    autocast('cpu', 'bf16', () => undefined);
    assert.equal(a.matmul(a).dtype, 'bfloat16', 'still on after a nested scope');
  });
  assert.throws(() => autocast('cpu', 'bf16', () => {
    throw new Error('boom');
  }), /boom/);
  assert.equal(a.matmul(a).dtype, 'float32', 'off again after an exception');
  assert.equal(autocast('cpu', 'fp32', () => a.matmul(a)).dtype, 'float32');
});

test("loss scaling follows GradScaler: unscaled gradients, skipped overflow steps, backoff and growth", () => {
  const w = tensor([1, 2, 3], [3]).requiresGrad_();
  const s = new GradScaler({ initScale: 1024, growthInterval: 3 });
  const run = (gradScale: number) => {
    native().zeroGrad([w.handle]);
    const loss = s.scaleLoss(w.mul(tensor([gradScale, 1, -1], [3])).sum());
    loss.backward();
    let stepped = false;
    const took = s.step([w], () => {
      stepped = true;
    });
    assert.equal(took, stepped);
    return took;
  };
  // d(sum(w * c))/dw = c; the backward pass sees c × 1024, the optimiser c again.
  assert.equal(run(0.5), true);
  assert.deepEqual(w.grad!.toArray(), [0.5, 1, -1]);
  assert.deepEqual(s.state(), { scale: 1024, growthTracker: 1 });
  // An overflow (infinite gradient): no step, scale halves, the count restarts.
  assert.equal(run(Infinity), false);
  assert.deepEqual(s.state(), { scale: 512, growthTracker: 0 });
  assert.equal(s.skipped, 1);
  // NaN too.
  assert.equal(run(NaN), false);
  assert.equal(s.scale, 256);
  // Three good steps in a row double it.
  for (let i = 0; i < 3; i++) assert.equal(run(2), true);
  assert.deepEqual(s.state(), { scale: 512, growthTracker: 0 });
  assert.deepEqual(w.grad!.toArray(), [2, 1, -1]);
  const t = new GradScaler();
  t.load({ scale: 8, growthTracker: 5 });
  assert.deepEqual(t.state(), { scale: 8, growthTracker: 5 });
  assert.equal(native().unscaleGrads([], 0.5), true, 'no gradients: nothing overflowed');
});

test('precision choices: auto is bf16 on a GPU and fp32 on the CPU; fp16 needs a GPU', () => {
  assert.equal(resolvePrecision('auto', 'cpu'), 'fp32');
  assert.equal(resolvePrecision(undefined, 'cuda'), 'bf16');
  assert.equal(resolvePrecision('fp16', 'cuda:1'), 'fp16');
  assert.equal(resolvePrecision('bf16', 'cpu'), 'bf16');
  assert.throws(() => resolvePrecision('fp16', 'cpu'), /fp16 needs a CUDA device/);
  assert.throws(() => resolvePrecision('int8' as 'fp32', 'cpu'), /--precision must be auto, fp32, bf16, fp16/);
});
