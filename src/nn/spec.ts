// What a layer is, as data: `Module.spec()` returns one member of the LayerSpec union, and the code that reads a
// network without running it (the ONNX writer in io/, the oneDNN plan builder in runtime/, the paper's tower
// builder in distributed/, introspection) switches on `kind` instead of asking `instanceof` of each layer class.
// Types only: io/ reads these and never a layer class. Tensors are not part of a spec: a layer's parameters and
// buffers are read by their PyTorch keys (`${layer}.weight`, `${layer}.running_mean`) from a state dict, which a
// model built without weights (withoutWeights()) can also describe.
import type { Tensor } from '../tensor/tensor';

/** [height, width]. */
export type Pair = [number, number];

/** Conv2d: parameters `weight` (outChannels, inChannels / groups, ...kernel) and, with `bias`, `bias`. */
export interface Conv2dSpec {
  kind: 'conv2d';
  inChannels: number;
  outChannels: number;
  kernel: Pair;
  stride: Pair;
  padding: Pair;
  dilation: Pair;
  groups: number;
  bias: boolean;
}

/** Linear: parameters `weight` (outFeatures, inFeatures) and, with `bias`, `bias`. */
export interface LinearSpec {
  kind: 'linear';
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
}

export interface ReluSpec {
  kind: 'relu';
  inplace: boolean;
}

export interface TanhSpec {
  kind: 'tanh';
}

/** Identity in evaluation mode. */
export interface DropoutSpec {
  kind: 'dropout';
  p: number;
}

/** (N, ...) -> (N, product of the rest). */
export interface FlattenSpec {
  kind: 'flatten';
}

export interface MaxPool2dSpec {
  kind: 'maxPool2d';
  kernel: Pair;
  stride: Pair;
  padding: Pair;
  ceilMode: boolean;
}

/** Average pooling to a fixed output size: what it computes depends on the input size. */
export interface AdaptiveAvgPool2dSpec {
  kind: 'adaptiveAvgPool2d';
  size: Pair;
}

/**
 * Local response normalisation, b = a / (k + s · Σ a²)^β over `size` channels, with s = α / size when
 * `alphaPerSize` (the 'pytorch' convention) and s = α otherwise ('paper', 'tensorflow'); see LrnOptions. `groups`
 * channel groups are normalised each on its own.
 */
export interface LrnSpec {
  kind: 'lrn';
  convention: 'pytorch' | 'tensorflow' | 'paper';
  size: number;
  alpha: number;
  beta: number;
  k: number;
  alphaPerSize: boolean;
  groups: number;
}

/** BatchNorm2d: buffers `running_mean`, `running_var`, `num_batches_tracked`; with `affine`, `weight` and `bias`. */
export interface BatchNorm2dSpec {
  kind: 'batchNorm2d';
  numFeatures: number;
  eps: number;
  momentum: number;
  affine: boolean;
}

/** Its children run in order; they are named "0", "1", … */
export interface SequentialSpec {
  kind: 'sequential';
  children: LayerSpec[];
}

/** Any other module (a model, a tower, a user's own): its class name and its registered children. */
export interface ContainerSpec {
  kind: 'container';
  type: string;
  children: { name: string; spec: LayerSpec }[];
}

export type LayerSpec =
  | Conv2dSpec
  | LinearSpec
  | ReluSpec
  | TanhSpec
  | DropoutSpec
  | FlattenSpec
  | MaxPool2dSpec
  | AdaptiveAvgPool2dSpec
  | LrnSpec
  | BatchNorm2dSpec
  | SequentialSpec
  | ContainerSpec;

export type LayerKind = LayerSpec['kind'];

/** One layer of a network in execution order, at the network's input size. */
export interface LayerEntry {
  /** Its dotted name, the prefix of its state-dict keys (e.g. 'features.0'). */
  name: string;
  spec: LayerSpec;
  /** A one-line description for messages, e.g. "Conv2d(3, 64, kernel=11×11, stride=4, padding=2)". */
  description: string;
  /** Per-sample input and output shapes (no batch dimension). */
  input: number[];
  output: number[];
}

/** A whole network as data: what the ONNX writer and the plan builders are given instead of a model. */
export interface NetworkSpec {
  /** The model's name (e.g. the registry's 'alexnet-2012'). */
  name: string;
  /** Per-sample input shape (C, H, W). */
  input: number[];
  layers: LayerEntry[];
  /** Parameters and buffers by PyTorch key (the model's own tensors: do not dispose them). */
  weights: Map<string, Tensor>;
}
