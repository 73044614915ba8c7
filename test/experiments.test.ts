// The paper's claims as experiments: the statistics against hand-computed values, the plot, and an experiment end
// to end at a tiny size (its arms, its report, its plot, its numbers).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { TensorDataset } from '../src/data/fashion-mnist';
import { EXPERIMENTS } from '../src/experiments';
import { budgetOf, equivalent, intensityNoise, pastOverfitting } from '../src/experiments/compare';
import { lrnPlan, settled } from '../src/experiments/lrn-cifar';
import { verdict } from '../src/experiments/types';
import { lineChartSvg, ticks } from '../src/experiments/plot';
import { fiveCropOffsets, randomCropFlip, testViews, topOneError } from '../src/experiments/views';
import { getModel } from '../src/models/registry';
import { arange, manualSeed, randint, stack, tensor, zeros } from '../src/tensor/tensor';
import { summarize, t975, welch } from '../src/experiments/stats';
import { cli } from './helpers/cli';

const close = (a: number, b: number, tol = 1e-4) => assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);

test('statistics: mean, sample sd, t intervals and Welch’s difference, as computed by hand', () => {
  // 2 4 4 4 5 5 7 9: mean 5, squared deviations 32, sd √(32/7) = 2.13809; t(7) = 2.365 → ± 2.365·2.13809/√8.
  const s = summarize([2, 4, 4, 4, 5, 5, 7, 9]);
  close(s.mean, 5);
  close(s.sd, 2.13809);
  close(s.ci95[0], 5 - 1.78776);
  close(s.ci95[1], 5 + 1.78776);
  assert.deepEqual(summarize([3]), { n: 1, mean: 3, sd: 0, ci95: [3, 3] });
  // 1 2 3 4 against 2 4 6 8: variances 5/3 and 20/3, se² = 5/12 + 5/3 = 2.08333, Welch df = 4.41 → t(4) = 2.776.
  const w = welch([1, 2, 3, 4], [2, 4, 6, 8]);
  close(w.diff, -2.5);
  close(w.df, 4.41176);
  close(w.ci95[0], -2.5 - 2.776 * Math.sqrt(2.083333));
  close(w.ci95[1], -2.5 + 2.776 * Math.sqrt(2.083333));
  close(t975(1), 12.706);
  close(t975(40), 2.02);
  // Verdicts by the interval (issue 28): 1 2 3 (CI 2 ± 4.303/√3 = −0.48 … 4.48) holds 0 and no paper value to
  // rule out: inconclusive; 2 3 4 (−0.48 + 1 > 0): held; −2 −3 −4: not held (the opposite); −1 0 −2 (CI −3.48 …
  // 1.48) holds 0 but excludes a paper value of 2: not held.
  assert.equal(verdict(summarize([1, 2, 3]), 0, 'x').word, 'inconclusive');
  assert.equal(verdict(summarize([2, 3, 4]), 0, 'x').word, 'held');
  assert.equal(verdict(summarize([-2, -3, -4]), 0, 'x').word, 'not held');
  assert.equal(verdict(summarize([-1, 0, -2]), 0, 'x', 2).word, 'not held');
  // Equivalence within ±1: 0.1 0.2 0.3 (CI 0.2 ± 0.248) inside; 0.5 1.5 −0.5 (CI 0.5 ± 2.48) across the margin:
  // inconclusive, as 2 3 4 (CI 0.52 … 5.48); 4 5 6 (CI 2.52 … 7.48) wholly outside: not held.
  assert.equal(equivalent(summarize([0.1, 0.2, 0.3]), 1).word, 'held');
  assert.equal(equivalent(summarize([0.5, 1.5, -0.5]), 1).word, 'inconclusive');
  assert.equal(equivalent(summarize([2, 3, 4]), 1).word, 'inconclusive');
  assert.equal(equivalent(summarize([4, 5, 6]), 1).word, 'not held');
});

test('the plot: round ticks, one path and one legend entry per arm, a threshold line', () => {
  assert.deepEqual(ticks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(ticks(10, 120), [20, 40, 60, 80, 100, 120]);
  const svg = lineChartSvg({
    title: 'a < b',
    xLabel: 'step',
    yLabel: 'error',
    series: [
      {
        name: 'ReLU',
        points: [
          [10, 0.9],
          [20, 0.5],
        ],
      },
      {
        name: 'tanh',
        points: [
          [10, 0.9],
          [20, 0.7],
        ],
      },
    ],
    hlines: [[0.25, 'threshold 0.25']],
  });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.equal(svg.match(/<path /g)?.length, 2);
  assert.match(svg, />ReLU</);
  assert.match(svg, />tanh</);
  assert.match(svg, /a &lt; b/);
  assert.match(svg, /stroke-dasharray/);
});

test('alexnet experiment relu-vs-tanh runs end to end at a tiny size: arms, report, plot, numbers', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-exp-'));
  try {
    const r = cli(['experiment', 'relu-vs-tanh', '--seeds', '2', '--steps', '4', '--train-limit', '256', '--out', dir]);
    assert.equal(r.code, 0, r.stderr);
    for (const arm of ['relu, seed 0', 'tanh, seed 0', 'relu, seed 1', 'tanh, seed 1'])
      assert.match(r.stdout, new RegExp(arm));
    assert.match(r.stdout, /relu, seed 0: 4 steps in \d+ s \[1\/4, about \d+ s left\]/, 'progress with an ETA');
    assert.match(r.stdout, /tanh, seed 1: .* \[4\/4\]/);
    const report = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
    assert.match(report, /\*\*The paper's claim:\*\*/);
    assert.match(report, /\| ReLU \| \d+ ± \d+ \|/);
    assert.match(report, /\*\*Verdict:\*\* (held|did not hold|inconclusive|too early to show a regulariser)/);
    const svg = fs.readFileSync(path.join(dir, 'curves.svg'), 'utf8');
    assert.equal(svg.match(/<path /g)?.length, 2);
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
    assert.equal(j.experiment, 'relu-vs-tanh');
    assert.ok(Number.isFinite(j.effect) && j.effect > 0 && j.paper === 6 && typeof j.held === 'boolean');
    const unknown = cli(['experiment', 'lrm']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown experiment 'lrm' \(experiments: relu-vs-tanh, lrn, overlapping-pooling, /);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('views: the five crop corners, random crops that are real crops or mirrors, the brightness noise', () => {
  // A 5×5 image of 0…24 and 3×3 crops: corners at 0 and 2, the centre at 1.
  assert.deepEqual(fiveCropOffsets(5, 3), [
    [0, 0],
    [0, 2],
    [2, 0],
    [2, 2],
    [1, 1],
  ]);
  assert.deepEqual(fiveCropOffsets(77, 67)[4], [5, 5]);
  manualSeed(3);
  const x = stack([arange(0, 25).float().view(1, 5, 5), arange(100, 125).float().view(1, 5, 5)]);
  const crops = randomCropFlip(x, 3);
  assert.deepEqual(crops.shape, [2, 1, 3, 3]);
  for (let i = 0; i < 2; i++) {
    const c = crops.narrow(0, i, 1).toArray();
    const candidates = [0, 1, 2].flatMap((t) => [0, 1, 2].map((l) => [t, l]));
    const found = candidates.some(([t, l]) => {
      const patch = x.narrow(0, i, 1).narrow(2, t, 3).narrow(3, l, 3);
      return [patch, patch.flip(3)].some((p) => p.toArray().every((v, j) => v === c[j]));
    });
    assert.ok(found, `image ${i}: ${c} is a crop of the input or its mirror`);
  }
  // Brightness noise: one shift per image, constant over its pixels, with sd = std × the pixel variance.
  const images = randint(0, 256, [4000, 1, 4, 4]).to('uint8');
  const ds = { images, labels: zeros([4000], { dtype: 'int64' }), classes: ['a'] } as unknown as TensorDataset;
  const variance = images.float().div(255).var().item();
  const shifted = intensityNoise(ds, 0.5)(zeros([4000, 1, 4, 4]));
  const perImage = shifted.view(4000, 16);
  assert.ok(perImage.max(1).sub(perImage.min(1)).abs().max().item() < 1e-6, 'constant within an image');
  const sd = perImage.narrow(1, 0, 1).std().item();
  assert.ok(Math.abs(sd / (0.5 * variance) - 1) < 0.06, `sd ${sd} against ${0.5 * variance}`);
});

test("an ensemble of a model with itself is the model; the ten test views are the paper's, image-major", async () => {
  // Two 5×5 images (0…24 and 100…124), 3×3 views: rows 10·i + j are crop j of image i, then its mirror at j + 5.
  const x = stack([arange(0, 25).float().view(1, 5, 5), arange(100, 125).float().view(1, 5, 5)]);
  const ten = testViews(x, 3, 'ten');
  assert.deepEqual(ten.shape, [20, 1, 3, 3]);
  const patch = (i: number, t: number, l: number) => x.narrow(0, i, 1).narrow(2, t, 3).narrow(3, l, 3);
  fiveCropOffsets(5, 3).forEach(([t, l], j) => {
    for (const i of [0, 1]) {
      assert.deepEqual(ten.narrow(0, 10 * i + j, 1).toArray(), patch(i, t, l).toArray(), `image ${i} crop ${j}`);
      assert.deepEqual(ten.narrow(0, 10 * i + j + 5, 1).toArray(), patch(i, t, l).flip(3).toArray());
    }
  });
  assert.deepEqual(testViews(x, 3, 'center').toArray(), [...patch(0, 1, 1).toArray(), ...patch(1, 1, 1).toArray()]);
  manualSeed(5);
  const m = getModel('alexnet-d2l', { inputSize: 67, inChannels: 1, numClasses: 10 });
  const images = randint(0, 256, [40, 1, 28, 28]).to('uint8');
  const labels = tensor(
    Array.from({ length: 40 }, (_, i) => i % 10),
    [40],
    'int64',
  );
  const ds = { images, labels, classes: [...'0123456789'] } as unknown as TensorDataset;
  const o = { device: 'cpu' as const, side: 67, crop: 67, views: 'center' as const, batchSize: 16 };
  assert.equal(await topOneError([m, m], ds, o), await topOneError(m, ds, o));
  m.dispose();
});

test('every other experiment runs end to end at a tiny size: arms, report, plot, numbers', async () => {
  // relu-vs-tanh and dropout run through the command line in their own tests.
  const others = EXPERIMENTS.filter((e) => e.name !== 'relu-vs-tanh' && e.name !== 'dropout');
  assert.deepEqual(
    others.map((e) => e.name),
    ['lrn', 'overlapping-pooling', 'two-tower', 'pca-noise', 'ten-crop', 'ensemble', 'bf16-vs-fp32'],
  );
  for (const e of others) {
    const lines: string[] = [];
    const r = await e.run({
      budget: 'quick',
      seeds: 2,
      device: 'cpu',
      steps: 2,
      trainLimit: 64,
      testLimit: 20,
      log: (l) => lines.push(l),
    });
    assert.ok(lines.length >= 2, `${e.name}: a line per run`);
    assert.match(r.markdown, /\*\*The paper's claim:\*\*/, e.name);
    assert.match(r.markdown, /\| \d+\.\d% ± \d+\.\d \|/, `${e.name}: a table of errors`);
    assert.match(r.markdown, /\*\*Effect \(.*\):\*\* -?\d+\.\d\d ± \d+\.\d\d percentage points \(95% CI/, e.name);
    assert.match(
      r.markdown,
      /\*\*Verdict:\*\* (held|did not hold|inconclusive|too early to show a regulariser)/,
      e.name,
    );
    assert.ok((r.svg.match(/<path /g)?.length ?? 0) >= 1, `${e.name}: a curve`);
    assert.ok(Number.isFinite(r.summary.effect) && Number.isFinite(r.summary.sd), e.name);
    assert.equal(typeof r.summary.held, 'boolean');
  }
});

test('alexnet experiment dropout writes its report with training and test error per arm', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-exp-'));
  try {
    const args = ['--seeds', '2', '--steps', '2', '--train-limit', '64', '--test-limit', '20', '--out', dir];
    const r = cli(['experiment', 'dropout', ...args]);
    assert.equal(r.code, 0, r.stderr);
    for (const arm of ['dropout 0.5, seed 0', 'no dropout, seed 1']) assert.match(r.stdout, new RegExp(arm));
    const report = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
    assert.match(
      report,
      /64 Fashion-MNIST training images at 67×67, 2 steps of batch 64, 2 seeds, top-1 error on 20 test/,
    );
    assert.match(report, /\| no dropout \| \d+\.\d% ± \d+\.\d \| \d+\.\d% ± \d+\.\d \| -?\d+\.\d% ± \d+\.\d \|/);
    assert.equal(fs.readFileSync(path.join(dir, 'curves.svg'), 'utf8').match(/<path /g)?.length, 2);
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
    assert.equal(j.experiment, 'dropout');
    assert.equal(j.paper, null, 'the paper gives no number');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("lrn on CIFAR-10: the settling rule (the last 3 epochs' test error within 0.5 points) and the budgets", () => {
  assert.equal(settled([0.5, 0.4]), false, 'fewer than 3 evaluations');
  assert.equal(settled([0.5, 0.302, 0.3, 0.304]), true, 'span 0.4 points');
  assert.equal(settled([0.31, 0.3, 0.305]), false, 'span exactly 1 point');
  assert.equal(settled([0.3, 0.3, 0.306]), false, 'span 0.6 points');
  const o = { seeds: 3, device: 'cpu' as const, log: () => {} };
  // quick: 8192 images are 64 steps of 128 an epoch, at most 10 epochs; --steps caps the epochs (rounded up).
  assert.deepEqual(lrnPlan({ ...o, budget: 'quick' }), {
    trainLimit: 8192,
    testLimit: 2000,
    batchSize: 128,
    maxEpochs: 10,
    lr: 0.003,
    momentum: 0.9,
  });
  assert.equal(lrnPlan({ ...o, budget: 'quick', steps: 65 }).maxEpochs, 2);
  assert.equal(lrnPlan({ ...o, budget: 'full' }).maxEpochs, 120);
  assert.equal(lrnPlan({ ...o, budget: 'full' }).trainLimit, 50000);
  assert.equal(lrnPlan({ ...o, budget: 'medium' }).maxEpochs, 30);
  // layer-params-18pct.cfg's epsW, a rate on the mean gradient, with its 120 epochs; the shorter budgets' faster 0.003.
  assert.equal(lrnPlan({ ...o, budget: 'full' }).lr, 0.001);
  assert.equal(lrnPlan({ ...o, budget: 'medium' }).lr, 0.003);
  assert.equal(EXPERIMENTS.find((e) => e.name === 'lrn')!.seeds!({ ...o, budget: 'full', net: 'cifar' }), 5);
  assert.equal(EXPERIMENTS.find((e) => e.name === 'lrn')!.seeds!({ ...o, budget: 'full' }), 3);
});

test('--budget medium: 4096 images for 720 steps of 64 at 67×67, whatever the quick overrides; --steps still wins', () => {
  const o = { seeds: 3, device: 'cpu' as const, log: () => {} };
  const b = budgetOf({ ...o, budget: 'medium' }, { trainLimit: 1024, steps: 240 });
  assert.deepEqual(b, { inputSize: 67, steps: 720, batchSize: 64, window: 48, trainLimit: 4096, testLimit: 2000 });
  assert.equal(720 / (4096 / 64), 11.25, 'epochs');
  assert.equal(budgetOf({ ...o, budget: 'medium', steps: 30 }).window, 3);
  assert.equal(pastOverfitting([{ test: [0.2, 0.22], train: [0.1, 0.12] }]), true);
  assert.equal(
    pastOverfitting([
      { test: [0.2, 0.22], train: [0.1, 0.12] },
      { test: [0.2], train: [0.25] },
    ]),
    false,
  );
});
