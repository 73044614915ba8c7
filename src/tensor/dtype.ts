// Data types and devices as plain strings, checked once at the boundary.
import { UserError } from '../errors';

export type DType = 'float32' | 'float16' | 'bfloat16' | 'float64' | 'uint8' | 'int32' | 'int64' | 'bool';
export const DTYPES: readonly DType[] = [
  'float32',
  'float16',
  'bfloat16',
  'float64',
  'uint8',
  'int32',
  'int64',
  'bool',
];

/** Bytes per element. */
export const DTYPE_SIZE: Record<DType, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  uint8: 1,
  int32: 4,
  int64: 8,
  bool: 1,
};

/** Whether two shapes are the same (rank and every size). */
export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((n, i) => n === b[i]);
}

export function isFloating(d: DType): boolean {
  return d === 'float32' || d === 'float16' || d === 'bfloat16' || d === 'float64';
}

export function checkDtype(d: string): DType {
  if (!(DTYPES as readonly string[]).includes(d)) {
    throw new UserError(`unknown dtype '${d}' (expected one of ${DTYPES.join(', ')})`);
  }
  return d as DType;
}

/** The TypedArray class that holds a dtype's raw elements (16-bit floats as their raw bits). */
export type TypedArray = Float32Array | Float64Array | Uint8Array | Int32Array | BigInt64Array | Uint16Array;

export function typedArrayFor(d: DType, buf: ArrayBuffer): TypedArray {
  switch (d) {
    case 'float32':
      return new Float32Array(buf);
    case 'float64':
      return new Float64Array(buf);
    case 'float16':
    case 'bfloat16':
      return new Uint16Array(buf);
    case 'uint8':
    case 'bool':
      return new Uint8Array(buf);
    case 'int32':
      return new Int32Array(buf);
    case 'int64':
      return new BigInt64Array(buf);
  }
}

export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

export function checkDevice(d: string): Device {
  if (d === 'cpu' || d === 'cuda' || /^cuda:\d+$/.test(d)) return d as Device;
  throw new UserError(`unknown device '${d}' (expected cpu, cuda or cuda:N)`);
}
