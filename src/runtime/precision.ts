// Mixed precision: autocast (convolutions and matrix products in bfloat16 or float16, the rest in float32, as
// torch.autocast) and loss scaling for float16 (PyTorch's GradScaler: scale the loss, unscale the gradients,
// skip steps whose gradients overflowed, adapt the scale).
import { UserError } from '../errors';
import { Device } from '../tensor/dtype';
import { unscaleGrads } from '../tensor/grads';
import { setAutocast } from '../tensor/runtime';
import { Tensor } from '../tensor/tensor';
import { cpuInfo, CpuInfo } from './cpu';

export type Precision = 'fp32' | 'bf16' | 'fp16';
export const PRECISIONS: (Precision | 'auto')[] = ['auto', 'fp32', 'bf16', 'fp16'];

/**
 * 'auto': bf16 on a GPU (tensor cores, no loss scaling needed) and on CPUs whose engine has native bfloat16 (AVX-512
 * BF16 or AMX: about twice fp32's training speed, the same accuracy over seeds — see the README); fp32 on other CPUs
 * (AVX2 machines: oneDNN has no bf16 convolution there, and emulated bf16 is slower than fp32).
 */
export function resolvePrecision(p: Precision | 'auto' | undefined, device: Device, cpu?: CpuInfo): Precision {
  if (p === undefined || p === 'auto') {
    if (device.startsWith('cuda')) return 'bf16';
    return (cpu ?? cpuInfo()).nativeBf16 ? 'bf16' : 'fp32';
  }
  if (!PRECISIONS.includes(p)) throw new UserError(`--precision must be ${PRECISIONS.join(', ')}, got '${p}'`);
  if (p === 'fp16' && !device.startsWith('cuda'))
    throw new UserError('--precision fp16 needs a CUDA device (on the CPU use bf16 or fp32)');
  return p;
}

/** Why 'auto' chose what it did, for the start of a run; undefined when the precision was asked for. */
export function autoPrecisionReason(p: Precision | 'auto' | undefined, device: Device): string | undefined {
  if (p !== undefined && p !== 'auto') return undefined;
  if (device.startsWith('cuda')) return 'auto: bf16 on a GPU';
  const c = cpuInfo();
  return c.nativeBf16
    ? `auto: the CPU has native bf16 (${c.isa}); --precision fp32 for float32`
    : `auto: fp32, ${c.isa} has no native bf16`;
}

/** Runs `fn` (a forward pass and its loss) under autocast for `precision` on `device`'s type; fp32 runs it as is. */
export function autocast<T>(device: Device, precision: Precision, fn: () => T): T {
  if (precision === 'fp32') return fn();
  const type = device.startsWith('cuda') ? 'cuda' : 'cpu';
  const dtype = precision === 'bf16' ? 'bfloat16' : 'float16';
  const prev = setAutocast(type, true, dtype);
  try {
    return fn();
  } finally {
    setAutocast(type, prev, dtype);
  }
}

export interface ScalerState {
  scale: number;
  growthTracker: number;
}

/** Dynamic loss scaling with GradScaler's defaults: scale 2^16, ×2 after 2000 good steps, ×0.5 after an overflow. */
export class GradScaler {
  scale: number;
  growthTracker = 0;
  /** Steps skipped because their gradients overflowed. */
  skipped = 0;

  constructor(
    readonly o: { initScale?: number; growthFactor?: number; backoffFactor?: number; growthInterval?: number } = {},
  ) {
    this.scale = o.initScale ?? 65536;
  }

  scaleLoss(loss: Tensor): Tensor {
    return loss.mul(this.scale);
  }

  /**
   * Unscales the gradients of `params`, then calls `step` unless some gradient is infinite or NaN, and updates the
   * scale. Returns whether the step was taken.
   */
  step(params: Tensor[], step: () => void): boolean {
    const finite = unscaleGrads(params, 1 / this.scale);
    if (finite) step();
    else this.skipped++;
    this.update(!finite);
    return finite;
  }

  update(foundInf: boolean): void {
    if (foundInf) {
      this.scale *= this.o.backoffFactor ?? 0.5;
      this.growthTracker = 0;
      return;
    }
    this.growthTracker++;
    if (this.growthTracker === (this.o.growthInterval ?? 2000)) {
      this.scale *= this.o.growthFactor ?? 2;
      this.growthTracker = 0;
    }
  }

  state(): ScalerState {
    return { scale: this.scale, growthTracker: this.growthTracker };
  }

  load(s: Partial<ScalerState> | undefined): void {
    if (s?.scale) this.scale = s.scale;
    if (s?.growthTracker !== undefined) this.growthTracker = s.growthTracker;
  }
}
