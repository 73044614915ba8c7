// The one rule for `k`, the number of best classes or neighbours a route answers (`?k=` on /v1/predict and
// /v1/neighbours, the `classification` parameter of an Open Inference Protocol output): an integer from 1 to a
// maximum the route states (the model's classes; for neighbours 64 and the gallery's rows), else 400 bad_k, worded
// the same everywhere. A k above the maximum is refused, not cut down: an answer shorter than asked is a surprise.
import { ServeError } from './errors';

export interface KBounds {
  /** The largest k. */
  max: number;
  /** Why it is the largest, after the received value: "the model has 10 classes". */
  why: string;
  /** The parameter's name in the message (default 'k'). */
  name?: string;
}

/** `raw` (a query string, or a JSON value) as k within `b`, or the 400 that says what was expected and received. */
export function kParam(raw: unknown, b: KBounds): number {
  const k = typeof raw === 'string' ? (/^\d{1,9}$/.test(raw) ? Number(raw) : NaN) : raw;
  if (typeof k === 'number' && Number.isInteger(k) && k >= 1 && k <= b.max) return k;
  const got = typeof raw === 'string' ? `'${raw}'` : JSON.stringify(raw);
  throw new ServeError('bad_k', `${b.name ?? 'k'} must be an integer from 1 to ${b.max}, got ${got}: ${b.why}`);
}

/** The bounds of a k of classes: the model's. */
export const classBounds = (classes: number, name?: string): KBounds => ({
  max: classes,
  why: `the model has ${classes} classes`,
  name,
});
