// The parts every experiment's report shares: the markdown's layout (claim, setting, table, effect, verdict, plot),
// the training-error plot, percentages over seeds, and the result of an effect in percentage points.
import { lineChartSvg } from './plot';
import { Summary, summarize } from './stats';
import { ExperimentResult, fmt } from './types';

export interface ReportParts {
  title: string;
  /** The paper's claim, a sentence. */
  claim: string;
  /** The setting here, a paragraph. */
  setting: string;
  /** A markdown table's lines (header, rule, rows). */
  table: string[];
  /** The effect line and the verdict sentence. */
  effect: string;
  verdict: string;
}

export function reportMarkdown(p: ReportParts): string {
  return [
    `# ${p.title}`,
    '',
    `**The paper's claim:** ${p.claim}`,
    '',
    p.setting,
    '',
    ...p.table,
    '',
    p.effect,
    '',
    `**Verdict:** ${p.verdict}`,
    '',
    '![training error](curves.svg)',
    '',
  ].join('\n');
}

/** The plot: training error against steps, one line per series (each the mean over seeds). */
export function errorCurvesSvg(
  title: string,
  window: number,
  series: { name: string; points: [number, number][] }[],
  hlines?: [number, string][],
): string {
  return lineChartSvg({
    title,
    xLabel: 'step',
    yLabel: `training error (windows of ${window} steps)`,
    series,
    hlines,
  });
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
  report: { markdown: string; svg: string; suffix?: string },
): ExperimentResult {
  return {
    markdown: report.markdown,
    svg: report.svg,
    summary: { effect: e.mean, sd: e.sd, ci95: e.ci95, paper: paper.value ?? NaN, held: v.held },
    row: {
      effect: `${fmt(e.mean, 2)} ± ${fmt(e.sd, 2)} pt${report.suffix ?? ''}`,
      paper: paper.label ?? (paper.value === undefined ? '—' : `${fmt(paper.value, 1)} pt`),
      held: v.word,
    },
  };
}
