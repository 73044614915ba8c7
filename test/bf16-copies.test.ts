// bf16 weight copies (native/optim.cc): under CPU bfloat16 autocast the linear and convolution layers take kept
// bfloat16 copies of their weights, which the fused optimiser steps rewrite, instead of casting every weight on
// every call. The reference is ATen's own cast (w.to('bfloat16')) with autocast off, on a twin of the weights that
// never goes through autocast: outputs, gradients and weights must agree to the bit, step after step (a stale or
// differently rounded copy changes the outputs from the second step on).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { conv2d, crossEntropy, linear } from '../src/nn/functional';
import { Adam, Optimizer, SGD } from '../src/optim/optimizer';
import { autocast } from '../src/runtime/precision';
import { manualSeed, noGrad, randint, randn, Tensor, tidy, zeros } from '../src/tensor/tensor';
import { onednnAvailable } from '../src/tensor/runtime';
import { bf16ConvMissing } from './helpers/cpu';

// Where oneDNN has no bfloat16 kernels (AVX2: libtorch 1.13 fails bf16 autocast itself) there is nothing to compare.
const skip = bf16ConvMissing();
// The float32 weight gradients of fully connected layers come with the addon's oneDNN part (Bf16Linear); an addon
// built without it (libtorch 2.x with oneDNN 3) keeps autocast's own gradients, bit for bit.
const fcGradients = onednnAvailable() ? 'float32' : 'bits';

function assertSameBits(a: Tensor, b: Tensor, what: string): void {
  assert.deepEqual(a.shape, b.shape, `${what}: shape`);
  assert.equal(a.dtype, b.dtype, `${what}: dtype`);
  const d = tidy(() => a.to('float64').sub(b.to('float64')).abs().max().item());
  assert.equal(d, 0, `${what}: largest difference`);
}

type Layer = (x: Tensor, w: Tensor, b: Tensor) => Tensor;
const fc: Layer = (x, w, b) => linear(x, w, b);
const conv: Layer = (x, w, b) => conv2d(x, w, b, { padding: 1 }).flatten(1);

interface Case {
  layer: Layer;
  x: Tensor;
  w: Tensor;
  b: Tensor;
  target: Tensor;
}

/**
 * Trains (w, b) under autocast and their twins with explicit casts side by side, comparing each step.
 * `gradients`: 'bits' — ours equal the twin's to the bit (convolutions: autocast's own backward, the bfloat16
 * gradient cast to float32); 'float32' — fully connected layers compute the weight gradient gyᵀ·x from the same
 * bfloat16 operands straight into float32 (native/onednn.cc, Bf16Linear): it must equal that product in float32
 * and be closer to the exact (float64) product than autocast's bfloat16-rounded gradient; the twin then takes our
 * gradients so that the steps and the kept copies are still compared to the bit.
 */
function trainSideBySide(
  c: Case,
  makeOpt: (ps: Tensor[]) => Optimizer,
  steps: number,
  label: string,
  gradients: 'bits' | 'float32' = 'bits',
): void {
  const ours = [c.w, c.b].map((p) => p.detach().clone().requiresGrad_().keep());
  const twin = [c.w, c.b].map((p) => p.detach().clone().requiresGrad_().keep());
  const [optOurs, optTwin] = [makeOpt(ours), makeOpt(twin)];
  for (let s = 0; s < steps; s++) {
    tidy(() => {
      const y = autocast('cpu', 'bf16', () => c.layer(c.x, ours[0], ours[1]));
      // gy, the gradient reaching the layer's output, is the gradient of this zero addend.
      const probe = zeros(y.shape, { dtype: 'bfloat16' }).requiresGrad_();
      const xb = c.x.to('bfloat16');
      const yRef = c.layer(xb, twin[0].to('bfloat16'), twin[1].to('bfloat16')).add(probe);
      assert.equal(y.dtype, 'bfloat16', `${label}: the layer ran in bfloat16`);
      assertSameBits(y, yRef, `${label}, step ${s}: output`);
      crossEntropy(y.to('float32'), c.target).backward();
      crossEntropy(yRef.to('float32'), c.target).backward();
      if (gradients === 'bits') {
        assertSameBits(ours[0].grad!, twin[0].grad!, `${label}, step ${s}: weight gradient`);
        assertSameBits(ours[1].grad!, twin[1].grad!, `${label}, step ${s}: bias gradient`);
      } else {
        const gy = probe.grad!;
        const exact = gy.to('float64').transpose(0, 1).matmul(xb.to('float64'));
        const inFloat32 = gy.to('float32').transpose(0, 1).matmul(xb.to('float32'));
        const scale = Math.max(1, exact.abs().max().item());
        const dOurs = ours[0].grad!.to('float64').sub(exact).abs().max().item();
        const dProduct = ours[0].grad!.sub(inFloat32).abs().max().item();
        const dAutocast = twin[0].grad!.to('float64').sub(exact).abs().max().item();
        assert.equal(ours[0].grad!.dtype, 'float32');
        assert.ok(dProduct <= 1e-6 * scale, `${label}, step ${s}: weight gradient ${dProduct} from gyᵀ·x in float32`);
        assert.ok(dOurs < dAutocast, `${label}, step ${s}: ${dOurs} from exact, autocast's bfloat16 ${dAutocast}`);
        const gb = gy.to('float32').sum(0);
        assert.ok(ours[1].grad!.sub(gb).abs().max().item() <= 1e-6 * Math.max(1, gb.abs().max().item()));
        noGrad(() => {
          twin[0].grad!.copy_(ours[0].grad!);
          twin[1].grad!.copy_(ours[1].grad!);
        });
      }
    });
    for (const o of [optOurs, optTwin]) {
      o.step();
      o.zeroGrad();
    }
    assertSameBits(ours[0], twin[0], `${label}, step ${s}: weight after the step`);
  }
  // A weight changed outside the optimiser (a checkpoint loaded, say) is cast afresh.
  tidy(() => {
    noGrad(() => {
      ours[0].copy_(randn(ours[0].shape));
      twin[0].copy_(ours[0]);
    });
    const y = autocast('cpu', 'bf16', () => noGrad(() => c.layer(c.x, ours[0], ours[1])));
    const yRef = c.layer(c.x.to('bfloat16'), twin[0].to('bfloat16'), twin[1].to('bfloat16'));
    assertSameBits(y, yRef, `${label}: output after the weight was overwritten`);
  });
  for (const t of [...ours, ...twin]) t.dispose();
}

function fcCase(): Case {
  return {
    layer: fc,
    x: randn([8, 300]).keep(),
    w: randn([70, 300]).mul(0.05).keep(),
    b: randn([70]).mul(0.1).keep(),
    target: randint(0, 70, [8]).keep(),
  };
}

function dispose(c: Case): void {
  for (const t of [c.x, c.w, c.b, c.target]) t.dispose();
}

test(
  'bf16 autocast with kept weight copies: linear layers match explicit casts through SGD and Adam (weight gradients in float32 where the addon has oneDNN)',
  { skip },
  () => {
    manualSeed(1);
    const c = fcCase();
    trainSideBySide(c, (ps) => new SGD(ps, { lr: 0.5, momentum: 0.9 }), 4, 'linear, SGD', fcGradients);
    trainSideBySide(
      c,
      (ps) => new SGD(ps, { lr: 0.5, momentum: 0.9, form: 'paper', weightDecay: 1e-3 }),
      4,
      'paper',
      fcGradients,
    );
    trainSideBySide(
      c,
      (ps) => new Adam(ps, { lr: 0.01, weightDecay: 0.01, decoupled: true }),
      4,
      'linear, AdamW',
      fcGradients,
    );
    // Not fused (Nesterov goes through the multi-tensor ops): the copy is cast again from the updated weight.
    trainSideBySide(
      c,
      (ps) => new SGD(ps, { lr: 0.5, momentum: 0.9, nesterov: true }),
      3,
      'linear, Nesterov SGD',
      fcGradients,
    );
    dispose(c);
  },
);

test(
  'bf16 autocast with kept weight copies: convolutions (NCHW and channels-last weights) match explicit casts',
  { skip },
  () => {
    manualSeed(2);
    const base: Case = {
      layer: conv,
      x: randn([4, 5, 6, 6]).keep(),
      w: randn([7, 5, 3, 3]).mul(0.1).keep(),
      b: randn([7]).mul(0.1).keep(),
      target: randint(0, 7 * 36, [4]).keep(),
    };
    trainSideBySide(base, (ps) => new SGD(ps, { lr: 0.5, momentum: 0.9 }), 3, 'conv NCHW');
    const cl = base.w.to({ memoryFormat: 'channelsLast' }).keep();
    const xcl = base.x.to({ memoryFormat: 'channelsLast' }).keep();
    trainSideBySide({ ...base, w: cl, x: xcl }, (ps) => new SGD(ps, { lr: 0.5, momentum: 0.9 }), 3, 'conv CL');
    cl.dispose();
    xcl.dispose();
    dispose(base);
  },
);

test(
  'bf16 kept weight copies follow their weight: a new weight in a freed one’s place, and autocast off',
  { skip },
  () => {
    manualSeed(3);
    const c = fcCase();
    for (let i = 0; i < 4; i++) {
      // Each round's weight is freed and a new one of the same shape made (the allocator may reuse its memory).
      const w = randn([70, 300]).requiresGrad_().keep();
      tidy(() => {
        const y = autocast('cpu', 'bf16', () => linear(c.x, w, c.b));
        assertSameBits(y, linear(c.x.to('bfloat16'), w.to('bfloat16'), c.b.to('bfloat16')), `round ${i}`);
        assert.equal(linear(c.x, w, c.b).dtype, 'float32', 'outside autocast the float32 weight is used');
      });
      w.dispose();
    }
    dispose(c);
  },
);
