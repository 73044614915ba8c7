// float32 3×3 convolutions in training run oneDNN's Winograd kernels where it has them (native/onednn.cc,
// WinogradConv: AVX-512); everywhere else, and outside training, libtorch's direct convolution. The values against
// PyTorch in float64 are checked in nn-parity.test.ts; here: which kernels a training step of AlexNet really runs
// (oneDNN's own verbose report), layouts, and agreement with the direct convolution.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { conv2d } from '../src/nn/functional';
import { cpuInfo, ISAS } from '../src/runtime/cpu';
import { onednnAvailable } from '../src/tensor/runtime';
import { manualSeed, noGrad, randn, Tensor, tidy } from '../src/tensor/tensor';

const DIST = path.resolve(__dirname, '..');
const avx512 = ISAS.indexOf(cpuInfo().isa as (typeof ISAS)[number]) >= ISAS.indexOf('avx512_core');

/** oneDNN's verbose lines of one float32 training step of torchvision's AlexNet (batch 2) in a child process. */
function stepKernels(env: NodeJS.ProcessEnv): { wino: Record<string, number>; out: string } {
  const script = `
    const { getModel } = require(${JSON.stringify(path.join(DIST, 'src/models/registry'))});
    const { prepareModel } = require(${JSON.stringify(path.join(DIST, 'src/runtime/device'))});
    const { SGD } = require(${JSON.stringify(path.join(DIST, 'src/optim/optimizer'))});
    const { randint, randn } = require(${JSON.stringify(path.join(DIST, 'src/tensor/tensor'))});
    const { trainStep } = require(${JSON.stringify(path.join(DIST, 'src/train/step'))});
    const model = prepareModel(getModel('alexnet-torchvision'), 'cpu').train();
    const ctx = { model, device: 'cpu', precision: 'fp32', optimizer: new SGD(model.parameters(), { lr: 0.01, momentum: 0.9 }) };
    trainStep(ctx, randn([2, 3, 224, 224]), randint(0, 1000, [2]));
    console.log('step done');`;
  const r = spawnSync(process.execPath, ['-e', script], {
    env: { ...process.env, ...env, DNNL_VERBOSE: '1' },
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  assert.equal(r.status, 0, r.stderr);
  const wino: Record<string, number> = {};
  for (const line of r.stdout.split('\n')) {
    const f = line.split(',');
    if (f[1] === 'exec' && f[3] === 'convolution' && /wino/.test(f[4])) wino[f[5]] = (wino[f[5]] ?? 0) + 1;
  }
  return { wino, out: r.stdout };
}

test('a float32 training step runs conv3–conv5 on Winograd kernels where oneDNN has them (AVX-512)', () => {
  const { wino, out } = stepKernels({});
  assert.match(out, /step done/);
  if (!onednnAvailable() || !avx512) {
    assert.deepEqual(wino, {}, 'no Winograd kernel without AVX-512');
    return;
  }
  assert.deepEqual(wino, { forward_training: 3, backward_data: 3, backward_weights: 3 });
});

test('ALEXNET_CONV_WINOGRAD=0 and an AVX2 cap keep every convolution on the direct kernels', () => {
  assert.deepEqual(stepKernels({ ALEXNET_CONV_WINOGRAD: '0' }).wino, {});
  assert.deepEqual(stepKernels({ DNNL_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' }).wino, {});
});

const rel = (a: Tensor, b: Tensor) => tidy(() => a.sub(b).abs().max().item() / Math.max(1, b.abs().max().item()));

test('Winograd agrees with the direct convolution in both layouts, and keeps channels-last channels-last', () => {
  manualSeed(11);
  const x0 = randn([4, 64, 13, 13]).keep();
  const w0 = randn([96, 64, 3, 3]).mul(0.05).keep();
  const b0 = randn([96]).keep();
  const gy = randn([4, 96, 13, 13]).keep();
  // The direct convolution: no gradient wanted, so libtorch's at::conv2d runs.
  const direct = noGrad(() => conv2d(x0, w0, b0, { padding: 1 })).keep();
  const results: Record<string, Tensor[]> = {};
  for (const layout of ['contiguous', 'channelsLast'] as const) {
    tidy(() => {
      const cl = layout === 'channelsLast';
      const x = (cl ? x0.to({ memoryFormat: 'channelsLast' }) : x0.clone()).requiresGrad_();
      const w = (cl ? w0.to({ memoryFormat: 'channelsLast' }) : w0.clone()).requiresGrad_();
      const b = b0.clone().requiresGrad_();
      const y = conv2d(x, w, b, { padding: 1 });
      assert.equal(y.isContiguous(cl ? 'channelsLast' : 'contiguous'), true, `${layout}: output layout`);
      assert.ok(rel(y, direct) < 1e-5, `${layout}: output ${rel(y, direct)} from the direct convolution`);
      y.mul(gy).sum().backward();
      assert.equal(w.grad!.isContiguous(cl ? 'channelsLast' : 'contiguous'), true, `${layout}: weight gradient layout`);
      results[layout] = [y, x.grad!, w.grad!, b.grad!].map((t) => t.contiguous().keep());
    });
  }
  const [a, c] = [results.contiguous, results.channelsLast];
  for (let i = 0; i < 4; i++) assert.ok(rel(a[i], c[i]) < 1e-5, `tensor ${i}: layouts differ by ${rel(a[i], c[i])}`);
  // The bias gradient of sum(y·gy) is gy summed over batch and space (the other gradients: nn-parity.test.ts).
  tidy(() => {
    const gb = gy.sum([0, 2, 3]);
    assert.ok(rel(a[3], gb) < 1e-5, 'bias gradient = sum of gy');
  });
});
