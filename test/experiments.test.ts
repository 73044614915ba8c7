// The paper's claims as experiments: the statistics against hand-computed values, the plot, and an experiment end
// to end at a tiny size (its arms, its report, its plot, its numbers).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { lineChartSvg, ticks } from '../src/experiments/plot';
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
    const report = fs.readFileSync(path.join(dir, 'report.md'), 'utf8');
    assert.match(report, /\*\*The paper's claim:\*\*/);
    assert.match(report, /\| ReLU \| \d+ ± \d+ \|/);
    assert.match(report, /\*\*Verdict:\*\* (held|did not hold|held only weakly)/);
    const svg = fs.readFileSync(path.join(dir, 'curves.svg'), 'utf8');
    assert.equal(svg.match(/<path /g)?.length, 2);
    const j = JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8'));
    assert.equal(j.experiment, 'relu-vs-tanh');
    assert.ok(Number.isFinite(j.effect) && j.effect > 0 && j.paper === 6 && typeof j.held === 'boolean');
    const unbuilt = cli(['experiment', 'lrn']);
    assert.equal(unbuilt.code, 2);
    assert.match(unbuilt.stderr, /'lrn' is one of the paper's claims not built yet/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
