// What the pickle of a torch.save file describes, in both of its formats (zip and legacy): storages referred to by
// persistent ids, and tensors rebuilt over them by the few torch functions the restricted unpickler allows. The
// pickle only yields references (StorageRef, TensorRef); bytes are attached once the file's storages are read, and
// tensors are made, bounds-checked, only for the state dict's entries.
import { FormatError } from '../errors';
import { DType, DTYPE_SIZE } from '../tensor/dtype';
import { tensor, Tensor, tidy } from '../tensor/tensor';
import { PickleDict, PickleHooks } from './pickle';

/** torch's typed storage classes (torch.FloatStorage, …) and the dtypes we can hold. */
const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

/** A storage class as the pickle names it: a dtype we hold, or the name of one we do not. */
interface StorageType {
  storageDtype?: DType;
  storageName: string;
}

/** A storage named by a persistent id: a root storage (its bytes attached when read) or a view into one. */
export interface StorageRef {
  key: string;
  dtype: DType;
  numel: number;
  bytes?: Buffer;
  /** Legacy storage views (PyTorch before 1.0): the root storage and the element offset into it. */
  root?: StorageRef;
  offset?: number;
}

/** A tensor the pickle rebuilds: storage, element offset, size and stride, checked only when it is made. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
}

/** A persistent id ('storage', type, key, location, numel[, view metadata]) taken apart and checked. */
export interface StorageId {
  dtype: DType;
  key: string;
  numel: number;
  /** (view key, element offset, element count) in legacy files written before PyTorch 1.0. */
  view?: { key: string; offset: number; numel: number };
}

/** A non-negative integer that is exact as a number, or a FormatError naming `what`. */
export function count(x: unknown, what: string, file: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0)
    throw new FormatError(`${file}: ${what} is ${typeof x === 'bigint' ? String(x) : JSON.stringify(x)}, not a size`);
  return x;
}

function keyOf(x: unknown, file: string): string {
  if (typeof x === 'string') return x;
  if (Buffer.isBuffer(x)) return x.toString('latin1');
  throw new FormatError(`${file}: a storage key is not a string`);
}

export function parseStorageId(pid: unknown, file: string): StorageId {
  if (!Array.isArray(pid) || keyOf(pid[0], file) !== 'storage' || pid.length < 5)
    throw new FormatError(`${file}: unexpected persistent id in the pickle (torch.save refers only to storages)`);
  const type = pid[1] as StorageType | undefined;
  const key = keyOf(pid[2], file);
  if (!type?.storageName) throw new FormatError(`${file}: storage ${key} has no storage type`);
  if (!type.storageDtype)
    throw new FormatError(
      `${file}: storage ${key} is a torch.${type.storageName}; only ${Object.keys(STORAGE_DTYPES).join(', ')} are supported`,
    );
  const numel = count(pid[4], `storage ${key}'s element count`, file);
  const meta = pid[5];
  if (meta === undefined || meta === null) return { dtype: type.storageDtype, key, numel };
  if (!Array.isArray(meta) || meta.length !== 3) throw new FormatError(`${file}: storage ${key} has a malformed view`);
  const view = {
    key: keyOf(meta[0], file),
    offset: count(meta[1], `the offset of view ${String(meta[0])}`, file),
    numel: count(meta[2], `the size of view ${String(meta[0])}`, file),
  };
  return { dtype: type.storageDtype, key, numel, view };
}

function rebuild(storage: unknown, offset: unknown, size: unknown, stride: unknown, file: string): TensorRef {
  const st = storage as StorageRef;
  if (!st || typeof st.key !== 'string' || !st.dtype || !Array.isArray(size) || !Array.isArray(stride))
    throw new FormatError(`${file}: a tensor record is malformed`);
  if (size.length !== stride.length || size.length > 16)
    throw new FormatError(
      `${file}: a tensor of storage ${st.key} has ${size.length} sizes and ${stride.length} strides`,
    );
  return new TensorRef(
    st,
    count(offset, `a tensor's offset into storage ${st.key}`, file),
    size.map((v) => count(v, `a size of a tensor of storage ${st.key}`, file)),
    stride.map((v) => count(v, `a stride of a tensor of storage ${st.key}`, file)),
  );
}

/** Globals that are not data: a whole pickled model or optimiser. Named in the refusal with what to save instead. */
const MODULE_HINT = /^(torch\.nn|torchvision|__main__|torch\.optim)/;

/**
 * The unpickler's allow-list for torch.save pickles: OrderedDict, the tensor and parameter rebuilders and the
 * storage classes. Anything else is refused before it could run.
 */
export function torchHooks(file: string, persistentLoad: (pid: unknown) => unknown): PickleHooks {
  const ret = (data: unknown) => data;
  return {
    global: (module, name) => {
      if (module === 'collections' && name === 'OrderedDict') return () => new PickleDict();
      if (module === 'torch._utils' && (name === '_rebuild_tensor_v2' || name === '_rebuild_tensor'))
        return (st: unknown, o: unknown, sz: unknown, sr: unknown) => rebuild(st, o, sz, sr, file);
      if (module === 'torch._utils' && name === '_rebuild_parameter') return ret;
      if (module === 'torch.nn.parameter' && name === 'Parameter') return ret;
      if (module === 'torch' && name.endsWith('Storage'))
        return Object.assign(() => undefined, { storageDtype: STORAGE_DTYPES[name], storageName: name });
      if (MODULE_HINT.test(module) && module !== 'torch.nn.parameter')
        throw new FormatError(
          `${file} holds a pickled Python object (${module}.${name}), not a state dict: only data is loaded, never code; save model.state_dict() instead`,
        );
      return undefined;
    },
    persistentLoad,
  };
}

/** The bytes of a storage or storage view, once read: bounds-checked against the root storage. */
function storageBytes(s: StorageRef, file: string): Buffer {
  if (!s.root) {
    if (!s.bytes) throw new FormatError(`${file}: storage ${s.key} has no data in the file`);
    return s.bytes;
  }
  const root = storageBytes(s.root, file);
  const es = DTYPE_SIZE[s.dtype];
  const start = s.offset! * es;
  if (start + s.numel * es > root.length)
    throw new FormatError(`${file}: storage view ${s.key} reaches past the end of storage ${s.root.key}`);
  return root.subarray(start, start + s.numel * es);
}

/** `bytes` at an offset the dtype's typed array accepts (storages in the legacy format sit at any byte). */
function aligned(bytes: Buffer, esize: number): Uint8Array {
  if (bytes.byteOffset % esize === 0) return bytes;
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return copy;
}

function fromBytes(raw: Buffer, dtype: DType, shape: number[]): Tensor {
  const bytes = aligned(raw, DTYPE_SIZE[dtype]);
  const n = bytes.length / DTYPE_SIZE[dtype];
  const view: Record<DType, () => ArrayLike<number> | BigInt64Array> = {
    float32: () => new Float32Array(bytes.buffer, bytes.byteOffset, n),
    float64: () => new Float64Array(bytes.buffer, bytes.byteOffset, n),
    int64: () => new BigInt64Array(bytes.buffer, bytes.byteOffset, n),
    int32: () => new Int32Array(bytes.buffer, bytes.byteOffset, n),
    uint8: () => bytes,
    bool: () => bytes,
    float16: () => new Uint16Array(bytes.buffer, bytes.byteOffset, n) as unknown as ArrayLike<number>,
    bfloat16: () => new Uint16Array(bytes.buffer, bytes.byteOffset, n) as unknown as ArrayLike<number>,
  };
  return tensor(view[dtype]() as ArrayLike<number>, shape, dtype);
}

/**
 * Makes the tensor a TensorRef describes, after checking that every element it reaches lies inside its storage
 * and that it is no larger than `maxBytes` (the file's size: a state dict's tensors are stored, not broadcast).
 */
export function materialise(ref: TensorRef, file: string, maxBytes: number): Tensor {
  const { storage, offset, size, stride } = ref;
  const bytes = storageBytes(storage, file);
  const es = DTYPE_SIZE[storage.dtype];
  let numel = 1;
  for (const s of size) {
    numel *= s;
    if (numel * es > maxBytes)
      throw new FormatError(`${file}: a tensor of storage ${storage.key} claims size [${size}], larger than the file`);
  }
  if (numel === 0) return fromBytes(Buffer.alloc(0), storage.dtype, size);
  const last = size.reduce((acc, s, i) => acc + (s - 1) * stride[i], offset);
  if ((last + 1) * es > bytes.length)
    throw new FormatError(`${file}: a tensor reaches past the end of storage ${storage.key}`);
  let dense = 1;
  let contiguous = true;
  for (let i = size.length - 1; i >= 0; i--) {
    if (size[i] !== 1 && stride[i] !== dense) contiguous = false;
    dense *= size[i];
  }
  if (contiguous) return fromBytes(bytes.subarray(offset * es, (offset + numel) * es), storage.dtype, size);
  return tidy(() =>
    fromBytes(bytes.subarray(0, (last + 1) * es), storage.dtype, [last + 1])
      .asStrided(size, stride, offset)
      .contiguous(),
  );
}
