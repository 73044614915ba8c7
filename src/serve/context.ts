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
