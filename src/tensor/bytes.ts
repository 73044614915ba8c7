// A tensor's raw bytes, for the file formats (safetensors, ONNX initialisers): little-endian, row-major, in the
// tensor's own dtype (bfloat16 and float16 as their 2-byte patterns), CPU.
import { native } from './binding';
import { Tensor } from './tensor';

/** A copy of `t`'s data as bytes (contiguous, row-major). */
export function tensorBytes(t: Tensor): Buffer {
  return Buffer.from(native().toBuffer(t.handle));
}

/** A new CPU tensor of `shape` and `dtype` (a DType name, 'bfloat16' and 'float16' included) copied from `data`. */
export function tensorFromBytes(data: ArrayBufferView, shape: number[], dtype: string): Tensor {
  return new Tensor(native().fromBuffer(data, shape, dtype));
}
