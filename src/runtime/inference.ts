// The forward pass for inference (predict, eval, serve, bench): on the CPU, the model compiled into one chain of
// oneDNN primitives (native/onednn.cc: weights packed once, ReLU fused into the convolution or inner product,
// batch normalisation folded into the convolution, flatten folded into the first inner product); elsewhere, or for
// a layer the chain has no primitive for, libtorch's ops under autocast as in training. Both give the same logits
// within float rounding (fp32: ~1e-5 relative; bf16: bf16's own rounding, as autocast) — test/inference.test.ts.
import { AlexNet } from '../models/alexnet';
import { NetworkSpec } from '../nn';
import { OnednnPlan, onednnKernels, onednnPlan, onednnRun, releaseOnednnPlan } from '../tensor/onednn';
import { onednnAvailable } from '../tensor/runtime';
import { Device } from '../tensor/dtype';
import { noGrad, Tensor, tidy, zeros } from '../tensor/tensor';
import { autocast, Precision } from './precision';

/** One layer as native/onednn.cc reads it; tensors are indices into the list passed beside the layers. */
interface PlanLayer {
  kind: 'conv' | 'linear' | 'maxpool' | 'avgpool' | 'lrn';
  weight?: number;
  bias?: number;
  relu?: boolean;
  stride?: number[];
  padding?: number[];
  dilation?: number[];
  groups?: number;
  kernel?: number[];
  ceil?: boolean;
  size?: number;
  alpha?: number;
  beta?: number;
  k?: number;
}

class Unsupported extends Error {}

/** The network's layers as plan layers (eval mode: dropout is the identity, batch norm uses running statistics). */
function planLayers(net: NetworkSpec, own: Tensor[]): { layers: PlanLayer[]; tensors: Tensor[] } {
  const tensors: Tensor[] = [];
  const add = (t: Tensor | undefined): number | undefined => {
    if (!t) return undefined;
    const f = t.dtype === 'float32' ? t : own[own.push(t.float().keep()) - 1];
    return tensors.push(f) - 1;
  };
  const layers: PlanLayer[] = [];
  const list = net.layers;
  const weight = (name: string, key: string) => net.weights.get(`${name}.${key}`);
  for (let i = 0; i < list.length; i++) {
    const { name, spec, description } = list[i];
    const shape = list[i].input;
    const last = layers[layers.length - 1];
    switch (spec.kind) {
      case 'conv2d': {
        const bn = list[i + 1]?.spec;
        const fold = bn?.kind === 'batchNorm2d';
        const [w, b] = fold
          ? foldBatchNorm(name, list[i + 1].name, bn.eps, net.weights, own)
          : [weight(name, 'weight'), weight(name, 'bias')];
        const { stride, padding, dilation, groups } = spec;
        layers.push({ kind: 'conv', weight: add(w), bias: add(b), stride, padding, dilation, groups });
        if (fold) i++;
        break;
      }
      case 'linear':
        layers.push({ kind: 'linear', weight: add(weight(name, 'weight')), bias: add(weight(name, 'bias')) });
        break;
      case 'relu':
        if (!last || (last.kind !== 'conv' && last.kind !== 'linear') || last.relu) throw new Unsupported(name);
        last.relu = true;
        break;
      case 'maxPool2d': {
        const { kernel, stride, padding, ceilMode: ceil } = spec;
        layers.push({ kind: 'maxpool', kernel, stride, padding, ceil });
        break;
      }
      case 'adaptiveAvgPool2d': {
        const [h, w] = [shape[1], shape[2]];
        const [oh, ow] = spec.size;
        if (h % oh !== 0 || w % ow !== 0) throw new Unsupported(`${name} (${h}×${w} to ${oh}×${ow})`);
        if (h !== oh || w !== ow) {
          const kernel = [h / oh, w / ow];
          layers.push({ kind: 'avgpool', kernel, stride: kernel, padding: [0, 0], ceil: false });
        }
        break;
      }
      case 'lrn': {
        if (spec.size % 2 !== 1 || shape[0] % spec.groups !== 0) throw new Unsupported(`${name} (${description})`);
        // oneDNN divides α by the window size, as PyTorch does.
        const alpha = spec.alphaPerSize ? spec.alpha : spec.alpha * spec.size;
        layers.push({ kind: 'lrn', size: spec.size, alpha, beta: spec.beta, k: spec.k, groups: spec.groups });
        break;
      }
      case 'dropout':
      case 'flatten':
        break;
      case 'tanh':
      case 'batchNorm2d': // only folded into the convolution before it
      case 'sequential':
      case 'container':
        throw new Unsupported(`${name} (${description})`);
      default: {
        const unknown: never = spec;
        throw new Unsupported(`${name} (${(unknown as { kind: string }).kind})`);
      }
    }
  }
  return { layers, tensors };
}

/**
 * Conv `conv` then BatchNorm `bn` (eval, epsilon `eps`) as one conv: w·γ/σ and (b − μ)·γ/σ + β, computed in
 * float64 from the tensors under their keys in `weights`.
 */
function foldBatchNorm(
  conv: string,
  bn: string,
  eps: number,
  weights: Map<string, Tensor>,
  own: Tensor[],
): [Tensor, Tensor] {
  const of = (layer: string, key: string) => weights.get(`${layer}.${key}`);
  return noGrad(() =>
    tidy(() => {
      const d = (t: Tensor) => t.to('float64');
      const [convBias, gammaOf, beta] = [of(conv, 'bias'), of(bn, 'weight'), of(bn, 'bias')];
      const mean = d(of(bn, 'running_mean')!);
      const scale = d(of(bn, 'running_var')!).add(eps).rsqrt();
      const gamma = gammaOf ? scale.mul(d(gammaOf)) : scale;
      const w = d(of(conv, 'weight')!)
        .mul(gamma.view(-1, 1, 1, 1))
        .float()
        .keep();
      const b0 = convBias ? d(convBias).sub(mean) : mean.neg();
      const b = (beta ? b0.mul(gamma).add(d(beta)) : b0.mul(gamma)).float().keep();
      own.push(w, b);
      return [w, b] as [Tensor, Tensor];
    }),
  );
}

/**
 * Runs a model forward for inference. `forward(x)` returns float32 logits; `engine` says which path runs and why.
 * Build it after the weights are final (it packs them): a model trained further needs a new one.
 */
export class InferenceRunner {
  engine: 'onednn' | 'libtorch';
  /** Why the libtorch path runs (undefined when oneDNN does). */
  reason: string | undefined;
  #plan: OnednnPlan | undefined;
  readonly #own: Tensor[] = [];

  constructor(
    readonly model: AlexNet,
    readonly device: Device,
    readonly precision: Precision,
  ) {
    const why = this.obstacle();
    if (why === undefined) {
      try {
        const { layers, tensors } = planLayers(model.networkSpec(), this.#own);
        this.#plan = onednnPlan(layers, tensors, precision === 'bf16');
      } catch (e) {
        if (!(e instanceof Unsupported)) throw e;
        this.reason = `oneDNN plans have no ${e.message}`;
      }
    } else this.reason = why;
    this.engine = this.#plan ? 'onednn' : 'libtorch';
  }

  /** The engine and, for libtorch, why: "onednn" or "libtorch (why)". */
  get description(): string {
    return this.reason ? `${this.engine} (${this.reason})` : this.engine;
  }

  private obstacle(): string | undefined {
    if (this.device !== 'cpu') return `${this.device} runs libtorch's ops`;
    if (!onednnAvailable()) return 'the addon was built without oneDNN (apt-get install libdnnl-dev)';
    if (process.env.ALEXNET_INFERENCE === 'libtorch') return 'ALEXNET_INFERENCE=libtorch';
    if (this.precision === 'fp16') return 'fp16 runs libtorch on the CPU';
    if (this.model.training) return 'the model is in training mode';
    return undefined;
  }

  /** (N, C, H, W) float -> (N, classes) float32 logits, without gradients. */
  forward(x: Tensor): Tensor {
    if (this.#plan && this.fits(x)) {
      const plan = this.#plan;
      const y = this.onPlan(() => onednnRun(plan, x));
      if (y) return y;
    }
    return noGrad(() => tidy(() => autocast(this.device, this.precision, () => this.model.forward(x)).float()));
  }

  /** Builds the plan for a batch of `batch` now, packing the weights (later batch sizes repack from that copy). */
  prepare(batch = 1): void {
    tidy(() => this.kernels(zeros([batch, ...this.model.inputShape])));
  }

  /** The kernel oneDNN runs for each primitive at this input (e.g. "conv:brgconv:avx512_core_bf16"). */
  kernels(x: Tensor): string[] {
    if (!this.#plan || !this.fits(x)) return [];
    const plan = this.#plan;
    return this.onPlan(() => onednnKernels(plan, x)) ?? [];
  }

  /**
   * Runs `fn` on the plan. A primitive this CPU lacks (bf16 on an AVX2-only machine) fails when the plan is first
   * built for a geometry: libtorch's ops from then on, and `reason` says why.
   */
  private onPlan<T>(fn: () => T): T | undefined {
    try {
      return fn();
    } catch (e) {
      this.dispose();
      this.engine = 'libtorch';
      this.reason = `oneDNN could not build the plan here (${(e as Error).message.split('\n')[0]})`;
      return undefined;
    }
  }

  private fits(x: Tensor): boolean {
    const s = x.shape;
    return x.device === 'cpu' && s.length === 4 && s.slice(1).every((d, i) => d === this.model.inputShape[i]);
  }

  /** Frees the packed weights (the model is the caller's). */
  dispose(): void {
    if (this.#plan) releaseOnednnPlan(this.#plan);
    this.#plan = undefined;
    for (const t of this.#own.splice(0)) t.dispose();
  }
}
