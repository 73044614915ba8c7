// The shape most of the paper's ablations share: the paper's choice against the alternative it was compared with,
// each trained from the same seeds on the same data, then measured on held-out images. The effect is in percentage
// points of top-1 error (or of overfitting: test error minus training error), positive when the paper's choice wins.
import { loadIdxDataset, TensorDataset } from '../data/fashion-mnist';
import { AlexNetOptions } from '../models/alexnet';
import { noGrad, randn, Tensor, tidy } from '../tensor/tensor';
import { Precision } from '../runtime/precision';
import { Curve, CurveSetting, loadTrainSubset, meanCurve, trainModel } from './curves';
import { chanceWarnings, errorCurvesSvg, pct, plotWindow, pointsResult, reportMarkdown } from './report';
import { ciText, Summary, summarize } from './stats';
import {
  Experiment,
  ExperimentCost,
  ExperimentOptions,
  ExperimentResult,
  fmt,
  progress,
  verdict,
  Verdict,
} from './types';
import { topOneError } from './views';

/** The trunk every ablation varies: alexnet-d2l's layers with the paper's choices switched on. */
export const PAPER_CHOICES: AlexNetOptions = { lrn: 'paper', groups: 2, pool: [3, 2], dropout: 0.5 };

export interface Budget {
  inputSize: number;
  steps: number;
  batchSize: number;
  window: number;
  trainLimit: number;
  testLimit: number;
}

/**
 * quick: a smoke run of a few minutes on 2 CPU cores. medium: past the point where training error falls below test
 * error, about 30 minutes an ablation on 2 cores: 4096 images for 720 steps of 64 (11¼ epochs, where the dropout
 * ablation's quick run on 1024 images overfits by 15), at the README's measured quick pace (~0.35 s a step with its
 * evaluation, 6 runs of 200 steps in 350–480 s): 6 runs × 720 steps × 0.35 s ≈ 25 min, plus evaluation. full: the
 * d2l recipe's size, for a GPU. A comparison's `quick` overrides apply to the quick budget only.
 */
export function budgetOf(o: ExperimentOptions, quick: Partial<Budget> = {}): Budget {
  const b: Budget =
    o.budget === 'full'
      ? { inputSize: 224, steps: 3000, batchSize: 128, window: 100, trainLimit: 60000, testLimit: 10000 }
      : o.budget === 'medium'
        ? MEDIUM
        : { inputSize: 67, steps: 200, batchSize: 64, window: 20, trainLimit: 8192, testLimit: 2000, ...quick };
  const steps = o.steps ?? b.steps;
  return {
    ...b,
    steps,
    window: plotWindow(steps, b.window),
    trainLimit: o.trainLimit ?? b.trainLimit,
    testLimit: o.testLimit ?? b.testLimit,
  };
}

export const MEDIUM: Budget = {
  inputSize: 67,
  steps: 720,
  batchSize: 64,
  window: 48,
  trainLimit: 4096,
  testLimit: 2000,
};

/** The optimiser and model every arm shares; the paper's own N(0, 0.01) start stays at chance on a quick budget. */
export function armSetting(o: ExperimentOptions, b: Budget, options: AlexNetOptions, seed: number): CurveSetting {
  return {
    model: 'alexnet-d2l',
    options: { ...PAPER_CHOICES, inputSize: b.inputSize, ...options },
    steps: b.steps,
    window: b.window,
    batchSize: b.batchSize,
    optimizer: 'adam',
    lr: 1e-4,
    momentum: 0,
    weightDecay: 5e-4,
    seed,
    device: o.device,
  };
}

export const SETTING_NOTE =
  "alexnet-d2l's layers (one input channel, Xavier initialisation) with the paper's choices — LRN (k 2, n 5, α 1e-4, β 0.75), conv2/4/5 in two groups, 3×3/2 max pooling, dropout 0.5 — unless the arm says otherwise; Adam lr 1e-4 with weight decay 5e-4 (with the paper's N(0, 0.01) start and SGD the network stays at chance for the first few hundred steps, which a quick budget cannot afford)";

export interface Arm {
  label: string;
  options: AlexNetOptions;
  /** PCA intensity noise: the std of α (the paper: 0.1). */
  pcaStd?: number;
  /** Training and evaluation precision (default fp32). */
  precision?: Precision;
}

export interface Comparison {
  name: string;
  title: string;
  claim: string;
  /** The paper's claim and number, as a sentence. */
  paperText: string;
  /** The paper's effect in percentage points (undefined: the paper gives none). */
  paper?: number;
  /** 'test': top-1 test error; 'gap': test error minus training error (overfitting). */
  measure: 'test' | 'gap';
  /** The paper's choice first, then the alternative. */
  arms: [Arm, Arm];
  /** Overrides of the quick budget (e.g. a small training set to overfit). */
  quick?: Partial<Budget>;
  /** What differs from the common setting, said in the report. */
  note?: string;
  /**
   * A claim of no difference: it holds when the 95% interval of the effect lies within ± this many points (rather
   * than above 0).
   */
  equivalence?: number;
}

interface ArmResult {
  curves: Curve[];
  test: number[];
  train: number[];
}

/**
 * The paper's PCA colour noise for one-channel images: the formula Σ p_i α_i λ_i with one channel has p = 1 and λ =
 * the pixel variance, so each image is shifted in brightness by α·λ, α ~ N(0, std²).
 */
export function intensityNoise(ds: TensorDataset, std: number): (x: Tensor) => Tensor {
  const variance = noGrad(() => tidy(() => ds.images.float().div(255).var().item()));
  return (x) => tidy(() => x.add(randn([x.size(0), 1, 1, 1], { device: x.device }).mul(std * variance)));
}

async function runArm(o: ExperimentOptions, c: Comparison, arm: Arm, data: Data, seed: number): Promise<ArmResult> {
  const b = data.budget;
  const s = armSetting(o, b, arm.options, seed);
  if (arm.pcaStd) s.augment = intensityNoise(data.train, arm.pcaStd);
  s.precision = arm.precision;
  const { model, curve } = await trainModel(data.train, s);
  try {
    const view = {
      device: o.device,
      side: b.inputSize,
      crop: b.inputSize,
      views: 'center' as const,
      precision: arm.precision,
    };
    const test = await topOneError(model, data.test, view);
    // medium also measures the training error: whether it fell below the test error is what the budget is for.
    const measured = c.measure === 'gap' || o.budget === 'medium';
    const train = measured ? await topOneError(model, data.train, view) : NaN;
    return { curves: [curve], test: [test], train: [train] };
  } finally {
    model.dispose();
  }
}

interface Data {
  budget: Budget;
  train: TensorDataset;
  test: TensorDataset;
}

export function loadData(o: ExperimentOptions, quick?: Partial<Budget>): Data {
  const budget = budgetOf(o, quick);
  return {
    budget,
    train: loadTrainSubset(budget.trainLimit, o.dataDir),
    test: loadIdxDataset({ dir: o.dataDir, split: 'test', limit: budget.testLimit }),
  };
}

async function compare(c: Comparison, o: ExperimentOptions): Promise<ExperimentResult> {
  const data = loadData(o, c.quick);
  const results: ArmResult[] = c.arms.map(() => ({ curves: [], test: [], train: [] }));
  const started = Date.now();
  try {
    for (let seed = 0; seed < o.seeds; seed++) {
      for (const [i, arm] of c.arms.entries()) {
        const t0 = Date.now();
        const r = await runArm(o, c, arm, data, seed);
        results[i].curves.push(...r.curves);
        results[i].test.push(...r.test);
        results[i].train.push(...r.train);
        const gap = Number.isFinite(r.train[0]) ? `, training error ${fmt(r.train[0], 3)}` : '';
        const at = progress(started, 2 * seed + i + 1, 2 * o.seeds);
        o.log(`${arm.label}, seed ${seed}: test error ${fmt(r.test[0], 3)}${gap} (${secondsSince(t0)} s) ${at}`);
      }
    }
  } finally {
    disposeData(data);
  }
  const measure = (r: ArmResult) => (c.measure === 'gap' ? r.test.map((t, i) => t - r.train[i]) : r.test);
  // Per seed, in percentage points: the alternative's measure minus the paper's choice's.
  const effects = measure(results[1]).map((x, i) => 100 * (x - measure(results[0])[i]));
  return comparisonReport(c, o, data.budget, results, summarize(effects));
}

export const secondsSince = (t0: number): string => ((Date.now() - t0) / 1000).toFixed(0);

export function disposeData(d: Data): void {
  for (const ds of [d.train, d.test]) {
    ds.images.dispose();
    ds.labels.dispose();
  }
}

/** What an ablation's setting can show and what it cannot (the report's first lines). */
/** `checked`: the report measures the training error too and says whether it fell below the test error. */
export function scopeLine(o: ExperimentOptions, b: Budget, checked = false): string {
  const size = `alexnet-d2l on ${b.trainLimit} Fashion-MNIST images at ${b.inputSize}×${b.inputSize} for ${b.steps} steps`;
  const cannot =
    "It cannot reproduce the paper's ImageNet numbers (another data set, another size), and a regulariser's benefit shows only once training error falls below test error";
  if (o.budget === 'quick')
    return `a smoke run (${size}): it shows that both arms train and any early difference between them. ${cannot}, which a quick budget does not reach: read "too early to show a regulariser" as no evidence either way.`;
  if (o.budget === 'medium')
    return `${size} (the medium budget): sized to train past the point where training error falls below test error, where a regulariser can show${checked ? '; the report checks that it did (training error is measured on the training images too)' : ''}. ${cannot.split(', and')[0]}.`;
  return `${size}: long enough to compare the arms past the start of training. ${cannot}.`;
}

export function settingLine(o: ExperimentOptions, b: Budget, extra?: string): string {
  return `**Here:** ${b.trainLimit} Fashion-MNIST training images at ${b.inputSize}×${b.inputSize}, ${b.steps} steps of batch ${b.batchSize}, ${o.seeds} seeds, top-1 error on ${b.testLimit} test images; ${SETTING_NOTE}.${extra ? ` ${extra}` : ''}`;
}

export function effectLine(what: string, e: Summary, paper: number | undefined): string {
  const p = paper === undefined ? 'the paper gives no number' : `the paper: ${fmt(paper, 1)}`;
  return `**Effect (${what}):** ${fmt(e.mean, 2)} ± ${fmt(e.sd, 2)} percentage points (${ciText(e, 2)}); ${p}.`;
}

/**
 * Whether the arms were still learning when the budget ran out: the mean training error of the last window is
 * more than a point below the one at four fifths of the run (a regulariser cannot show before training settles).
 */
export function stillLearning(curves: Curve[][]): boolean {
  return curves.some((cs) => {
    const m = meanCurve(cs);
    if (m.length < 3) return true;
    return m[Math.floor(0.8 * (m.length - 1))][1] - m[m.length - 1][1] > 0.01;
  });
}

function comparisonVerdict(c: Comparison, o: ExperimentOptions, r: ArmResult[], e: Summary, what: string): Verdict {
  const v =
    c.equivalence === undefined
      ? verdict(e, 0, `${c.arms[0].label} had the lower ${what} (by ${fmt(e.mean, 2)} points)`, c.paper)
      : equivalent(e, c.equivalence);
  if (c.equivalence === undefined && !v.held && o.budget === 'quick' && stillLearning(r.map((x) => x.curves)))
    return {
      held: false,
      word: 'inconclusive',
      sentence: `too early to show a regulariser: the arms were still learning when the quick budget (a smoke run) ended, so this says nothing against the paper (${ciText(e, 2)}, ${e.n} seeds).`,
    };
  if (c.equivalence === undefined && !v.held && o.budget === 'medium' && !pastOverfitting(r))
    return {
      held: false,
      word: 'inconclusive',
      sentence: `too early to show a regulariser: an arm's training error had not fallen below its test error when the medium budget ended, so this says nothing against the paper (${ciText(e, 2)}, ${e.n} seeds).`,
    };
  return v;
}

/** Whether every arm's mean training error fell below its mean test error (the point where regularisers matter). */
export function pastOverfitting(r: { test: number[]; train: number[] }[]): boolean {
  const m = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
  return r.every((x) => x.train.length > 0 && m(x.train) < m(x.test));
}

function comparisonReport(
  c: Comparison,
  o: ExperimentOptions,
  b: Budget,
  r: ArmResult[],
  e: Summary,
): ExperimentResult {
  const what = c.measure === 'gap' ? 'overfitting, test − training error' : 'top-1 test error';
  const warnings = chanceWarnings(
    r.map((x, i) => ({ name: c.arms[i].label, errors: x.test })),
    'test error',
  );
  const v: Verdict = warnings.length
    ? { held: false, word: 'inconclusive', sentence: `inconclusive: an arm stayed at chance (${ciText(e, 2)}).` }
    : comparisonVerdict(c, o, r, e, what);
  const gapCols = c.measure === 'gap' ? ' training error | gap |' : o.budget === 'medium' ? ' training error |' : '';
  const rows = r.map((x, i) => {
    const gap =
      c.measure === 'gap'
        ? ` ${pct(x.train)} | ${pct(x.test.map((t, j) => t - x.train[j]))} |`
        : o.budget === 'medium'
          ? ` ${pct(x.train)} |`
          : '';
    return `| ${c.arms[i].label} | ${pct(x.test)} |${gap}`;
  });
  const markdown = reportMarkdown({
    title: c.title,
    scope: scopeLine(o, b, true),
    claim: c.paperText,
    setting: settingLine(o, b, c.note),
    table: [
      `| arm | test error (mean ± sd) |${gapCols}`,
      `|---|---|${'---|'.repeat(gapCols.split('|').length - 1)}`,
      ...rows,
    ],
    effect: effectLine(`${c.arms[1].label} minus ${c.arms[0].label}, ${what}`, e, c.paper),
    warnings,
    verdict: v.sentence,
  });
  const svg = errorCurvesSvg(
    `${c.title}: training error (lines: mean and seeds), test error (circles)`,
    b.window,
    r.map((x, i) => ({ name: c.arms[i].label, curves: x.curves, test: x.test })),
  );
  return pointsResult(e, v, { value: c.paper }, { markdown, svg, warnings });
}

/**
 * Whether an effect is no larger than ± margin points, by its 95% interval: inside (held), wholly outside (not
 * held), across the margin or from one seed (inconclusive).
 */
export function equivalent(e: Summary, margin: number): Verdict {
  const ci = `${ciText(e, 2, ' points')}, ${e.n} seeds`;
  if (e.n < 2) return { held: false, word: 'inconclusive', sentence: `inconclusive: ${ci}.` };
  if (e.ci95[0] > -margin && e.ci95[1] < margin)
    return { held: true, word: 'held', sentence: `held here: the arms differ by less than ±${margin} points (${ci}).` };
  if (e.ci95[0] >= margin || e.ci95[1] <= -margin)
    return {
      held: false,
      word: 'not held',
      sentence: `did not hold here: the arms differ by more than ±${margin} points (${ci}).`,
    };
  return {
    held: false,
    word: 'inconclusive',
    sentence: `inconclusive here: the interval reaches both inside and outside ±${margin} points (${ci}).`,
  };
}

/** `runs` alexnet-d2l networks at the budget's size. */
export function budgetCost(o: ExperimentOptions, runs: number, quick?: Partial<Budget>): ExperimentCost {
  const b = budgetOf(o, quick);
  return { runs: runs * o.seeds, steps: b.steps, model: 'alexnet-d2l', inputSize: b.inputSize, batchSize: b.batchSize };
}

/** An experiment from a comparison. */
export function comparison(c: Comparison): Experiment {
  return { name: c.name, claim: c.claim, run: (o) => compare(c, o), cost: (o) => budgetCost(o, 2, c.quick) };
}
