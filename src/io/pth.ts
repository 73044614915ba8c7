// PyTorch checkpoints saved with torch.save, in both of its formats:
//   zip (PyTorch ≥ 1.6): <archive>/data.pkl holds the pickled object, <archive>/data/<key> the raw storages (and
//     PyTorch 2.x adds byteorder, .format_version, .storage_alignment, .data/serialization_id, all tolerated);
//   legacy (before 1.6, or _use_new_zipfile_serialization=False): a row of pickles and the raw storages (pth-legacy).
// The pickles are read by a restricted unpickler that only rebuilds tensors: loading never executes code from the
// file, and no size the file states is allocated before it is checked against the file.
import { FormatError } from '../errors';
import { DTYPE_SIZE } from '../tensor/dtype';
import { Tensor } from '../tensor/tensor';
import { unpickle } from './pickle';
import { readInputFile } from '../util/files';
import { isZip, readZipDirectory, readZipEntry } from './zip';
import { readLegacyPth } from './pth-legacy';
import { materialise, parseStorageId, StorageRef, TensorRef, torchHooks } from './pth-tensors';

/** Reads the tensors of a torch.save file. Nested checkpoints ({state_dict: …}, {model: …}) are unwrapped. */
export function loadPth(file: string): Map<string, Tensor> {
  const buf = readInputFile(file);
  let result: unknown;
  if (isZip(buf)) result = readZipPth(buf, file);
  else if (buf.length > 2 && buf[0] === 0x80) result = readLegacyPth(buf, file);
  else if (buf.length > 262 && buf.toString('latin1', 257, 262) === 'ustar')
    throw new FormatError(`${file} is a tar archive: PyTorch 0.1's torch.save format is not supported`);
  else
    throw new FormatError(`${file} is not a PyTorch checkpoint (neither torch.save's zip format nor its legacy one)`);
  const refs = stateDictOf(result, file);
  const out = new Map<string, Tensor>();
  try {
    for (const [k, ref] of refs) out.set(k, materialise(ref, file, buf.length));
  } catch (e) {
    for (const t of out.values()) t.dispose();
    throw e;
  }
  return out;
}

/** The zip format: data.pkl unpickled, each storage it refers to read from data/<key> and checked for size. */
function readZipPth(buf: Buffer, file: string): unknown {
  const entries = readZipDirectory(buf, file);
  const pkl = [...entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) throw new FormatError(`${file} is a zip archive without data.pkl: not a torch.save file`);
  const prefix = pkl.slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  if (order && readZipEntry(buf, order, file).toString().trim() !== 'little')
    throw new FormatError(`${file} was saved on a big-endian machine; that is not supported`);
  const storages = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): StorageRef => {
    const { key, dtype, numel } = parseStorageId(pid, file);
    const known = storages.get(key);
    if (known) {
      if (known.dtype !== dtype) throw new FormatError(`${file}: storage ${key} is referred to with two dtypes`);
      return known;
    }
    const e = entries.get(`${prefix}data/${key}`);
    if (!e) throw new FormatError(`${file}: storage ${key} is missing from the archive`);
    if (e.size !== numel * DTYPE_SIZE[dtype])
      throw new FormatError(`${file}: storage ${key} has ${e.size} bytes, expected ${numel} × ${DTYPE_SIZE[dtype]}`);
    const bytes = readZipEntry(buf, e, file);
    if (bytes.length !== e.size)
      throw new FormatError(`${file}: storage ${key} has ${bytes.length} bytes, not ${e.size}`);
    const s = { key, dtype, numel, bytes };
    storages.set(key, s);
    return s;
  };
  return unpickle(readZipEntry(buf, entries.get(pkl)!, file), torchHooks(file, persistentLoad), file);
}

/** The state dict inside an unpickled object (unwrapping {state_dict}, {model}, DataParallel's "module." prefix). */
function stateDictOf(result: unknown, file: string): Map<string, TensorRef> {
  let dict = result;
  for (const wrapper of ['state_dict', 'model', 'model_state_dict']) {
    if (dict instanceof Map && dict.get(wrapper) instanceof Map) dict = dict.get(wrapper);
  }
  if (!(dict instanceof Map))
    throw new FormatError(`${file} does not hold a state dict (a mapping of names to tensors)`);
  const out = new Map<string, TensorRef>();
  for (const [k, v] of dict) {
    if (v instanceof TensorRef) out.set(String(k).replace(/^module\./, ''), v);
  }
  if (!out.size) throw new FormatError(`${file} holds no tensors`);
  return out;
}
