// The shape shared by every AlexNet variant: three named blocks (features, avgpool, classifier) and a four-line
// forward, as torchvision's models/alexnet.py. Variants differ only in the layers they put in the blocks.
import { ShapeError, UserError } from '../errors';
import { isFloating } from '../tensor/dtype';
import { noGrad, Tensor, tidy } from '../tensor/tensor';
import {
  BatchNorm2d,
  Conv2d,
  Flatten,
  LayerEntry,
  LayerShapeError,
  LocalResponseNorm,
  MaxPool2d,
  Module,
  NetworkSpec,
  ReLU,
  Sequential,
  Tanh,
} from '../nn';

export interface AlexNetOptions {
  /** Output classes (the last Linear layer's size). */
  numClasses?: number;
  /** Input channels: 3 for RGB, 1 for grayscale. */
  inChannels?: number;
  /** Dropout probability in the classifier. */
  dropout?: number;
  /** Input height and width (a number for a square input). */
  inputSize?: number | [number, number];
  /** The activation after each convolution and hidden fully connected layer (default relu; tanh: paper Fig. 1). */
  activation?: Activation;
  /**
   * Local response normalisation after the first two convolutions' activations: 'paper' (k 2, n 5, α 1e-4, β 0.75,
   * α as is), 'pytorch' (the same numbers in PyTorch's convention, α divided by n: 5× weaker) or 'none'. Default:
   * the variant's ('paper' for alexnet-2012, 'none' elsewhere).
   */
  lrn?: LrnChoice;
  /** Max pooling [kernel, stride] after conv1, conv2 and conv5 (default [3, 2]: the paper's overlapping pooling). */
  pool?: [number, number];
  /**
   * 2: conv2, conv4 and conv5 see only their own half of the channels, and each half's LRN only its own maps (the
   * paper's two GPUs); 1: all.
   */
  groups?: 1 | 2;
  /** The five convolutions' kernel counts (default: the variant's, e.g. 96-256-384-384-256). */
  widths?: Widths;
}

export type Activation = 'relu' | 'tanh';
export const ACTIVATIONS: Activation[] = ['relu', 'tanh'];
export type LrnChoice = 'paper' | 'pytorch' | 'none';
export const LRN_CHOICES: LrnChoice[] = ['paper', 'pytorch', 'none'];
export type Widths = [number, number, number, number, number];

export interface AlexNetSpec {
  /** The registry name, e.g. 'alexnet-torchvision'. */
  name: string;
  /** Per-sample input shape (C, H, W). */
  input: [number, number, number];
  features: Sequential;
  /** Present when the variant pools to a fixed size (then any input that is large enough works). */
  avgpool?: Module;
  /** Builds the classifier for the number of features that reach it. */
  classifier: (inFeatures: number) => Sequential;
  /**
   * The variant's weight initialisation, run (without autograd) once the model is built, after each layer's
   * PyTorch default; skipped for a shape-only model (built inside withoutWeights(), which has no tensors).
   */
  init?: (model: AlexNet) => void;
}

export interface LayerRow {
  name: string;
  layer: string;
  outputShape: number[];
  params: number;
  macs: number;
}

/** A model's layer table and totals for one per-sample input shape: what `alexnet summary` prints. */
export interface ModelDescription {
  /** The registry name. */
  name: string;
  /** Per-sample input shape (C, H, W). */
  input: [number, number, number];
  rows: LayerRow[];
  totalParams: number;
  /** Multiply-accumulates per image (conv and linear layers). */
  totalMacs: number;
  /** Whether the classifier was built for this one input size (no adaptive pooling). */
  fixedInputSize: boolean;
}

type Named = [string, Module];

/** (N, C, H, W) float -> (N, numClasses) logits. */
export class AlexNet extends Module {
  readonly name: string;
  readonly inputShape: [number, number, number];
  readonly features: Sequential;
  readonly avgpool: Module | undefined;
  readonly classifier: Sequential;
  readonly #flatten = new Flatten();
  #memoryFormat: 'contiguous' | 'channelsLast' = 'contiguous';

  constructor(spec: AlexNetSpec) {
    super();
    this.name = spec.name;
    this.inputShape = spec.input;
    this.features = this.registerModule('features', spec.features);
    if (spec.avgpool) this.avgpool = this.registerModule('avgpool', spec.avgpool);
    const pooled = this.traceBody(spec.input);
    this.classifier = this.registerModule('classifier', spec.classifier(pooled.reduce((a, b) => a * b, 1)));
    if (spec.init && !this.shapeOnly) noGrad(() => spec.init!(this));
  }

  /**
   * The layout of conv weights and activations: 'contiguous' (NCHW, as PyTorch builds it) or 'channelsLast'. Which
   * one runs fastest is the runtime's policy (`prepareModel` in src/runtime/device.ts), not the model's.
   */
  get memoryFormat(): 'contiguous' | 'channelsLast' {
    return this.#memoryFormat;
  }
  setMemoryFormat(f: 'contiguous' | 'channelsLast'): this {
    this.to({ memoryFormat: f });
    this.#memoryFormat = f;
    return this;
  }

  forward(x: Tensor): Tensor {
    if (this.shapeOnly) throw this.shapeOnlyError();
    this.checkInput(x);
    return tidy(() => {
      const input = x.isContiguous(this.#memoryFormat) ? x : x.to({ memoryFormat: this.#memoryFormat });
      const f = this.features.forward(input);
      const p = this.avgpool ? this.avgpool.forward(f) : f;
      return this.classifier.forward(this.#flatten.forward(p));
    });
  }

  /** The output of the layer named `name` (as layers() names it) for `x`: embeddings for reuse (alexnet features). */
  forwardTo(x: Tensor, name: string): Tensor {
    if (this.shapeOnly) throw this.shapeOnlyError();
    this.checkInput(x);
    const layers = this.layers();
    const upTo = layers.findIndex(([n]) => n === name);
    if (upTo < 0)
      throw new UserError(`${this.name} has no layer '${name}' (its layers: ${layers.map(([n]) => n).join(', ')})`);
    return tidy(() => {
      let h = x.isContiguous(this.#memoryFormat) ? x : x.to({ memoryFormat: this.#memoryFormat });
      for (const [, layer] of layers.slice(0, upTo + 1)) h = layer.forward(h);
      return h;
    });
  }

  /** The layers in execution order with their dotted names. */
  layers(): Named[] {
    const out: Named[] = this.features.namedChildren().map(([n, m]) => [`features.${n}`, m] as Named);
    if (this.avgpool) out.push(['avgpool', this.avgpool]);
    out.push(['flatten', this.#flatten]);
    out.push(...this.classifier.namedChildren().map(([n, m]) => [`classifier.${n}`, m] as Named));
    return out;
  }

  /**
   * The network as data for the code that reads it without running it (the ONNX writer, the oneDNN plan builder,
   * the tower builder): each layer's spec in execution order with its shapes at the model's input size, and the
   * weights by PyTorch key.
   */
  networkSpec(): NetworkSpec {
    let shape: number[] = [...this.inputShape];
    const layers = this.layers().map(([name, m]): LayerEntry => {
      const input = shape;
      shape = m.outputShape(input);
      return { name, spec: m.spec(), description: m.describe(), input, output: shape };
    });
    return { name: this.name, input: [...this.inputShape], layers, weights: this.stateDict() };
  }

  /** Whether the input size is fixed (the classifier was built for one feature-map size). */
  get fixedInputSize(): boolean {
    return !this.avgpool;
  }

  /** The per-layer table for a per-sample input shape (default: the model's own). */
  layerTable(input: number[] = this.inputShape): LayerRow[] {
    this.checkSampleShape(input);
    const rows: LayerRow[] = [];
    let s = input;
    for (const [name, m] of this.layers()) {
      const macs = m.macs(s);
      s = m.outputShape(s);
      rows.push({ name, layer: m.describe(), outputShape: s, params: m.ownParameterCount(), macs });
    }
    return rows;
  }

  /** The layer table and totals for a per-sample input shape (default: the model's own). */
  summary(input: [number, number, number] = this.inputShape): ModelDescription {
    const rows = this.layerTable(input);
    return {
      name: this.name,
      input: [...input],
      rows,
      totalParams: this.numParameters(),
      totalMacs: rows.reduce((a, r) => a + r.macs, 0),
      fixedInputSize: this.fixedInputSize,
    };
  }

  /** Checks a per-sample shape against the architecture; errors name the layer and the smallest size that works. */
  checkSampleShape(input: number[]): void {
    const [c, h, w] = this.inputShape;
    if (input.length !== 3) throw new ShapeError(`${this.name} takes (C, H, W) samples, got [${input.join(', ')}]`);
    if (input[0] !== c)
      throw new ShapeError(`${this.name} takes ${c}-channel input (${c}×${h}×${w}), got ${input[0]} channels`);
    this.traceBody(input);
    if (this.fixedInputSize && (input[1] !== h || input[2] !== w)) {
      throw new ShapeError(
        `${this.name} was built for ${c}×${h}×${w} input, got ${input.join('×')}; build it with inputSize ${input[1] === input[2] ? input[1] : `[${input[1]}, ${input[2]}]`} for that size`,
      );
    }
  }

  private checkInput(x: Tensor): void {
    const s = x.shape;
    const want = `(N, ${this.inputShape.join(', ')}) float`;
    if (s.length !== 4) throw new ShapeError(`${this.name} expects input ${want}, got [${s.join(', ')}] ${x.dtype}`);
    if (!isFloating(x.dtype))
      throw new ShapeError(
        `${this.name} expects input ${want}, got [${s.join(', ')}] ${x.dtype}: convert with .float()`,
      );
    this.checkSampleShape(s.slice(1));
  }

  /** Per-sample shape after features and avgpool; a too-small input names the layer and the smallest size. */
  private traceBody(input: number[]): number[] {
    const body: Named[] = this.features.namedChildren().map(([n, m]) => [`features.${n}`, m] as Named);
    if (this.avgpool) body.push(['avgpool', this.avgpool]);
    const run = (shape: number[]): number[] => body.reduce((s, [, m]) => m.outputShape(s), shape);
    let s = input;
    for (const [name, m] of body) {
      try {
        s = m.outputShape(s);
      } catch (e) {
        if (!(e instanceof LayerShapeError)) throw e;
        const smallest = smallestSquare(input[0], run);
        const hint = smallest ? `; the smallest input that works is ${input[0]}×${smallest}×${smallest}` : '';
        throw new ShapeError(
          `input ${input.join('×')} is too small for ${this.name}: ${name} (${m.describe()}): ${e.message}${hint}`,
        );
      }
    }
    return s;
  }
}

function smallestSquare(channels: number, run: (s: number[]) => number[]): number | undefined {
  for (let n = 1; n <= 4096; n++) {
    try {
      run([channels, n, n]);
      return n;
    } catch {
      /* keep looking */
    }
  }
  return undefined;
}

/**
 * Upper bounds on the construction options, checked before anything is built (the memory budget in budget.ts is
 * the real criterion; these keep the arithmetic meaningful and name the option that is out of range):
 * - inputSize 4096: 18× AlexNet's own 227, past any photo a 2012-style network is fed whole; the smallest-size search
 *   in traceBody stops there too. Variants with a fixed-size classifier hit the parameter budget long before it.
 * - numClasses 100,000: the largest public label sets (ImageNet-21k 21,841, Open Images ~20k, iNaturalist 10k)
 *   with room to spare; the last layer is then 410 million parameters (1.6 GB) with a 4096-wide classifier.
 * - inChannels 1024: past hyperspectral images (~200–400 bands); conv1 is then at most 12 million parameters.
 * - width 4096: 10× the widest AlexNet convolution (384); the parameter budget decides beyond that.
 * - pool 16: a pooling window or stride past that leaves nothing of a 227×227 input.
 */
export const OPTION_LIMITS = { inputSize: 4096, numClasses: 100_000, inChannels: 1024, width: 4096, pool: 16 } as const;

/** What a variant fixes when the options leave it open. */
export interface VariantDefaults {
  numClasses: number;
  inChannels: number;
  dropout: number;
  inputSize: number;
  widths: Widths;
  lrn?: LrnChoice;
  groups?: 1 | 2;
}

/** The options resolved for a builder: numbers checked, layers as factories. */
export interface Resolved {
  numClasses: number;
  inChannels: number;
  dropout: number;
  h: number;
  w: number;
  widths: Widths;
  groups: 1 | 2;
  act: () => Module;
  /** The LRN layer after conv1's and conv2's activations, or undefined for none. */
  lrn: () => Module | undefined;
  pool: () => Module;
}

const inRange = (v: unknown, max: number) => Number.isInteger(v) && (v as number) > 0 && (v as number) <= max;
const range = (max: number) => `a positive integer (at most ${max.toLocaleString('en-US')})`;

/** Validates and fills in the options every variant accepts. */
export function resolveOptions(name: string, o: AlexNetOptions, defaults: VariantDefaults): Resolved {
  const numClasses = o.numClasses ?? defaults.numClasses;
  const inChannels = o.inChannels ?? defaults.inChannels;
  const dropout = o.dropout ?? defaults.dropout;
  const size = o.inputSize ?? defaults.inputSize;
  const [h, w] = typeof size === 'number' ? [size, size] : Array.isArray(size) && size.length === 2 ? size : [NaN, NaN];
  if (!inRange(numClasses, OPTION_LIMITS.numClasses))
    throw new UserError(`${name}: numClasses must be ${range(OPTION_LIMITS.numClasses)}, got ${numClasses}`);
  if (!inRange(inChannels, OPTION_LIMITS.inChannels))
    throw new UserError(`${name}: inChannels must be ${range(OPTION_LIMITS.inChannels)}, got ${inChannels}`);
  if (!(dropout >= 0 && dropout < 1)) throw new UserError(`${name}: dropout must be in [0, 1), got ${dropout}`);
  if (!inRange(h, OPTION_LIMITS.inputSize) || !inRange(w, OPTION_LIMITS.inputSize)) {
    throw new UserError(
      `${name}: inputSize must be ${range(OPTION_LIMITS.inputSize)} or two of them [H, W], got ${JSON.stringify(size)}`,
    );
  }
  const activation = o.activation ?? 'relu';
  if (!ACTIVATIONS.includes(activation))
    throw new UserError(`${name}: activation must be ${ACTIVATIONS.join(' or ')}, got ${JSON.stringify(activation)}`);
  const act = () => (activation === 'tanh' ? new Tanh() : new ReLU(true));
  return { numClasses, inChannels, dropout, h, w, act, ...resolveArchitecture(name, o, defaults) };
}

/** The structural knobs (the paper's ablations): LRN, pooling, groups, widths. */
function resolveArchitecture(
  name: string,
  o: AlexNetOptions,
  defaults: VariantDefaults,
): Pick<Resolved, 'widths' | 'groups' | 'lrn' | 'pool'> {
  const lrnChoice = o.lrn ?? defaults.lrn ?? 'none';
  if (!LRN_CHOICES.includes(lrnChoice))
    throw new UserError(`${name}: lrn must be ${LRN_CHOICES.join(', ')}, got ${JSON.stringify(lrnChoice)}`);
  const groups = o.groups ?? defaults.groups ?? 1;
  if (groups !== 1 && groups !== 2)
    throw new UserError(`${name}: groups must be 1 or 2, got ${JSON.stringify(groups)}`);
  const widths = o.widths ?? defaults.widths;
  const widthsOk = Array.isArray(widths) && widths.length === 5 && widths.every((x) => inRange(x, OPTION_LIMITS.width));
  if (!widthsOk)
    throw new UserError(`${name}: widths must be five of ${range(OPTION_LIMITS.width)}, got ${JSON.stringify(widths)}`);
  // conv2 reads conv1's output, conv4 conv3's, conv5 conv4's: each side of a grouped convolution splits evenly.
  if (groups === 2 && [0, 1, 2, 3, 4].some((i) => widths[i] % 2 !== 0))
    throw new UserError(`${name}: groups 2 needs even widths, got ${widths.join('-')}`);
  const pool = o.pool ?? [3, 2];
  const poolOk = Array.isArray(pool) && pool.length === 2 && pool.every((x) => inRange(x, OPTION_LIMITS.pool));
  if (!poolOk)
    throw new UserError(
      `${name}: pool must be [kernel, stride], each ${range(OPTION_LIMITS.pool)}, got ${JSON.stringify(pool)}`,
    );
  // LRN per tower: with groups 2 each GPU normalised only its own maps (cuda-convnet2's rnorm1a/b, channels=48).
  const lrnOptions = { n: 5, k: 2, alpha: 1e-4, beta: 0.75, groups };
  return {
    widths: [...widths],
    groups,
    pool: () => new MaxPool2d(pool[0], { stride: pool[1] }),
    lrn: () =>
      lrnChoice === 'paper'
        ? new LocalResponseNorm({ convention: 'paper', ...lrnOptions })
        : lrnChoice === 'pytorch'
          ? new LocalResponseNorm({ convention: 'pytorch', size: 5, k: 2, alpha: 1e-4, beta: 0.75, groups })
          : undefined,
  };
}

/**
 * The AlexNet feature stack every variant shares: conv1 11×11 (the variant's stride and padding), conv2 5×5, conv3–5
 * 3×3, each followed by [batch norm], the activation, [LRN after conv1 and conv2], and max pooling after conv1, conv2
 * and conv5; with groups 2, conv2, conv4 and conv5 are grouped and the LRN is per half (the paper's cross-GPU links
 * are conv3 and the FC layers). Module indices follow that order, so the variants' state_dict keys are PyTorch's and
 * torchvision's.
 */
export function featureStack(o: Resolved, conv1: { stride: number; padding: number }, batchNorm = false): Sequential {
  const [c1, c2, c3, c4, c5] = o.widths;
  const g = o.groups;
  const block = (conv: Conv2d, lrn: boolean, pool: boolean): Module[] => {
    const norm = lrn ? o.lrn() : undefined;
    return [
      conv,
      ...(batchNorm ? [new BatchNorm2d(conv.outChannels)] : []),
      o.act(),
      ...(norm ? [norm] : []),
      ...(pool ? [o.pool()] : []),
    ];
  };
  return new Sequential(
    ...block(new Conv2d(o.inChannels, c1, 11, conv1), true, true),
    ...block(new Conv2d(c1, c2, 5, { padding: 2, groups: g }), true, true),
    ...block(new Conv2d(c2, c3, 3, { padding: 1 }), false, false),
    ...block(new Conv2d(c3, c4, 3, { padding: 1, groups: g }), false, false),
    ...block(new Conv2d(c4, c5, 3, { padding: 1, groups: g }), false, true),
  );
}
