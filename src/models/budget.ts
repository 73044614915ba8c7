// Memory bounds checked before anything is allocated: a model's parameters (from its description, which allocates
// nothing) and a batch's activations (from the layer table's output shapes). Both refuse with a UserError that
// says how big the request would be, what the limit is and which option to change, instead of letting libtorch
// fail with an out-of-memory error halfway through.
import * as os from 'node:os';
import { UserError } from '../errors';
import type { Device } from '../tensor/dtype';
import { AlexNet, AlexNetOptions, ModelDescription, OPTION_LIMITS } from './alexnet';

/** Bytes per float32 parameter. Models are always built in float32 (and may be converted afterwards). */
const PARAM_BYTES = 4;

/**
 * The most parameters a model may have: 4 GiB of float32 (1.07 billion), or half this machine's memory if that is
 * less. Every published AlexNet has ≤ 62 million (250 MB); only a variant with a fixed-size classifier at a large
 * input size comes near (alexnet-2012 at 1500×1500 has 2.1 billion). Training holds the weights, their gradients
 * and one or two optimiser states (3–4× the weights), so 4 GiB of weights already asks for 12–16 GiB.
 */
export function parameterLimit(): { params: number; bytes: number; why: string } {
  const fixed = 4 * 1024 ** 3;
  const half = Math.floor(os.totalmem() / 2);
  const bytes = Math.min(fixed, half);
  return {
    params: Math.floor(bytes / PARAM_BYTES),
    bytes,
    why: bytes === fixed ? '4 GiB of float32' : "half this machine's memory",
  };
}

/**
 * Refuses a model whose parameters exceed parameterLimit(), before anything is allocated. `redescribe` describes
 * the same variant with other options (it must allocate nothing: registry.describeModel); it finds the largest
 * input size or class count that would fit, for the hint.
 */
export function checkParameterBudget(
  d: ModelDescription,
  options: AlexNetOptions,
  redescribe: (o: AlexNetOptions) => ModelDescription,
): void {
  const limit = parameterLimit();
  if (d.totalParams <= limit.params) return;
  const [c, h, w] = d.input;
  const classes = d.rows[d.rows.length - 1].outputShape[0];
  const what = `${d.name} at ${c}×${h}×${w} with ${classes.toLocaleString('en-US')} classes`;
  const hints: string[] = [];
  // The classifier's first layer grows with the input size (variants without adaptive pooling), its last with the
  // number of classes: suggest whichever change can bring the model under the limit.
  const fits = (o: AlexNetOptions) => {
    try {
      return redescribe({ ...options, ...o }).totalParams <= limit.params;
    } catch {
      return false;
    }
  };
  if (d.fixedInputSize && h === w) {
    const own = redescribe({ ...options, inputSize: undefined }).input[1];
    const size = largest(own, h - 1, (s) => fits({ inputSize: s }));
    if (size) hints.push(`a smaller input size (--input-size ${size} or less)`);
  }
  const n = largest(1, Math.min(classes - 1, OPTION_LIMITS.numClasses), (k) => fits({ numClasses: k }));
  if (n) hints.push(`fewer classes (--classes ${n.toLocaleString('en-US')} or less)`);
  throw new UserError(
    `${what} would have ${count(d.totalParams)} parameters (${bytes(d.totalParams * PARAM_BYTES)} as float32); ` +
      `the limit is ${count(limit.params)} (${limit.why})${hints.length ? `; use ${hints.join(' or ')}` : ''}`,
  );
}

/** The largest v in [lo, hi] with ok(v), for ok monotone (true up to some value, false after); undefined if none. */
function largest(lo: number, hi: number, ok: (v: number) => boolean): number | undefined {
  if (hi < lo || !ok(lo)) return undefined;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export interface BatchFitOptions {
  /**
   * 'train' (the default): every activation is kept for backward and gets a gradient of its size, and the model
   * holds gradients and optimiser state beside its weights. 'eval': intermediate activations are released as the
   * forward pass goes.
   */
  mode?: 'train' | 'eval';
  /** Where the batch runs: on 'cpu' (the default) the limit is this machine's memory. */
  device?: Device;
  /** Bytes per activation element: 4 for float32 (the default), 2 under bfloat16 or float16 autocast. */
  bytesPerElement?: number;
  /**
   * The memory the run may use, in bytes. Default: the machine's total memory on CPU; on a GPU the addon does not
   * report device memory yet, so without this only the batch size itself is checked.
   */
  availableBytes?: number;
  /** The option named in messages (default '--batch-size'). */
  option?: string;
}

export interface BatchFit {
  /** Estimated activation memory per image, in bytes. */
  bytesPerImage: number;
  /** Estimated memory independent of the batch: weights (and in training gradients and optimiser state). */
  fixedBytes: number;
  /** fixedBytes + batchSize × bytesPerImage. */
  bytesNeeded: number;
  /** The limit compared with (undefined when unknown: a GPU without availableBytes). */
  availableBytes?: number;
  /** The largest batch size within availableBytes. */
  maxBatch?: number;
  /** Set when the batch fits the machine but not the memory free right now (CPU): worth printing. */
  warning?: string;
}

/**
 * Training: activations kept for backward (1×), their gradients during backward (1×) and engine workspace,
 * pooling indices and dropout masks (1×). An estimate meant to refuse what cannot fit, not to predict usage;
 * measured on CPU (torchvision, 224, forward + backward, default allocator cache): 478 MB above the weights and
 * gradients at batch 32 (estimate 483 MB), 710 MB at batch 64 (estimate 966 MB).
 */
const TRAIN_ACTIVATION_FACTOR = 3;
/** Training: weights, gradients and up to two optimiser states (Adam). */
const TRAIN_STATE_FACTOR = 4;
/**
 * Evaluation: the largest layer's input plus output, doubled for engine workspace and reordered copies; measured
 * on CPU (torchvision, 224, batch 64): 189 MB above the weights (estimate 198 MB).
 */
const EVAL_ACTIVATION_FACTOR = 2;

/**
 * Checks, before a batch is allocated, that `batchSize` images fit in memory for `model` (a built model or its
 * description: describeModel(), which allocates nothing). The estimate per image is the layer table's output
 * shapes × bytesPerElement (all of them, × 3, for training; the largest consecutive pair, × 2, for evaluation);
 * the fixed part is the weights (× 4 in training: gradients and optimiser state). Throws a UserError naming the
 * option and the largest batch size that fits; returns the estimate otherwise.
 *
 * Call it where a run's batch size meets its model: training (batch size, mode 'train', and the eval batch size,
 * mode 'eval'), evaluation and benchmarks, after resolving the device and precision.
 */
export function checkBatchFits(
  model: AlexNet | ModelDescription,
  batchSize: number,
  o: BatchFitOptions = {},
): BatchFit {
  const option = o.option ?? '--batch-size';
  if (!Number.isSafeInteger(batchSize) || batchSize < 1)
    throw new UserError(`${option} must be a positive integer, got ${batchSize}`);
  const d = model instanceof AlexNet ? model.summary() : model;
  const mode = o.mode ?? 'train';
  const bpe = o.bytesPerElement ?? 4;
  const device = o.device ?? 'cpu';
  const sizes = [d.input, ...d.rows.map((r) => r.outputShape)].map((s) => s.reduce((a, b) => a * b, 1));
  const bytesPerImage =
    mode === 'train'
      ? sizes.reduce((a, b) => a + b, 0) * bpe * TRAIN_ACTIVATION_FACTOR
      : Math.max(...sizes.slice(1).map((s, i) => sizes[i] + s)) * bpe * EVAL_ACTIVATION_FACTOR;
  const fixedBytes = d.totalParams * PARAM_BYTES * (mode === 'train' ? TRAIN_STATE_FACTOR : 1);
  const bytesNeeded = fixedBytes + batchSize * bytesPerImage;
  const availableBytes = o.availableBytes ?? (device === 'cpu' ? os.totalmem() : undefined);
  const fit: BatchFit = { bytesPerImage, fixedBytes, bytesNeeded };
  if (availableBytes === undefined) return fit;
  fit.availableBytes = availableBytes;
  fit.maxBatch = Math.max(0, Math.floor((availableBytes - fixedBytes) / bytesPerImage));
  const where =
    o.availableBytes !== undefined ? 'the limit given is' : device === 'cpu' ? 'this machine has' : `${device} has`;
  if (bytesNeeded > availableBytes) {
    const [c, h, w] = d.input;
    const state = mode === 'train' ? 'weights, gradients and optimiser state' : 'weights';
    const largestHint =
      fit.maxBatch >= 1
        ? `the largest batch that fits is about ${fit.maxBatch.toLocaleString('en-US')} (${option} ${fit.maxBatch} or less)`
        : 'not even one image fits: use a smaller model or input size';
    throw new UserError(
      `${option} ${batchSize.toLocaleString('en-US')} does not fit in memory: ${d.name} ${mode === 'train' ? 'training' : 'evaluation'} at ${c}×${h}×${w} ` +
        `needs about ${bytes(bytesPerImage)} per image plus ${bytes(fixedBytes)} for ${state}, ${bytes(bytesNeeded)} in all; ` +
        `${where} ${bytes(availableBytes)}; ${largestHint}`,
    );
  }
  if (device === 'cpu' && o.availableBytes === undefined && bytesNeeded > os.freemem()) {
    fit.warning = `${option} ${batchSize} needs about ${bytes(bytesNeeded)} but only ${bytes(os.freemem())} of memory is free now`;
  }
  return fit;
}

const count = (n: number): string =>
  n >= 1e9
    ? `${(n / 1e9).toFixed(2)} billion`
    : n >= 1e6
      ? `${(n / 1e6).toFixed(1)} million`
      : n.toLocaleString('en-US');

const bytes = (n: number): string =>
  n >= 1e12
    ? `${(n / 1e12).toFixed(1)} TB`
    : n >= 1e9
      ? `${(n / 1e9).toFixed(1)} GB`
      : n >= 1e6
        ? `${(n / 1e6).toFixed(1)} MB`
        : `${(n / 1e3).toFixed(1)} kB`;
