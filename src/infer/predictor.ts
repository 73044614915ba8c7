// One inference interface for every engine: a Predictor takes images (file paths or bytes in memory) and returns
// the top classes of each. The libtorch and onnxruntime backends differ only in how a batch's logits are computed;
// decoding, preprocessing geometry, softmax and top-k are shared here.
import { UserError } from '../errors';
import { ImageInput, inputName, loadImageAs } from '../data/image';
import { ModelRecord } from '../persist/record';
import { Decoded, DecodeLanes } from './decode-lanes';

export type { ImageInput };

export interface TopClass {
  index: number;
  /** The class's display name. */
  class: string;
  probability: number;
}

export interface Prediction {
  /** The file path, or the name given with in-memory bytes. */
  file: string;
  top: TopClass[];
}

export interface Predictor {
  readonly record: ModelRecord;
  /** The engine: 'libtorch' or 'onnxruntime'. */
  readonly runtime: string;
  /** How each image is decoded for this model. */
  readonly geometry: InputGeometry;
  /** Logits (N × classes, row-major) of N preprocessed inputs given as uint8 planar pixels of `geometry`. */
  logits(pixels: Uint8Array, n: number): Promise<Float32Array>;
  /**
   * Logits of N inputs preprocessed already (decoded, resized, normalised: what `logits` makes of pixels), given as
   * float32 N × C × H × W at the model's input size (`tensorShape`). Absent where an engine takes pixels only.
   */
  forward?(input: Float32Array, n: number): Promise<Float32Array>;
  close(): Promise<void>;
}

/** The model's own input, C × H × W: the geometry's channels at the preprocessing's input size. */
export function tensorShape(record: ModelRecord, g: InputGeometry): [number, number, number] {
  const [h, w] = record.preprocess.inputSize;
  return [g.channels, h, w];
}

/** How a raw image becomes a model input: decoded to C×H×W, directly or by short side + centre crop. */
export interface InputGeometry {
  channels: number;
  height: number;
  width: number;
  /** Photos: resize the short side to this, then centre-crop H×W; unset: resize to H×W (data-set examples). */
  shortSide?: number;
}

/**
 * Data-set models (a `sourceShape` in the record) take images made like a data-set example: resized to its size;
 * photo models take short side + centre crop at the model's input size.
 */
export function inputGeometry(record: ModelRecord, modelInput: readonly number[]): InputGeometry {
  if (record.sourceShape) {
    const [channels, height, width] = record.sourceShape;
    return { channels, height, width };
  }
  const [h, w] = record.preprocess.inputSize;
  return { channels: modelInput[0], height: h, width: w, shortSide: record.preprocess.shortSide };
}

/** Decodes one image to the predictor's planar uint8 input. */
export function decodeInput(input: ImageInput, g: InputGeometry): Promise<Uint8Array> {
  return loadImageAs(input, g.channels, g.height, g.width, g.shortSide);
}

/** Softmax and the k most probable classes of each row of `logits` (N × classes). */
export function topK(logits: Float32Array, classes: string[], k: number): TopClass[][] {
  const c = classes.length;
  if (logits.length % c)
    throw new UserError(`the model gave ${logits.length} logits, not a multiple of its ${c} classes`);
  const take = Math.min(k, c);
  const rows: TopClass[][] = [];
  for (let r = 0; r < logits.length / c; r++) {
    const row = logits.subarray(r * c, (r + 1) * c);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    const order = Array.from(row.keys())
      .sort((a, b) => row[b] - row[a] || a - b)
      .slice(0, take);
    rows.push(order.map((j) => ({ index: j, class: classes[j], probability: Math.exp(row[j] - max) / sum })));
  }
  return rows;
}

export interface PredictOptions {
  /** Classes to report per image (default 5). */
  k?: number;
  /** Images per forward pass (default 16): memory stays flat in the number of inputs. */
  batchSize?: number;
  /**
   * Images decoded at once in a worker thread while the engine runs the batch before (default 1); 0 decodes every
   * batch in this thread (on libuv's pool), still one batch ahead. The first batch is always decoded here.
   */
  decodeLanes?: number;
}

/** One result per input, in input order: a prediction, or the reason this input could not be classified. */
export type PredictResult =
  { file: string; prediction: Prediction; error?: undefined } | { file: string; prediction?: undefined; error: Error };

/** Decodes `items` in this thread (sharp on libuv's pool): each input's pixels or its error. */
function decodeHere(items: ImageInput[], g: InputGeometry): Promise<Decoded[]> {
  return Promise.all(
    items.map((i) =>
      decodeInput(i, g).then(
        (px) => ({ px }),
        (error: Error) => ({ error }),
      ),
    ),
  );
}

function* batchesOf(inputs: Iterable<ImageInput>, size: number): Generator<ImageInput[]> {
  let batch: ImageInput[] = [];
  for (const input of inputs) {
    batch.push(input);
    if (batch.length === size) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length) yield batch;
}

/** One decoded batch through the engine: one result per item, in order. */
async function answer(p: Predictor, items: ImageInput[], decoded: Decoded[], k: number): Promise<PredictResult[]> {
  const { channels, height, width } = p.geometry;
  const size = channels * height * width;
  const good = decoded.flatMap((d, i) => ('px' in d ? [i] : []));
  const pixels = new Uint8Array(good.length * size);
  good.forEach((i, j) => pixels.set((decoded[i] as { px: Uint8Array }).px, j * size));
  const tops = good.length ? topK(await p.logits(pixels, good.length), p.record.classes, k) : [];
  return items.map((item, i) => {
    const file = inputName(item);
    const d = decoded[i];
    return 'error' in d ? { file, error: d.error } : { file, prediction: { file, top: tops[good.indexOf(i)] } };
  });
}

/**
 * Classifies `inputs` in fixed-size batches, yielding each result as soon as its batch is done. An input that cannot
 * be decoded yields its error; the others are still answered. The next batch is decoded while the engine runs this
 * one (`decodeLanes`); memory is two batches, whatever the number of inputs.
 */
export async function* predictStream(
  p: Predictor,
  inputs: Iterable<ImageInput>,
  o: PredictOptions = {},
): AsyncGenerator<PredictResult> {
  const g = p.geometry;
  const lanes = o.decodeLanes ?? 1;
  const k = o.k ?? 5;
  const batches = batchesOf(inputs, o.batchSize ?? 16);
  let worker: DecodeLanes | undefined;
  let done = false;
  const decode = (items: ImageInput[], first: boolean): Promise<Decoded[]> => {
    if (first || lanes === 0) return decodeHere(items, g);
    worker ??= new DecodeLanes(lanes);
    // A decoding thread that fails (never an input's fault: those are results) leaves the batch to this thread.
    return worker
      .decode(items, g)
      .catch((error: Error) => (done ? items.map(() => ({ error })) : decodeHere(items, g)));
  };
  const ahead: { items: ImageInput[]; decoded: Promise<Decoded[]> }[] = [];
  let started = 0;
  // With lanes, the next batch decodes in the worker while the engine runs this one. Without (0), decoding and the
  // engine take turns, each with every core: the next batch starts decoding when this one's forward pass is done
  // (on a small machine, a decode beside a forward pass on every core slows oneDNN's threads more than it gains).
  const depth = lanes === 0 ? 1 : 2;
  const refill = () => {
    for (let next; ahead.length < depth && !(next = batches.next()).done;)
      ahead.push({ items: next.value, decoded: decode(next.value, started++ === 0) });
  };
  try {
    refill();
    while (ahead.length) {
      const { items, decoded } = ahead[0];
      const rows = await answer(p, items, await decoded, k);
      ahead.shift();
      refill();
      yield* rows;
    }
  } finally {
    done = true;
    await worker?.close();
  }
}

/** All predictions at once (throws on the first input that cannot be read): for a few images. */
export async function predictAll(p: Predictor, inputs: ImageInput[], o: PredictOptions = {}): Promise<Prediction[]> {
  const out: Prediction[] = [];
  for await (const r of predictStream(p, inputs, o)) {
    if (r.error) throw r.error;
    out.push(r.prediction);
  }
  return out;
}
