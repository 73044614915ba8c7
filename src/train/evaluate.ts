// Evaluation: loss, top-1 and top-5 accuracy, per-class accuracy and the confusion matrix; single inputs or the
// paper's ten-crop testing. The pass returns sums (mergeable across shards or processes); ratios are made last.
import { BatchSource } from '../data/source';
import { AlexNet } from '../models/alexnet';
import { crossEntropy } from '../nn/functional';
import { InferenceRunner } from '../runtime/inference';
import { Precision } from '../runtime/precision';
import { keep, noGrad, Tensor, tidy, zeros } from '../tensor/tensor';

/** What an evaluation pass adds up. Two shards' sums merge by addition (`mergeEvalSums`). */
export interface EvalSums {
  n: number;
  lossSum: number;
  top5: number;
  /** confusion[true · classes + predicted], row-major. */
  confusion: number[];
  seconds: number;
}

export interface EvalResult {
  n: number;
  loss: number;
  top1: number;
  top5: number;
  perClass: { name: string; accuracy: number; count: number }[];
  /** confusion[true][predicted] */
  confusion: number[][];
  seconds: number;
}

export interface EvalOptions {
  precision?: Precision;
  onBatch?: (done: number, total: number) => void;
}

/**
 * Sums over every batch of `source` (epoch 0, in order). With ten-crop batches the softmax of each image's ten
 * inputs is averaged (the paper's test procedure); with several models (an ensemble, as the paper's 16.4% entry
 * averaged five CNNs) their softmax outputs are averaged too. The loss is then the negative log of that average.
 */
export async function evaluateSums(
  model: AlexNet | AlexNet[],
  source: BatchSource,
  o: EvalOptions = {},
): Promise<EvalSums> {
  const started = Date.now();
  const models = Array.isArray(model) ? model : [model];
  const c = source.classes.length;
  const k = Math.min(5, c);
  const wasTraining = models.map((m) => m.training);
  models.forEach((m) => m.eval());
  let confusion: Tensor | undefined;
  let runners: InferenceRunner[] | undefined;
  const s = { n: 0, lossSum: 0, top5: 0 };
  try {
    for await (const b of source.batches(0)) {
      // Built at the first batch (its device) after eval(): the weights are packed as they are now.
      runners ??= models.map((m) => new InferenceRunner(m, b.x.device, o.precision ?? 'fp32'));
      try {
        noGrad(() =>
          tidy(() => {
            confusion ??= keep(zeros([c * c], { dtype: 'int64', device: b.y.device }));
            const scores = batchScores(runners!, b, c, s);
            const topk = scores.topk(k, 1).indices;
            s.top5 += topk.eq(b.y.unsqueeze(1)).sum().item();
            const pred = topk.narrow(1, 0, 1).squeeze(1);
            confusion.copy_(
              confusion.add(
                b.y
                  .mul(c)
                  .add(pred)
                  .bincount(c * c),
              ),
            );
            s.n += b.y.size(0);
          }),
        );
      } finally {
        b.x.dispose();
        b.y.dispose();
      }
      o.onBatch?.(b.index + 1, source.numBatches);
    }
  } finally {
    runners?.forEach((r) => r.dispose());
    models.forEach((m, i) => m.train(wasTraining[i]));
  }
  const flat = confusion ? confusion.toArray() : new Array<number>(c * c).fill(0);
  confusion?.dispose();
  return { ...s, confusion: flat, seconds: (Date.now() - started) / 1000 };
}

/** One batch's scores (logits, or averaged probabilities for crops and ensembles); adds its loss to `s`. */
function batchScores(
  models: InferenceRunner[],
  b: { x: Tensor; y: Tensor; crops: number },
  c: number,
  s: { lossSum: number },
): Tensor {
  const logitsOf = (m: InferenceRunner) => m.forward(b.x);
  if (models.length === 1 && b.crops === 1) {
    const logits = logitsOf(models[0]);
    s.lossSum += crossEntropy(logits, b.y, { reduction: 'sum' }).item();
    return logits;
  }
  let sum: Tensor | undefined;
  for (const m of models) {
    const p = logitsOf(m).view(-1, b.crops, c).softmax(2).mean(1);
    sum = sum ? sum.add(p) : p;
  }
  const scores = sum!.div(models.length);
  s.lossSum -= scores.gather(1, b.y.unsqueeze(1)).clamp(1e-30).log().sum().item();
  return scores;
}

/** The sums of two disjoint shards of one data set. */
export function mergeEvalSums(a: EvalSums, b: EvalSums): EvalSums {
  return {
    n: a.n + b.n,
    lossSum: a.lossSum + b.lossSum,
    top5: a.top5 + b.top5,
    confusion: a.confusion.map((v, i) => v + b.confusion[i]),
    seconds: Math.max(a.seconds, b.seconds),
  };
}

/** Ratios, per-class accuracy and the confusion matrix from sums. */
export function finishEval(s: EvalSums, classes: string[]): EvalResult {
  const c = classes.length;
  const matrix = Array.from({ length: c }, (_, i) => s.confusion.slice(i * c, (i + 1) * c));
  const correct = matrix.reduce((a, row, i) => a + row[i], 0);
  const ratio = (x: number) => (s.n ? x / s.n : NaN);
  return {
    n: s.n,
    loss: ratio(s.lossSum),
    top1: ratio(correct),
    top5: ratio(s.top5),
    perClass: matrix.map((row, i) => {
      const count = row.reduce((a, b) => a + b, 0);
      return { name: classes[i], accuracy: count ? row[i] / count : 0, count };
    }),
    confusion: matrix,
    seconds: s.seconds,
  };
}

/** Evaluates `model` (or an ensemble) on `source`: sums, then ratios. */
export async function evaluate(
  model: AlexNet | AlexNet[],
  source: BatchSource,
  o: EvalOptions = {},
): Promise<EvalResult> {
  return finishEval(await evaluateSums(model, source, o), source.classes);
}
