// The serving layer's shared shapes: what an inference engine offers the HTTP server (a Predictor with its card
// and insight), and what the server is told to serve. The engine hides where inference runs (a worker thread for
// libtorch, onnxruntime's own threads), so no route ever blocks the event loop on a forward pass.
import type { Insight, LayerOutput, TensorData } from '../infer/introspect';
import { InputGeometry, Predictor } from '../infer/predictor';

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

export type { LayerOutput, TensorData };

/** What the page's model views need: libtorch engines offer it, onnxruntime engines do not. */
export type InsightEngine = Insight;

/**
 * An inference engine: a Predictor (batches of decoded images in, logits out) that runs off the event loop, with
 * the card the server shows and, where the runtime can look inside the model, its insight.
 */
export interface Engine extends Predictor {
  readonly card: ModelCard;
  /** Present when the engine can look inside the model (libtorch). */
  readonly insight?: Insight;
  /** Set when the engine can no longer run (its worker died): readiness fails with it. */
  readonly failure?: Error;
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
