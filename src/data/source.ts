// What the training loop and evaluation read from: batches already on the device and ready for the model.
// In-memory data sets (IDX) and image folders (decoded by workers) both provide it.
import { Sampler } from './sampler';
import { Device } from '../tensor/dtype';
import { Tensor } from '../tensor/tensor';
import { TensorDataset } from './fashion-mnist';
import { BatchLoader, Preprocess, preprocessBatch } from './loader';

export interface ReadyBatch {
  /** Position of the batch in its epoch (batches that lost every image are left out, so indices can skip). */
  index: number;
  /** Model input, float32 on the device: (n × crops, C, H, W). */
  x: Tensor;
  /** Labels, int64 on the device: (n). */
  y: Tensor;
  /** Inputs per example: 1, or 10 for ten-crop testing (the crops of example i are rows i·10 … i·10 + 9). */
  crops: number;
  /** Image folders: the file of each example, in order (unreadable ones left out). */
  files?: string[];
}

export interface BatchSource {
  /** Examples per epoch (before any are skipped). */
  readonly size: number;
  readonly numBatches: number;
  readonly classes: string[];
  /** Yields the batches of `epoch` from batch `start` on; the consumer disposes x and y. */
  batches(epoch: number, start?: number): AsyncGenerator<ReadyBatch>;
  /** Examples skipped in the epoch read last (unreadable images). */
  readonly skipped: number;
  close(): Promise<void>;
}

/**
 * Batches of an in-memory data set, preprocessed in the engine. On a GPU the whole data set (uint8: 47 MB for
 * Fashion-MNIST's training images) is uploaded once, and every batch is gathered, resized and normalised there.
 */
export class TensorSource implements BatchSource {
  readonly loader: BatchLoader;
  readonly skipped = 0;
  readonly ds: TensorDataset;

  constructor(
    ds: TensorDataset,
    readonly preprocess: Preprocess,
    readonly o: { batchSize: number; shuffle: boolean; seed: number; device: Device; sampler?: Sampler },
  ) {
    if (o.device !== 'cpu' && ds.images.device !== o.device) {
      const images = ds.images.to({ device: o.device });
      const labels = ds.labels.to({ device: o.device });
      ds.images.dispose();
      ds.labels.dispose();
      ds = { ...ds, images, labels };
    }
    this.ds = ds;
    this.loader = new BatchLoader(ds, o);
  }

  get size(): number {
    return this.loader.size;
  }

  get numBatches(): number {
    return this.loader.numBatches;
  }

  get classes(): string[] {
    return this.ds.classes;
  }

  async *batches(epoch: number, start = 0): AsyncGenerator<ReadyBatch> {
    for (const b of this.loader.batches(epoch, start)) {
      let x: Tensor;
      let y: Tensor;
      try {
        x = preprocessBatch(b.images, this.preprocess, this.o.device);
        y = b.labels.to({ device: this.o.device });
      } finally {
        b.images.dispose();
        b.labels.dispose();
      }
      yield { index: b.index, x, y, crops: 1 };
    }
  }

  async close(): Promise<void> {
    this.ds.images.dispose();
    this.ds.labels.dispose();
  }
}
