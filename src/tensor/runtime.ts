// The addon's runtime switches outside any one tensor: cuDNN autotuning, CUDA synchronisation, autocast and which
// optional engines the build has. Thin typed wrappers over binding.ts (the only door to native code).
import { native } from './binding';

/** Lets cuDNN time its algorithms for each new convolution shape (torch.backends.cudnn.benchmark). */
export function setCudnnBenchmark(on: boolean): void {
  native().setCudnnBenchmark(on);
}

/** Waits for the queued CUDA work of the current device. */
export function cudaSynchronize(): void {
  native().cudaSynchronize();
}

/** Turns libtorch's thread-local autocast for `device` on or off; returns whether it was on. */
export function setAutocast(device: 'cpu' | 'cuda', enabled: boolean, dtype: 'bfloat16' | 'float16'): boolean {
  return native().setAutocast(device, enabled, dtype);
}

/** Whether the addon was built against libdnnl-dev (oneDNN inference plans and GEMM linear layers). */
export function onednnAvailable(): boolean {
  return native().onednnAvailable === true;
}
