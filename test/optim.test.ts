// Optimisers against torch.optim (the oracle) over several steps, and the paper's SGD against its formula.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Adam, SGD } from '../src/optim/optimizer';
import { PlateauSchedule, StepSchedule } from '../src/optim/schedules';
import { manualSeed, randn, Tensor, tensor } from '../src/tensor/tensor';
import { maxAbsDiff, oracleMissing, runOracle } from './helpers/oracle';

const STEPS = 4;

function runOurs(make: (p: Tensor[]) => SGD | Adam, w0: Tensor, grads: Tensor[]): Tensor {
  const w = w0.clone().requiresGrad_();
  const opt = make([w]);
  for (const g of grads) {
    // give w the gradient g through a backward pass: d/dw sum(w * g) = g
    w.mul(g).sum().backward();
    opt.step();
    opt.zeroGrad();
  }
  return w.detach();
}

test('SGD and Adam match torch.optim step for step', { skip: oracleMissing() }, () => {
  manualSeed(9);
  // 100k elements: the fused float32 loops run in parallel blocks on libtorch's threads; float64 takes the
  // multi-tensor (foreach) path that GPU tensors take.
  const configs = [
    {
      id: 'sgd_mom_wd',
      op: 'sgd',
      args: { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 },
      make: (p: Tensor[]) => new SGD(p, { lr: 0.05, momentum: 0.9, weightDecay: 5e-4 }),
    },
    {
      id: 'sgd_plain',
      op: 'sgd',
      args: { lr: 0.1, momentum: 0, weight_decay: 0 },
      make: (p: Tensor[]) => new SGD(p, { lr: 0.1 }),
    },
    {
      id: 'sgd_damp',
      op: 'sgd',
      args: { lr: 0.05, momentum: 0.8, weight_decay: 0.01, dampening: 0.3 },
      make: (p: Tensor[]) => new SGD(p, { lr: 0.05, momentum: 0.8, weightDecay: 0.01, dampening: 0.3 }),
    },
    {
      id: 'sgd_nesterov',
      op: 'sgd',
      args: { lr: 0.05, momentum: 0.9, weight_decay: 0.001, nesterov: true },
      make: (p: Tensor[]) => new SGD(p, { lr: 0.05, momentum: 0.9, weightDecay: 0.001, nesterov: true }),
    },
    {
      id: 'adam',
      op: 'adam',
      args: { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0 },
      make: (p: Tensor[]) => new Adam(p, { lr: 0.01 }),
    },
    {
      id: 'adam_l2',
      op: 'adam',
      args: { lr: 0.01, beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.1 },
      make: (p: Tensor[]) => new Adam(p, { lr: 0.01, betas: [0.8, 0.99], eps: 1e-6, weightDecay: 0.1 }),
    },
    {
      id: 'adamw',
      op: 'adam',
      args: { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1, decoupled: true },
      make: (p: Tensor[]) => new Adam(p, { lr: 0.01, weightDecay: 0.1, decoupled: true }),
    },
  ];
  const cases = [];
  const ours = new Map<string, Tensor>();
  // The 4-D case is a convolution's weight in channels-last, as our models keep them: the fused loops take it too
  // (weight, gradient and state laid out alike).
  for (const [shape, dtype, layout] of [
    [[100_000], 'float32', 'contiguous'],
    [[7], 'float32', 'contiguous'],
    [[1000], 'float64', 'contiguous'],
    [[64, 32, 7, 7], 'float32', 'channelsLast'],
  ] as const) {
    for (const c of configs) {
      const make = () => {
        const t = randn([...shape], { dtype });
        return layout === 'channelsLast' ? t.to({ memoryFormat: 'channelsLast' }) : t;
      };
      const w = make();
      const grads = Array.from({ length: STEPS }, make);
      const id = `${c.id}_${shape.join('x')}_${layout}_${dtype}`;
      const tensors: Record<string, Tensor> = { w };
      grads.forEach((g, i) => (tensors[`g${i}`] = g));
      cases.push({ id, op: c.op, args: { ...c.args, steps: STEPS }, tensors });
      ours.set(id, runOurs(c.make, w, grads));
    }
  }
  const ref = runOracle(cases);
  for (const [id, w] of ours) {
    const d = maxAbsDiff(w, ref.get(`${id}.y`)!);
    assert.ok(d < (id.endsWith('float64') ? 1e-12 : 1e-5), `${id}: max abs diff ${d}`);
  }
});

test("the paper's SGD follows v ← μv − λεw − ε∇, w ← w + v, also when ε changes", () => {
  for (const dtype of ['float32', 'float64'] as const) paperSgd(dtype);
});

function paperSgd(dtype: 'float32' | 'float64'): void {
  const w0 = [1, -2, 0.5];
  const grads = [
    [0.1, 0.2, -0.3],
    [0.4, -0.1, 0.2],
    [-0.2, 0.3, 0.1],
  ];
  const lrs = [0.01, 0.01, 0.001];
  const mu = 0.9;
  const wd = 0.0005;
  const w = tensor(w0, [3], dtype).requiresGrad_();
  const opt = new SGD([w], { lr: lrs[0], momentum: mu, weightDecay: wd, form: 'paper' });
  const hw = [...w0];
  const hv = [0, 0, 0];
  grads.forEach((g, s) => {
    opt.lr = lrs[s];
    w.mul(tensor(g, [3], dtype))
      .sum()
      .backward();
    opt.step();
    opt.zeroGrad();
    for (let i = 0; i < 3; i++) {
      hv[i] = mu * hv[i] - wd * lrs[s] * hw[i] - lrs[s] * g[i];
      hw[i] += hv[i];
    }
  });
  w.toArray().forEach((x, i) =>
    assert.ok(Math.abs(x - hw[i]) < (dtype === 'float64' ? 1e-14 : 1e-7), `${dtype} w[${i}] = ${x}, expected ${hw[i]}`),
  );
}

test('schedules: step decay and divide-by-10 on plateau, three times at most', () => {
  const step = new StepSchedule(2, 0.5);
  let lr = 1;
  const lrs = [1, 2, 3, 4].map(() => (lr = step.epochEnd(lr)));
  assert.deepEqual(lrs, [1, 0.5, 0.5, 0.25]);
  const plateau = new PlateauSchedule({ patience: 1 });
  lr = 0.01;
  const errors = [0.5, 0.4, 0.4, 0.4, 0.39, 0.39, 0.39, 0.39, 0.39];
  const out = errors.map((e) => (lr = plateau.epochEnd(lr, e)));
  // improves, improves, stalls (÷10), stalls (÷10), improves, stalls (÷10), then no more reductions
  assert.deepEqual(
    out.map((x) => +x.toPrecision(3)),
    [0.01, 0.01, 0.001, 0.0001, 0.0001, 0.00001, 0.00001, 0.00001, 0.00001],
  );
});
