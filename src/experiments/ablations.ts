// The paper's ablations as comparisons of two arms (compare.ts): each names the paper's sentence, its number, and
// the one option of the model's configuration (or of the data) that differs between the arms.
import { cifar10Dir } from '../data/cifar10';
import { UserError } from '../errors';
import { comparison } from './compare';
import { lrnPlan, runLrnCifar } from './lrn-cifar';
import { Experiment, ExperimentOptions } from './types';

const lrnAblation = comparison({
  name: 'lrn',
  title: 'Local response normalisation',
  claim: 'LRN lowers the top-1 error (the paper: by 1.4 points, top-5 by 1.2)',
  paperText:
    'response normalisation (k 2, n 5, α 1e-4, β 0.75 after conv1 and conv2) reduces the top-1 and top-5 error rates by 1.4% and 1.2% (ImageNet); on CIFAR-10 a four-layer CNN went from 13% to 11% test error.',
  paper: 1.4,
  measure: 'test',
  arms: [
    { label: 'LRN', options: { lrn: 'paper' } },
    { label: 'no LRN', options: { lrn: 'none' } },
  ],
  note: 'The inputs are scaled to [0, 1] (the paper fed 0–255 pixels minus the mean), so with α 1e-4 the normalisation is close to a constant division by 2^0.75.',
});

/** lrn's network: Section 3.3's CIFAR-10 net (the default when CIFAR-10 is given) or the AlexNet-size ablation. */
export const lrnNetOf = (o: ExperimentOptions): 'alexnet' | 'cifar' =>
  o.net ?? (cifar10Dir(o.dataset) ? 'cifar' : 'alexnet');

/** LRN: on CIFAR-10 in Section 3.3's setting (lrn-cifar.ts, --net cifar), or as an AlexNet-size ablation. */
export const lrn: Experiment = {
  ...lrnAblation,
  seeds: (o) => (lrnNetOf(o) === 'cifar' && o.budget === 'full' ? 5 : 3),
  run: (o) => {
    if (lrnNetOf(o) === 'cifar') return runLrnCifar(o);
    if (o.dataset !== undefined)
      throw new UserError(
        `lrn --net alexnet runs on Fashion-MNIST: leave out --dataset, or use --net cifar for CIFAR-10 (got --dataset ${o.dataset})`,
      );
    return lrnAblation.run(o);
  },
  cost: (o) => {
    if (lrnNetOf(o) === 'alexnet') return lrnAblation.cost(o);
    const p = lrnPlan(o);
    const steps = p.maxEpochs * Math.ceil(p.trainLimit / p.batchSize);
    return { runs: 2 * o.seeds, steps, model: 'convnet-cifar', inputSize: 32, batchSize: p.batchSize, channels: 3 };
  },
};

export const overlappingPooling = comparison({
  name: 'overlapping-pooling',
  title: 'Overlapping pooling',
  claim: 'overlapping 3×3/2 pooling beats 2×2/2 (the paper: −0.4 top-1, −0.3 top-5)',
  paperText:
    'pooling with s = 2, z = 3 reduces the top-1 and top-5 error rates by 0.4% and 0.3% against s = 2, z = 2, and "models with overlapping pooling find it slightly more difficult to overfit".',
  paper: 0.4,
  measure: 'test',
  arms: [
    { label: '3×3/2 pooling', options: { pool: [3, 2] } },
    { label: '2×2/2 pooling', options: { pool: [2, 2] } },
  ],
  note: 'At 67×67 both poolings give the same feature-map sizes; at 224 (full) the 2×2/2 arm keeps 6×6 maps (a larger FC6).',
});

export const dropout = comparison({
  name: 'dropout',
  title: 'Dropout',
  claim: 'dropout 0.5 in FC6 and FC7 curbs overfitting ("without dropout, substantial overfitting")',
  paperText:
    'without dropout the network exhibits substantial overfitting; dropout roughly doubles the iterations needed to converge. The paper gives no number.',
  measure: 'gap',
  arms: [
    { label: 'dropout 0.5', options: { dropout: 0.5 } },
    { label: 'no dropout', options: { dropout: 0 } },
  ],
  quick: { trainLimit: 1024, steps: 240 },
  note: "The quick budget's default is a small training set (1024 images, 240 steps of 64: 15 epochs) so that overfitting shows within minutes; the training error is measured like the test error (evaluation mode, on the images it trained on).",
});

export const twoTower = comparison({
  name: 'two-tower',
  title: 'The two-GPU net against the one-GPU net with half the kernels',
  claim: 'the two-GPU split beats a one-GPU net with half the kernels (the paper: −1.7 top-1, −1.2 top-5)',
  paperText:
    "the two-GPU net (conv2, conv4 and conv5 see only their own GPU's half) reduces the top-1 and top-5 error rates by 1.7% and 1.2% against a net with half as many kernels in each convolutional layer trained on one GPU (whose last convolutional layer keeps all its kernels, so both nets have about as many parameters).",
  paper: 1.7,
  measure: 'test',
  arms: [
    { label: 'two towers (groups 2)', options: { groups: 2, widths: [96, 256, 384, 384, 256] } },
    { label: 'one tower, half kernels', options: { groups: 1, widths: [48, 128, 192, 192, 256] } },
  ],
  note: "Both arms run in one process: the split is the grouped convolutions, which is all the paper's two GPUs change in the computation.",
});

export const pcaNoise = comparison({
  name: 'pca-noise',
  title: 'PCA colour noise',
  claim: 'PCA colour noise lowers the top-1 error (the paper: by over 1 point)',
  paperText:
    'adding multiples of the principal components of the RGB pixel values, α ~ N(0, 0.1), "reduces the top-1 error rate by over 1%".',
  paper: 1,
  measure: 'test',
  arms: [
    { label: 'PCA noise 0.1', options: {}, pcaStd: 0.1 },
    { label: 'no noise', options: {} },
  ],
  note: "Fashion-MNIST has one channel, where the paper's formula Σ p_i α_i λ_i becomes a brightness shift α·λ (λ the pixel variance): the experiment tests that reduced form, not colour.",
});

export const bf16 = comparison({
  name: 'bf16-vs-fp32',
  title: 'bfloat16 autocast against float32',
  claim: "not the paper's: bf16 autocast trains to fp32's accuracy (what --precision auto relies on)",
  paperText:
    "the paper trained in float32. This project's claim: training under bf16 autocast (convolutions and matrix products in bfloat16, the rest in float32, as torch.autocast) reaches the test error of float32 training within seed-to-seed noise, so `--precision auto` can pick bf16 where the CPU has native bf16.",
  measure: 'test',
  equivalence: 1,
  arms: [
    { label: 'fp32', options: { lrn: 'none', groups: 1 }, precision: 'fp32' },
    { label: 'bf16 autocast', options: { lrn: 'none', groups: 1 }, precision: 'bf16' },
  ],
  quick: { trainLimit: 20000, steps: 312, testLimit: 10000 },
  note: "Both arms are plain alexnet-d2l (no LRN, no groups); the quick budget is the CPU demo's recipe (the first 20,000 training images for one epoch at 67×67, Adam lr 1e-4, batch 64), evaluated on all 10,000 test images in the arm's precision. The claim holds when the 95% interval of the difference lies within ±1 point.",
});
