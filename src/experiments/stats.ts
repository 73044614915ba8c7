// The statistics of an experiment over seeds: mean, sample standard deviation, and 95% confidence intervals from
// Student's t (a mean; the difference of two means by Welch's approximation), as a report needs them.

export interface Summary {
  n: number;
  mean: number;
  /** Sample standard deviation (n − 1); 0 for a single value. */
  sd: number;
  /** 95% confidence interval of the mean; [mean, mean] for a single value. */
  ci95: [number, number];
}

// Two-sided 97.5% quantiles of Student's t for 1…30 degrees of freedom (standard tables).
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11,
  2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/** Student's t 97.5% quantile for `df` degrees of freedom (fractional df round down; beyond 30: 1.96 + 2.4/df). */
export function t975(df: number): number {
  if (!(df >= 1)) return NaN;
  const d = Math.floor(df);
  return d <= 30 ? T975[d - 1] : 1.96 + 2.4 / d;
}

export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function summarize(xs: number[]): Summary {
  const n = xs.length;
  const m = mean(xs);
  if (n < 2) return { n, mean: m, sd: 0, ci95: [m, m] };
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - m) ** 2, 0) / (n - 1));
  const h = (t975(n - 1) * sd) / Math.sqrt(n);
  return { n, mean: m, sd, ci95: [m - h, m + h] };
}

/** The difference of means a − b with Welch's 95% interval (unequal variances); df by Welch–Satterthwaite. */
export function welch(a: number[], b: number[]): { diff: number; ci95: [number, number]; df: number } {
  const sa = summarize(a);
  const sb = summarize(b);
  const va = sa.sd ** 2 / a.length;
  const vb = sb.sd ** 2 / b.length;
  const diff = sa.mean - sb.mean;
  const se = Math.sqrt(va + vb);
  if (se === 0) return { diff, ci95: [diff, diff], df: Infinity };
  const df = (va + vb) ** 2 / (va ** 2 / (a.length - 1) + vb ** 2 / (b.length - 1));
  const h = t975(df) * se;
  return { diff, ci95: [diff - h, diff + h], df };
}

/** Whether a summary has an interval at all: one seed has none (its spread is unknown, not zero). */
export const hasInterval = (s: { n: number }): boolean => s.n >= 2;

/** "95% CI lo – hi" or, from one seed, "one seed: no interval". */
export function ciText(s: { n: number; ci95: [number, number] }, digits: number, unit = ''): string {
  if (!hasInterval(s)) return s.n === 0 ? 'no seed measured: no interval' : 'one seed: no interval';
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(digits) : '–');
  return `95% CI ${f(s.ci95[0])} – ${f(s.ci95[1])}${unit}`;
}

/**
 * Ratios summarised on a log scale (a ratio of 2 and one of 1/2 are equally far from 1): the geometric mean, the
 * sd of the log ratios, and the interval exp(m ± t·sd/√n) of their mean m, which is never negative. `mean` and
 * `ci95` are ratios; `log` is the summary of the logs (what a verdict tests against log 1 = 0).
 */
export interface RatioSummary extends Summary {
  log: Summary;
}

export function summarizeRatios(ratios: number[]): RatioSummary {
  const log = summarize(ratios.map(Math.log));
  // sd here: the geometric standard deviation factor exp(sd of logs) (1 = no spread).
  return {
    n: log.n,
    mean: Math.exp(log.mean),
    sd: Math.exp(log.sd),
    ci95: [Math.exp(log.ci95[0]), Math.exp(log.ci95[1])],
    log,
  };
}

/**
 * Times to an event (steps or epochs to a threshold) where some runs never got there: those are censored (their time
 * is only known to exceed the run's length), so they are not averaged in. `reached` are the measured ones.
 */
export function censored(times: (number | undefined)[]): { reached: number[]; censored: number } {
  const reached = times.filter((t): t is number => t !== undefined);
  return { reached, censored: times.length - reached.length };
}
