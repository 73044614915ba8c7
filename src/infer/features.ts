// Feature extraction: one layer's outputs for every image of a data set, in order, with the labels and each row's
// file (`alexnet features` writes them as an embeddings file, src/persist/embeddings.ts).
import { BatchSource } from '../data/source';
import { AlexNet } from '../models/alexnet';
import { cat, noGrad, Tensor, tidy } from '../tensor/tensor';

export interface ExtractedFeatures {
  /** float32, N × D (the layer's output flattened), on the CPU. */
  features: Tensor;
  /** N labels, on the CPU. */
  labels: Tensor;
  /** Each row's image file; `split:index` for in-memory data sets, whose examples have no file. */
  files: string[];
}

export interface ExtractOptions {
  /** Names rows without a file (`split:index`). */
  split: string;
  /** Called after each batch with the number of batches done. */
  onBatch?: (done: number) => void;
}

/** The outputs of `layer` for every batch of `source` (epoch 0, in order); the caller disposes the tensors. */
export async function extractFeatures(
  model: AlexNet,
  source: BatchSource,
  layer: string,
  o: ExtractOptions,
): Promise<ExtractedFeatures> {
  const rows: Tensor[] = [];
  const labels: Tensor[] = [];
  const files: string[] = [];
  try {
    model.eval();
    for await (const b of source.batches(0)) {
      try {
        rows.push(noGrad(() => tidy(() => model.forwardTo(b.x, layer).flatten(1).float().cpu().contiguous())).keep());
        labels.push(b.y.cpu().keep());
        const n = b.y.size(0);
        files.push(...(b.files ?? Array.from({ length: n }, (_, i) => `${o.split}:${files.length + i}`)));
      } finally {
        b.x.dispose();
        b.y.dispose();
      }
      o.onBatch?.(b.index + 1);
    }
    return { features: cat(rows, 0), labels: cat(labels, 0), files };
  } finally {
    rows.forEach((t) => t.dispose());
    labels.forEach((t) => t.dispose());
  }
}
