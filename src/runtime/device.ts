// Device policy: which device a run uses, how it is prepared (threads, cuDNN autotuning), how a model is laid out
// on it, and how to wait for it. Every command and the library take their device through here, so `--device`
// means the same thing everywhere.
import * as os from 'node:os';
import { UserError } from '../errors';
import { AlexNet } from '../models/alexnet';
import { cudaSynchronize, setCudnnBenchmark } from '../tensor/runtime';
import { blasWarning } from '../tensor/blas';
import { Device } from '../tensor/dtype';
import { runtimeInfo, setNumThreads } from '../tensor/tensor';

/** What a user may ask for: a device, or `auto` (CUDA when this libtorch has a usable GPU, else the CPU). */
export type DeviceRequest = 'auto' | Device;

export const DEVICE_CHOICES = 'auto, cpu, cuda or cuda:N';

/** Parses a `--device` value; anything else is a usage error naming the choices. */
export function parseDevice(value: string, option = '--device'): DeviceRequest {
  if (value === 'auto' || value === 'cpu' || value === 'cuda' || /^cuda:\d+$/.test(value))
    return value as DeviceRequest;
  throw new UserError(`${option} must be ${DEVICE_CHOICES}, got '${value}'`);
}

/** The device a request resolves to here; asking for a GPU that is not there is a usage error that says why. */
export function resolveDevice(request: DeviceRequest = 'auto'): Device {
  const info = runtimeInfo();
  if (request === 'auto') return info.cudaAvailable ? 'cuda' : 'cpu';
  if (request === 'cpu') return 'cpu';
  if (!info.cudaAvailable) {
    throw new UserError(
      `--device ${request} was asked for, but this libtorch build has no usable CUDA device ` +
        '(use --device cpu, or build the addon with LIBTORCH_USE_PYTORCH=1 against a CUDA PyTorch)',
    );
  }
  const index = cudaIndex(request);
  if (index >= info.cudaDeviceCount) {
    throw new UserError(
      `--device ${request}: this machine has ${info.cudaDeviceCount} CUDA device(s) (cuda:0 … cuda:${info.cudaDeviceCount - 1})`,
    );
  }
  return request;
}

export const isCuda = (device: Device): boolean => device.startsWith('cuda');

/** The GPU's index in 'cuda' (0) or 'cuda:N'; -1 for the CPU. */
export const cudaIndex = (device: string): number =>
  device === 'cuda' ? 0 : device.startsWith('cuda:') ? Number(device.slice('cuda:'.length)) : -1;

export interface PreparedDevice {
  device: Device;
  threads: number;
  /** A warning to show (the reference BLAS on the CPU), if any. */
  warning?: string;
}

/** Resolves the device and sets the engine up for it: CPU threads (default: all cores), cuDNN autotuning on GPUs. */
export function prepareDevice(request: DeviceRequest = 'auto', threads?: number): PreparedDevice {
  const device = resolveDevice(request);
  const n = threads ?? os.cpus().length;
  setNumThreads(n);
  if (isCuda(device)) setCudnnBenchmark(true);
  return { device, threads: n, warning: device === 'cpu' ? blasWarning() : undefined };
}

/**
 * Puts a model on `device` in the memory layout that runs fastest there: channels-last (NHWC). oneDNN on the CPU
 * and cuDNN on GPUs both run convolutions fastest on it (measured on the 2-core CPU: training +3–10%, inference
 * +5–26% over NCHW). The state dict is the same either way.
 */
export function prepareModel<M extends AlexNet>(model: M, device: Device): M {
  if (device !== 'cpu') model.to(device);
  model.setMemoryFormat('channelsLast');
  return model;
}

/** Waits for the device's queued work (a no-op on the CPU, whose ops are synchronous). */
export function synchronize(device: Device): void {
  if (isCuda(device)) cudaSynchronize();
}
