// The model record: everything needed to rebuild a model and feed it, stored as string metadata with every
// checkpoint, weights file and ONNX export. Reading a record validates every field against types and bounds
// (a crafted file must not make one prediction allocate gigabytes or print NaN%).
import { Preprocess } from '../data/loader';
import { AUGMENTS, PhotoTransform } from '../data/transforms';
import { Metadata } from '../io/safetensors';
import { ACTIVATIONS, AlexNetOptions, LRN_CHOICES, OPTION_LIMITS, Widths } from '../models/alexnet';
import { listModels } from '../models/registry';
import { FieldReader } from './validate';

export const CHECKPOINT_FORMAT = 'alexnet-ts/checkpoint';
export const WEIGHTS_FORMAT = 'alexnet-ts/weights';

/** Bounds on what a model file may claim. */
export const RECORD_LIMITS = {
  classes: OPTION_LIMITS.numClasses,
  side: OPTION_LIMITS.inputSize,
  sourceSide: 2048,
  channels: 4,
  nameLength: 1000,
} as const;

export interface ModelRecord {
  model: string;
  modelOptions: AlexNetOptions;
  classes: string[];
  /** Image-folder models: the class folder names (the class index is the position); `classes` are display names. */
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

/** What a data set tells a model record: its name and classes, and how an input is made from it. */
export interface RecordData {
  name: string;
  classes: string[];
  classIds?: string[];
  preprocess: Preprocess;
  transform?: PhotoTransform;
  sourceShape?: number[];
}

/**
 * What a trained model keeps: the variant and its options (the data's classes and the input channels), the data
 * set's classes and preprocessing, and the validation split of a folder without val/.
 */
export function modelRecord(
  model: { name: string; options: AlexNetOptions },
  data: RecordData,
  inChannels: number,
  split?: { valSplit: number; seed: number },
): ModelRecord {
  return {
    model: model.name,
    modelOptions: { ...model.options, numClasses: data.classes.length, inChannels },
    classes: data.classes,
    classIds: data.classIds,
    preprocess: data.preprocess,
    sourceShape: data.sourceShape,
    dataset: data.name,
    transform: data.transform,
    split,
  };
}

/** The record as string metadata (safetensors `__metadata__`, ONNX `metadata_props`). */
export function recordMetadata(r: ModelRecord, format: string = WEIGHTS_FORMAT): Metadata {
  return {
    format,
    version: '1',
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

/** Reads and validates a record from string metadata; `file` names the source in errors. */
export function readRecord(m: Metadata, file: string): ModelRecord {
  const f = new FieldReader(file);
  const L = RECORD_LIMITS;
  const model = f.oneOf(
    'model',
    m.model,
    listModels().map((e) => e.name),
  );
  const modelOptions = readModelOptions(f, f.json('model_options', m.model_options));
  const label = (field: string) => (x: unknown) => f.str(field, x, L.nameLength);
  const classes = f.array('classes', f.json('classes', m.classes), 1, L.classes, label('classes'));
  if (modelOptions.numClasses !== undefined && modelOptions.numClasses !== classes.length) {
    f.fail('classes', `${modelOptions.numClasses} names (model_options.numClasses)`, `${classes.length} names`);
  }
  const classIds =
    m.class_ids === undefined
      ? undefined
      : f.array('class_ids', f.json('class_ids', m.class_ids), classes.length, classes.length, label('class_ids'));
  const sourceRaw = m.source_shape === undefined ? null : f.json('source_shape', m.source_shape);
  const sourceShape = sourceRaw === null ? undefined : readSourceShape(f, sourceRaw);
  const preprocess = readPreprocess(f, f.json('preprocess', m.preprocess));
  const transform = m.transform === undefined ? undefined : readTransform(f, f.json('transform', m.transform));
  const split = m.split === undefined ? undefined : readSplit(f, f.json('split', m.split));
  const dataset = m.dataset ? f.str('dataset', m.dataset) : undefined;
  return { model, modelOptions, classes, classIds, preprocess, sourceShape, dataset, transform, split };
}

function readModelOptions(f: FieldReader, v: unknown): AlexNetOptions {
  const o = f.object('model_options', v);
  const L = RECORD_LIMITS;
  const out: AlexNetOptions = {};
  if (o.numClasses !== undefined) out.numClasses = f.int('model_options.numClasses', o.numClasses, 1, L.classes);
  if (o.inChannels !== undefined) out.inChannels = f.int('model_options.inChannels', o.inChannels, 1, L.channels);
  if (o.dropout !== undefined) out.dropout = f.num('model_options.dropout', o.dropout, 0, 1);
  if (o.activation !== undefined) out.activation = f.oneOf('model_options.activation', o.activation, ACTIVATIONS);
  if (o.lrn !== undefined) out.lrn = f.oneOf('model_options.lrn', o.lrn, LRN_CHOICES);
  if (o.groups !== undefined) out.groups = f.int('model_options.groups', o.groups, 1, 2) as 1 | 2;
  if (o.pool !== undefined) {
    const side = (x: unknown) => f.int('model_options.pool', x, 1, OPTION_LIMITS.pool);
    out.pool = f.array('model_options.pool', o.pool, 2, 2, side) as [number, number];
  }
  if (o.widths !== undefined) {
    const width = (x: unknown) => f.int('model_options.widths', x, 1, OPTION_LIMITS.width);
    out.widths = f.array('model_options.widths', o.widths, 5, 5, width) as Widths;
  }
  if (o.inputSize !== undefined) {
    out.inputSize =
      typeof o.inputSize === 'number'
        ? f.int('model_options.inputSize', o.inputSize, 1, L.side)
        : (f.array('model_options.inputSize', o.inputSize, 2, 2, (x) =>
            f.int('model_options.inputSize', x, 1, L.side),
          ) as [number, number]);
  }
  return out;
}

function readSourceShape(f: FieldReader, v: unknown): number[] {
  const L = RECORD_LIMITS;
  return f.array('source_shape', v, 3, 3, (x, i) => f.int('source_shape', x, 1, i === 0 ? L.channels : L.sourceSide));
}

function readMeanStd(f: FieldReader, field: string, o: Record<string, unknown>): { mean: number[]; std: number[] } {
  const mean = f.array(`${field}.mean`, o.mean, 0, RECORD_LIMITS.channels, (x) => f.num(`${field}.mean`, x, -1e3, 1e3));
  const std = f.array(`${field}.std`, o.std, mean.length, mean.length, (x) =>
    f.num(`${field}.std`, x, 0, 1e3, { exclusiveMin: true }),
  );
  return { mean, std };
}

function readPreprocess(f: FieldReader, v: unknown): Preprocess {
  const o = f.object('preprocess', v);
  const side = (x: unknown) => f.int('preprocess.inputSize', x, 1, RECORD_LIMITS.side);
  const p: Preprocess = {
    inputSize: f.array('preprocess.inputSize', o.inputSize, 2, 2, side) as [number, number],
    resize: f.oneOf('preprocess.resize', o.resize, ['bilinear', 'pad'] as const),
    ...readMeanStd(f, 'preprocess', o),
  };
  if (o.shortSide !== undefined) p.shortSide = f.int('preprocess.shortSide', o.shortSide, 1, 2 * RECORD_LIMITS.side);
  return p;
}

function readTransform(f: FieldReader, v: unknown): PhotoTransform {
  const o = f.object('transform', v);
  const L = RECORD_LIMITS;
  const channels = f.int('transform.channels', o.channels, 1, L.channels);
  const eigval = f.array('transform.eigval', o.eigval, 0, channels, (x) => f.num('transform.eigval', x, -1e6, 1e6));
  const row = (x: unknown) =>
    f.array('transform.eigvec', x, channels, channels, (y) => f.num('transform.eigvec', y, -1e6, 1e6));
  return {
    augment: f.oneOf('transform.augment', o.augment, AUGMENTS),
    size: f.int('transform.size', o.size, 1, L.side),
    shortSide: f.int('transform.shortSide', o.shortSide, 1, 2 * L.side),
    flip: f.bool('transform.flip', o.flip),
    pcaStd: f.num('transform.pcaStd', o.pcaStd, 0, 1e3),
    eigval,
    eigvec: f.array('transform.eigvec', o.eigvec, eigval.length ? channels : 0, channels, row),
    ...readMeanStd(f, 'transform', o),
    channels,
  };
}

function readSplit(f: FieldReader, v: unknown): { valSplit: number; seed: number } {
  const o = f.object('split', v);
  return { valSplit: f.num('split.valSplit', o.valSplit, 0, 0.95), seed: f.int('split.seed', o.seed, 0, 2 ** 53) };
}
