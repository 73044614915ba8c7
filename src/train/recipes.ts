// Recipes: the defaults a model and data set start from. Every option a run is given overrides its recipe value.
import { Augment } from '../data/transforms';
import { Adam, Optimizer, SGD, TwoGroups } from '../optim/optimizer';
import { Tensor } from '../tensor/tensor';

export type OptimizerName = 'sgd' | 'sgd-paper' | 'adam';

/** How a run optimises: the part of a recipe that a run configuration keeps. */
export interface Optimization {
  optimizer: OptimizerName;
  lr: number;
  momentum: number;
  weightDecay: number;
  batchSize: number;
  evalBatchSize: number;
  epochs: number;
  /** constant, plateau or step:EPOCHS[:GAMMA]. */
  schedule: string;
}

export interface Recipe extends Optimization {
  name: string;
  model: string;
  augment: Augment;
}

/** IDX data sets (Fashion-MNIST, MNIST): Dive into Deep Learning's recipe. */
const D2L: Recipe = {
  name: "d2l's Fashion-MNIST recipe",
  model: 'alexnet-d2l',
  optimizer: 'sgd',
  lr: 0.01,
  momentum: 0,
  weightDecay: 0,
  batchSize: 128,
  evalBatchSize: 256,
  epochs: 10,
  schedule: 'constant',
  augment: 'none',
};

/** Image folders, per model: the cats-vs-dogs recipe, the paper's, and torchvision's reference recipe. */
const FOLDER: Record<string, Omit<Recipe, 'model'>> = {
  'alexnet-bn': {
    name: 'the BatchNorm cats-vs-dogs recipe',
    optimizer: 'adam',
    lr: 1e-4,
    momentum: 0,
    weightDecay: 0,
    batchSize: 64,
    evalBatchSize: 128,
    epochs: 20,
    schedule: 'constant',
    augment: 'torchvision',
  },
  'alexnet-2012': {
    name: "the paper's recipe",
    optimizer: 'sgd-paper',
    lr: 0.01,
    momentum: 0.9,
    weightDecay: 0.0005,
    batchSize: 128,
    evalBatchSize: 128,
    epochs: 90,
    schedule: 'plateau',
    augment: 'paper',
  },
  other: {
    name: "torchvision's reference recipe",
    optimizer: 'sgd',
    lr: 0.01,
    momentum: 0.9,
    weightDecay: 0.0005,
    batchSize: 128,
    evalBatchSize: 128,
    epochs: 90,
    schedule: 'step:30',
    augment: 'torchvision',
  },
};

/** The recipe for `model` (default: alexnet-d2l on IDX data, alexnet-bn on folders) on an IDX or folder data set. */
export function recipeFor(model: string | undefined, folder: boolean): Recipe {
  if (!folder) return { ...D2L, model: model ?? D2L.model };
  const m = model ?? 'alexnet-bn';
  return { ...(FOLDER[m] ?? FOLDER.other), model: m };
}

/** The learning rate an optimiser starts from when the command line changes the recipe's optimiser. */
export function defaultLr(optimizer: OptimizerName): number {
  return optimizer === 'adam' ? 0.001 : 0.01;
}

/**
 * The recipe's optimiser (SGD in PyTorch's or the paper's form, or Adam) over `named` parameters; with a head
 * learning rate, those whose names start with `headPrefix` learn at that rate in a group of their own.
 */
export function recipeOptimizer(
  o: Optimization & { headLr?: number },
  named: [string, Tensor][],
  headPrefix: string,
): Optimizer {
  const make = (params: Tensor[], lr: number): Optimizer =>
    o.optimizer === 'adam'
      ? new Adam(params, { lr, weightDecay: o.weightDecay })
      : new SGD(params, {
          lr,
          momentum: o.momentum,
          weightDecay: o.weightDecay,
          form: o.optimizer === 'sgd-paper' ? 'paper' : 'pytorch',
        });
  if (o.headLr === undefined)
    return make(
      named.map(([, p]) => p),
      o.lr,
    );
  const isHead = ([n]: [string, Tensor]) => n.startsWith(headPrefix);
  const body = named.filter((p) => !isHead(p)).map(([, p]) => p);
  const headParams = named.filter(isHead).map(([, p]) => p);
  return body.length ? new TwoGroups(make(body, o.lr), make(headParams, o.headLr)) : make(headParams, o.headLr);
}
