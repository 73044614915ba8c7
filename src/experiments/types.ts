// What every experiment takes and gives back, and the shared wording of a verdict.
import { Device } from '../tensor/dtype';
import { Summary } from './stats';

export interface ExperimentOptions {
  budget: 'quick' | 'full';
  seeds: number;
  device: Device;
  /** Overrides of the budget's size (tests run tiny ones). */
  steps?: number;
  trainLimit?: number;
  testLimit?: number;
  /** Fashion-MNIST's IDX folder (default Debian's). */
  dataDir?: string;
  log: (line: string) => void;
}

export interface ExperimentResult {
  /** report.md */
  markdown: string;
  /** The plot, an SVG document. */
  svg: string;
  /** results.json: the numbers. */
  summary: { effect: number; sd: number; ci95: [number, number]; paper: number; held: boolean; threshold?: number };
  /** A row of the README's table. */
  row: { effect: string; paper: string; held: string };
}

export interface Experiment {
  name: string;
  /** The paper's claim in a line. */
  claim: string;
  run(o: ExperimentOptions): Promise<ExperimentResult>;
}

export const fmt = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : '–');

/**
 * Whether an effect measured over seeds supports a claim that it exceeds `null0`: held (the 95% interval lies above
 * it), weakly (the mean does, the interval reaches it), reversed (the interval lies below it), or not.
 */
export function verdict(s: Summary, null0: number, claim: string): { held: boolean; word: string; sentence: string } {
  const ci = `95% CI ${fmt(s.ci95[0], 2)} – ${fmt(s.ci95[1], 2)}, ${s.n} seeds`;
  if (s.n > 1 && s.ci95[0] > null0) return { held: true, word: 'held', sentence: `held here: ${claim} (${ci}).` };
  if (s.mean > null0)
    return {
      held: false,
      word: 'weakly',
      sentence: `held only weakly here: ${claim} on average, but the interval reaches ${null0} (${ci}).`,
    };
  if (s.n > 1 && s.ci95[1] < null0)
    return {
      held: false,
      word: 'reversed',
      sentence: `did not hold here: the opposite held, the interval lies below ${null0} (${ci}).`,
    };
  return { held: false, word: 'not held', sentence: `did not hold here (${ci}).` };
}
