// What the experiments look at a model through: training-time crops and flips of a batch, test-time views (the
// centre crop, or the paper's ten crops: four corners and the centre, each also mirrored), and the top-1 error of
// one model or of several averaged (the paper's ensembles), measured by the same evaluation pass `alexnet eval` uses.
import { TensorDataset } from '../data/fashion-mnist';
import { BatchSource, ReadyBatch, TensorSource } from '../data/source';
import { AlexNet } from '../models/alexnet';
import { Precision } from '../runtime/precision';
import { Device } from '../tensor/dtype';
import { cat, rand, randint, stack, Tensor, tidy, where } from '../tensor/tensor';
import { evaluateSums } from '../train/evaluate';

/** The (top, left) corners of the paper's five crops of `crop` from a `side`×`side` image. */
export function fiveCropOffsets(side: number, crop: number): [number, number][] {
  const m = side - crop;
  const c = Math.floor(m / 2);
  return [
    [0, 0],
    [0, m],
    [m, 0],
    [m, m],
    [c, c],
  ];
}

const cropAt = (x: Tensor, top: number, left: number, crop: number): Tensor =>
  x.narrow(2, top, crop).narrow(3, left, crop);

/**
 * Training augmentation for a batch (N, C, side, side): each image its own random `crop`×`crop` patch, mirrored
 * with probability 1/2 (the paper's translations and reflections), from the engine's seeded generator.
 */
export function randomCropFlip(x: Tensor, crop: number): Tensor {
  return tidy(() => {
    const [n, , side] = x.shape;
    const at = randint(0, side - crop + 1, [n, 2]).toArray();
    const crops = cat(Array.from({ length: n }, (_, i) => cropAt(x.narrow(0, i, 1), at[2 * i], at[2 * i + 1], crop)));
    const flip = rand([n, 1, 1, 1], { device: x.device }).lt(0.5);
    return where(flip, crops.flip(3), crops).contiguous();
  });
}

/**
 * Test-time views of a batch (N, C, side, side): the centre `crop`×`crop` crop, or ten per image, image-major (the
 * ten views of image i are rows 10·i … 10·i + 9: the five crops of fiveCropOffsets, then their mirrors).
 */
export function testViews(x: Tensor, crop: number, views: 'center' | 'ten'): Tensor {
  const offsets = fiveCropOffsets(x.size(2), crop);
  return tidy(() => {
    if (views === 'center') return cropAt(x, offsets[4][0], offsets[4][1], crop).contiguous();
    const five = offsets.map(([t, l]) => cropAt(x, t, l, crop));
    const ten = [...five, ...five.map((v) => v.flip(3))];
    return stack(ten, 1).reshape(-1, ...ten[0].shape.slice(1));
  });
}

/** A source's batches seen through `views`: the centre crop, or ten crops per image (crops = 10). */
class ViewSource implements BatchSource {
  constructor(
    private readonly inner: TensorSource,
    private readonly crop: number,
    private readonly views: 'center' | 'ten',
  ) {}
  get size(): number {
    return this.inner.size;
  }
  get numBatches(): number {
    return this.inner.numBatches;
  }
  get classes(): string[] {
    return this.inner.classes;
  }
  get skipped(): number {
    return 0;
  }
  async *batches(epoch: number): AsyncGenerator<ReadyBatch> {
    for await (const b of this.inner.batches(epoch)) {
      const x = testViews(b.x, this.crop, this.views);
      b.x.dispose();
      yield { ...b, x, crops: this.views === 'ten' ? 10 : 1 };
    }
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

export interface ErrorOptions {
  device: Device;
  /** The side images are resized to; views are `crop`×`crop` crops of it (crop = side: the whole image). */
  side: number;
  crop: number;
  views: 'center' | 'ten';
  batchSize?: number;
  precision?: Precision;
}

/** Top-1 error on `ds` of one model, or of several with their softmax outputs averaged. */
export async function topOneError(model: AlexNet | AlexNet[], ds: TensorDataset, o: ErrorOptions): Promise<number> {
  const inner = new TensorSource(
    { ...ds, images: ds.images.clone(), labels: ds.labels.clone() },
    { inputSize: [o.side, o.side], resize: 'bilinear', mean: [], std: [] },
    { batchSize: o.batchSize ?? 256, shuffle: false, seed: 0, device: o.device },
  );
  const source = new ViewSource(inner, o.crop, o.views);
  try {
    const s = await evaluateSums(model, source, { precision: o.precision });
    const c = ds.classes.length;
    const correct = s.confusion.reduce((a, v, i) => (Math.floor(i / c) === i % c ? a + v : a), 0);
    return 1 - correct / s.n;
  } finally {
    await source.close();
  }
}
