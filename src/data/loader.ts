// Batches from an in-memory data set. Shuffling is seeded per (seed, epoch), so a resumed run sees the same
// batches; conversion, resizing and normalisation run in the engine on whole batches (on the GPU when the batch
// goes there), never in per-pixel JavaScript loops.
import { UserError } from '../errors';
import { Device } from '../tensor/dtype';
import { tensor, Tensor, tidy } from '../tensor/tensor';
import { pad, resize } from '../nn/functional';
import { TensorDataset } from './fashion-mnist';
import { defaultSampler, Sampler } from './sampler';

export interface Preprocess {
  /** Model input size [height, width]. */
  inputSize: [number, number];
  /**
   * 'bilinear' stretches to the input size (as torchvision's Resize); 'pad' keeps the aspect ratio and pads with
   * zeros (TF's resize_with_pad).
   */
  resize: 'bilinear' | 'pad';
  /** Per-channel mean and std applied after scaling to [0, 1]; empty for none (d2l uses none). */
  mean: number[];
  std: number[];
  /**
   * For photos (predict): resize the short side to this many pixels, then centre-crop to inputSize (as
   * torchvision's Resize(256) + CenterCrop(224)). Unset: the image is resized to the data set's size.
   */
  shortSide?: number;
}

/** uint8 images (B, C, H, W) -> float32 (B, C, h, w) on `device`, scaled to [0, 1], resized and normalised. */
export function preprocessBatch(images: Tensor, p: Preprocess, device: Device = 'cpu'): Tensor {
  return tidy(() => {
    let x = images.to({ device }).float().div(255);
    const [, , h, w] = x.shape;
    const [th, tw] = p.inputSize;
    if (h !== th || w !== tw) {
      if (p.resize === 'pad') {
        const scale = Math.min(th / h, tw / w);
        const nh = Math.max(1, Math.round(h * scale));
        const nw = Math.max(1, Math.round(w * scale));
        x = resize(x, [nh, nw], 'bilinear', scale < 1);
        const top = Math.floor((th - nh) / 2);
        const left = Math.floor((tw - nw) / 2);
        x = pad(x, [left, tw - nw - left, top, th - nh - top]);
      } else {
        x = resize(x, [th, tw], 'bilinear', th < h || tw < w);
      }
    }
    return normalize(x, p.mean, p.std);
  });
}

/** Throws unless `mean` and `std` are empty (no normalisation) or hold one value per channel. */
export function checkNormalization(mean: number[], std: number[], channels: number): void {
  if (mean.length && (mean.length !== channels || std.length !== channels)) {
    throw new UserError(`normalisation needs ${channels} mean and std values, got ${mean.length} and ${std.length}`);
  }
}

/** (x − mean) / std per channel of a float (N, C, H, W) batch, on its device; empty mean and std: x itself. */
export function normalize(x: Tensor, mean: number[], std: number[]): Tensor {
  const c = x.shape[1];
  checkNormalization(mean, std, c);
  if (!mean.length) return x;
  return x
    .sub(tensor(mean, [1, c, 1, 1]).to({ device: x.device }))
    .div(tensor(std, [1, c, 1, 1]).to({ device: x.device }));
}

export interface Batch {
  index: number;
  images: Tensor;
  labels: Tensor;
}

export class BatchLoader {
  readonly numBatches: number;
  readonly sampler: Sampler;

  constructor(
    readonly ds: TensorDataset,
    readonly o: { batchSize: number; shuffle: boolean; seed: number; dropLast?: boolean; sampler?: Sampler },
  ) {
    if (!Number.isInteger(o.batchSize) || o.batchSize < 1)
      throw new UserError(`batch size must be a positive integer, got ${o.batchSize}`);
    this.sampler = o.sampler ?? defaultSampler(ds.labels.size(0), o.shuffle, o.seed);
    const n = this.sampler.size;
    this.numBatches = o.dropLast ? Math.floor(n / o.batchSize) : Math.ceil(n / o.batchSize);
    if (this.numBatches === 0)
      throw new UserError(`the data set has ${n} examples, fewer than one batch of ${o.batchSize}`);
  }

  get size(): number {
    return this.sampler.size;
  }

  /** Yields the batches of `epoch` from `start` on. The caller disposes each batch's tensors (or uses tidy). */
  *batches(epoch: number, start = 0): Generator<Batch> {
    const order = this.sampler.indices(epoch);
    for (let b = start; b < this.numBatches; b++) {
      const lo = b * this.o.batchSize;
      const hi = Math.min(this.size, lo + this.o.batchSize);
      // The index goes where the data is (a data set uploaded to the GPU once is indexed there).
      const idx = tensor(order.subarray(lo, hi), [hi - lo], 'int32').to({
        dtype: 'int64',
        device: this.ds.images.device,
      });
      const images = this.ds.images.indexSelect(0, idx);
      const labels = this.ds.labels.indexSelect(0, idx);
      idx.dispose();
      yield { index: b, images, labels };
    }
  }
}
