// The data a run trains and validates on: an IDX data set in memory (Fashion-MNIST, MNIST) or an image folder
// decoded by worker threads. Both end up as BatchSources of model-ready batches on the run's device.
import * as path from 'node:path';
import { cifar10Dir, loadCifar10 } from '../data/cifar10';
import { loadIdxDataset, TensorDataset } from '../data/fashion-mnist';
import { folderPath, Problem, scanImageFolder } from '../data/image-folder';
import { Preprocess } from '../data/loader';
import { DecodePool, defaultWorkers, FolderSource } from '../data/pipeline';
import { Sampler } from '../data/sampler';
import { BatchSource, TensorSource } from '../data/source';
import { readStats } from '../data/stats';
import { Augment, PhotoTransform, presetTransform } from '../data/transforms';
import { Device } from '../tensor/dtype';
import { UserError } from '../errors';
import { ModelRecord } from '../persist/record';
import { keep, noGrad, Tensor, tidy } from '../tensor/tensor';

/** Settings of an image-folder data set (`--dataset folder:PATH`). */
export interface FolderConfig {
  valSplit: number;
  labels?: string;
  augment: Augment;
  shortSide?: number;
  /** α's standard deviation for PCA colour noise; undefined: the preset's (0.1 for paper, else 0). */
  pcaStd?: number;
  /** A statistics file from `alexnet stats`: its mean/std normalise, its eigen-decomposition drives PCA noise. */
  stats?: string;
  workers?: number;
  prefetch?: number;
  strict?: boolean;
}

export interface DataSpec {
  dataset: string;
  /** IDX folder (default: Debian's dataset-fashion-mnist). */
  dir?: string;
  trainLimit?: number;
  testLimit?: number;
  folder?: FolderConfig;
  seed: number;
}

export interface OpenedData {
  train: BatchSource;
  test: BatchSource;
  /** What the model record keeps: how an input is made for this model. */
  preprocess: Preprocess;
  transform?: PhotoTransform;
  sourceShape?: number[];
  close(): Promise<void>;
}

/** A data set whose classes are known; `open` makes the batch sources once the model's input shape is known. */
export interface PreparedData {
  name: string;
  classes: string[];
  classIds?: string[];
  /** Input channels the data dictates (1 for the IDX data sets); undefined: the model's own (photos are converted). */
  channels?: number;
  problems: Problem[];
  open(o: {
    inputShape: number[];
    device: Device;
    batchSize: number;
    evalBatchSize: number;
    preprocess: Preprocess;
    transform?: PhotoTransform;
    onProblem?: (p: Problem) => void;
    /** Each process's shards in a data-parallel run (default: the whole set, shuffled for training). */
    samplers?: ShardSamplers;
  }): OpenedData;
}

/** How a data-parallel run splits the training and test sets between its processes. */
export interface ShardSamplers {
  train(n: number, seed: number): Sampler;
  test(n: number): Sampler;
}

/** The transform a folder run uses: the preset, the model's input, and the statistics file's values if given. */
export function folderTransform(f: FolderConfig, inputShape: number[]): PhotoTransform {
  const [channels, size] = inputShape;
  const stats = f.stats ? readStats(f.stats) : undefined;
  if (stats && stats.mean.length !== channels)
    throw new UserError(`${f.stats} has statistics for ${stats.mean.length} channels, the model takes ${channels}`);
  const grey = channels === 1;
  return presetTransform(f.augment, size, {
    shortSide: f.shortSide,
    pcaStd: grey ? 0 : f.pcaStd,
    channels,
    mean: stats?.mean ?? (grey ? [0.449] : undefined),
    std: stats?.std ?? (grey ? [0.226] : undefined),
    eigval: grey ? [] : stats?.eigval,
    eigvec: grey ? [] : stats?.eigvec,
  });
}

export function prepareData(spec: DataSpec): PreparedData {
  const root = folderPath(spec.dataset);
  if (root !== undefined) return prepareFolder(spec, root);
  const cifar = cifar10Dir(spec.dataset);
  if (cifar !== undefined) return prepareCifar10(spec, cifar);
  if (spec.dataset !== 'fashion-mnist' && spec.dataset !== 'mnist')
    throw new UserError(
      `unknown data set '${spec.dataset}' (expected fashion-mnist, mnist, cifar10:DIR or folder:PATH)`,
    );
  return prepareIdx(spec, spec.dataset);
}

/**
 * CIFAR-10's binary version, in memory like the IDX sets: resized to the model's input (32×32 for convnet-cifar),
 * normalised per channel by the training images' mean and standard deviation (or --normalize's), which the model
 * record keeps.
 */
function prepareCifar10(spec: DataSpec, dir: string): PreparedData {
  const train = loadCifar10({ dir, split: 'train', limit: spec.trainLimit });
  const test = loadCifar10({ dir, split: 'test', limit: spec.testLimit });
  const stats = channelStats(train.images);
  const idx = prepareIdxSets(spec, `cifar10:${dir}`, train, test);
  return {
    ...idx,
    open: (o) => {
      const [, h, w] = o.inputShape;
      const given = o.preprocess.mean.length > 0;
      const preprocess: Preprocess = {
        ...o.preprocess,
        inputSize: [h, w],
        mean: given ? [0, 1, 2].map(() => o.preprocess.mean[0]) : stats.mean,
        std: given ? [0, 1, 2].map(() => o.preprocess.std[0]) : stats.std,
      };
      return idx.open({ ...o, preprocess });
    },
  };
}

/** Per-channel mean and standard deviation of uint8 images (N, C, H, W), in [0, 1] units. */
function channelStats(images: Tensor): { mean: number[]; std: number[] } {
  return noGrad(() =>
    tidy(() => {
      const x = images.float().div(255).transpose(0, 1).reshape(images.size(1), -1);
      return { mean: x.mean(1).toArray(), std: x.std(1).toArray() };
    }),
  );
}

/** An IDX data set, in memory; batches are preprocessed in the engine (on the device). */
function prepareIdx(spec: DataSpec, name: 'fashion-mnist' | 'mnist'): PreparedData {
  const train = loadIdxDataset({ dir: spec.dir, split: 'train', name, limit: spec.trainLimit });
  const test = loadIdxDataset({ dir: spec.dir, split: 'test', name, limit: spec.testLimit });
  return prepareIdxSets(spec, name, train, test);
}

/** Data sets held in memory (IDX, CIFAR-10): tensor sources on the run's device. */
function prepareIdxSets(spec: DataSpec, name: string, train: TensorDataset, test: TensorDataset): PreparedData {
  return {
    name,
    classes: train.classes,
    channels: train.images.shape[1],
    problems: [],
    open: (o) => {
      const trainSrc = new TensorSource(train, o.preprocess, {
        batchSize: o.batchSize,
        shuffle: true,
        seed: spec.seed,
        device: o.device,
        sampler: o.samplers?.train(train.labels.size(0), spec.seed),
      });
      const testSrc = new TensorSource(test, o.preprocess, {
        batchSize: o.evalBatchSize,
        shuffle: false,
        seed: 0,
        device: o.device,
        sampler: o.samplers?.test(test.labels.size(0)),
      });
      return {
        // From the source's own tensors: on a GPU the data set was moved there and the CPU copy freed.
        train: trainSrc,
        test: testSrc,
        preprocess: o.preprocess,
        sourceShape: trainSrc.ds.images.shape.slice(1),
        close: async () => {
          await trainSrc.close();
          await testSrc.close();
        },
      };
    },
  };
}

/** An image folder: scanned and split now; decoded by worker threads once the model's input is known. */
function prepareFolder(spec: DataSpec, root: string): PreparedData {
  const f = spec.folder ?? { valSplit: 0.1, augment: 'torchvision' as Augment };
  const folder = scanImageFolder(root, { valSplit: f.valSplit, seed: spec.seed, strict: f.strict, labels: f.labels });
  const limit = <T>(a: T[], n?: number) => (n ? a.slice(0, n) : a);
  const trainSamples = limit(folder.train, spec.trainLimit);
  const valSamples = limit(folder.val, spec.testLimit);
  if (!valSamples.length) {
    throw new UserError(
      folder.layout === 'folders'
        ? `${path.join(folder.root, folder.valFolder!)} has no images`
        : `the validation split of ${folder.root} is empty: use --val-split with a larger share, or a val/ folder`,
    );
  }
  return {
    name: `folder:${folder.root}`,
    classes: folder.classes,
    classIds: folder.classIds,
    problems: folder.problems,
    open: (o) => {
      const transform = o.transform ?? folderTransform(f, o.inputShape);
      const pool = new DecodePool(f.workers ?? defaultWorkers());
      const common = {
        seed: spec.seed,
        transform,
        device: o.device,
        pool,
        prefetch: f.prefetch,
        strict: f.strict,
        onProblem: o.onProblem,
      };
      const train = new FolderSource(trainSamples, folder.classes, {
        ...common,
        batchSize: o.batchSize,
        shuffle: true,
        mode: 'train',
        sampler: o.samplers?.train(trainSamples.length, spec.seed),
      });
      const test = new FolderSource(valSamples, folder.classes, {
        ...common,
        batchSize: o.evalBatchSize,
        shuffle: false,
        mode: 'center',
        sampler: o.samplers?.test(valSamples.length),
      });
      const preprocess: Preprocess = {
        inputSize: [transform.size, transform.size],
        resize: 'bilinear',
        mean: transform.mean,
        std: transform.std,
        shortSide: transform.shortSide,
      };
      return { train, test, preprocess, transform, close: () => pool.close() };
    },
  };
}

/**
 * The validation images of a folder data set for a trained model: its val/ folder, or the same seeded split the
 * model was trained with; labels follow the model's class folders.
 */
export function folderEvalSource(
  root: string,
  r: { classIds: string[]; classes: string[]; transform: PhotoTransform; split?: { valSplit: number; seed: number } },
  o: {
    device: Device;
    batchSize: number;
    tenCrop?: boolean;
    limit?: number;
    workers?: number;
    strict?: boolean;
    split?: 'val' | 'train' | 'all';
    onProblem?: (p: Problem) => void;
  },
): { source: FolderSource; problems: Problem[]; close: () => Promise<void> } {
  const folder = scanImageFolder(root, {
    valSplit: r.split?.valSplit ?? 0.1,
    seed: r.split?.seed ?? 0,
    strict: o.strict,
  });
  const unknown = folder.classIds.filter((c) => !r.classIds.includes(c));
  if (unknown.length)
    throw new UserError(
      `${root} has class folders the model was not trained on: ${unknown.slice(0, 5).join(', ')} (the model knows ${r.classIds.join(', ')})`,
    );
  const which = o.split ?? 'val';
  let samples = which === 'val' ? folder.val : which === 'train' ? folder.train : [...folder.train, ...folder.val];
  if (!samples.length) throw new UserError(`${root} has no ${which === 'all' ? '' : which + ' '}images to evaluate`);
  samples = samples.map((s) => ({ file: s.file, label: r.classIds.indexOf(folder.classIds[s.label]) }));
  if (o.limit) samples = samples.slice(0, o.limit);
  const pool = new DecodePool(o.workers ?? defaultWorkers());
  const source = new FolderSource(samples, r.classes, {
    batchSize: o.tenCrop ? Math.max(1, Math.floor(o.batchSize / 10)) : o.batchSize,
    shuffle: false,
    seed: 0,
    mode: o.tenCrop ? 'ten-crop' : 'center',
    transform: r.transform,
    device: o.device,
    pool,
    strict: o.strict,
    onProblem: o.onProblem,
  });
  return { source, problems: folder.problems, close: () => pool.close() };
}

/** Logs unreadable files: each one the first time, up to `max` lines, then only a count. */
export function problemLogger(log: (s: string) => void, max = 20): (p: Problem) => void {
  let n = 0;
  return (p) => {
    n++;
    if (n <= max) log(`warning: skipping ${p.file}: ${p.reason}`);
    else if (n === max + 1) log('warning: more unreadable files: they are skipped and counted, not listed');
  };
}

export interface EvalSourceOptions {
  /** folder:PATH to evaluate a photo model on another folder (default: the model's own data set). */
  dataset?: string;
  /** IDX folder (default: Debian's Fashion-MNIST). */
  dir?: string;
  split: 'val' | 'train' | 'all';
  tenCrop?: boolean;
  limit?: number;
  batchSize: number;
  workers?: number;
  strict?: boolean;
  device: Device;
  onProblem?: (p: Problem) => void;
}

/** CIFAR-10's test split (val) or training split (train), preprocessed as the model was trained. */
function cifarEvalSource(record: ModelRecord, dir: string, o: EvalSourceOptions) {
  if (!record.dataset?.startsWith('cifar10:'))
    throw new UserError(
      `--dataset cifar10:DIR is for models trained on CIFAR-10, this one was trained on ${record.dataset}`,
    );
  if (o.split === 'all')
    throw new UserError('--split all is for image folders; CIFAR-10 models take --split val or train');
  const ds = loadCifar10({ dir, split: o.split === 'train' ? 'train' : 'test', limit: o.limit });
  ds.classes = record.classes;
  return evalTensorSource(ds, record, o);
}

/**
 * The images to evaluate a trained model on: for photo models their folder's validation images (or another
 * split or folder), for IDX models the test split (val) or the training split (train) of their data set.
 */
export function openEvalSource(
  record: ModelRecord,
  file: string,
  o: EvalSourceOptions,
): { source: BatchSource; close: () => Promise<void> } {
  const dataset = o.dataset ?? record.dataset;
  const root = folderPath(dataset);
  if (root !== undefined) {
    if (!record.classIds || !record.transform)
      throw new UserError(
        `${file} was not trained on an image folder: evaluate it on ${record.dataset ?? 'its data set'} (without --dataset)`,
      );
    const r = { classIds: record.classIds, classes: record.classes, transform: record.transform, split: record.split };
    const ev = folderEvalSource(root, r, { ...o, split: o.split });
    ev.problems.forEach((p) => o.onProblem?.(p));
    return { source: ev.source, close: ev.close };
  }
  if (o.tenCrop)
    throw new UserError('--ten-crop is for models trained on image folders (photos), not on Fashion-MNIST/MNIST');
  const cifar = cifar10Dir(dataset);
  if (cifar !== undefined) return cifarEvalSource(record, cifar, o);
  if (o.split === 'all')
    throw new UserError(
      '--split all is for image folders; Fashion-MNIST/MNIST models take --split val (the test split) or train',
    );
  const name = record.dataset === 'mnist' ? 'mnist' : 'fashion-mnist';
  if (dataset && dataset !== name)
    throw new UserError(`--dataset must be folder:PATH or the model's own data set (${name}), got '${dataset}'`);
  if (name === 'mnist' && !o.dir)
    throw new UserError(
      'this model was trained on MNIST: give its IDX folder with --data DIR (Debian ships only Fashion-MNIST)',
    );
  const ds = loadIdxDataset({ dir: o.dir, split: o.split === 'train' ? 'train' : 'test', name, limit: o.limit });
  if (ds.classes.length !== record.classes.length)
    throw new UserError(`the model has ${record.classes.length} classes but the data set ${ds.classes.length}`);
  ds.classes = record.classes;
  const [channels, ...hw] = ds.images.shape.slice(1);
  if (channels === 1 && record.modelOptions.inChannels === 3) {
    // A 3-channel state dict from elsewhere on grey images: the grey channel repeated, as torchvision's Grayscale(3).
    const grey = ds.images;
    ds.images = keep(tidy(() => grey.expand(grey.shape[0], 3, hw[0], hw[1]).contiguous()));
    grey.dispose();
  }
  return evalTensorSource(ds, record, o);
}

/** An in-memory data set (IDX, CIFAR-10) in order, preprocessed as the model's record says, for evaluation. */
function evalTensorSource(
  ds: TensorDataset,
  record: ModelRecord,
  o: { batchSize: number; device: Device },
): { source: TensorSource; close: () => Promise<void> } {
  const source = new TensorSource(ds, record.preprocess, {
    batchSize: o.batchSize,
    shuffle: false,
    seed: 0,
    device: o.device,
  });
  return { source, close: () => source.close() };
}
