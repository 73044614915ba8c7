// The paper's competition entries averaged several CNNs: one CNN 40.7% top-1 / 18.2% top-5 on ILSVRC-2012's
// validation set, five CNNs 38.1% / 16.4%. Here each seed is an ensemble of K networks trained from different
// seeds; its effect is the mean error of its members minus the error of their averaged softmax.
import { AlexNet } from '../models/alexnet';
import {
  armSetting,
  budgetCost,
  scopeLine,
  disposeData,
  effectLine,
  loadData,
  secondsSince,
  settingLine,
} from './compare';
import { Curve, trainModel } from './curves';
import { errorCurvesSvg, pct, pointsResult, reportMarkdown } from './report';
import { mean, summarize } from './stats';
import { Experiment, ExperimentOptions, ExperimentResult, fmt, progress, verdict } from './types';
import { topOneError } from './views';

const PAPER = 40.7 - 38.1;

async function run(o: ExperimentOptions): Promise<ExperimentResult> {
  const data = loadData(o);
  const b = data.budget;
  const k = o.budget === 'full' ? 5 : 2;
  const view = { device: o.device, side: b.inputSize, crop: b.inputSize, views: 'center' as const };
  const curves: Curve[] = [];
  const single: number[][] = [];
  const together: number[] = [];
  const started = Date.now();
  try {
    for (let seed = 0; seed < o.seeds; seed++) {
      const t0 = Date.now();
      const models: AlexNet[] = [];
      try {
        for (let m = 0; m < k; m++) {
          const { model, curve } = await trainModel(data.train, armSetting(o, b, {}, seed * k + m));
          models.push(model);
          curves.push(curve);
        }
        const members: number[] = [];
        for (const m of models) members.push(await topOneError(m, data.test, view));
        single.push(members);
        together.push(await topOneError(models, data.test, view));
      } finally {
        models.forEach((m) => m.dispose());
      }
      const members = single[seed].map((x) => fmt(x, 3)).join(', ');
      o.log(
        `ensemble ${seed}: members ${members}, averaged ${fmt(together[seed], 3)} (${secondsSince(t0)} s) ${progress(started, seed + 1, o.seeds)}`,
      );
    }
  } finally {
    disposeData(data);
  }
  const e = summarize(together.map((t, i) => 100 * (mean(single[i]) - t)));
  const v = verdict(
    e,
    0,
    `the averaged ${k} networks had a lower error than their members (by ${fmt(e.mean, 2)} points)`,
    PAPER,
  );
  const markdown = reportMarkdown({
    scope: scopeLine(o, b),
    title: `Averaging ${k} networks`,
    claim: `averaging the predictions of five similar CNNs gives 38.1% top-1 error against one CNN's 40.7% (16.4% against 18.2% top-5): ${fmt(PAPER, 1)} points.`,
    setting: settingLine(
      o,
      b,
      `${o.seeds} ensembles of ${k} networks, each network from its own seed (the paper averaged 5).`,
    ),
    table: [
      '| | test error (mean ± sd) |',
      '|---|---|',
      `| one network | ${pct(single.flat())} |`,
      `| ${k} averaged | ${pct(together)} |`,
    ],
    effect: effectLine(`members' mean minus the ensemble, top-1 test error`, e, PAPER),
    verdict: v.sentence,
  });
  const svg = errorCurvesSvg('Ensemble members: training error (lines), test error (circles)', b.window, [
    { name: `${curves.length} networks`, curves, test: single.flat() },
    { name: `${k} averaged`, curves: [], test: together },
  ]);
  return pointsResult(
    e,
    v,
    { value: PAPER, label: `${fmt(PAPER, 1)} pt (5 nets)` },
    { markdown, svg, suffix: ` (${k} nets)` },
  );
}

export const ensemble: Experiment = {
  name: 'ensemble',
  claim: 'averaging several CNNs beats one (the paper: 5 CNNs, 40.7% → 38.1% top-1)',
  run,
  cost: (o) => budgetCost(o, o.budget === 'full' ? 5 : 2),
};
