// Mixed precision: bfloat16 autocast against float64 and torch.autocast on the same weights, loss scaling against
// GradScaler's rules worked by hand, and the precision choices a user can make.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crossEntropy } from '../src/nn/functional';
import { native } from '../src/tensor/binding';
import { Conv2d, Linear } from '../src/nn';
import { randn, Tensor, tensor, tidy } from '../src/tensor/tensor';
import { parseCpu } from '../src/runtime/cpu';
import { autocast, GradScaler, resolvePrecision } from '../src/runtime/precision';
import { bf16ConvMissing } from './helpers/cpu';
import { autocastReference, maxAbsDiff, oracleMissing } from './helpers/oracle';
import { judge, lossBound, UNIT_ROUNDOFF } from './helpers/tolerance';

// What bfloat16 autocast guarantees, and what this test checks, on any CPU: every convolution and linear layer runs
// in bfloat16 (their outputs are bfloat16), cross-entropy in float32, gradients land in the float32 parameters, and
// the results are as close to the exact (float64) ones as torch.autocast's on the same CPU. How close that is depends
// on the kernels (native or emulated bfloat16, NCHW or channels-last), so no rounding amount is asserted: per tensor
//   ‖ours − ref64‖ / ‖ref64‖ ≤ 2 × PyTorch's own (torch.autocast, NCHW) + 2^-8
// (test/helpers/tolerance.ts). The error is dominated by rounding every conv/linear input and weight to bfloat16
// (u = 2^-8), which is the same whatever the kernel; measured, ours (channels-last) and PyTorch's agree within 20%,
// so 2 leaves room; the floor is one bfloat16 unit. Norms rather than largest elements: rounding flips a few ReLU
// masks, which moves single gradient elements by O(1) in any correct bfloat16 computation. The loss: lossBound.
const C_BF16 = 2;

/** tolerance.ts's judge with PyTorch's error given as a number (computed by the oracle, in float64 alike). */

test(
  'bf16 autocast runs convolutions and linear layers in bfloat16 and is as close to float64 as torch.autocast',
  { skip: oracleMissing() ?? bf16ConvMissing() },
  () => {
    // torch.autocast's run comes back as its errors only: its full-size gradients were a third of the time.
    const { model, x, target, get } = autocastReference(true);
    const m = model.setMemoryFormat('channelsLast'); // as training runs it
    // Layer by layer: each convolution and linear layer gives bfloat16 under autocast.
    const ran = tidy(() =>
      autocast('cpu', 'bf16', () => {
        let h = x.to({ memoryFormat: m.memoryFormat });
        const out: string[] = [];
        for (const [name, layer] of m.layers()) {
          h = layer.forward(h);
          if (layer instanceof Conv2d || layer instanceof Linear) out.push(`${name} ${h.dtype}`);
        }
        return out;
      }),
    );
    assert.deepEqual(ran, [
      ...['0', '3', '6', '8', '10'].map((i) => `features.${i} bfloat16`),
      ...['1', '4', '6'].map((i) => `classifier.${i} bfloat16`),
    ]);
    const { logits, loss } = autocast('cpu', 'bf16', () => {
      const out = m.forward(x);
      return { logits: out, loss: crossEntropy(out, target) };
    });
    assert.equal(logits.dtype, 'bfloat16', 'the classifier ran in bfloat16');
    assert.equal(loss.dtype, 'float32', 'cross-entropy runs in float32 under autocast');
    const failures: string[] = [];
    const bound = { c: C_BF16, floor: UNIT_ROUNDOFF.bfloat16, metric: 'norm' as const };
    const check = (what: string, ours: Tensor, key: string) => {
      const v = judge(what, ours, get(`f64.${key}`), get(`bf16.err.${key}`).item(), bound);
      if (process.env.ALEXNET_VERBOSE) console.log(v.message);
      if (!v.ok) failures.push(v.message);
    };
    check('logits', logits, 'y');
    const loss64 = get('f64.loss').item();
    const lossTol = lossBound(maxAbsDiff(logits, get('f64.y')), loss64, UNIT_ROUNDOFF.float32);
    assert.ok(
      Math.abs(loss.item() - loss64) <= lossTol,
      `loss ${loss.item()} vs float64 ${loss64}: allowed ${lossTol}`,
    );
    loss.backward();
    for (const [k, p] of m.namedParameters()) {
      assert.equal(p.grad!.dtype, 'float32', `${k}: gradients land in float32 parameters`);
      check(`gradient of ${k}`, p.grad!, `grad.${k}`);
    }
    assert.ok(
      failures.length === 0,
      `bf16 autocast is further from float64 than torch.autocast:\n${failures.join('\n')}`,
    );
    m.dispose();
  },
);

test('autocast is scoped: it ends with its function, restores an enclosing one, and fp32 leaves ops alone', () => {
  const a = randn([4, 4]);
  assert.equal(autocast('cpu', 'bf16', () => a.matmul(a)).dtype, 'bfloat16');
  assert.equal(a.matmul(a).dtype, 'float32');
  autocast('cpu', 'bf16', () => {
    autocast('cpu', 'bf16', () => undefined);
    assert.equal(a.matmul(a).dtype, 'bfloat16', 'still on after a nested scope');
  });
  assert.throws(
    () =>
      autocast('cpu', 'bf16', () => {
        throw new Error('boom');
      }),
    /boom/,
  );
  assert.equal(a.matmul(a).dtype, 'float32', 'off again after an exception');
  assert.equal(autocast('cpu', 'fp32', () => a.matmul(a)).dtype, 'float32');
});

test('loss scaling follows GradScaler: unscaled gradients, skipped overflow steps, backoff and growth', () => {
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

test('precision choices: auto is bf16 on a GPU, on the CPU bf16 only with native bf16; fp16 needs a GPU', () => {
  const cpu = (flags: string) => parseCpu(`vendor_id\t: AuthenticAMD\ncpu family\t: 25\nflags\t\t: ${flags}\n`, {});
  assert.equal(resolvePrecision('auto', 'cpu', cpu('sse4_1 avx avx2')), 'fp32');
  const bf16 = 'sse4_1 avx avx2 avx512f avx512bw avx512vl avx512dq avx512_bf16';
  assert.equal(resolvePrecision('auto', 'cpu', cpu(bf16)), 'bf16');
  assert.equal(resolvePrecision('fp32', 'cpu', cpu(bf16)), 'fp32');
  assert.equal(resolvePrecision(undefined, 'cuda'), 'bf16');
  assert.equal(resolvePrecision('fp16', 'cuda:1'), 'fp16');
  assert.equal(resolvePrecision('bf16', 'cpu'), 'bf16');
  assert.throws(() => resolvePrecision('fp16', 'cpu'), /fp16 needs a CUDA device/);
  assert.throws(() => resolvePrecision('int8' as 'fp32', 'cpu'), /--precision must be auto, fp32, bf16, fp16/);
});
