// alexnet train
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import { folderPath } from '../data/image-folder';
import { Augment, AUGMENTS } from '../data/transforms';
import { Precision, PRECISIONS } from '../train/precision';
import { listModels } from '../models/registry';
import { ResumeOverrides, TrainConfig, train, TrainResult } from '../train/trainer';
import { intOption, numOption, parse } from './args';

export const HELP = `Usage: alexnet train [options]

Trains an AlexNet variant on Fashion-MNIST (or MNIST, or any IDX folder), or on your own photos in an
image folder. The defaults are a recipe for the model and data set:
  Fashion-MNIST/MNIST (Dive into Deep Learning's): alexnet-d2l, 224×224 inputs (bilinear from 28×28), SGD
    lr 0.01, batch 128, 10 epochs; d2l reports test accuracy ≈ 0.88 after 10 epochs.
  image folders, alexnet-bn (the default there): 227×227, Adam lr 1e-4, batch 64, 20 epochs, torchvision's
    augmentation (random resized crops, flips).
  image folders, alexnet-2012 (the paper): 227×227 crops of the 259×259 centre (the paper's 224 of 256),
    flips, PCA colour noise (α ~ N(0, 0.1)); SGD in the paper's form, lr 0.01, momentum 0.9, weight decay
    0.0005, batch 128, ÷10 when validation error stops improving (3 times), 90 epochs.
  image folders, other models: torchvision's reference: SGD lr 0.01, momentum 0.9, weight decay 0.0005,
    batch 128, ÷10 every 30 epochs, 90 epochs, torchvision's augmentation.
Any option below overrides its recipe value.

Data:
  --dataset D           fashion-mnist (default), mnist, or folder:PATH — an image folder in torchvision's
                        ImageFolder layout: one subfolder per class (class index by sorted name), or train/
                        and val/ (or test/) folders that hold them. JPEG, PNG, WebP, GIF, TIFF, AVIF.
  --data DIR            IDX folder (default: /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist)
  --val-split F         image folders without val/: share of each class held out, seeded (default 0.1)
  --labels FILE         display names for class folders: lines 'FOLDER NAME' (e.g. ImageNet's synset
                        list) or a JSON object {"FOLDER": "NAME"}
  --augment A           image folders: paper (256 short side, random crops of the centre square, flips, PCA
                        colour noise), torchvision (random resized crops, flips) or none (centre crops)
  --short-side N        image folders: resize the short side to N before cropping (default input × 8/7)
  --pca-std X           image folders: std of the PCA colour noise's α (default 0.1 with paper, else 0)
  --stats FILE          image folders: mean, std and colour eigenvectors from 'alexnet stats' (default:
                        ImageNet's)
  --workers N           image decoding threads (default: cores − 1, at most 8)
  --prefetch N          batches decoded ahead (default 3)
  --strict              stop at the first unreadable image, naming it (default: skip it with a warning and
                        count it in the epoch summary)
  --input-size N        model input size (default: the model's, 224 or 227; the smallest is 63 or 65)
  --resize MODE         IDX data: bilinear (default; as torchvision's Resize) or pad (TF's resize_with_pad)
  --normalize M,S       IDX data: subtract mean M and divide by std S after scaling to [0, 1] (default: none)
  --train-limit N       use the first N training images
  --test-limit N        use the first N test (validation) images

Model:
  --model NAME          ${listModels().map((m) => m.name).join(', ')}
  --dropout P           classifier dropout (default 0.5)

Optimisation:
  --epochs N
  --batch-size N
  --optimizer NAME      sgd (PyTorch's form), sgd-paper (v ← μv − λεw − ε∇, w ← w + v) or adam
  --lr X                learning rate
  --momentum X
  --weight-decay X
  --schedule S          constant, plateau (÷10 when validation error stops improving, 3 times at most, as
                        the paper) or step:EPOCHS[:GAMMA]
  --max-steps N         stop after N optimiser steps (resume later with --resume)

Run:
  --device D            auto (default: cuda when available), cpu, cuda or cuda:N
  --precision P         auto (default: bf16 on a GPU, fp32 on the CPU), fp32, bf16 (autocast: convolutions and
                        matrix products in bfloat16) or fp16 (autocast with dynamic loss scaling; GPU only)
  --threads N           CPU threads (default: all ${os.cpus().length} cores)
  --seed N              seeds weights, dropout, shuffling, splits and augmentation (default 0)
  --save PATH           checkpoint (safetensors), written atomically at every epoch end and on Ctrl-C
  --resume PATH         continue a checkpoint exactly where it stopped (its settings are reused)
  --metrics FILE        append one JSON record per epoch (JSON Lines)
  -h, --help            this help`;

export const TRAIN_OPTIONS = {
  model: { type: 'string' }, dataset: { type: 'string' }, data: { type: 'string' }, 'input-size': { type: 'string' },
  resize: { type: 'string' }, normalize: { type: 'string' }, 'train-limit': { type: 'string' }, 'test-limit': { type: 'string' },
  dropout: { type: 'string' }, epochs: { type: 'string' }, 'batch-size': { type: 'string' }, 'eval-batch-size': { type: 'string' },
  optimizer: { type: 'string' }, lr: { type: 'string' }, momentum: { type: 'string' }, 'weight-decay': { type: 'string' },
  schedule: { type: 'string' }, 'max-steps': { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' },
  seed: { type: 'string' }, save: { type: 'string' }, resume: { type: 'string' }, metrics: { type: 'string' },
  'val-split': { type: 'string' }, labels: { type: 'string' }, augment: { type: 'string' }, 'short-side': { type: 'string' },
  'pca-std': { type: 'string' }, stats: { type: 'string' }, workers: { type: 'string' }, prefetch: { type: 'string' }, strict: { type: 'boolean' },
  precision: { type: 'string' },
} as const;

type Values = { [k: string]: string | boolean | string[] | undefined };

/** The defaults a model and data set start from; command-line options override each value. */
export interface Recipe {
  name: string;
  model: string;
  optimizer: TrainConfig['optimizer'];
  lr: number;
  momentum: number;
  weightDecay: number;
  batchSize: number;
  epochs: number;
  schedule: string;
  augment: Augment;
}

export function recipeFor(model: string | undefined, folder: boolean): Recipe {
  if (!folder) return { name: "d2l's Fashion-MNIST recipe", model: model ?? 'alexnet-d2l', optimizer: 'sgd', lr: 0.01, momentum: 0, weightDecay: 0, batchSize: 128, epochs: 10, schedule: 'constant', augment: 'none' };
  const m = model ?? 'alexnet-bn';
  if (m === 'alexnet-bn') return { name: 'the BatchNorm cats-vs-dogs recipe', model: m, optimizer: 'adam', lr: 1e-4, momentum: 0, weightDecay: 0, batchSize: 64, epochs: 20, schedule: 'constant', augment: 'torchvision' };
  if (m === 'alexnet-2012') return { name: "the paper's recipe", model: m, optimizer: 'sgd-paper', lr: 0.01, momentum: 0.9, weightDecay: 0.0005, batchSize: 128, epochs: 90, schedule: 'plateau', augment: 'paper' };
  return { name: "torchvision's reference recipe", model: m, optimizer: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 0.0005, batchSize: 128, epochs: 90, schedule: 'step:30', augment: 'torchvision' };
}

export function configFromOptions(v: Values): TrainConfig {
  const s = (k: string) => v[k] as string | undefined;
  const dataset = s('dataset') ?? 'fashion-mnist';
  const root = folderPath(dataset);
  if (root === undefined && dataset !== 'fashion-mnist' && dataset !== 'mnist') throw new UserError(`--dataset must be fashion-mnist, mnist or folder:PATH, got '${dataset}'`);
  if (root === '') throw new UserError('--dataset folder:PATH needs the folder, e.g. folder:./photos');
  const folder = root !== undefined;
  const recipe = recipeFor(s('model'), folder);
  if (!folder) {
    for (const k of ['val-split', 'labels', 'augment', 'short-side', 'pca-std', 'stats', 'workers', 'prefetch', 'strict']) {
      if (v[k] !== undefined) throw new UserError(`--${k} is for image-folder data sets (--dataset folder:PATH)`);
    }
  } else {
    for (const k of ['data', 'resize', 'normalize']) if (v[k] !== undefined) throw new UserError(`--${k} is for IDX data sets (Fashion-MNIST, MNIST); image folders use --augment, --stats and --short-side`);
  }
  const optimizer = (s('optimizer') ?? recipe.optimizer) as TrainConfig['optimizer'];
  if (!['sgd', 'sgd-paper', 'adam'].includes(optimizer)) throw new UserError(`--optimizer must be sgd, sgd-paper or adam, got '${optimizer}'`);
  const resizeMode = s('resize') ?? 'bilinear';
  if (resizeMode !== 'bilinear' && resizeMode !== 'pad') throw new UserError(`--resize must be bilinear or pad, got '${resizeMode}'`);
  const sizeOpt = intOption(s('input-size'), 'input-size', { min: 1 });
  const size = sizeOpt ?? 224;
  let mean: number[] = [];
  let std: number[] = [];
  if (s('normalize')) {
    const parts = s('normalize')!.split(',').map(Number);
    if (parts.length !== 2 || parts.some((x) => !Number.isFinite(x)) || parts[1] <= 0) throw new UserError(`--normalize takes MEAN,STD (e.g. 0.286,0.353), got '${s('normalize')}'`);
    mean = [parts[0]];
    std = [parts[1]];
  }
  const augment = (s('augment') ?? recipe.augment) as Augment;
  if (!AUGMENTS.includes(augment)) throw new UserError(`--augment must be ${AUGMENTS.join(', ')}, got '${augment}'`);
  const device = s('device') ?? 'auto';
  if (!/^(auto|cpu|cuda|cuda:\d+)$/.test(device)) throw new UserError(`--device must be auto, cpu, cuda or cuda:N, got '${device}'`);
  const optimizerChanged = s('optimizer') !== undefined && optimizer !== recipe.optimizer;
  const precision = s('precision') ?? 'auto';
  if (!PRECISIONS.includes(precision as Precision)) throw new UserError(`--precision must be ${PRECISIONS.join(', ')}, got '${precision}'`);
  return {
    model: recipe.model,
    // Image folders take the model's own input size unless one is asked for; IDX data is resized to 224.
    modelOptions: { inputSize: folder ? sizeOpt : size, dropout: numOption(s('dropout'), 'dropout', { min: 0, max: 0.99 }) },
    dataset: folder ? `folder:${path.resolve(root!)}` : dataset,
    dataDir: s('data'),
    folder: folder ? {
      valSplit: numOption(s('val-split'), 'val-split', { min: 0, max: 0.95, fallback: 0.1 })!,
      labels: s('labels') && path.resolve(s('labels')!),
      augment,
      shortSide: intOption(s('short-side'), 'short-side', { min: 1 }),
      pcaStd: numOption(s('pca-std'), 'pca-std', { min: 0 }),
      stats: s('stats') && path.resolve(s('stats')!),
      workers: intOption(s('workers'), 'workers', { min: 1 }),
      prefetch: intOption(s('prefetch'), 'prefetch', { min: 1 }),
      strict: !!v.strict,
    } : undefined,
    trainLimit: intOption(s('train-limit'), 'train-limit', { min: 1 }),
    testLimit: intOption(s('test-limit'), 'test-limit', { min: 1 }),
    epochs: intOption(s('epochs'), 'epochs', { min: 1, fallback: recipe.epochs })!,
    batchSize: intOption(s('batch-size'), 'batch-size', { min: 1, fallback: recipe.batchSize })!,
    evalBatchSize: intOption(s('eval-batch-size'), 'eval-batch-size', { min: 1, fallback: folder ? 128 : 256 })!,
    optimizer,
    lr: numOption(s('lr'), 'lr', { min: 1e-12, fallback: optimizerChanged ? (optimizer === 'adam' ? 0.001 : 0.01) : recipe.lr })!,
    momentum: numOption(s('momentum'), 'momentum', { min: 0, max: 1, fallback: optimizerChanged && optimizer === 'adam' ? 0 : recipe.momentum })!,
    weightDecay: numOption(s('weight-decay'), 'weight-decay', { min: 0, fallback: recipe.weightDecay })!,
    schedule: s('schedule') ?? recipe.schedule,
    preprocess: { inputSize: [size, size], resize: resizeMode, mean, std },
    seed: intOption(s('seed'), 'seed', { min: 0, fallback: 0 })!,
    device: device as TrainConfig['device'],
    threads: intOption(s('threads'), 'threads', { min: 1 }),
    save: s('save'),
    metrics: s('metrics'),
    maxSteps: intOption(s('max-steps'), 'max-steps', { min: 1 }),
    precision: precision as Precision,
  };
}

/** Runs training with Ctrl-C handling: the first Ctrl-C stops after the current step and saves; a second one quits. */
export async function runTraining(cfg: TrainConfig | ResumeOverrides, resume?: string, log?: (s: string) => void): Promise<TrainResult> {
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('\nstopping after this step (Ctrl-C again to quit without saving)…\n');
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    return await train(cfg, { shouldStop: () => stop, log }, resume);
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

export async function trainCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, TRAIN_OPTIONS, 'train');
  if (values.help) return console.log(HELP);
  const resume = values.resume as string | undefined;
  const cfg = configFromOptions(values);
  let settings: TrainConfig | ResumeOverrides = cfg;
  if (resume) {
    // Only the settings that can change mid-run are taken from the command line; the rest is the checkpoint's.
    const allowed: Record<string, keyof ResumeOverrides> = { epochs: 'epochs', 'max-steps': 'maxSteps', save: 'save', metrics: 'metrics', threads: 'threads', lr: 'lr', device: 'device' };
    const fixed = Object.keys(values).filter((k) => values[k] !== undefined && k !== 'resume' && !(k in allowed));
    if (fixed.length) throw new UserError(`--${fixed[0]} cannot be changed when resuming: the checkpoint's settings are used (only ${Object.keys(allowed).map((k) => `--${k}`).join(', ')} can be given with --resume)`);
    const overrides: ResumeOverrides = {};
    for (const [flag, key] of Object.entries(allowed)) if (values[flag] !== undefined) (overrides as Record<string, unknown>)[key] = cfg[key];
    settings = overrides;
  }
  if (!resume) {
    const r = recipeFor(values.model as string | undefined, cfg.folder !== undefined);
    cfg.recipe = `${r.name} for ${cfg.model}` + (cfg.folder ? `, ${cfg.folder.augment} augmentation` : '') + ' (options given on the command line take precedence)';
  }
  const r = await runTraining(settings, resume);
  if (cfg.save || resume) console.log(`checkpoint: ${cfg.save ?? resume}`);
  if (r.stopped === 'interrupted') process.exitCode = 130;
}
