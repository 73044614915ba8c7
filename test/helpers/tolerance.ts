// Tolerances for comparisons whose rounding depends on the CPU's kernels (AVX-512 or AVX2, NCHW or channels-last,
// native or emulated bfloat16). We never assert how a particular kernel rounds; we compare with PyTorch computed in
// float64 on the same inputs and allow what PyTorch's own computation at our precision, on this CPU, is allowed:
//
//   err(ours, ref64) ≤ c · err(torch, ref64) + floor
//
// First-order error analysis: a computation's rounding error is κ·u, κ set by the data (how much the sums cancel)
// and u the precision's unit roundoff. Ours and PyTorch's at the same precision see the same κ and u and differ
// only in summation order and blocking, so their errors are of the same order; c says how much worse ours may be.
// The floor covers tensors that PyTorch happens to get (nearly) exactly right.
import { Tensor, tidy } from '../../src/tensor/tensor';
import { maxAbs, maxAbsDiff } from './oracle';

/** Unit roundoff 2^-p of a format with p significand bits (float32 24, float64 53, bfloat16 8). */
export const UNIT_ROUNDOFF = { float32: 2 ** -24, float64: 2 ** -53, bfloat16: 2 ** -8 } as const;

/**
 * How to measure an error, relative to the reference:
 * - 'max': largest elementwise difference / largest magnitude of the reference (strict: a wrong element shows);
 * - 'norm': ‖a − ref‖₂ / ‖ref‖₂ (bfloat16 gradients: rounding flips a few ReLU masks, which moves single elements
 *   by O(1) however correct the computation; the norm sees the many elements that are right).
 */
export type Metric = 'max' | 'norm';

export function relError(a: Tensor, ref: Tensor, metric: Metric): number {
  if (metric === 'max') return maxAbsDiff(a, ref) / Math.max(1e-300, maxAbs(ref));
  if (a.shape.join() !== ref.shape.join()) throw new Error(`shapes differ: [${a.shape}] vs [${ref.shape}]`);
  return tidy(() => {
    const r = ref.to('float64');
    const d = a.to('float64').sub(r);
    return Math.sqrt(d.mul(d).sum().item() / Math.max(1e-300, r.mul(r).sum().item()));
  });
}

export interface Bound {
  /** How much larger than the peer's error ours may be. */
  c: number;
  /** Relative error always accepted. */
  floor: number;
  metric: Metric;
}

export interface Verdict {
  ok: boolean;
  /** Our relative error, the peer's, and the bound ours was held to. */
  err: number;
  peerErr: number;
  tol: number;
  message: string;
}

/** err(ours, ref) against c · err(peer, ref) + floor, scaled by `scale` (see scaleTo). */
/** `peer`: PyTorch's result in the same precision, or its relative error already measured (by the oracle). */
export function judge(what: string, ours: Tensor, ref: Tensor, peer: Tensor | number, b: Bound, scale = 1): Verdict {
  const err = relError(ours, ref, b.metric);
  const peerErr = typeof peer === 'number' ? peer : relError(peer, ref, b.metric);
  const tol = (b.c * peerErr + b.floor) * scale;
  const ok = err <= tol;
  const message =
    `${what}: relative error (${b.metric}) ${err.toExponential(3)} against float64, allowed ${tol.toExponential(3)} = ` +
    `(${b.c} × PyTorch's ${peerErr.toExponential(3)} + ${b.floor.toExponential(1)})${scale === 1 ? '' : ` × ${scale.toExponential(3)}`}`;
  return { ok, err, peerErr, tol, message };
}

/**
 * The same computation in another precision: κ is unchanged, so the error scales by the ratio of unit roundoffs
 * (float32 → float64: 2^-29). A float32 bound times this is the bound for float64.
 */
export function scaleTo(from: keyof typeof UNIT_ROUNDOFF, to: keyof typeof UNIT_ROUNDOFF): number {
  return UNIT_ROUNDOFF[to] / UNIT_ROUNDOFF[from];
}

/**
 * Cross-entropy from the logits: |∂L/∂z| sums to at most 2/N per sample (softmax minus one-hot, batch mean), so
 * |L(z + Δz) − L(z)| ≤ 2·max|Δz| to first order; plus the loss's own rounding in precision u, allowed 32 units of
 * max(1, |L|) (a log-sum-exp and a batch mean round a few times; PyTorch's float32 loss is within 2 units).
 */
export function lossBound(logitsMaxDiff: number, loss: number, u: number): number {
  return 2 * logitsMaxDiff + 32 * u * Math.max(1, Math.abs(loss));
}
