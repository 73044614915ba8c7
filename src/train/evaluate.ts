// Evaluation: loss, top-1 and top-5 accuracy, per-class accuracy and the confusion matrix.
import { BatchLoader, Preprocess, preprocessBatch } from '../data/loader';
import { TensorDataset } from '../data/fashion-mnist';
import { AlexNet } from '../models/alexnet';
import { crossEntropy } from '../nn/functional';
import { Device } from '../tensor/dtype';
import { noGrad, tidy, zeros } from '../tensor/tensor';

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

export function evaluate(model: AlexNet, ds: TensorDataset, p: Preprocess, o: { batchSize?: number; device?: Device; onBatch?: (done: number, total: number) => void } = {}): EvalResult {
  const started = Date.now();
  const device = o.device ?? 'cpu';
  const c = ds.classes.length;
  const k = Math.min(5, c);
  const loader = new BatchLoader(ds, { batchSize: o.batchSize ?? 256, shuffle: false, seed: 0 });
  const wasTraining = model.training;
  model.eval();
  const confusion = zeros([c * c], { dtype: 'int64', device });
  let lossSum = 0;
  let top5 = 0;
  noGrad(() => {
    for (const batch of loader.batches(0)) {
      tidy(() => {
        const x = preprocessBatch(batch.images, p, device);
        const y = batch.labels.to({ device });
        const logits = model.forward(x);
        lossSum += crossEntropy(logits, y, { reduction: 'sum' }).item();
        const topk = logits.topk(k, 1).indices;
        top5 += topk.eq(y.unsqueeze(1)).sum().item();
        const pred = topk.narrow(1, 0, 1).squeeze(1);
        confusion.copy_(confusion.add(y.mul(c).add(pred).bincount(c * c)));
      });
      batch.images.dispose();
      batch.labels.dispose();
      o.onBatch?.(batch.index + 1, loader.numBatches);
    }
  });
  model.train(wasTraining);
  const flat = confusion.toArray();
  confusion.dispose();
  const matrix = Array.from({ length: c }, (_, i) => flat.slice(i * c, (i + 1) * c));
  const n = loader.size;
  const correct = matrix.reduce((a, row, i) => a + row[i], 0);
  return {
    n,
    loss: lossSum / n,
    top1: correct / n,
    top5: top5 / n,
    perClass: matrix.map((row, i) => {
      const count = row.reduce((a, b) => a + b, 0);
      return { name: ds.classes[i], accuracy: count ? row[i] / count : 0, count };
    }),
    confusion: matrix,
    seconds: (Date.now() - started) / 1000,
  };
}
