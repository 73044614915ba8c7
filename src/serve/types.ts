// The serving layer's shared shapes: what an inference engine offers the HTTP server, and what the server is told
// to serve. The engine hides where inference runs (a worker thread for libtorch, onnxruntime's own threads), so
// no route ever blocks the event loop on a forward pass.
import { InputGeometry } from '../infer/predictor';

/** What `GET /v1/models` describes and every answer names. */
export interface ModelCard {
  /** The variant (alexnet-d2l, alexnet-2012, …). */
  model: string;
  /** The weights file it was loaded from (its base name: never a full path in an answer). */
  weights: string;
  classes: string[];
  /** How an uploaded image becomes the model's input. */
  geometry: InputGeometry;
  /** Normalisation applied after decoding (per channel). */
  preprocessing: { mean: number[]; std: number[] };
  runtime: 'libtorch' | 'onnxruntime';
  precision: 'fp32' | 'bf16';
  /** Why this runtime and precision (the --runtime/--precision auto rule, or "asked for"). */
  selection?: string;
}

/** One named layer's output for one image: C × H × W, row-major. */
export interface LayerOutput {
  layer: string;
  shape: number[];
  data: Float32Array;
}

/** A weight tensor, row-major. */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** What the page's model views need: libtorch engines offer it, onnxruntime engines do not. */
export interface InsightEngine {
  /** The first convolution's kernels: out × in × kh × kw (the paper's Figure 3). */
  filters(): Promise<TensorData>;
  /** Every convolution's output (after its activation) for one preprocessed planar uint8 image of `geometry`. */
  featureMaps(pixels: Uint8Array): Promise<LayerOutput[]>;
  /** The last hidden layer's output (the 4096-d embedding of the paper's Figure 4) for one image. */
  embedding(pixels: Uint8Array): Promise<Float32Array>;
}

/** An inference engine: batches of decoded images in, logits out, off the event loop. */
export interface Engine {
  readonly card: ModelCard;
  /** Logits (N × classes, row-major) of N images given as planar uint8 pixels of `card.geometry`. */
  infer(pixels: Uint8Array, n: number): Promise<Float32Array>;
  /** Present when the engine can look inside the model (libtorch). */
  readonly insight?: InsightEngine;
  /** Set when the engine can no longer run (its worker died): readiness fails with it. */
  readonly failure?: Error;
  close(): Promise<void>;
}

/** Files the page shows besides live predictions; each optional. */
export interface PageData {
  /** An evaluation as `alexnet eval --json` or the demo's eval.json write it (confusion matrix, per class). */
  evaluationFile?: string;
  /** Embeddings of training images as `alexnet features` writes them (the neighbours searched). */
  galleryFile?: string;
  /** Embeddings of test images as `alexnet features` writes them (the queries shown). */
  queriesFile?: string;
  /** A folder of runs (each a metrics.jsonl, directly or one level down) whose curves the page shows live. */
  runsDir?: string;
}
