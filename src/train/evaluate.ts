// Evaluation: loss, top-1 and top-5 accuracy, per-class accuracy and the confusion matrix; single inputs or the
// paper's ten-crop testing.
import { BatchSource } from '../data/source';
import { AlexNet } from '../models/alexnet';
import { crossEntropy } from '../nn/functional';
import { keep, noGrad, Tensor, tidy, zeros } from '../tensor/tensor';
import { autocast, Precision } from './precision';

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

/**
 * Evaluates `model` on every batch of `source` (epoch 0, in order). With ten-crop batches the softmax of each
 * image's ten inputs is averaged (the paper's test procedure); the loss is then the negative log of that average.
 */
export async function evaluate(model: AlexNet, source: BatchSource, o: { precision?: Precision; onBatch?: (done: number, total: number) => void } = {}): Promise<EvalResult> {
  const started = Date.now();
  const c = source.classes.length;
  const k = Math.min(5, c);
  const wasTraining = model.training;
  model.eval();
  let confusion: Tensor | undefined;
  let lossSum = 0;
  let top5 = 0;
  let n = 0;
  try {
    for await (const b of source.batches(0)) {
      try {
        noGrad(() => tidy(() => {
          confusion ??= keep(zeros([c * c], { dtype: 'int64', device: b.y.device }));
          const logits = autocast(b.x.device, o.precision ?? 'fp32', () => model.forward(b.x)).float();
          let scores: Tensor;
          if (b.crops > 1) {
            scores = logits.view(-1, b.crops, c).softmax(2).mean(1);
            lossSum -= scores.gather(1, b.y.unsqueeze(1)).clamp(1e-30).log().sum().item();
          } else {
            scores = logits;
            lossSum += crossEntropy(logits, b.y, { reduction: 'sum' }).item();
          }
          const topk = scores.topk(k, 1).indices;
          top5 += topk.eq(b.y.unsqueeze(1)).sum().item();
          const pred = topk.narrow(1, 0, 1).squeeze(1);
          confusion.copy_(confusion.add(b.y.mul(c).add(pred).bincount(c * c)));
          n += b.y.size(0);
        }));
      } finally {
        b.x.dispose();
        b.y.dispose();
      }
      o.onBatch?.(b.index + 1, source.numBatches);
    }
  } finally {
    model.train(wasTraining);
  }
  const flat = confusion ? confusion.toArray() : new Array(c * c).fill(0);
  confusion?.dispose();
  const matrix = Array.from({ length: c }, (_, i) => flat.slice(i * c, (i + 1) * c));
  const correct = matrix.reduce((a, row, i) => a + row[i], 0);
  return {
    n,
    loss: n ? lossSum / n : NaN,
    top1: n ? correct / n : NaN,
    top5: n ? top5 / n : NaN,
    perClass: matrix.map((row, i) => {
      const count = row.reduce((a, b) => a + b, 0);
      return { name: source.classes[i], accuracy: count ? row[i] / count : 0, count };
    }),
    confusion: matrix,
    seconds: (Date.now() - started) / 1000,
  };
}
