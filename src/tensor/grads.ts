// The fused native loops over many tensors at once (native/autograd.cc, optim.cc, amp.cc): clearing and checking
// gradients, the SGD and Adam updates, gradient unscaling. One native call each, whatever the parameter count.
import { AdamStepOptions, native, SgdStepOptions } from './binding';
import { Tensor } from './tensor';

export type { AdamStepOptions, SgdStepOptions };

const handles = (ts: Tensor[]) => ts.map((t) => t.handle);

/** Drops the gradient of every tensor (PyTorch's zero_grad(set_to_none=True)). */
export function zeroGrad(params: Tensor[]): void {
  native().zeroGrad(handles(params));
}

/** False when some gradient holds NaN or infinity. */
export function gradsFinite(params: Tensor[]): boolean {
  return native().gradsFinite(handles(params));
}

/** One SGD update of `params` in place; `bufs` are their momentum buffers (same order). */
export function sgdStep(params: Tensor[], bufs: Tensor[], o: SgdStepOptions): void {
  native().sgdStep(handles(params), handles(bufs), o);
}

/** One Adam(W) update of `params` in place; `expAvg` and `expAvgSq` are the moment estimates (same order). */
export function adamStep(params: Tensor[], expAvg: Tensor[], expAvgSq: Tensor[], o: AdamStepOptions): void {
  native().adamStep(handles(params), handles(expAvg), handles(expAvgSq), o);
}

/** Multiplies every gradient by `invScale`; false when some gradient overflowed (holds infinity or NaN). */
export function unscaleGrads(params: Tensor[], invScale: number): boolean {
  return native().unscaleGrads(handles(params), invScale);
}
