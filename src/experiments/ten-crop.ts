// The paper's test procedure: "the network makes a prediction by extracting five 224 × 224 patches (the four
// corner patches and the center patch) as well as their horizontal reflections (hence ten patches in all), and
// averaging the predictions". Here each seed trains one network on random crops with reflections (as the paper
// trained), and the same network is measured twice: on the centre crop and on the ten crops; the effect is paired.
import { defaultShortSide } from '../data/transforms';
import { Tensor } from '../tensor/tensor';
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
import { summarize } from './stats';
import { Experiment, ExperimentOptions, ExperimentResult, fmt, progress, verdict } from './types';
import { randomCropFlip, topOneError } from './views';

async function run(o: ExperimentOptions): Promise<ExperimentResult> {
  const data = loadData(o);
  const b = data.budget;
  const side = defaultShortSide(b.inputSize);
  const curves: Curve[] = [];
  const errors = { center: [] as number[], ten: [] as number[] };
  const started = Date.now();
  try {
    for (let seed = 0; seed < o.seeds; seed++) {
      const t0 = Date.now();
      const s = {
        ...armSetting(o, b, {}, seed),
        loadSize: side,
        augment: (x: Tensor) => randomCropFlip(x, b.inputSize),
      };
      const { model, curve } = await trainModel(data.train, s);
      curves.push(curve);
      try {
        for (const views of ['center', 'ten'] as const)
          errors[views].push(await topOneError(model, data.test, { device: o.device, side, crop: b.inputSize, views }));
      } finally {
        model.dispose();
      }
      o.log(
        `seed ${seed}: centre crop ${fmt(errors.center[seed], 3)}, ten crops ${fmt(errors.ten[seed], 3)} (${secondsSince(t0)} s) ${progress(started, seed + 1, o.seeds)}`,
      );
    }
  } finally {
    disposeData(data);
  }
  const e = summarize(errors.center.map((c, i) => 100 * (c - errors.ten[i])));
  const v = verdict(e, 0, `ten crops had the lower error (by ${fmt(e.mean, 2)} points)`);
  const markdown = reportMarkdown({
    scope: scopeLine(o, b),
    title: 'Ten-crop testing',
    claim:
      "at test time, averaging the softmax of ten patches (four corners and the centre, and their reflections) is the paper's procedure; the paper gives no number for it against one crop.",
    setting: settingLine(
      o,
      b,
      `Training on random ${b.inputSize}×${b.inputSize} crops of ${side}×${side} images with reflections (the paper: 224 of 256); both measurements on the same networks.`,
    ),
    table: [
      '| test views | test error (mean ± sd) |',
      '|---|---|',
      `| centre crop | ${pct(errors.center)} |`,
      `| ten crops | ${pct(errors.ten)} |`,
    ],
    effect: effectLine('centre crop minus ten crops, top-1 test error', e, undefined),
    verdict: v.sentence,
  });
  const svg = errorCurvesSvg('Ten-crop testing: training error (lines), test error (circles)', b.window, [
    { name: 'centre crop', curves, test: errors.center },
    { name: 'ten crops', curves: [], test: errors.ten },
  ]);
  return pointsResult(e, v, {}, { markdown, svg });
}

export const tenCrop: Experiment = {
  name: 'ten-crop',
  claim: "ten crops (corners, centre, reflections) beat the centre crop at test time (the paper's procedure)",
  run,
  cost: (o) => budgetCost(o, 1),
};
