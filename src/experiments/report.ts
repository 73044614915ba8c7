// The parts every experiment's report shares: the markdown's layout (claim, setting, table, effect, verdict, plot),
// the training-error plot, percentages over seeds, and the result of an effect in percentage points.
import { Curve, meanCurve } from './curves';
import { lineChartSvg, Series } from './plot';
import { ciText, hasInterval, Summary, summarize } from './stats';
import { ExperimentResult, fmt } from './types';

export interface ReportParts {
  title: string;
  /** The paper's claim, a sentence. */
  claim: string;
  /** What this setting can show and what it cannot: the report's first lines. */
  scope?: string;
  /** The setting here, a paragraph. */
  setting: string;
  /** A markdown table's lines (header, rule, rows). */
  table: string[];
  /** The effect line and the verdict sentence. */
  effect: string;
  verdict: string;
  /** Why a number means less than it seems (an arm at chance, runs that never reached the threshold). */
  warnings?: string[];
}

export function reportMarkdown(p: ReportParts): string {
  return [
    `# ${p.title}`,
    '',
    ...(p.scope ? [`**What this setting can show:** ${p.scope}`, ''] : []),
    `**The paper's claim:** ${p.claim}`,
    '',
    p.setting,
    '',
    ...p.table,
    '',
    p.effect,
    '',
    ...(p.warnings ?? []).flatMap((w) => [`**Warning:** ${w}`, '']),
    `**Verdict:** ${p.verdict}`,
    '',
    '![training error](curves.svg)',
    '',
  ].join('\n');
}

/** One arm on the plot: its per-seed training-error curves and, for the ablations, its per-seed test errors. */
export interface PlotArm {
  name: string;
  curves: Curve[];
  dashed?: boolean;
  /** Test error per seed (fractions), drawn as markers at the last step: the measure the verdict is about. */
  test?: number[];
}

/**
 * The plot: training error against steps, each arm's mean over seeds as a line with its seeds as thin lines under
 * it (the spread), and its test errors as markers at the end when the verdict is about them.
 */
export function errorCurvesSvg(
  title: string,
  window: number,
  arms: PlotArm[],
  hlines?: [number, string][],
  xLabel = 'step',
): string {
  const last = Math.max(0, ...arms.flatMap((a) => a.curves.map((c) => c.at(-1)?.[0] ?? 0)));
  const series: Series[] = arms.map((a) => {
    return {
      name: `${a.name} (training)`,
      points: a.curves.length ? meanCurve(a.curves) : [],
      dashed: a.dashed,
      seeds: a.curves.length > 1 ? a.curves : undefined,
      markers: a.test ? { name: `${a.name}: test error`, points: a.test.map((t) => [last, t]) } : undefined,
    };
  });
  const y = window > 1 ? `error (training: windows of ${window} steps)` : 'error (training: per step)';
  return lineChartSvg({ title, xLabel, yLabel: y, series, hlines });
}

/**
 * The window training error is averaged over: the budget's, but at most a tenth of the run, so that a short run
 * still draws a curve (a run shorter than its window would give one point, or none).
 */
export function plotWindow(steps: number, window: number): number {
  return Math.max(1, Math.min(window, Math.floor(steps / 10)));
}

/** 10 classes: a top-1 error this close to 1 − 1/10 means the arm learnt nothing. */
export const CHANCE_MARGIN = 0.05;

/** A warning for each arm whose mean error stayed within CHANCE_MARGIN of chance (1 − 1/classes). */
export function chanceWarnings(arms: { name: string; errors: number[] }[], what: string, classes = 10): string[] {
  const chance = 1 - 1 / classes;
  return arms
    .filter((a) => a.errors.length && summarize(a.errors).mean >= chance - CHANCE_MARGIN)
    .map(
      (a) =>
        `${a.name} stayed at chance (${what} ${fmt(100 * summarize(a.errors).mean, 1)}%, chance ${fmt(100 * chance, 0)}%): it learnt nothing in this budget, so the comparison measures nothing.`,
    );
}

/** mean ± sd of fractions, in percent. */
export function pct(xs: number[]): string {
  const s = summarize(xs.map((x) => 100 * x));
  return `${fmt(s.mean, 1)}% ± ${fmt(s.sd, 1)}`;
}

/** The result of an effect measured in percentage points (`paper`: the paper's, if it gives one). */
export function pointsResult(
  e: Summary,
  v: { held: boolean; word: string },
  paper: { value?: number; label?: string },
  report: { markdown: string; svg: string; suffix?: string; warnings?: string[] },
): ExperimentResult {
  return {
    markdown: report.markdown,
    svg: report.svg,
    summary: {
      effect: e.mean,
      sd: e.sd,
      ci95: hasInterval(e) ? e.ci95 : null,
      n: e.n,
      paper: paper.value ?? NaN,
      held: v.held,
      verdict: v.word,
      warnings: report.warnings?.length ? report.warnings : undefined,
    },
    row: {
      effect: `${fmt(e.mean, 2)} ± ${fmt(e.sd, 2)} pt (${ciText(e, 2)})${report.suffix ?? ''}`,
      paper: paper.label ?? (paper.value === undefined ? '—' : `${fmt(paper.value, 1)} pt`),
      held: v.word,
    },
  };
}
