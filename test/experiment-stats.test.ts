// Honest statistics on degenerate runs, in-process and against hand-computed values: one seed has no interval,
// ratios are summarised on a log scale (never a negative bound), runs that never reached a threshold are censored,
// verdicts are held / not held / inconclusive by the interval, arms at chance are warned about, the plot adapts.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { equivalent, stillLearning } from '../src/experiments/compare';
import { lineChartSvg } from '../src/experiments/plot';
import { chanceWarnings, errorCurvesSvg, plotWindow } from '../src/experiments/report';
import { chooseThreshold, figureThreshold, levelRatios, pickRate } from '../src/experiments/relu-vs-tanh';
import { censored, ciText, summarize, summarizeRatios, t975 } from '../src/experiments/stats';
import { verdict } from '../src/experiments/types';

const close = (a: number, b: number, tol = 1e-4) =>
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);

test("Student's t quantiles from the table, and the large-df approximation", () => {
  close(t975(1), 12.706);
  close(t975(2), 4.303);
  close(t975(5), 2.571);
  close(t975(30), 2.042);
  close(t975(4.9), 2.776, 0); // fractional df round down (conservative)
  close(t975(60), 2.0); // 1.96 + 2.4/60 (the table: 2.000)
  assert.ok(Number.isNaN(t975(0)));
});

test('one seed: no interval, and an inconclusive verdict', () => {
  const one = summarize([3]);
  assert.equal(ciText(one, 2), 'one seed: no interval');
  const v = verdict(one, 0, 'x', 1.4);
  assert.equal(v.word, 'inconclusive');
  assert.match(v.sentence, /one seed gives no interval/);
  assert.equal(equivalent(one, 1).word, 'inconclusive');
  assert.equal(ciText(summarize([1, 2, 3]), 2), '95% CI -0.48 – 4.48');
  // Every run censored: nothing measured.
  assert.equal(ciText(summarizeRatios([]), 2), 'no seed measured: no interval');
  assert.match(verdict(summarizeRatios([]).log, 0, 'x').sentence, /no seed was measured/);
});

test('ratios on a log scale: geometric mean, exp(mean ± t·se) of the logs, never negative', () => {
  // 2 and 8: logs ln2, ln8, mean ln4 (ratio 4), sd 0.980258, se 0.693147, t(1) 12.706 → exp(ln4 ± 8.807128).
  const r = summarizeRatios([2, 8]);
  close(r.mean, 4);
  close(r.log.sd, 0.980258);
  close(r.ci95[0], 0.00059865);
  close(r.ci95[1], 26726.8);
  // 1, 4, 16: logs 0, ln4, ln16: mean ln4, sd ln4 (spread ×/÷ 4), t(2) 4.303 → exp(ln4 ± 3.444024).
  const s = summarizeRatios([1, 4, 16]);
  close(s.mean, 4);
  close(s.sd, 4);
  close(s.ci95[0], 0.127744);
  close(s.ci95[1], 125.2508);
  assert.ok(s.ci95[0] > 0);
  // The arithmetic interval of the same numbers goes below zero; the log one cannot.
  assert.ok(summarize([1, 4, 16]).ci95[0] < 0);
  // Against the paper's 6×: the interval 0.13–125 holds both 1 (no effect) and 6: inconclusive.
  assert.equal(verdict(s.log, 0, 'x', Math.log(6)).word, 'inconclusive');
  // 2, 2.5, 3 (all faster, but short of 6: CI exp(0.903 ± 0.504) = 1.49 … 4.08): held, below the paper's.
  const f = summarizeRatios([2, 2.5, 3]);
  const v = verdict(f.log, 0, 'x', Math.log(6));
  assert.equal(v.word, 'held');
  assert.match(v.sentence, /smaller than the paper's/);
});

test('verdicts by the interval: held, not held, inconclusive', () => {
  // 1 2 3: CI −0.48 … 4.48. With the paper's 1.4 inside: inconclusive; with the paper's 6 outside: not held.
  assert.equal(verdict(summarize([1, 2, 3]), 0, 'x', 1.4).word, 'inconclusive');
  assert.equal(verdict(summarize([1, 2, 3]), 0, 'x', 6).word, 'not held');
  assert.equal(verdict(summarize([1, 2, 3]), 0, 'x').word, 'inconclusive');
  assert.equal(verdict(summarize([2, 3, 4]), 0, 'x', 1.4).word, 'held');
  const rev = verdict(summarize([-2, -3, -4]), 0, 'x', 1.4);
  assert.equal(rev.word, 'not held');
  assert.match(rev.sentence, /the opposite held/);
});

test('runs that never reached the threshold are censored, not measured', () => {
  assert.deepEqual(censored([3, undefined, 5]), { reached: [3, 5], censored: 1 });
  const reach = [
    [10, 0.5],
    [20, 0.24],
  ] as [number, number][];
  const never = [
    [10, 0.6],
    [20, 0.4],
  ] as [number, number][];
  assert.equal(chooseThreshold([reach, never]), 0.25, "the paper's threshold when a run reached it");
  assert.equal(chooseThreshold([never, [[10, 0.333]]]), 0.4, 'else the lowest every run reached, rounded up');
  // Figure 1's setting: 25% only when every ReLU run got there (tanh may be censored), else the lowest common level.
  assert.equal(figureThreshold([reach, reach], [never, never]), 0.25);
  assert.equal(figureThreshold([reach, never], [never, never]), 0.4);
  assert.equal(figureThreshold([[[5, 0.2]]], [[[9, 0.1]]]), 0.25, "never below the paper's level");
});

test("the ratio at each error level every seed's two arms reached: a geometric mean, by hand", () => {
  // seed 0: ReLU reaches 70% at 2, 60% at 4; tanh at 6 and 16 -> 3 and 4. Seed 1: 1, 3 and 3, 12 -> 3 and 4.
  const relu: [number, number][][] = [
    [
      [2, 0.65],
      [4, 0.55],
    ],
    [
      [1, 0.7],
      [3, 0.6],
    ],
  ];
  const tanh: [number, number][][] = [
    [
      [6, 0.69],
      [16, 0.58],
    ],
    [
      [3, 0.69],
      [12, 0.6],
    ],
  ];
  assert.deepEqual(levelRatios(relu, tanh), ['70%: 3.00', '60%: 4.00']);
  assert.deepEqual(levelRatios(relu, [[[6, 0.69]], tanh[1]]), ['70%: 3.00'], 'a level one seed missed is left out');
});

test('warnings for an arm at chance; a run still learning is too early for a regulariser', () => {
  const w = chanceWarnings(
    [
      { name: 'a', errors: [0.9, 0.88] },
      { name: 'b', errors: [0.3, 0.4] },
    ],
    'test error',
  );
  assert.equal(w.length, 1);
  assert.match(w[0], /^a stayed at chance \(test error 89\.0%, chance 90%\)/);
  const falling: [number, number][] = [1, 2, 3, 4, 5, 6].map((i) => [i, 1 - i / 10]);
  const flat: [number, number][] = [1, 2, 3, 4, 5, 6].map((i) => [i, 0.2]);
  assert.equal(stillLearning([[falling], [flat]]), true);
  assert.equal(stillLearning([[flat], [flat]]), false);
});

test('the plot: the window adapts to short runs, seeds drawn thin, test errors as markers, one point still shows', () => {
  assert.equal(plotWindow(4, 20), 1);
  assert.equal(plotWindow(50, 20), 5);
  assert.equal(plotWindow(200, 20), 20);
  const svg = errorCurvesSvg('t', 1, [
    {
      name: 'a',
      curves: [
        [
          [1, 0.9],
          [2, 0.8],
        ],
        [
          [1, 0.7],
          [2, 0.6],
        ],
      ],
      test: [0.75, 0.65],
    },
    { name: 'b', curves: [[[1, 0.5]]], dashed: true },
  ]);
  assert.equal(svg.match(/<path /g)?.length, 2, 'one mean line per arm');
  assert.equal(svg.match(/<polyline /g)?.length, 2, "arm a's two seeds");
  assert.match(svg, />a: test error</);
  // Markers: two test errors and their legend entry; the one-point arm b: a dot.
  assert.equal(svg.match(/<circle [^>]*fill="white"/g)?.length, 3);
  assert.match(svg, /<circle [^>]*r="3" fill="#d62728"/);
  assert.equal(svg.match(/stroke-dasharray="7 4"/g)?.length, 2, "arm b's line and its legend entry are dashed");
  // The mean of arm a is (0.8, 0.7) at steps 1 and 2; the y axis spans 0 … 0.9·1.05.
  const empty = lineChartSvg({ title: 'x', xLabel: 'x', yLabel: 'y', series: [{ name: 'n', points: [[4, 0.5]] }] });
  assert.match(empty, /<circle /);
});

test('identical seeds give no spread: inconclusive; a ratio verdict speaks in ratios; the rate search', () => {
  const v = verdict(summarize([2, 2, 2]), 0, 'x', 1.4);
  assert.equal(v.word, 'inconclusive');
  assert.match(v.sentence, /all 3 seeds gave the same value \(2\.00\)/);
  const r = summarizeRatios([1, 4, 16]);
  const w = verdict(r.log, 0, 'x', Math.log(6), (x) => Math.exp(x).toFixed(2));
  assert.match(w.sentence, /the paper's 6\.00 \(95% CI 0\.13 – 125\.25, 3 seeds\)/);
  // The fastest to 25% wins; where none got there, the lowest error in the last window.
  const c = (errs: number[]): [number, number][] => errs.map((e, i) => [i + 1, e]);
  assert.equal(
    pickRate([
      { lr: 0.1, curve: c([0.5, 0.24]) },
      { lr: 0.01, curve: c([0.2, 0.1]) },
    ]),
    0.01,
  );
  assert.equal(
    pickRate([
      { lr: 0.1, curve: c([0.5, 0.4]) },
      { lr: 0.01, curve: c([0.5, 0.45]) },
    ]),
    0.1,
  );
});
