// Checkpoints and weight files, both safetensors.
//   checkpoint: "model.<key>" (the state dict), "optim.<name>" (optimiser state), "rng.cpu"; metadata with the
//               run config, progress, history and everything needed to rebuild the model.
//   weights:    the state dict under its own keys (torchvision names) plus the same model metadata.
// Writes are atomic (temporary file, fsync, rename): a crash mid-write leaves the previous file intact.
import { UserError } from '../errors';
import { loadSafetensors, Metadata, saveSafetensors } from '../io/safetensors';
import { AlexNet, AlexNetOptions } from '../models/alexnet';
import { getModel } from '../models/registry';
import { Preprocess } from '../data/loader';
import { PhotoTransform } from '../data/transforms';
import { Tensor } from '../tensor/tensor';
import { loadPth } from '../io/pth';
import { modelFromStateDict, weightsKind } from '../io/weights';

export const CHECKPOINT_FORMAT = 'alexnet-ts/checkpoint';
export const WEIGHTS_FORMAT = 'alexnet-ts/weights';

/** What is needed to rebuild a model and feed it: stored with every checkpoint and weights file. */
export interface ModelRecord {
  model: string;
  modelOptions: AlexNetOptions;
  classes: string[];
  /** Image-folder models: the class folder names (the class index is the position here); `classes` are display names. */
  classIds?: string[];
  preprocess: Preprocess;
  /** Shape of one raw example of the data set the model was trained on (C, H, W), e.g. [1, 28, 28]. */
  sourceShape?: number[];
  dataset?: string;
  /** Image-folder models: the photo transform they were trained with (ten-crop testing reuses its geometry). */
  transform?: PhotoTransform;
  /** Image-folder models without a val/ folder: the share and seed of the validation split. */
  split?: { valSplit: number; seed: number };
}

export interface Progress {
  /** Epochs completed. */
  epoch: number;
  /** Batches completed in the current (unfinished) epoch; 0 at an epoch boundary. */
  batch: number;
  globalStep: number;
}

export interface CheckpointData {
  record: ModelRecord;
  progress: Progress;
  config: Record<string, unknown>;
  optimizer: { type: string; scalars: Record<string, number>; schedule: Record<string, number>; scaler?: { scale: number; growthTracker: number } };
  history: Record<string, number>[];
  tensors: Map<string, Tensor>;
}

function recordMeta(r: ModelRecord): Metadata {
  return {
    model: r.model,
    model_options: JSON.stringify(r.modelOptions),
    classes: JSON.stringify(r.classes),
    ...(r.classIds ? { class_ids: JSON.stringify(r.classIds) } : {}),
    ...(r.transform ? { transform: JSON.stringify(r.transform) } : {}),
    ...(r.split ? { split: JSON.stringify(r.split) } : {}),
    preprocess: JSON.stringify(r.preprocess),
    source_shape: JSON.stringify(r.sourceShape ?? null),
    dataset: r.dataset ?? '',
  };
}

function parseJson<T>(m: Metadata, key: string, file: string): T {
  if (m[key] === undefined) throw new UserError(`${file} lacks '${key}' in its metadata: it was not written by alexnet-ts`);
  try {
    return JSON.parse(m[key]) as T;
  } catch {
    throw new UserError(`${file}: metadata '${key}' is not valid JSON`);
  }
}

function readRecord(m: Metadata, file: string): ModelRecord {
  return {
    model: m.model,
    modelOptions: parseJson(m, 'model_options', file),
    classes: parseJson(m, 'classes', file),
    classIds: m.class_ids ? parseJson<string[]>(m, 'class_ids', file) : undefined,
    transform: m.transform ? parseJson<PhotoTransform>(m, 'transform', file) : undefined,
    split: m.split ? parseJson<{ valSplit: number; seed: number }>(m, 'split', file) : undefined,
    preprocess: parseJson(m, 'preprocess', file),
    sourceShape: m.source_shape ? (JSON.parse(m.source_shape) ?? undefined) : undefined,
    dataset: m.dataset || undefined,
  };
}

export function saveCheckpoint(file: string, model: AlexNet, c: Omit<CheckpointData, 'tensors'> & { optimizerTensors: [string, Tensor][]; rng: Tensor }): void {
  const entries: [string, Tensor][] = [];
  for (const [k, t] of model.stateDict()) entries.push([`model.${k}`, t]);
  for (const [k, t] of c.optimizerTensors) entries.push([`optim.${k}`, t]);
  entries.push(['rng.cpu', c.rng]);
  saveSafetensors(file, entries, {
    format: CHECKPOINT_FORMAT,
    version: '1',
    ...recordMeta(c.record),
    progress: JSON.stringify(c.progress),
    config: JSON.stringify(c.config),
    optimizer: JSON.stringify(c.optimizer),
    history: JSON.stringify(c.history),
  });
}

export function loadCheckpoint(file: string): CheckpointData {
  const { tensors, metadata } = loadSafetensors(file);
  if (metadata.format !== CHECKPOINT_FORMAT) {
    throw new UserError(`${file} is not an alexnet-ts training checkpoint${metadata.format === WEIGHTS_FORMAT ? ' (it holds weights only: use it with eval or predict)' : ''}`);
  }
  return {
    record: readRecord(metadata, file),
    progress: parseJson(metadata, 'progress', file),
    config: parseJson(metadata, 'config', file),
    optimizer: parseJson(metadata, 'optimizer', file),
    history: parseJson(metadata, 'history', file),
    tensors,
  };
}

export function saveWeights(file: string, model: AlexNet, record: ModelRecord): void {
  saveSafetensors(file, model.stateDict(), { format: WEIGHTS_FORMAT, version: '1', ...recordMeta(record) });
}

/** The model record as string metadata (for safetensors and ONNX files). */
export function recordMetadata(record: ModelRecord): Metadata {
  return { format: WEIGHTS_FORMAT, version: '1', ...recordMeta(record) };
}

/** Reads a model record back from string metadata (ONNX metadata_props). */
export function recordFromMetadata(m: Metadata, file: string): ModelRecord {
  return readRecord(m, file);
}

/**
 * Loads weights into a freshly built model (eval mode): an alexnet-ts checkpoint or weights file, or a plain
 * state dict (torch.save .pth/.pt, or safetensors from elsewhere) whose variant is recognised from its keys.
 */
export function loadModel(file: string, o: { model?: string } = {}): { model: AlexNet; record: ModelRecord } {
  if (weightsKind(file) === 'pth') return modelFromStateDict(loadPth(file), o);
  const { tensors, metadata } = loadSafetensors(file);
  if (metadata.format !== CHECKPOINT_FORMAT && metadata.format !== WEIGHTS_FORMAT) return modelFromStateDict(tensors, o);
  const record = readRecord(metadata, file);
  const model = getModel(record.model, record.modelOptions);
  const sd = new Map<string, Tensor>();
  const prefix = metadata.format === CHECKPOINT_FORMAT ? 'model.' : '';
  for (const [k, t] of tensors) {
    if (k.startsWith(prefix)) sd.set(k.slice(prefix.length), t);
    else t.dispose();
  }
  model.loadStateDict(sd);
  for (const t of sd.values()) t.dispose();
  return { model: model.eval(), record };
}
