// Models by name. Each entry says where the architecture comes from and how it is usually trained.
import { UserError } from '../errors';
import { AlexNet, AlexNetOptions } from './alexnet';
import { alexnet2012 } from './alexnet-2012';
import { alexnetBn } from './alexnet-bn';
import { alexnetD2l } from './alexnet-d2l';
import { alexnetHalf } from './alexnet-half';
import { alexnetTorchvision } from './alexnet-torchvision';

export interface ModelEntry {
  name: string;
  description: string;
  build: (o?: AlexNetOptions) => AlexNet;
}

const MODELS: ModelEntry[] = [
  { name: 'alexnet-2012', description: 'the paper: 96-256-384-384-256, two-GPU groups, LRN, 227×227, 1000 classes', build: alexnet2012 },
  { name: 'alexnet-torchvision', description: "torchvision's 64-192-384-256-256 with adaptive pooling; loads its weights", build: alexnetTorchvision },
  { name: 'alexnet-d2l', description: 'Dive into Deep Learning: 1 channel, 224×224, 10 classes (Fashion-MNIST)', build: alexnetD2l },
  { name: 'alexnet-half', description: 'the 2048-unit classifier with Kaiming fan-out init', build: alexnetHalf },
  { name: 'alexnet-bn', description: 'BatchNorm after every conv, 227×227, 2 classes (cats vs dogs)', build: alexnetBn },
];

export function listModels(): ModelEntry[] {
  return MODELS.slice();
}

export function getModel(name: string, options: AlexNetOptions = {}): AlexNet {
  const entry = MODELS.find((m) => m.name === name);
  if (!entry) throw new UserError(`unknown model '${name}' (known models: ${MODELS.map((m) => m.name).join(', ')})`);
  return entry.build(options);
}

export { AlexNet };
export type { AlexNetOptions };
