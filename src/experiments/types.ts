// What every experiment takes and gives back, and the shared wording of a verdict.
import { Device } from '../tensor/dtype';
import { Summary } from './stats';

export interface ExperimentOptions {
  /**
   * quick: a smoke run; medium: the ablations past the point where training error falls below test error; full: the
   * paper's size.
   */
  budget: 'quick' | 'medium' | 'full';
  seeds: number;
  device: Device;
  /** Overrides of the budget's size (tests run tiny ones). */
  steps?: number;
  trainLimit?: number;
  testLimit?: number;
  /** Fashion-MNIST's IDX folder (default Debian's). */
  dataDir?: string;
  /** relu-vs-tanh: Figure 1's network on CIFAR-10 ('cifar') or alexnet-d2l on Fashion-MNIST ('alexnet'). */
  net?: 'alexnet' | 'cifar';
  /** --dataset: 'cifar10:DIR' (the binary version's folder). */
  dataset?: string;
  log: (line: string) => void;
}

export interface ExperimentResult {
  /** report.md */
  markdown: string;
  /** The plot, an SVG document. */
  svg: string;
  /** results.json: the numbers. */
  summary: {
    effect: number;
    sd: number;
    /** null from one seed: no interval. */
    ci95: [number, number] | null;
    n: number;
    paper: number;
    held: boolean;
    /** 'held', 'not held' or 'inconclusive'. */
    verdict: string;
    threshold?: number;
    /** Why the numbers mean less than they seem (also in the report). */
    warnings?: string[];
  };
  /** A row of the README's table. */
  row: { effect: string; paper: string; held: string };
}

/** What an experiment will train: `runs` networks of `steps` steps each (for an estimate of its time). */
export interface ExperimentCost {
  runs: number;
  steps: number;
  model: string;
  inputSize: number;
  batchSize: number;
  /** Input channels (default 1: Fashion-MNIST). */
  channels?: number;
}

export interface Experiment {
  name: string;
  /** The paper's claim in a line. */
  claim: string;
  run(o: ExperimentOptions): Promise<ExperimentResult>;
  cost(o: ExperimentOptions): ExperimentCost;
  /** The default of --seeds for these options (seeds, budget, net and data set; default 3). */
  seeds?(o: ExperimentOptions): number;
}

/** Runs done of a total, and the time left at the pace so far: "[3/6, 40 s left]". */
export function progress(started: number, done: number, total: number): string {
  const left = done ? ((Date.now() - started) / 1000 / done) * (total - done) : NaN;
  return `[${done}/${total}${done < total ? `, about ${duration(left)} left` : ''}]`;
}

/** Seconds as "40 s", "12 min" or "3.5 h". */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 120) return `${seconds.toFixed(0)} s`;
  if (seconds < 7200) return `${(seconds / 60).toFixed(0)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

export const fmt = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '–');

export interface Verdict {
  held: boolean;
  /** 'held', 'not held' or 'inconclusive'. */
  word: string;
  sentence: string;
}

/**
 * Whether an effect measured over seeds supports a claim that it exceeds `null0` (no effect), decided by its 95%
 * interval alone: held (the interval lies above `null0`), not held (it lies below, or it holds `null0` but
 * excludes the paper's value `paper`, which the data then rule out), inconclusive (it holds both `null0` and the
 * paper's value, or there is no paper value to rule out, or one seed gives no interval at all). `paper` and
 * `null0` are on the summary's scale (log ratios for a ratio: see summarizeRatios).
 */
export function verdict(
  s: Summary,
  null0: number,
  claim: string,
  paper?: number,
  show: (x: number) => string = (x) => fmt(x, 2),
): Verdict {
  if (s.n < 2)
    return {
      held: false,
      word: 'inconclusive',
      sentence: `inconclusive: ${s.n === 0 ? 'no seed was measured' : 'one seed gives no interval'} (run --seeds 2 or more).`,
    };
  if (s.sd === 0)
    return {
      held: false,
      word: 'inconclusive',
      sentence: `inconclusive: all ${s.n} seeds gave the same value (${show(s.mean)}), so there is no spread to build an interval from (finer windows or more seeds).`,
    };
  const ci = `95% CI ${show(s.ci95[0])} – ${show(s.ci95[1])}, ${s.n} seeds`;
  if (s.ci95[0] > null0) {
    const smaller = paper !== undefined && s.ci95[1] < paper ? ", smaller than the paper's" : '';
    return { held: true, word: 'held', sentence: `held here: ${claim}${smaller} (${ci}).` };
  }
  if (s.ci95[1] < null0)
    return {
      held: false,
      word: 'not held',
      sentence: `did not hold here: the opposite held, the interval lies below ${show(null0)} (${ci}).`,
    };
  if (paper !== undefined && (paper < s.ci95[0] || paper > s.ci95[1]))
    return {
      held: false,
      word: 'not held',
      sentence: `did not hold here: the interval holds no effect and excludes the paper's ${show(paper)} (${ci}).`,
    };
  const both = paper === undefined ? 'holds no effect' : `holds both no effect and the paper's ${show(paper)}`;
  return { held: false, word: 'inconclusive', sentence: `inconclusive here: the interval ${both} (${ci}).` };
}
