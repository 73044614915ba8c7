// oneDNN inference plans (native/onednn.cc), typed: a plan is an opaque handle built from layer descriptions whose
// tensors are given by index, run on (N, C, H, W) float32 CPU input, and released explicitly. Present only when the
// addon was built against libdnnl-dev (runtime.ts onednnAvailable).
import { SetupError } from '../errors';
import { native, Native } from './binding';
import { Tensor } from './tensor';

/** A compiled chain of oneDNN primitives (packed weights included); free it with releaseOnednnPlan. */
export interface OnednnPlan {
  readonly __brand: 'OnednnPlan';
}

type Plans = Required<Pick<Native, 'onednnPlan' | 'onednnRun' | 'onednnImplementations' | 'onednnRelease'>>;

function plans(): Plans {
  const n = native();
  if (!n.onednnPlan || !n.onednnRun || !n.onednnImplementations || !n.onednnRelease)
    throw new SetupError('the addon was built without oneDNN (apt-get install libdnnl-dev, then npm run build:addon)');
  return n as Plans;
}

/** Compiles `layers` (tensors referenced by index into `tensors`) into a plan; bf16 runs it in bfloat16. */
export function onednnPlan(layers: object[], tensors: Tensor[], bf16: boolean): OnednnPlan {
  return plans().onednnPlan(
    layers,
    tensors.map((t) => t.handle),
    bf16,
  ) as OnednnPlan;
}

/** (N, C, H, W) float32 CPU -> (N, classes) float32. */
export function onednnRun(plan: OnednnPlan, x: Tensor): Tensor {
  return new Tensor(plans().onednnRun(plan, x.handle));
}

/** The kernel each primitive of the plan runs for x's geometry (e.g. "conv:brgconv:avx512_core_bf16"). */
export function onednnKernels(plan: OnednnPlan, x: Tensor): string[] {
  return plans().onednnImplementations(plan, x.handle);
}

/** Frees the plan's packed weights and primitives now (it cannot run afterwards). */
export function releaseOnednnPlan(plan: OnednnPlan): void {
  plans().onednnRelease(plan);
}
