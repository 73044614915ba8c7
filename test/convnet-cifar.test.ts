// The four-layer CIFAR-10 network (cuda-convnet's layers-18pct.cfg): its shapes and initialisation, cuda-convnet's
// rnorm against a hand-computed value, and its forward against the same network written with PyTorch's layers
// (test/golden/cifar_oracle.py), with and without the normalisation.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadSafetensors, saveSafetensors } from '../src/io/safetensors';
import { CudaConvnetResponseNorm } from '../src/models/convnet-cifar';
import { describeModel, getModel, listModels } from '../src/models/registry';
import { init } from '../src/nn';
import { manualSeed, randn, Tensor, tensor } from '../src/tensor/tensor';
import { oracleMissing, PYTHON } from './helpers/oracle';

const ORACLE = path.resolve(__dirname, '..', '..', 'test', 'golden', 'cifar_oracle.py');

test('convnet-cifar: listed, 32 → 16 → 8 → 4 with ceil-mode pooling, N(0, initW) weights and zero biases', () => {
  assert.ok(listModels().some((m) => m.name === 'convnet-cifar'));
  const d = describeModel('convnet-cifar');
  // conv 3·32·25 + 32, conv 32·32·25 + 32, conv 32·64·25 + 64, fc 1024·10 + 10.
  assert.equal(d.totalParams, 2432 + 25632 + 51264 + 10250);
  assert.deepEqual(
    d.rows.map((r) => r.outputShape.join('×')),
    [
      '32×32×32',
      '32×16×16',
      '32×16×16',
      '32×16×16',
      '32×16×16',
      '32×16×16',
      '32×8×8',
      '32×8×8',
      '64×8×8',
      '64×8×8',
      '64×4×4',
      '1024',
      '10',
    ],
  );
  assert.equal(describeModel('convnet-cifar', { lrn: 'none' }).rows.length, 11, 'layers-80sec: no rnorm layers');
  manualSeed(1);
  const m = getModel('convnet-cifar');
  const sd = m.stateDict();
  const std = (k: string) => sd.get(k)!.std().item();
  assert.ok(Math.abs(std('features.0.weight') / 1e-4 - 1) < 0.1, `conv1 initW 0.0001: ${std('features.0.weight')}`);
  assert.ok(Math.abs(std('features.4.weight') / 0.01 - 1) < 0.05);
  assert.ok(Math.abs(std('classifier.0.weight') / 0.01 - 1) < 0.05);
  assert.equal(sd.get('features.0.bias')!.abs().max().item(), 0);
  assert.deepEqual(getModel('convnet-cifar', { activation: 'tanh' }).forward(randn([2, 3, 32, 32])).shape, [2, 10]);
  m.dispose();
});

test("cuda-convnet's rnorm: a · (1 + scale/size² · Σ₃ₓ₃ a²)^(−pow), clipped at the border", () => {
  // A 1×3 map [10, 20, 30] (one row, so each 3×3 window holds its row neighbours): sums 500, 1400, 1300.
  const n = new CudaConvnetResponseNorm(3, 5e-5, 0.75);
  const y = n.forward(tensor([10, 20, 30], [1, 1, 1, 3])).toArray();
  const want = [
    [10, 500],
    [20, 1400],
    [30, 1300],
  ].map(([a, s]) => a * (1 + (5e-5 / 9) * s) ** -0.75);
  y.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-4 * Math.abs(want[i]), `${v} vs ${want[i]}`));
});

function oracle(tensors: [string, Tensor][], lrn: boolean): Map<string, Tensor> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-cifar-oracle-'));
  try {
    saveSafetensors(path.join(dir, 'in.safetensors'), tensors, { lrn: lrn ? '1' : '0' });
    const r = spawnSync(PYTHON, ['-B', ORACLE, path.join(dir, 'in.safetensors'), path.join(dir, 'out.safetensors')], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    return loadSafetensors(path.join(dir, 'out.safetensors')).tensors;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test(
  'convnet-cifar matches the network written with PyTorch layers, with and without rnorm',
  { skip: oracleMissing() },
  () => {
    for (const lrn of [true, false]) {
      manualSeed(7);
      const m = getModel('convnet-cifar', { lrn: lrn ? 'paper' : 'none' }).eval();
      // Inputs as cuda-convnet fed them (0–255 minus the mean: about ±60) and a conv1 larger than initW 1e-4, so that
      // the normalisation's denominator is far from 1 and a wrong form would show.
      init.normal_(m.stateDict().get('features.0.weight')!, 0, 0.05);
      const x = randn([2, 3, 32, 32]).mul(60);
      const ref = oracle([['x', x], ...m.stateDict()], lrn);
      const logits = m.forward(x);
      const want = ref.get('logits')!.float();
      const err = logits.sub(want).abs().max().item() / want.abs().max().item();
      assert.ok(err < 1e-4, `${lrn ? 'rnorm' : 'no rnorm'}: relative error ${err}`);
      if (lrn) {
        const r1 = m.features
          .namedChildren()[3][1]
          .forward(
            m.features
              .namedChildren()[2][1]
              .forward(m.features.namedChildren()[1][1].forward(m.features.namedChildren()[0][1].forward(x))),
          );
        const a = ref.get('rnorm1')!.float();
        assert.ok(r1.sub(a).abs().max().item() <= 1e-4 * a.abs().max().item(), 'rnorm1');
        // The denominator mattered: rnorm1 differs from its input by more than a few percent somewhere.
        const before = m.features
          .namedChildren()[2][1]
          .forward(m.features.namedChildren()[1][1].forward(m.features.namedChildren()[0][1].forward(x)));
        assert.ok(before.sub(r1).abs().max().item() > 0.05 * before.abs().max().item(), 'rnorm is not a no-op here');
      }
      m.dispose();
    }
  },
);
