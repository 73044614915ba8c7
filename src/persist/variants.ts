// Variant recognition for plain state dicts (torch.save .pth/.pt, or safetensors without our metadata): the variant
// is recognised from the keys and shapes (or named with `model`); 1000-class RGB models get ImageNet's class names
// and preprocessing (short side 256, centre crop 224, ImageNet mean/std, as torchvision's recipe).
import { UserError } from '../errors';
import { FASHION_MNIST_CLASSES, MNIST_CLASSES } from '../data/fashion-mnist';
import { folderPath, scanImageFolder } from '../data/image-folder';
import { Preprocess } from '../data/loader';
import { presetTransform } from '../data/transforms';
import { AlexNet } from '../models/alexnet';
import { getModel } from '../models/registry';
import { Tensor } from '../tensor/tensor';
import { ModelRecord } from './record';
import IMAGENET_CLASSES from '../models/imagenet-classes.json';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

/** Which registry variant a plain state dict belongs to, from its keys and shapes. */
export function recogniseVariant(sd: Map<string, Tensor>): {
  model: string;
  numClasses: number;
  inChannels: number;
  head: string;
} {
  const shape = (k: string) => sd.get(k)?.shape;
  const conv1 = shape('features.0.weight');
  if (!conv1 || conv1.length !== 4)
    throw new UserError(
      `the weights have no features.0.weight convolution: not an AlexNet state dict (keys: ${[...sd.keys()].slice(0, 5).join(', ')}, …)`,
    );
  const lastFc = [...sd.keys()]
    .filter((k) => /^classifier\.\d+\.weight$/.test(k))
    .sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]))
    .pop();
  if (!lastFc) throw new UserError('the weights have no classifier layers: not an AlexNet state dict');
  const numClasses = shape(lastFc)![0];
  const inChannels = conv1[1];
  let model: string;
  if (shape('features.1.running_mean')) model = 'alexnet-bn';
  else if (conv1[0] === 64) model = 'alexnet-torchvision';
  else if (shape('features.4.weight') && shape('features.12.weight')) model = 'alexnet-2012';
  else if (shape('classifier.0.weight')) model = 'alexnet-d2l';
  else if (shape('classifier.1.weight')?.[0] === 2048) model = 'alexnet-half';
  else throw new UserError('these weights do not match any known AlexNet variant; name one with --model');
  return { model, numClasses, inChannels, head: lastFc.slice(0, -'.weight'.length) };
}

function defaultRecord(model: AlexNet, numClasses: number): ModelRecord {
  const [c, h, w] = model.inputShape;
  const imagenet = c === 3;
  const preprocess: Preprocess = imagenet
    ? {
        inputSize: [h, w],
        resize: 'bilinear',
        mean: IMAGENET_MEAN,
        std: IMAGENET_STD,
        shortSide: Math.round((Math.min(h, w) * 256) / 224),
      }
    : { inputSize: [h, w], resize: 'bilinear', mean: [], std: [] };
  const classes =
    numClasses === 1000 && imagenet
      ? (IMAGENET_CLASSES as string[])
      : Array.from({ length: numClasses }, (_, i) => `class ${i}`);
  return {
    model: model.name,
    modelOptions: { numClasses, inChannels: c, inputSize: [h, w] as [number, number] },
    classes,
    preprocess,
    sourceShape: undefined,
    dataset: undefined,
  };
}

/** Builds the model for a plain state dict and loads it (strictly: one error lists every key that does not fit). */
export function modelFromStateDict(
  sd: Map<string, Tensor>,
  o: { model?: string } = {},
): { model: AlexNet; record: ModelRecord; stateDict: StateDictFacts } {
  const v = recogniseVariant(sd);
  const name = o.model ?? v.model;
  const model = getModel(name, { numClasses: v.numClasses, inChannels: v.inChannels });
  try {
    model.loadStateDict(sd);
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    for (const t of sd.values()) t.dispose();
  }
  return { model: model.eval(), record: defaultRecord(model, v.numClasses), stateDict: { head: v.head } };
}

/** What a plain state dict told about itself: only its layers (the head's name, for messages). */
export interface StateDictFacts {
  head: string;
}

/** The data a plain state dict is run on: `folder:PATH`, `fashion-mnist` or `mnist`. */
export interface DataChoice {
  dataset?: string;
  /**
   * false: the data set's classes label the images whatever the model's head (features need no class match); the
   * head's names are kept only where they name the data set's classes (ImageNet's names on class folders).
   */
  matchClasses?: boolean;
}

/**
 * A plain state dict's record fitted to the data set it is run on, since a .pth carries no preprocessing and no
 * class names: ImageNet's mean and std for 3-channel weights (the data set's for 1-channel ones), the classes
 * counted from the head and named by the data set (ImageNet's 1000 by the folders' names), and one line that says so.
 */
export function fitStateDictRecord(
  loaded: { model: AlexNet; record: ModelRecord; stateDict: StateDictFacts },
  file: string,
  o: DataChoice,
): { record: ModelRecord; note: string } {
  const { model, record } = loaded;
  const [c, h, w] = model.inputShape;
  const n = record.classes.length;
  const imagenetHead = n === 1000 && c === 3;
  const root = folderPath(o.dataset);
  const heads = `${n} classes (counted from ${loaded.stateDict.head})`;
  const prep =
    c === 3
      ? `ImageNet's mean and std${root !== undefined ? `, short side ${record.preprocess.shortSide}, centre crop ${h}` : ', the grey images repeated in 3 channels'}`
      : root !== undefined
        ? 'grey mean 0.449 and std 0.226'
        : 'no normalisation (as this data set is trained here)';
  const lead = `${file} is a PyTorch state dict with no preprocessing or class names: ${model.name}, ${c} input channel(s) at ${h}×${w}, ${heads}; using ${prep}`;
  if (root === undefined) {
    const name = o.dataset === 'mnist' ? 'mnist' : 'fashion-mnist';
    const classes = name === 'mnist' ? MNIST_CLASSES : FASHION_MNIST_CLASSES;
    if (o.dataset !== undefined && o.dataset !== name)
      throw new UserError(`--dataset must be folder:PATH, fashion-mnist or mnist, got '${o.dataset}'`);
    const same = classes.length === n;
    if (!same && o.matchClasses !== false) throw classMismatch(file, heads, `${name} has ${classes.length}`);
    const preprocess: Preprocess = c === 3 ? record.preprocess : { ...record.preprocess, mean: [], std: [] };
    const own = same || o.matchClasses === false;
    const fitted = { ...record, dataset: name, preprocess, classes: own ? [...classes] : record.classes };
    return { record: fitted, note: `${lead}; ${own ? `${name}'s class names` : 'numbered classes'}` };
  }
  const folder = scanImageFolder(root, { valSplit: 0.1, seed: 0 });
  let classIds = folder.classIds;
  let classes = folder.classes;
  const unknown = imagenetHead ? folder.classIds.filter((id) => !record.classes.includes(id)) : [];
  if (unknown.length && o.matchClasses !== false)
    throw new UserError(
      `${file} has ImageNet's 1000 classes, matched to class folders by ImageNet's class names (tench, goldfish, …), but ${root} has folders named otherwise: ${unknown.slice(0, 5).join(', ')}`,
    );
  if (!imagenetHead && folder.classIds.length !== n && o.matchClasses !== false)
    throw classMismatch(file, heads, `${root} has ${folder.classIds.length}`);
  const byName = imagenetHead && !unknown.length;
  if (byName) classIds = classes = record.classes;
  const grey = c === 1 ? { mean: [0.449], std: [0.226], pcaStd: 0, eigval: [], eigvec: [] } : {};
  const transform = presetTransform('torchvision', h, { channels: c, shortSide: record.preprocess.shortSide, ...grey });
  const preprocess: Preprocess = { ...record.preprocess, mean: transform.mean, std: transform.std };
  const fitted = { ...record, dataset: `folder:${root}`, classIds, classes, transform, preprocess };
  const named = byName ? "ImageNet's class names (the folders' names)" : "the class folders' names, in sorted order";
  return { record: fitted, note: `${lead}; ${named}` };
}

function classMismatch(file: string, heads: string, data: string): UserError {
  return new UserError(
    `${file} has ${heads} but ${data}: a state dict is evaluated on a data set with as many classes as its head`,
  );
}
