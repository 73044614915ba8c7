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

/** An evaluation forward: the logits for a batch (a new tensor the caller disposes), e.g. a strategy's. */
export type Logits = (x: Tensor) => Tensor | Promise<Tensor>;

/**
 * Sums over every batch of `source` (epoch 0, in order). With ten-crop batches the softmax of each image's ten
 * inputs is averaged (the paper's test procedure); with several models (an ensemble, as the paper's 16.4% entry
 * averaged five CNNs) their softmax outputs are averaged too. The loss is then the negative log of that average.
 * Models are put in evaluation mode and run through the inference runner; a `Logits` function is run as it is.
 */
export async function evaluateSums(
  model: AlexNet | AlexNet[] | Logits,
  source: BatchSource,
  o: EvalOptions = {},
): Promise<EvalSums> {
  const started = Date.now();
  const c = source.classes.length;
  const forwards = typeof model === 'function' ? { logits: [model], dispose: () => {} } : runnersOf(model, o);
  const s = { n: 0, lossSum: 0, top5: 0, confusion: undefined as Tensor | undefined };
  try {
    for await (const b of source.batches(0)) {
      try {
        const logits: Tensor[] = [];
        try {
          for (const f of forwards.logits) logits.push(await f(b.x));
          noGrad(() => tidy(() => addBatch(s, logits, b, c)));
        } finally {
          logits.forEach((t) => t.dispose());
        }
      } finally {
        b.x.dispose();
        b.y.dispose();
      }
      o.onBatch?.(b.index + 1, source.numBatches);
    }
  } finally {
    forwards.dispose();
  }
  const flat = s.confusion ? s.confusion.toArray() : new Array<number>(c * c).fill(0);
  s.confusion?.dispose();
  return { n: s.n, lossSum: s.lossSum, top5: s.top5, confusion: flat, seconds: (Date.now() - started) / 1000 };
}

/** The models in evaluation mode, each run by an inference runner built at the first batch (its device). */
function runnersOf(model: AlexNet | AlexNet[], o: EvalOptions): { logits: Logits[]; dispose: () => void } {
  const models = Array.isArray(model) ? model : [model];
  const wasTraining = models.map((m) => m.training);
  models.forEach((m) => m.eval());
  // Built after eval(): the weights are packed as they are now.
  const runners: (InferenceRunner | undefined)[] = models.map(() => undefined);
  return {
    logits: models.map(
      (m, i) => (x: Tensor) =>
        noGrad(() => tidy(() => (runners[i] ??= new InferenceRunner(m, x.device, o.precision ?? 'fp32')).forward(x))),
    ),
    dispose: () => {
      runners.forEach((r) => r?.dispose());
      models.forEach((m, i) => m.train(wasTraining[i]));
    },
  };
}

/** Adds one batch's loss, top-5 hits, confusion counts and size to `s`. */
function addBatch(
  s: { n: number; lossSum: number; top5: number; confusion?: Tensor },
  logits: Tensor[],
  b: { x: Tensor; y: Tensor; crops: number },
  c: number,
): void {
  s.confusion ??= keep(zeros([c * c], { dtype: 'int64', device: b.y.device }));
  const scores = batchScores(logits, b, c, s);
  const topk = scores.topk(Math.min(5, c), 1).indices;
  s.top5 += topk.eq(b.y.unsqueeze(1)).sum().item();
  const pred = topk.narrow(1, 0, 1).squeeze(1);
  s.confusion.copy_(
    s.confusion.add(
      b.y
        .mul(c)
        .add(pred)
        .bincount(c * c),
    ),
  );
  s.n += b.y.size(0);
}

/** One batch's scores (logits, or averaged probabilities for crops and ensembles); adds its loss to `s`. */
function batchScores(
  logits: Tensor[],
  b: { x: Tensor; y: Tensor; crops: number },
  c: number,
  s: { lossSum: number },
): Tensor {
  if (logits.length === 1 && b.crops === 1) {
    s.lossSum += crossEntropy(logits[0], b.y, { reduction: 'sum' }).item();
    return logits[0];
  }
  let sum: Tensor | undefined;
  for (const l of logits) {
    const p = l.view(-1, b.crops, c).softmax(2).mean(1);
    sum = sum ? sum.add(p) : p;
  }
  const scores = sum!.div(logits.length);
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
