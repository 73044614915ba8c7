// Models by name. Each entry says where the architecture comes from and how it is usually trained.
import { UserError } from '../errors';
import { withoutWeights } from '../nn';
import { AlexNet, AlexNetOptions, ModelDescription } from './alexnet';
import { alexnet2012 } from './alexnet-2012';
import { alexnetBn } from './alexnet-bn';
import { alexnetD2l } from './alexnet-d2l';
import { alexnetHalf } from './alexnet-half';
import { alexnetTorchvision } from './alexnet-torchvision';
import { convnetCifar } from './convnet-cifar';
import { checkParameterBudget } from './budget';

export interface ModelEntry {
  name: string;
  description: string;
  build: (o?: AlexNetOptions) => AlexNet;
}

const MODELS: ModelEntry[] = [
  {
    name: 'alexnet-2012',
    description: 'the paper: 96-256-384-384-256, two-GPU groups, LRN, 227×227, 1000 classes',
    build: alexnet2012,
  },
  {
    name: 'alexnet-torchvision',
    description: "torchvision's 64-192-384-256-256 with adaptive pooling; loads its weights",
    build: alexnetTorchvision,
  },
  {
    name: 'alexnet-d2l',
    description: 'Dive into Deep Learning: 1 channel, 224×224, 10 classes (Fashion-MNIST)',
    build: alexnetD2l,
  },
  { name: 'alexnet-half', description: 'the 2048-unit classifier with Kaiming fan-out init', build: alexnetHalf },
  {
    name: 'alexnet-bn',
    description: 'BatchNorm after every conv, 227×227, 2 classes (cats vs dogs)',
    build: alexnetBn,
  },
  {
    name: 'convnet-cifar',
    description: "cuda-convnet's layers-18pct (Fig. 1's four-layer net): 32-32-64 5×5, rnorm, 32×32, 10 classes",
    build: convnetCifar,
  },
];

export function listModels(): ModelEntry[] {
  return MODELS.slice();
}

function entry(name: string): ModelEntry {
  const e = MODELS.find((m) => m.name === name);
  if (!e) throw new UserError(`unknown model '${name}' (known models: ${MODELS.map((m) => m.name).join(', ')})`);
  return e;
}

/**
 * Builds a model with freshly initialised float32 weights on the CPU. The options are checked first (ranges, an
 * input large enough for every layer) and so is the size: a model over the parameter limit (budget.ts) is refused
 * with a UserError before any weight is allocated.
 */
export function getModel(name: string, options: AlexNetOptions = {}): AlexNet {
  const e = entry(name);
  checkParameterBudget(describeModel(name, options), options, (o) => describeModel(name, o));
  return e.build(options);
}

/**
 * The layer table and totals of a model, computed from the same builder as getModel but without allocating
 * anything (the layers are built inside withoutWeights(): shapes only), so any size can be described quickly.
 * Options are validated as for getModel; the parameter limit does not apply.
 */
export function describeModel(name: string, options: AlexNetOptions = {}): ModelDescription {
  const e = entry(name);
  return withoutWeights(() => e.build(options)).summary();
}

export { AlexNet };
export type { AlexNetOptions, ModelDescription };
