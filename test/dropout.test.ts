// Dropout on the CPU (native/nn.cc, FastDropout): one pass, its mask from a counter-based hash seeded by the default
// CPU generator. What must hold: the drop rate is p (binomial bounds), the kept values are x · noise with noise =
// 1/(1 − p) rounded as at::dropout rounds it, backward is gy · noise where kept, masks follow the generator (same
// seed or restored state: same mask; the next call: a fresh one), and no structure in the masks (positions,
// neighbours, consecutive calls).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dropout } from '../src/nn/functional';
import { getRngState, manualSeed, randn, setRngState, Tensor, tidy, where, zeros } from '../src/tensor/tensor';

const DTYPES = ['float32', 'bfloat16'] as const;

/** Inputs that are never zero, so that y == 0 exactly where an element was dropped. */
const nonzero = (shape: number[], dtype: 'float32' | 'bfloat16') => randn(shape).abs().add(0.5).to(dtype);

/** The fraction of elements of a 0/1 float tensor that are 1. */
const mean = (t: Tensor) => t.to('float64').mean().item();

test('dropout drops a fraction p of the elements, within binomial bounds, in float32 and bfloat16', () => {
  manualSeed(1);
  for (const dtype of DTYPES)
    for (const p of [0.1, 0.5, 0.9])
      tidy(() => {
        const n = 200_000;
        const y = dropout(nonzero([n], dtype), p, true);
        const dropped = mean(y.eq(0).to('float32'));
        const sigma = Math.sqrt((p * (1 - p)) / n);
        assert.ok(Math.abs(dropped - p) < 5 * sigma, `${dtype}, p ${p}: dropped ${dropped}`);
      });
});

test('kept values are x · noise as at::dropout rounds it, and backward is gy · noise where kept', () => {
  manualSeed(2);
  for (const dtype of DTYPES)
    for (const p of [0.5, 0.3])
      tidy(() => {
        const x = nonzero([64, 300], dtype).requiresGrad_();
        const y = dropout(x, p, true);
        assert.equal(y.dtype, dtype);
        // noise = 1/(1 − p) in float32, then in the tensor's type; the product in float32, then rounded.
        const noise = zeros([1])
          .add(1)
          .div(zeros([1]).add(1 - p))
          .to(dtype)
          .to('float32');
        const kept = y.ne(0);
        const expect = where(kept, x.detach().to('float32').mul(noise).to(dtype), zeros([1], { dtype }));
        assert.equal(y.sub(expect).abs().max().item(), 0, `${dtype}, p ${p}: outputs`);
        const gy = randn([64, 300]).to(dtype);
        y.backward(gy);
        const gexpect = where(kept, gy.to('float32').mul(noise).to(dtype), zeros([1], { dtype }));
        assert.equal(x.grad!.sub(gexpect).abs().max().item(), 0, `${dtype}, p ${p}: gradient`);
      });
});

test('masks follow the default generator: same seed or restored state, same mask; the next call, a new one', () => {
  const mask = () =>
    dropout(nonzero([50_000], 'float32'), 0.5, true)
      .eq(0)
      .keep();
  manualSeed(3);
  const a = mask();
  const b = mask();
  manualSeed(3);
  const a2 = mask();
  assert.equal(a.ne(a2).sum().item(), 0, 'the same seed gives the same mask');
  const agree = mean(a.eq(b).to('float32'));
  assert.ok(Math.abs(agree - 0.5) < 0.01, `consecutive masks agree on ${agree} of the elements (0.5 expected)`);
  const state = getRngState().keep();
  const c = mask();
  setRngState(state);
  const c2 = mask();
  assert.equal(c.ne(c2).sum().item(), 0, 'a restored generator state gives the same mask');
  // Dropout draws from the generator: what follows it changes.
  manualSeed(4);
  const r1 = randn([4]).keep();
  manualSeed(4);
  mask();
  assert.notEqual(randn([4]).sub(r1).abs().max().item(), 0, 'dropout advanced the generator');
  for (const t of [a, b, a2, state, c, c2, r1]) t.dispose();
});

test('no structure in the masks: even over positions, neighbours and element offsets 2^16 apart uncorrelated', () => {
  manualSeed(5);
  tidy(() => {
    const blocks = 1024;
    const size = 1024;
    const p = 0.5;
    const m = dropout(nonzero([blocks * size], 'float32'), p, true)
      .eq(0)
      .to('float64');
    // Per-block drop counts against Binomial(size, p): chi-square with `blocks` degrees of freedom.
    const counts = m.reshape([blocks, size]).sum(1).toArray();
    const ev = size * p;
    const chi = counts.reduce((s, c) => s + ((c - ev) * (c - ev)) / (size * p * (1 - p)), 0);
    // Mean `blocks`, standard deviation sqrt(2 · blocks) ≈ 45: 6 standard deviations either side.
    assert.ok(Math.abs(chi - blocks) < 6 * Math.sqrt(2 * blocks), `chi-square ${chi} over ${blocks} blocks`);
    const corr = (a: Tensor, b: Tensor) => {
      const [ca, cb] = [a.sub(a.mean()), b.sub(b.mean())];
      return ca.mul(cb).mean().item() / Math.sqrt(ca.square().mean().item() * cb.square().mean().item());
    };
    const n = blocks * size;
    const bound = 6 / Math.sqrt(n);
    for (const lag of [1, 2, 16, 1 << 16]) {
      const r = corr(m.narrow(0, 0, n - lag), m.narrow(0, lag, n - lag));
      assert.ok(Math.abs(r) < bound, `lag ${lag}: correlation ${r}`);
    }
  });
});

test('eval mode, p = 0 and p = 1 behave as at::dropout: identity, identity, all zeros', () => {
  manualSeed(6);
  tidy(() => {
    const x = nonzero([1000], 'float32');
    assert.equal(dropout(x, 0.5, false).sub(x).abs().max().item(), 0);
    assert.equal(dropout(x, 0, true).sub(x).abs().max().item(), 0);
    assert.equal(dropout(x, 1, true).abs().max().item(), 0);
  });
});
