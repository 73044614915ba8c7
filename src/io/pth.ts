// PyTorch checkpoints saved with torch.save (the zip format of PyTorch ≥ 1.6): archive/data.pkl holds the
// pickled state dict, archive/data/<key> the raw storages. The pickle is read by a restricted unpickler that
// only rebuilds tensors: loading never executes code from the file.
import { FormatError } from '../errors';
import { DType, DTYPE_SIZE } from '../tensor/dtype';
import { tensor, Tensor, tidy } from '../tensor/tensor';
import { PickleDict, unpickle } from './pickle';
import { readInputFile } from '../util/files';
import { isZip, readZipDirectory, readZipEntry } from './zip';

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

interface StorageType {
  storageDtype: DType;
}
interface Storage {
  dtype: DType;
  bytes: Buffer;
  key: string;
}

function rowMajorStrides(size: number[]): number[] {
  const s = new Array<number>(size.length);
  let acc = 1;
  for (let i = size.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= size[i];
  }
  return s;
}

function fromBytes(bytes: Uint8Array, dtype: DType, shape: number[]): Tensor {
  const view: Record<DType, () => ArrayLike<number> | BigInt64Array> = {
    float32: () => new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4),
    float64: () => new Float64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8),
    int64: () => new BigInt64Array(bytes.buffer, bytes.byteOffset, bytes.length / 8),
    int32: () => new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4),
    uint8: () => bytes,
    bool: () => bytes,
    float16: () => new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2) as unknown as ArrayLike<number>,
    bfloat16: () => new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2) as unknown as ArrayLike<number>,
  };
  return tensor(view[dtype]() as ArrayLike<number>, shape, dtype);
}

/** Reads the tensors of a torch.save file. Nested checkpoints ({state_dict: …}, {model: …}) are unwrapped. */
export function loadPth(file: string): Map<string, Tensor> {
  const buf = readInputFile(file);
  if (!isZip(buf)) {
    const legacy = buf.length > 2 && buf[0] === 0x80;
    throw new FormatError(
      legacy
        ? `${file} uses PyTorch's legacy (pre-1.6) format: re-save it with torch.save(state_dict, path) from PyTorch 1.6 or later`
        : `${file} is not a PyTorch checkpoint (torch.save writes a zip archive; this file is not one)`,
    );
  }
  const entries = readZipDirectory(buf, file);
  const pkl = [...entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) throw new FormatError(`${file} is a zip archive without data.pkl: not a torch.save file`);
  const prefix = pkl.slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  if (order && readZipEntry(buf, order, file).toString().trim() !== 'little')
    throw new FormatError(`${file} was saved on a big-endian machine; that is not supported`);
  const archive: Archive = { file, buf, entries, prefix, storages: new Map(), loaded: [] };
  let result: unknown;
  try {
    result = unpickle(
      readZipEntry(buf, entries.get(pkl)!, file),
      {
        global: (module, name) => {
          if (module === 'collections' && name === 'OrderedDict') return () => new PickleDict();
          if (module === 'torch._utils' && name === '_rebuild_tensor_v2')
            return (st: unknown, o: unknown, sz: unknown, sr: unknown) => rebuildTensor(archive, st, o, sz, sr);
          if (module === 'torch._utils' && name === '_rebuild_parameter') return (data: unknown) => data;
          if (module === 'torch' && STORAGE_DTYPES[name])
            return Object.assign(() => undefined, { storageDtype: STORAGE_DTYPES[name] });
          return undefined;
        },
        persistentLoad: (pid) => loadStorage(archive, pid),
      },
      file,
    );
  } catch (e) {
    for (const t of archive.loaded) t.dispose();
    throw e;
  }
  return stateDictOf(result, file);
}

/** A torch.save archive being read: its entries, the storages read so far, the tensors made from them. */
interface Archive {
  file: string;
  buf: Buffer;
  entries: ReturnType<typeof readZipDirectory>;
  prefix: string;
  storages: Map<string, Storage>;
  loaded: Tensor[];
}

/** The pickle's persistent id ('storage', type, key, location, numel) -> that storage's bytes, checked for size. */
function loadStorage(a: Archive, pid: unknown): Storage {
  if (!Array.isArray(pid) || pid[0] !== 'storage' || pid.length < 5)
    throw new FormatError(`${a.file}: unexpected persistent id in the pickle`);
  const [, type, key, , numel] = pid as [string, StorageType, string, string, number];
  const dtype = type?.storageDtype;
  if (!dtype) throw new FormatError(`${a.file}: storage ${key} has an unsupported type`);
  if (!a.storages.has(key)) {
    const e = a.entries.get(`${a.prefix}data/${key}`);
    if (!e) throw new FormatError(`${a.file}: storage ${key} is missing from the archive`);
    const bytes = readZipEntry(a.buf, e, a.file);
    if (bytes.length !== numel * DTYPE_SIZE[dtype])
      throw new FormatError(
        `${a.file}: storage ${key} has ${bytes.length} bytes, expected ${numel} × ${DTYPE_SIZE[dtype]}`,
      );
    a.storages.set(key, { dtype, bytes, key });
  }
  return a.storages.get(key)!;
}

/** torch._utils._rebuild_tensor_v2(storage, offset, size, stride): a tensor over a storage, bounds-checked. */
function rebuildTensor(a: Archive, storage: unknown, offset: unknown, size: unknown, stride: unknown): Tensor {
  const st = storage as Storage;
  if (!st || !st.bytes || !Array.isArray(size) || !Array.isArray(stride) || typeof offset !== 'number') {
    throw new FormatError(`${a.file}: a tensor record is malformed`);
  }
  const sz = size as number[];
  const sr = stride as number[];
  const esize = DTYPE_SIZE[st.dtype];
  const numel = sz.reduce((x, y) => x * y, 1);
  const dense = rowMajorStrides(sz);
  const contiguous = sr.every((v, i) => sz[i] === 1 || v === dense[i]);
  let t: Tensor;
  if (contiguous) {
    if ((offset + numel) * esize > st.bytes.length)
      throw new FormatError(`${a.file}: a tensor reaches past the end of storage ${st.key}`);
    t = fromBytes(st.bytes.subarray(offset * esize, (offset + numel) * esize), st.dtype, sz);
  } else {
    t = tidy(() =>
      fromBytes(st.bytes, st.dtype, [st.bytes.length / esize])
        .asStrided(sz, sr, offset)
        .contiguous(),
    );
  }
  a.loaded.push(t);
  return t;
}

/** The state dict inside an unpickled object (unwrapping {state_dict}, {model}, DataParallel's "module." prefix). */
function stateDictOf(result: unknown, file: string): Map<string, Tensor> {
  let dict = result;
  for (const wrapper of ['state_dict', 'model', 'model_state_dict']) {
    if (dict instanceof Map && dict.get(wrapper) instanceof Map) dict = dict.get(wrapper);
  }
  if (!(dict instanceof Map))
    throw new FormatError(`${file} does not hold a state dict (a mapping of names to tensors)`);
  const out = new Map<string, Tensor>();
  for (const [k, v] of dict) {
    if (!(v instanceof Tensor)) continue;
    out.set(String(k).replace(/^module\./, ''), v);
  }
  if (!out.size) throw new FormatError(`${file} holds no tensors`);
  return out;
}
