// What every route plugin of the server is given: the limits, the model host, the metrics and the drain state, and
// the two questions most routes ask of them (which slot serves this request, is the model the one named).
import { DecodeGate } from './images';
import { ServeError } from './errors';
import { ModelHost, Slot } from './lifecycle';
import { ServerMetrics } from './metrics';
import { ModelCard } from './types';

export const DEFAULTS = {
  maxBatch: 8,
  maxDelayMs: 5,
  maxUploadMb: 10,
  maxPixels: 40_000_000,
  maxInflight: 64,
  requestTimeoutMs: 30_000,
};

export type Limits = typeof DEFAULTS & { decodeGate: DecodeGate };

/** A route plugin's options (a type, not an interface: fastify's plugin options are a record). */
export type ServeContext = {
  limits: Limits;
  host: ModelHost;
  metrics: ServerMetrics;
  /** True from the start of a shutdown on. */
  draining: () => boolean;
  /** True while every admission place is taken (what /readyz says). */
  saturated?: () => boolean;
};

/** The served slot, or why there is none (runs only: 404; loading or failed: 503). */
export function slotOf(host: ModelHost): Slot {
  if (host.slot) return host.slot;
  if (host.state === 'runs-only')
    throw new ServeError('no_model', 'this server shows training runs only: start it with --weights FILE to predict');
  throw new ServeError('not_ready', 'the model is not loaded yet', { headers: { 'retry-after': '1' } });
}

/** The served card when `name` is its variant (or "alexnet"); else 404. */
export function modelNamed(host: ModelHost, name: string): ModelCard {
  const card = slotOf(host).engine.card;
  if (name !== card.model && name !== 'alexnet')
    throw new ServeError('unknown_model', `this server serves '${card.model}', not '${name}'`);
  return card;
}

/** Bytes of JSON text one FP32 value takes at most, with its separator (`-0.48235294222831726, `). */
const JSON_BYTES_PER_VALUE = 24;
/** Room for an inference request's JSON besides its tensor data (names, shapes, parameters). */
const REQUEST_HEADER_BYTES = 64 * 1024;

/** An Open Inference Protocol request's body limits, in bytes, and the words a 413 says them in. */
export interface InferenceBodyLimits {
  json: number;
  binary: number;
  /** "--max-batch 8 inputs of 3×224×224 FP32 values". */
  sizedFrom: string;
}

/**
 * The body limits of an inference request, sized from the model's input (C × H × W FP32 values per input) and
 * --max-batch: as JSON text (a 3×224×224 input is about 3 MB of it) or in the binary form (4 bytes a value); both
 * leave room for a batch of encoded images of up to --max-upload-mb each (base64 in JSON).
 */
export function inferenceBodyLimits(o: Limits, input: readonly number[]): InferenceBodyLimits {
  const values = input.reduce((a, b) => a * b, 1) * o.maxBatch;
  const upload = Math.round(o.maxUploadMb * 1024 * 1024);
  return {
    json: Math.max(values * JSON_BYTES_PER_VALUE, Math.ceil(upload / 3) * 4) + REQUEST_HEADER_BYTES,
    binary: Math.max(values * 4, upload + 4) + REQUEST_HEADER_BYTES,
    sizedFrom: `--max-batch ${o.maxBatch} inputs of ${input.join('×')} FP32 values`,
  };
}
