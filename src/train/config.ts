// The run configuration: one nested, typed object (model, data, optimisation, precision, runtime, output) that a
// run, its checkpoints and `--resume` share. `buildRunConfig` turns flat options (the CLI's flags, or a library
// call) into it over a recipe; `checkRunConfig` validates it, for new runs and for configurations read back
// from checkpoints alike.
import * as path from 'node:path';
import { UserError } from '../errors';
import { folderPath } from '../data/image-folder';
import { Preprocess } from '../data/loader';
import { PhotoTransform } from '../data/transforms';
import { AlexNetOptions } from '../models/alexnet';
import { listModels } from '../models/registry';
import { FieldReader } from '../persist/validate';
import { DeviceRequest, parseDevice } from '../runtime/device';
import { Precision, PRECISIONS } from '../runtime/precision';

export type CudaGraphMode = 'off' | 'on';
export const CUDA_GRAPH_MODES: CudaGraphMode[] = ['off', 'on'];
import { defaultLr, Optimization, OptimizerName, recipeFor } from './recipes';
import { FolderConfig } from './data';
import { checkFreeze } from './reuse';

export const OPTIMIZERS: OptimizerName[] = ['sgd', 'sgd-paper', 'adam'];

export interface RunConfig {
  /** initFrom: start from this file's weights (a new head where shapes differ); freeze: features or a layer name. */
  model: { name: string; options: AlexNetOptions; initFrom?: string; freeze?: string };
  data: {
    /** fashion-mnist, mnist or folder:PATH (absolute). */
    dataset: string;
    /** IDX folder (default: Debian's dataset-fashion-mnist). */
    dir?: string;
    folder?: FolderConfig;
    trainLimit?: number;
    testLimit?: number;
    preprocess: Preprocess;
    /** The photo transform in use: resolved when a run starts and kept, so a resumed run needs no stats file. */
    transform?: PhotoTransform;
  };
  optimization: Optimization & {
    /** Stop after this many optimiser steps in total (the run can be resumed later). */
    maxSteps?: number;
    /** The learning rate of the classifier's last layer (default: lr), e.g. for a head made afresh. */
    headLr?: number;
  };
  /** fp32, bf16 or fp16 autocast (fp16 with loss scaling); auto: bf16 on a GPU, fp32 on the CPU. */
  precision: Precision | 'auto';
  /** cudaGraph: record the training step once as a CUDA graph and replay it (off unless asked: not yet verified). */
  /** worldSize: the processes of a data-parallel run (set by the run; a resumed run compares it with its own). */
  runtime: { device: DeviceRequest; threads?: number; seed: number; cudaGraph?: CudaGraphMode; worldSize?: number };
  output: {
    save?: string;
    metrics?: string;
    /** A per-step metrics record every this many steps (0: epoch records only). */
    metricsEvery: number;
    /** Replace an existing checkpoint at `save` that belongs to another run. */
    overwrite?: boolean;
  };
  /** Where the defaults came from, printed when the run starts. */
  recipe?: string;
}

/** Flat options, as the CLI's flags name them: every one optional, recipe values fill the rest. */
export interface TrainOptions extends Partial<FolderConfig> {
  model?: string;
  dataset?: string;
  data?: string;
  inputSize?: number;
  resize?: 'bilinear' | 'pad';
  normalize?: { mean: number; std: number };
  trainLimit?: number;
  testLimit?: number;
  dropout?: number;
  /** The architecture's knobs (activation, LRN, pooling, groups, widths): model options of every variant. */
  architecture?: AlexNetOptions;
  initFrom?: string;
  freeze?: string;
  epochs?: number;
  batchSize?: number;
  evalBatchSize?: number;
  optimizer?: OptimizerName;
  lr?: number;
  headLr?: number;
  momentum?: number;
  weightDecay?: number;
  schedule?: string;
  maxSteps?: number;
  device?: DeviceRequest;
  precision?: Precision | 'auto';
  threads?: number;
  seed?: number;
  cudaGraph?: CudaGraphMode;
  save?: string;
  metrics?: string;
  metricsEvery?: number;
  overwrite?: boolean;
}

const FOLDER_ONLY = [
  'valSplit',
  'labels',
  'augment',
  'shortSide',
  'pcaStd',
  'stats',
  'workers',
  'prefetch',
  'strict',
] as const;
const IDX_ONLY = ['data', 'resize', 'normalize'] as const;

/** Names an option in a message: the library says its field (`valSplit`); the CLI its flag (`--val-split`). */
export type OptionNamer = (option: string) => string;

/**
 * A mistake in a run's options, worded by whoever gave them: the library names each option by its field in
 * `TrainOptions`, a command rewords the message with its own names (the CLI with `reworded(flagOf)`).
 */
export class OptionError extends UserError {
  constructor(
    /** The option the mistake is about (a field of TrainOptions). */
    readonly option: string,
    /** The message, with every option named through `name`. */
    readonly wording: (name: OptionNamer) => string,
  ) {
    super(wording((o) => o));
  }

  /** The same mistake with the options named by `name`. */
  reworded(name: OptionNamer): UserError {
    return new UserError(this.wording(name));
  }
}

/** Where a data set comes from: an IDX name or an image folder's absolute path. */
function resolveDataset(dataset: string): { dataset: string; root?: string } {
  const root = folderPath(dataset);
  if (root === '')
    throw new OptionError('dataset', (n) => `${n('dataset')} folder:PATH needs the folder, e.g. folder:./photos`);
  if (root !== undefined) return { dataset: `folder:${path.resolve(root)}`, root: path.resolve(root) };
  if (dataset.startsWith('cifar10:')) {
    const dir = dataset.slice('cifar10:'.length);
    if (!dir)
      throw new OptionError(
        'dataset',
        (n) => `${n('dataset')} cifar10:DIR needs the folder of data_batch_1.bin … test_batch.bin`,
      );
    return { dataset: `cifar10:${path.resolve(dir)}` };
  }
  if (dataset !== 'fashion-mnist' && dataset !== 'mnist')
    throw new OptionError(
      'dataset',
      (n) => `${n('dataset')} must be fashion-mnist, mnist, cifar10:DIR or folder:PATH, got '${dataset}'`,
    );
  return { dataset };
}

/** Options that belong to the other kind of data set, and MNIST without its files. */
function checkDataOptions(o: TrainOptions, dataset: string, folder: boolean): void {
  for (const k of folder ? IDX_ONLY : FOLDER_ONLY) {
    if (o[k] !== undefined && o[k] !== false) {
      throw new OptionError(k, (n) =>
        folder
          ? `${n(k)} is for IDX data sets (Fashion-MNIST, MNIST); image folders use ${n('augment')}, ${n('stats')} and ${n('shortSide')}`
          : `${n(k)} is for image-folder data sets (${n('dataset')} folder:PATH)`,
      );
    }
  }
  if (dataset.startsWith('cifar10:') && o.data !== undefined)
    throw new OptionError(
      'data',
      (n) => `${n('data')} is for IDX data sets: ${n('dataset')} cifar10:DIR names its folder`,
    );
  if (dataset === 'mnist' && o.data === undefined) {
    throw new OptionError(
      'data',
      (n) =>
        `${n('dataset')} mnist needs ${n('data')} DIR (a folder with MNIST's IDX files): Debian ships only Fashion-MNIST`,
    );
  }
}

/** The run configuration for flat options over the recipe of their model and data set. */
export function buildRunConfig(o: TrainOptions): RunConfig {
  const { dataset, root } = resolveDataset(o.dataset ?? 'fashion-mnist');
  const folder = root !== undefined;
  checkDataOptions(o, dataset, folder);
  const recipe = recipeFor(o.model, folder);
  const optimizer = o.optimizer ?? recipe.optimizer;
  const changed = o.optimizer !== undefined && optimizer !== recipe.optimizer;
  const size = o.inputSize ?? 224;
  const cfg: RunConfig = {
    // Image folders take the model's own input size unless one is asked for; IDX data is resized to 224.
    model: {
      name: recipe.model,
      // CIFAR-10 too (32×32: convnet-cifar's own; other variants resize it to theirs).
      options: {
        ...o.architecture,
        inputSize: folder || dataset.startsWith('cifar10:') ? o.inputSize : size,
        dropout: o.dropout,
      },
      initFrom: o.initFrom === undefined ? undefined : path.resolve(o.initFrom),
      freeze: o.freeze,
    },
    data: {
      dataset,
      dir: o.data && path.resolve(o.data),
      trainLimit: o.trainLimit,
      testLimit: o.testLimit,
      folder: folder
        ? {
            valSplit: o.valSplit ?? 0.1,
            labels: o.labels && path.resolve(o.labels),
            augment: o.augment ?? recipe.augment,
            shortSide: o.shortSide,
            pcaStd: o.pcaStd,
            stats: o.stats && path.resolve(o.stats),
            workers: o.workers,
            prefetch: o.prefetch,
            strict: !!o.strict,
          }
        : undefined,
      preprocess: {
        inputSize: [size, size],
        resize: o.resize ?? 'bilinear',
        mean: o.normalize ? [o.normalize.mean] : [],
        std: o.normalize ? [o.normalize.std] : [],
      },
    },
    optimization: {
      optimizer,
      lr: o.lr ?? (changed ? defaultLr(optimizer) : recipe.lr),
      momentum: o.momentum ?? (changed && optimizer === 'adam' ? 0 : recipe.momentum),
      weightDecay: o.weightDecay ?? recipe.weightDecay,
      batchSize: o.batchSize ?? recipe.batchSize,
      evalBatchSize: o.evalBatchSize ?? recipe.evalBatchSize,
      epochs: o.epochs ?? recipe.epochs,
      maxSteps: o.maxSteps,
      headLr: o.headLr,
      schedule: o.schedule ?? recipe.schedule,
    },
    precision: o.precision ?? 'auto',
    runtime: { device: o.device ?? 'auto', threads: o.threads, seed: o.seed ?? 0, cudaGraph: o.cudaGraph ?? 'off' },
    output: { save: o.save, metrics: o.metrics, metricsEvery: o.metricsEvery ?? 50, overwrite: o.overwrite },
    recipe: `${recipe.name} for ${recipe.model}${folder ? `, ${o.augment ?? recipe.augment} augmentation` : ''} (options given take precedence)`,
  };
  // Before any weights are read (--init-from's, then the layers frozen).
  if (o.freeze !== undefined) checkFreeze(o.freeze, cfg.model.name, cfg.model.options);
  return checkRunConfig(cfg, 'the run configuration');
}

/** Validates a configuration (a new one, or one read back from a checkpoint); `source` names it in errors. */
export function checkRunConfig(value: unknown, source: string): RunConfig {
  const f = new FieldReader(source);
  const c = f.object('config', value);
  const model = f.object('model', c.model);
  f.oneOf(
    'model.name',
    model.name,
    listModels().map((m) => m.name),
  );
  if (model.initFrom !== undefined) f.str('model.initFrom', model.initFrom);
  if (model.freeze !== undefined) f.str('model.freeze', model.freeze);
  const data = f.object('data', c.data);
  f.str('data.dataset', data.dataset);
  const opt = f.object('optimization', c.optimization);
  f.oneOf('optimization.optimizer', opt.optimizer, OPTIMIZERS);
  f.num('optimization.lr', opt.lr, 0, Number.MAX_VALUE, { exclusiveMin: true });
  if (opt.headLr !== undefined) f.num('optimization.headLr', opt.headLr, 0, Number.MAX_VALUE, { exclusiveMin: true });
  f.num('optimization.momentum', opt.momentum, 0, 1);
  f.num('optimization.weightDecay', opt.weightDecay, 0, 1e6);
  f.int('optimization.batchSize', opt.batchSize, 1, 1 << 20);
  f.int('optimization.evalBatchSize', opt.evalBatchSize, 1, 1 << 20);
  f.int('optimization.epochs', opt.epochs, 1, 1e6);
  if (opt.maxSteps !== undefined) f.int('optimization.maxSteps', opt.maxSteps, 1, Number.MAX_SAFE_INTEGER);
  f.str('optimization.schedule', opt.schedule);
  f.oneOf('precision', c.precision, PRECISIONS);
  const rt = f.object('runtime', c.runtime);
  parseDevice(f.str('runtime.device', rt.device));
  if (rt.threads !== undefined) f.int('runtime.threads', rt.threads, 1, 4096);
  f.int('runtime.seed', rt.seed, 0, 2 ** 32 - 1);
  if (rt.cudaGraph !== undefined) f.oneOf('runtime.cudaGraph', rt.cudaGraph, CUDA_GRAPH_MODES);
  if (rt.worldSize !== undefined) f.int('runtime.worldSize', rt.worldSize, 1, 65536);
  const out = f.object('output', c.output);
  f.int('output.metricsEvery', out.metricsEvery, 0, 1e9);
  return value as RunConfig;
}

/** A configuration written by alexnet-ts 0.1 (flat `TrainConfig`) in the nested form, so old checkpoints resume. */
export function upgradeConfig(c: Record<string, unknown>): unknown {
  if (typeof c.model !== 'string') return c;
  const g = c as Record<string, never>;
  return {
    model: { name: g.model, options: g.modelOptions ?? {} },
    data: {
      dataset: g.dataset,
      dir: g.dataDir,
      folder: g.folder,
      trainLimit: g.trainLimit,
      testLimit: g.testLimit,
      preprocess: g.preprocess,
      transform: g.transform,
    },
    optimization: {
      optimizer: g.optimizer,
      lr: g.lr,
      momentum: g.momentum,
      weightDecay: g.weightDecay,
      batchSize: g.batchSize,
      evalBatchSize: g.evalBatchSize,
      epochs: g.epochs,
      maxSteps: g.maxSteps,
      schedule: g.schedule,
    },
    precision: g.precision ?? 'auto',
    runtime: { device: g.device ?? 'auto', threads: g.threads, seed: g.seed ?? 0 },
    output: { save: g.save, metrics: g.metrics, metricsEvery: 0 },
    recipe: g.recipe,
  };
}

/** What may change when a run is resumed; everything else comes from the checkpoint. */
export interface ResumeOverrides {
  epochs?: number;
  maxSteps?: number;
  lr?: number;
  save?: string;
  metrics?: string;
  metricsEvery?: number;
  threads?: number;
  device?: DeviceRequest;
  cudaGraph?: CudaGraphMode;
}
export const RESUME_OVERRIDES: (keyof ResumeOverrides)[] = [
  'cudaGraph',
  'epochs',
  'maxSteps',
  'lr',
  'save',
  'metrics',
  'metricsEvery',
  'threads',
  'device',
];

/** The checkpoint's configuration with the overrides applied; it continues writing to `save` (default: itself). */
export function applyOverrides(c: RunConfig, o: ResumeOverrides, checkpoint: string): RunConfig {
  const pick = <T>(v: T | undefined, d: T) => (v === undefined ? d : v);
  return checkRunConfig(
    {
      ...c,
      optimization: {
        ...c.optimization,
        epochs: pick(o.epochs, c.optimization.epochs),
        maxSteps: o.maxSteps,
        lr: pick(o.lr, c.optimization.lr),
      },
      runtime: {
        ...c.runtime,
        threads: pick(o.threads, c.runtime.threads),
        device: pick(o.device, c.runtime.device),
        cudaGraph: pick(o.cudaGraph, c.runtime.cudaGraph),
      },
      output: {
        ...c.output,
        save: o.save ?? checkpoint,
        metrics: o.metrics ?? c.output.metrics,
        metricsEvery: pick(o.metricsEvery, c.output.metricsEvery),
        overwrite: false,
      },
    },
    'the resumed configuration',
  );
}

/**
 * `alexnet demo`'s options: on a GPU d2l's full recipe; on a CPU a run sized to finish in minutes on two cores, with
 * twice the data where the CPU has native bf16 (bf16 autocast trains about twice as fast there, to the same accuracy:
 * `alexnet experiment bf16-vs-fp32`).
 */
export function demoOptions(gpu: boolean, cpuBf16 = false): { description: string; options: TrainOptions } {
  if (gpu) {
    return {
      description:
        "d2l's full recipe: alexnet-d2l at 224×224, all 60,000 training images, 10 epochs, SGD lr 0.01, batch 128",
      options: {
        model: 'alexnet-d2l',
        dataset: 'fashion-mnist',
        inputSize: 224,
        epochs: 10,
        batchSize: 128,
        optimizer: 'sgd',
        lr: 0.01,
      },
    };
  }
  return {
    description:
      `a CPU-sized run: alexnet-d2l at 67×67 (the smallest input its layers take), the first ${cpuBf16 ? '40,000' : '20,000'} training images for 1 epoch, ` +
      `Adam lr 1e-4, batch 64, inputs normalised (mean 0.286, std 0.353)${cpuBf16 ? ', bf16 autocast (this CPU has native bf16: twice the images of an fp32 CPU in about the same time)' : ''}. ` +
      'The full recipe (224×224, 10 epochs) takes hours on two cores: alexnet train runs it',
    options: {
      model: 'alexnet-d2l',
      dataset: 'fashion-mnist',
      inputSize: 67,
      trainLimit: cpuBf16 ? 40000 : 20000,
      epochs: 1,
      batchSize: 64,
      optimizer: 'adam',
      lr: 1e-4,
      normalize: { mean: 0.286, std: 0.353 },
      device: 'cpu',
    },
  };
}
