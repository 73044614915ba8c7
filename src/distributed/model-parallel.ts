// The paper's model parallelism (Krizhevsky et al. 2012, section 3.2): two "GPUs", each holding half the kernels of
// every layer, exchanging activations only where the paper's GPUs communicate — into conv3 and into each fully
// connected layer. Here a GPU is a rank (a tower). A tower is a sequence of segments separated by exchange points;
// each segment runs on its own detached input, so exact gradients need no custom autograd function: backward goes
// segment by segment from the loss, and at each exchange the gradient of the gathered input (both towers' maps) is
// summed over the ranks and each rank keeps its own half.
//
// The split of the one-process alexnet-2012 (what the tower computes, to float32 summation order):
// - conv1 (image → 48 of 96), conv2, conv4, conv5 (grouped: own maps only) and each LRN (per tower) need nothing
//   from the other rank; conv3 reads both towers' conv2 maps (allgather), FC6 both towers' conv5 maps, FC7 both
//   towers' FC6 outputs.
// - FC6 and FC7: each rank holds half the rows (output units). FC8: each rank holds the columns for its own half of
//   FC7's outputs; the two partial products are summed (allreduce), the bias added once (rank 0 holds it).
// - Dropout before FC6 and FC7 drops the producing rank's own units before the exchange, so both ranks see the same
//   mask (cuda-convnet's placement); in evaluation mode it is the identity, as in one process.
import { UserError } from '../errors';
import { AlexNet, AlexNetOptions } from '../models/alexnet';
import { getModel } from '../models/registry';
import {
  Conv2d,
  Conv2dSpec,
  F,
  LayerEntry,
  layerFromSpec,
  Linear,
  LinearSpec,
  Module,
  Sequential,
  StateDict,
  withoutWeights,
} from '../nn';
import { Optimizer } from '../optim/optimizer';
import { cat, noGrad, Tensor, tidy, zeros } from '../tensor/tensor';
import { ProcessGroup } from './c10d';

/** Model parallelism's collectives between the two towers (a process group, or two towers in one process). */
export interface Exchange {
  readonly rank: number;
  /** Both towers' `t`, in rank order: new tensors (the caller disposes them); `t` is left as it is. */
  allgather(t: Tensor): Promise<Tensor[]>;
  /** The elementwise sum of both towers' `t`: a new tensor; `t` is left as it is. */
  allreduceSum(t: Tensor): Promise<Tensor>;
}

/**
 * How one tower parameter relates to the one-process state dict: rows (0) or columns (1) rank·n … rank·n + n − 1
 * of the full tensor, or 'rank0': the whole tensor held by rank 0 only (FC8's bias; `param` undefined on rank 1).
 */
export interface Shard {
  key: string;
  param: Tensor | undefined;
  split: 0 | 1 | 'rank0';
  /** The full (one-process) tensor's shape. */
  fullShape: number[];
}

/** One rank's half of the network: segments[0] reads the image, each later one the allgather of the one before. */
export class Tower extends Module {
  readonly segments: Sequential[];

  constructor(
    readonly rank: number,
    segments: Module[][],
    readonly shards: Shard[],
  ) {
    super();
    this.segments = segments.map((layers, i) => this.registerModule(String(i), new Sequential(...layers)));
  }

  forward(): Tensor {
    throw new UserError('a Tower runs with its Exchange: towerForward(tower, exchange, x)');
  }

  /** The tower's part of the full tensor under `key` (a copy), e.g. an optimiser's momentum on resume. */
  slice(key: string, full: Tensor): Tensor | undefined {
    const s = this.shards.find((x) => x.key === key);
    if (!s) throw new UserError(`the tower has no parameter for '${key}'`);
    return sliceFor(this.rank, s.split, full);
  }
}

function sliceFor(rank: number, split: Shard['split'], full: Tensor): Tensor | undefined {
  if (split === 'rank0') return rank === 0 ? noGrad(() => full.clone()) : undefined;
  const n = full.size(split) / 2;
  return noGrad(() => full.narrow(split, rank * n, n).clone());
}

/** Where the towers exchange, as they walk the one-process layers. */
interface Walk {
  rank: number;
  sd: StateDict;
  segments: Module[][];
  shards: Shard[];
  convs: number;
  linears: number;
  totalLinears: number;
}

/**
 * Rank `rank`'s tower of the paper's two-GPU alexnet-2012: its half of every layer sliced from `from` (the
 * one-process model, or its state dict with the options it was built with). Every rank must use the same weights
 * (e.g. build the model from the same seed, or load the same checkpoint). The tower starts in the model's mode
 * (training for a state dict). Building it draws from the random generator (its layers' default initialisation).
 */
export function buildTower(rank: number, from: AlexNet | StateDict, options: AlexNetOptions = {}): Tower {
  if (rank !== 0 && rank !== 1) throw new UserError(`model parallelism has two ranks (0 and 1), got rank ${rank}`);
  const model = from instanceof AlexNet ? from : withoutWeights(() => getModel('alexnet-2012', options));
  const net = model.networkSpec();
  const sd = from instanceof AlexNet ? net.weights : from;
  const totalLinears = net.layers.filter((l) => l.spec.kind === 'linear').length;
  const walk: Walk = { rank, sd, segments: [[]], shards: [], convs: 0, linears: 0, totalLinears };
  for (const layer of net.layers) {
    const m = towerModule(walk, layer); // first: it may start a segment
    current(walk).push(m);
  }
  const tower = new Tower(rank, walk.segments, walk.shards);
  return model.training ? tower.train() : tower.eval();
}

const current = (w: Walk) => w.segments[w.segments.length - 1];

/**
 * Rank w.rank's part of a layer of the one-process model; a layer that reads both towers starts a segment. Layers
 * that work on each channel (or feature) by itself are copied whole: they work on a tower's maps as on all of them.
 * Flatten is channel-major: rank r's maps are one contiguous block of the flattened features, so gathering them in
 * rank order gives the one-process order. Dropout drops the producing rank's own units, before the exchange.
 */
function towerModule(w: Walk, layer: LayerEntry): Module {
  const { name, spec } = layer;
  switch (spec.kind) {
    case 'conv2d':
      return towerConv(w, layer, spec);
    case 'linear':
      return ++w.linears === w.totalLinears ? lastLinear(w, name, spec) : hiddenLinear(w, name, spec);
    case 'lrn':
      if (spec.groups !== 2) throw unsupported(layer, 'the LRN must normalise each tower on its own (groups 2)');
      return layerFromSpec({ ...spec, groups: 1 });
    case 'dropout':
    case 'relu':
    case 'tanh':
    case 'maxPool2d':
    case 'adaptiveAvgPool2d':
    case 'flatten':
      return layerFromSpec(spec);
    case 'batchNorm2d':
    case 'sequential':
    case 'container':
      throw unsupported(layer, 'only convolutions, LRN, pooling, activations, dropout and linear layers split');
    default: {
      const unknown: never = spec;
      throw unsupported(layer, `unknown layer kind '${(unknown as { kind: string }).kind}'`);
    }
  }
}

/** Half the kernels: conv1 reads the image, a grouped conv its own tower's maps, other convs both towers' (conv3). */
function towerConv(w: Walk, layer: LayerEntry, m: Conv2dSpec): Conv2d {
  const { name } = layer;
  if (m.groups !== 1 && m.groups !== 2) throw unsupported(layer, 'groups must be 1 or 2');
  if (w.convs++ > 0 && m.groups === 1) w.segments.push([]);
  const inChannels = m.groups === 2 ? m.inChannels / 2 : m.inChannels;
  const conv = new Conv2d(inChannels, half(name, m.outChannels), m.kernel, {
    stride: m.stride,
    padding: m.padding,
    dilation: m.dilation,
    bias: hasBias(w, name),
  });
  copyShard(w, `${name}.weight`, conv.weight, 0);
  if (conv.bias) copyShard(w, `${name}.bias`, conv.bias, 0);
  return conv;
}

/** FC6, FC7: half the output units, reading both towers' features. */
function hiddenLinear(w: Walk, name: string, m: LinearSpec): Linear {
  w.segments.push([]);
  const fc = new Linear(m.inFeatures, half(name, m.outFeatures), { bias: hasBias(w, name) });
  copyShard(w, `${name}.weight`, fc.weight, 0);
  if (fc.bias) copyShard(w, `${name}.bias`, fc.bias, 0);
  return fc;
}

/** FC8: the columns for this tower's half of FC7's outputs; the bias on rank 0 only (the partial sums add up). */
function lastLinear(w: Walk, name: string, m: LinearSpec): Linear {
  const withBias = hasBias(w, name) && w.rank === 0;
  const fc = new Linear(half(name, m.inFeatures), m.outFeatures, { bias: withBias });
  copyShard(w, `${name}.weight`, fc.weight, 1);
  if (hasBias(w, name)) {
    const key = `${name}.bias`;
    w.shards.push({ key, param: fc.bias, split: 'rank0', fullShape: full(w, key).shape });
    if (fc.bias) adopt(fc.bias, sliceFor(0, 'rank0', full(w, key))!);
  }
  return fc;
}

function copyShard(w: Walk, key: string, param: Tensor, split: 0 | 1): void {
  const source = full(w, key);
  w.shards.push({ key, param, split, fullShape: source.shape });
  adopt(param, sliceFor(w.rank, split, source)!);
}

/** The parameter takes the slice's data as it is: dtype, device and memory format of the one-process tensor. */
function adopt(param: Tensor, slice: Tensor): void {
  if (slice.shape.join() !== param.shape.join())
    throw new UserError(
      `model parallelism: a slice of [${slice.shape}] does not fit a tower layer of [${param.shape}]`,
    );
  param._adopt(slice);
  param.requiresGrad_(true);
}

/** From the weights: a model built from a state dict is shape-only (its layers hold no tensors to ask). */
const hasBias = (w: Walk, name: string) => w.sd.has(`${name}.bias`);

function full(w: Walk, key: string): Tensor {
  const t = w.sd.get(key);
  if (!t) throw new UserError(`model parallelism: the state dict has no '${key}'`);
  return t;
}

function half(name: string, n: number): number {
  if (n % 2 !== 0) throw new UserError(`model parallelism splits ${name}'s ${n} units in two: it needs an even count`);
  return n / 2;
}

function unsupported(layer: LayerEntry, why: string): UserError {
  return new UserError(`model parallelism cannot split ${layer.name} (${layer.description}): ${why}`);
}

/** One forward pass of a tower: each segment's (detached) input and output, and the summed logits. */
export interface TowerPass {
  inputs: Tensor[];
  outputs: Tensor[];
  /** Both towers' partial logits summed: a leaf that requires grad, so a loss on it gives d(loss)/d(logits). */
  logits: Tensor;
}

/**
 * Runs the tower on the image batch `x` (every rank the same batch); both ranks must call it together. With
 * `grad: false` (evaluation) nothing is recorded for backward.
 */
export async function towerForward(
  tower: Tower,
  exchange: Exchange,
  x: Tensor,
  o: { grad?: boolean } = {},
): Promise<TowerPass> {
  const grad = o.grad ?? true;
  const pass: TowerPass = { inputs: [], outputs: [], logits: undefined as unknown as Tensor };
  try {
    for (const [i, segment] of tower.segments.entries()) {
      const input = i === 0 ? x : await gathered(exchange, pass.outputs[i - 1], grad);
      if (i > 0) pass.inputs.push(input);
      pass.outputs.push(grad ? segment.forward(input) : noGrad(() => segment.forward(input)));
    }
    pass.logits = (await exchange.allreduceSum(pass.outputs[pass.outputs.length - 1])).requiresGrad_(grad);
    return pass;
  } catch (e) {
    disposePass(pass);
    throw e;
  }
}

/** The logits of the two-tower model for `x` (evaluation, prediction): both ranks call it and get the same. */
export async function towerLogits(tower: Tower, exchange: Exchange, x: Tensor): Promise<Tensor> {
  const pass = await towerForward(tower, exchange, x, { grad: false });
  const logits = pass.logits;
  pass.logits = undefined as unknown as Tensor;
  disposePass(pass);
  return logits;
}

/** Both towers' `own` side by side on dim 1 (channels or features, rank order): a leaf (that requires grad). */
async function gathered(exchange: Exchange, own: Tensor, grad: boolean): Promise<Tensor> {
  const detached = own.detach();
  const parts = await exchange.allgather(detached);
  detached.dispose();
  try {
    return cat(parts, 1).requiresGrad_(grad);
  } finally {
    for (const p of parts) p.dispose();
  }
}

/**
 * Backward through the tower from `loss` (computed from pass.logits): each segment's output gets the gradient of
 * its share; at each exchange the gradient of the gathered input is summed over both ranks and the own half passed
 * on. Parameter gradients accumulate in the tower's parameters. Both ranks must call it together.
 */
export async function towerBackward(tower: Tower, exchange: Exchange, pass: TowerPass, loss: Tensor): Promise<void> {
  loss.backward();
  // d(loss)/d(partial logits) = d(loss)/d(logits): the partial products are summed.
  let grad = pass.logits.grad!;
  for (let i = tower.segments.length - 1; i >= 0; i--) {
    pass.outputs[i].backward(grad);
    grad.dispose();
    if (i === 0) break;
    const input = pass.inputs[i - 1];
    const both = input.grad!;
    const summed = await exchange.allreduceSum(both);
    both.dispose();
    const n = summed.size(1) / 2;
    grad = summed.narrow(1, tower.rank * n, n).contiguous();
    summed.dispose();
  }
}

export function disposePass(pass: TowerPass): void {
  for (const t of [...pass.inputs, ...pass.outputs, pass.logits]) t?.dispose();
}

/**
 * One training step of the two-tower model on the batch (x, y) (the same on both ranks): forward, cross-entropy,
 * backward, and the optimiser's step and zeroGrad when one is given (each rank steps its own half). Returns the
 * loss (the same on both ranks).
 */
export async function towerTrainStep(
  tower: Tower,
  exchange: Exchange,
  x: Tensor,
  y: Tensor,
  o: { optimizer?: Optimizer } = {},
): Promise<number> {
  const pass = await towerForward(tower, exchange, x);
  const loss = F.crossEntropy(pass.logits, y);
  try {
    await towerBackward(tower, exchange, pass, loss);
    if (o.optimizer) {
      o.optimizer.step();
      o.optimizer.zeroGrad();
    }
    return loss.item();
  } finally {
    loss.dispose();
    disposePass(pass);
  }
}

/**
 * Gathers both towers' halves into the one-process layout, on every rank (rank 0 saves it): for each one-process
 * key, `pick(param)` of each tower's part (undefined: zeros). assembleStateDict and assembleGradients are the usual
 * picks; an optimiser's per-parameter state (momentum) assembles the same way. `pick` returns a tensor this
 * function disposes: a new handle (`t.detach()` of a tensor that must live on). Both ranks must call it together.
 */
export async function assembleShards(
  tower: Tower,
  exchange: Exchange,
  pick: (param: Tensor) => Tensor | undefined,
): Promise<StateDict> {
  const out: StateDict = new Map();
  const like = tower.parameters()[0];
  for (const s of tower.shards) {
    const own = (s.param && pick(s.param)) ?? zeros(shardShape(s), { dtype: like.dtype, device: like.device });
    if (s.split === 'rank0') out.set(s.key, await exchange.allreduceSum(own));
    else {
      const parts = await exchange.allgather(own);
      out.set(s.key, cat(parts, s.split));
      for (const p of parts) p.dispose();
    }
    own.dispose();
  }
  return out;
}

function shardShape(s: Shard): number[] {
  if (s.split === 'rank0') return s.fullShape;
  const shape = [...s.fullShape];
  shape[s.split] /= 2;
  return shape;
}

/** The one-process state dict (alexnet-2012's keys) from both towers' weights; new tensors on every rank. */
export function assembleStateDict(tower: Tower, exchange: Exchange): Promise<StateDict> {
  return assembleShards(tower, exchange, (p) => p.detach());
}

/** The one-process gradients by state-dict key (what one process's backward would give), on every rank. */
export function assembleGradients(tower: Tower, exchange: Exchange): Promise<StateDict> {
  return assembleShards(tower, exchange, (p) => p.grad);
}

/** The exchange between two ranks of a c10d process group (Gloo): allgather, and an allreduce waited off the thread. */
export function processGroupExchange(pg: ProcessGroup): Exchange {
  if (pg.size !== 2)
    throw new UserError(`the paper's model parallelism runs on 2 ranks (its two GPUs), got a world size of ${pg.size}`);
  return {
    rank: pg.rank,
    allgather: async (t) => {
      const dense = t.contiguous();
      try {
        return pg.allgather(dense);
      } finally {
        if (dense !== t) dense.dispose();
      }
    },
    allreduceSum: async (t) => {
      const sum = noGrad(() => tidy(() => t.detach().contiguous().clone())); // NCHW: what Gloo sends as is
      await pg.allreduceAsync(sum);
      return sum;
    },
  };
}

/**
 * Two towers in one process: exchange i of one side meets exchange i of the other (the towers run step-locked on
 * one thread, each awaiting the other at every exchange). For tests and for checking the split without processes.
 */
export function inProcessExchanges(): [Exchange, Exchange] {
  const rounds = new Map<number, { op: string; tensors: Tensor[]; resolve: ((ts: Tensor[]) => void)[] }>();
  const count = [0, 0];
  // Each side gets its own handles on both tensors (detach: the same memory, no copy); the senders leave their
  // tensors alone until their promises settle, and every consumer makes new tensors from them (cat, add).
  const meet = (rank: number, op: string, t: Tensor): Promise<Tensor[]> =>
    new Promise((resolve, reject) => {
      const i = count[rank]++;
      const round = rounds.get(i) ?? { op, tensors: [], resolve: [] };
      rounds.set(i, round);
      if (round.op !== op) return reject(new Error(`the towers disagree at exchange ${i}: ${round.op} and ${op}`));
      round.tensors[rank] = t.detach();
      round.resolve[rank] = resolve;
      if (round.resolve.filter(Boolean).length < 2) return;
      rounds.delete(i);
      for (const side of [0, 1]) round.resolve[side](round.tensors.map((x) => x.detach()));
      for (const x of round.tensors) x.dispose();
    });
  const side = (rank: number): Exchange => ({
    rank,
    allgather: (t) => meet(rank, 'allgather', t),
    allreduceSum: async (t) => {
      const [a, b] = await meet(rank, 'allreduceSum', t);
      const sum = a.add(b);
      a.dispose();
      b.dispose();
      return sum;
    },
  });
  return [side(0), side(1)];
}
