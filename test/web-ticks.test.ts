// web/ticks.js, the training charts' y-axis ticks, run in a bare context as a classic script runs in a page (no
// browser): steps of 1, 2 or 5 × 10^k, and labels that tell every tick apart with no more decimals than needed.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as vm from 'node:vm';

interface Ticks {
  niceStep(span: number, maxTicks: number): number;
  ticks(min: number, max: number, maxTicks: number): { step: number; values: number[]; labels: string[] };
  labels(values: number[], step?: number): string[];
}

function load(): Ticks {
  const ctx: { window: Record<string, unknown> } = { window: {} };
  const file = path.resolve(__dirname, '..', '..', 'web', 'ticks.js');
  vm.runInNewContext(fs.readFileSync(file, 'utf8'), ctx, { filename: file });
  const t = ctx.window.AlexnetTicks as Ticks;
  // Arrays made in the script's context are not this context's arrays (deepEqual compares prototypes).
  return {
    niceStep: t.niceStep,
    ticks: (a, b, n) => JSON.parse(JSON.stringify(t.ticks(a, b, n))),
    labels: (v, s) => JSON.parse(JSON.stringify(t.labels(v, s))),
  };
}

const T = load();

/** Whether s is 1, 2 or 5 × 10^k (up to rounding in the last place). */
function isNice(s: number): boolean {
  const k = Math.floor(Math.log10(s) + 1e-9);
  const m = s / 10 ** k;
  return [1, 2, 5].some((n) => Math.abs(m - n) < 1e-9);
}

/** Everything a tick list must be, whatever the range: checked on every case below. */
function checkTicks(min: number, max: number, maxTicks: number): { step: number; values: number[]; labels: string[] } {
  const t = T.ticks(min, max, maxTicks);
  const what = `[${min}, ${max}] in at most ${maxTicks} steps: ${JSON.stringify(t)}`;
  assert.ok(isNice(t.step), `a 1/2/5 step: ${what}`);
  // The nice steps next to it (1 → 0.5 and 2, 2 → 1 and 5, 5 → 2 and 10, times 10^k).
  const mantissa = Math.round(t.step / 10 ** Math.floor(Math.log10(t.step) + 1e-9));
  const smaller = t.step * (mantissa === 5 ? 0.4 : 0.5);
  const larger = t.step * (mantissa === 2 ? 2.5 : 2);
  const inside = (s: number) => Math.floor(max / s + 1e-9) - Math.ceil(min / s - 1e-9) + 1;
  assert.ok(t.values.length >= 2, `two ticks at least: ${what}`);
  if (t.step * maxTicks >= (max - min) * (1 - 1e-9)) {
    // The smallest step that cuts the range into at most maxTicks intervals.
    assert.ok(smaller * maxTicks < (max - min) * (1 + 1e-9), `the smallest step that fits: ${what}`);
    assert.ok(t.values.length <= maxTicks + 1, what);
  } else {
    // That step left fewer than two ticks inside the range: the largest step that gives two.
    assert.ok(inside(larger) < 2, `the largest step with two ticks: ${what}`);
  }
  assert.equal(t.labels.length, t.values.length, what);
  assert.equal(new Set(t.labels).size, t.labels.length, `distinct labels: ${what}`);
  t.values.forEach((v, i) => {
    assert.ok(v >= min - t.step * 1e-6 && v <= max + t.step * 1e-6, `inside the range: ${what}`);
    assert.ok(Math.abs(v / t.step - Math.round(v / t.step)) < 1e-6, `a multiple of the step: ${what}`);
    if (i) assert.ok(Math.abs(v - t.values[i - 1] - t.step) < t.step * 1e-6, `evenly spaced: ${what}`);
    // The label reads as the value to within half a step.
    assert.ok(Math.abs(Number(t.labels[i]) - v) < t.step / 2, `label ${t.labels[i]} says ${v}: ${what}`);
  });
  // Just enough digits: the last digit shown is worth at most a step (neighbours differ), and a decimal of the
  // largest value's label a tenth of a step or more (no decimal beyond what the step needs).
  const worth = (label: string) => {
    const m = /^-?\d+(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(label);
    assert.ok(m, `a plain number: ${label}`);
    return 10 ** (Number(m[2] ?? 0) - (m[1]?.length ?? 0));
  };
  const shown = t.labels.filter((l) => Number(l) !== 0 || !/e/.test(t.labels.join()));
  shown.forEach((l) => assert.ok(worth(l) <= t.step * (1 + 1e-9), `${l} shows the step: ${what}`));
  const biggest = t.labels[t.values.map(Math.abs).indexOf(Math.max(...t.values.map(Math.abs)))];
  if (t.values.length > 1 && /\.\d/.test(biggest)) {
    assert.ok(worth(biggest) * 10 > t.step * (1 + 1e-9), `${biggest} has no digit the step does not need: ${what}`);
  }
  return t;
}

test('a narrow loss range reads 2.2995, 2.3000, 2.3005, 2.3010 (not "2.301, 2.3, 2.3")', () => {
  // 0.0017 in at most 5 intervals: 0.00034 rounds up to the nice 0.0005, whose labels need 4 decimals.
  const t = checkTicks(2.2995, 2.3012, 5);
  assert.equal(t.step, 0.0005);
  assert.deepEqual(t.labels, ['2.2995', '2.3000', '2.3005', '2.3010']);
  // 0.0017 / 8 = 0.0002125 → 0.0005 (0.0002 would need 9 intervals).
  assert.equal(checkTicks(2.2995, 2.3012, 8).step, 0.0005);
  // 0.0017 / 10 = 0.00017 → 0.0002: 2.2996 … 2.3012, 9 ticks.
  const fine = checkTicks(2.2995, 2.3012, 10);
  assert.equal(fine.step, 0.0002);
  assert.deepEqual(fine.labels, [
    '2.2996',
    '2.2998',
    '2.3000',
    '2.3002',
    '2.3004',
    '2.3006',
    '2.3008',
    '2.3010',
    '2.3012',
  ]);
  // Narrower still: 2.30001 to 2.30004 in steps of 0.00001.
  assert.deepEqual(checkTicks(2.300005, 2.300041, 5).labels, ['2.30001', '2.30002', '2.30003', '2.30004']);
});

test('wide, negative, tiny and huge ranges: hand-computed steps and labels', () => {
  assert.deepEqual(checkTicks(0, 1, 5).labels, ['0.0', '0.2', '0.4', '0.6', '0.8', '1.0']);
  assert.deepEqual(checkTicks(-3, 7, 5).labels, ['-2', '0', '2', '4', '6']);
  // 9.2 / 4 = 2.3 → 5 would leave one tick (5): 2 gives 2, 4, 6, 8.
  assert.deepEqual(checkTicks(0.1, 9.3, 4).labels, ['2', '4', '6', '8']);
  // 0.0046 / 2 → 0.005 has no multiple in the range: 0.002 gives two.
  assert.deepEqual(checkTicks(31.4102, 31.4148, 2).labels, ['31.412', '31.414']);
  assert.deepEqual(checkTicks(0, 2400, 5).labels, ['0', '500', '1000', '1500', '2000']);
  // Learning rates: below 0.001 in exponent form, the mantissa as long as the step needs.
  assert.deepEqual(checkTicks(0, 1e-4, 5).labels, ['0', '2.0e-5', '4.0e-5', '6.0e-5', '8.0e-5', '1.0e-4']);
  assert.deepEqual(checkTicks(0.0011, 0.0102, 5).labels, ['0.002', '0.004', '0.006', '0.008', '0.010']);
  assert.deepEqual(checkTicks(0, 3.2e6, 4).labels, ['0', '1e+6', '2e+6', '3e+6']);
  assert.deepEqual(checkTicks(-0.0012, 0.0011, 5).labels, ['-0.0010', '-0.0005', '0.0000', '0.0005', '0.0010']);
  // Floating-point noise in the ends does not add or drop a tick: 0.1 + 0.2 is 0.30000000000000004.
  assert.deepEqual(checkTicks(0.1 + 0.2, 0.9, 3).labels, ['0.4', '0.6', '0.8']);
  // One value (a run of one record, before uPlot pads its range): that value, once.
  assert.deepEqual(T.ticks(2.3, 2.3, 5).labels, ['2.3']);
  assert.deepEqual(T.ticks(Number.NaN, 1, 5).values, []);
});

test('labels of splits as uPlot hands them over (with their floating-point noise) are distinct', () => {
  // The step is found from the splits when not given.
  assert.deepEqual(T.labels([2.2995, 2.3000000000000003, 2.3005000000000004, 2.301]), [
    '2.2995',
    '2.3000',
    '2.3005',
    '2.3010',
  ]);
  assert.deepEqual(T.labels([0.30000000000000004, 0.4, 0.5]), ['0.3', '0.4', '0.5']);
  assert.deepEqual(T.labels([-1.1102230246251565e-16, 0.1, 0.2]), ['0.0', '0.1', '0.2']);
  assert.deepEqual(T.labels([1e-4, 2e-4, 3e-4]), ['1e-4', '2e-4', '3e-4']);
});

test('every label distinct over 2000 ranges from 1e-7 wide to 1e7 wide, at 2 to 12 ticks', () => {
  // A fixed-seed generator (the same ranges on every run).
  let seed = 12345;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 2000; i++) {
    const span = 10 ** (random() * 14 - 7);
    const centre = (random() * 2 - 1) * span * 10 ** (random() * 4);
    const maxTicks = 2 + Math.floor(random() * 11);
    checkTicks(centre - span / 2, centre + span / 2, maxTicks);
  }
});
