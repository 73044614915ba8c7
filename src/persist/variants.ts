// Variant recognition for plain state dicts (torch.save .pth/.pt, or safetensors without our metadata): the variant
// is recognised from the keys and shapes (or named with `model`); 1000-class RGB models get ImageNet's class names
// and preprocessing (short side 256, centre crop 224, ImageNet mean/std, as torchvision's recipe).
import { UserError } from '../errors';
import { Preprocess } from '../data/loader';
import { AlexNet } from '../models/alexnet';
import { getModel } from '../models/registry';
import { Tensor } from '../tensor/tensor';
import { ModelRecord } from './record';
import IMAGENET_CLASSES from '../models/imagenet-classes.json';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];

/** Which registry variant a plain state dict belongs to, from its keys and shapes. */
export function recogniseVariant(sd: Map<string, Tensor>): { model: string; numClasses: number; inChannels: number } {
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
  return { model, numClasses, inChannels };
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
export function modelFromStateDict(sd: Map<string, Tensor>, o: { model?: string } = {}) {
  const v = recogniseVariant(sd);
  const name = o.model ?? v.model;
  const model = getModel(name, { numClasses: v.numClasses, inChannels: v.inChannels });
  model.loadStateDict(sd);
  for (const t of sd.values()) t.dispose();
  return { model: model.eval(), record: defaultRecord(model, v.numClasses) };
}
