// The legacy torch.save format: every file written before PyTorch 1.6, and by later versions given
// _use_new_zipfile_serialization=False. One file holds, in a row:
//   pickle  the magic number 0x1950a86a20f9469cfc6c
//   pickle  the protocol version, 1001
//   pickle  system information ({protocol_version, little_endian, type_sizes})
//   pickle  the object itself; its storages are persistent ids ('storage', type, key, location, numel, view)
//   pickle  the list of storage keys, in the order their data follows
//   for each key: its element count (int64, little-endian), then its bytes (little-endian elements)
// Every pickle goes through the restricted unpickler; every count is checked against the file before it is used.
import { FormatError } from '../errors';
import { DTYPE_SIZE } from '../tensor/dtype';
import { PickleHooks, unpickleAt } from './pickle';
import { parseStorageId, StorageRef, torchHooks } from './pth-tensors';

const MAGIC = 0x1950a86a20f9469cfc6cn;
const PROTOCOL_VERSION = 1001;

/** Plain data only: the header pickles and the key list need no global and no persistent id. */
function dataOnly(file: string): PickleHooks {
  return {
    global: () => undefined,
    persistentLoad: () => {
      throw new FormatError(`${file}: a header pickle of the legacy torch.save format refers to a storage`);
    },
  };
}

/** Reads the header pickles (magic number, protocol version, a little-endian machine): the offset after them. */
function readHeader(buf: Buffer, file: string): number {
  const hooks = dataOnly(file);
  const magic = unpickleAt(buf, 0, hooks, file);
  if (magic.value !== MAGIC)
    throw new FormatError(`${file} is a Python pickle but not a torch.save file (no torch.save magic number)`);
  const version = unpickleAt(buf, magic.end, hooks, file);
  if (version.value !== PROTOCOL_VERSION)
    throw new FormatError(
      `${file}: legacy torch.save protocol version ${String(version.value)} (only ${PROTOCOL_VERSION} exists)`,
    );
  const info = unpickleAt(buf, version.end, hooks, file);
  if (info.value instanceof Map && info.value.get('little_endian') === false)
    throw new FormatError(`${file} was saved on a big-endian machine; that is not supported`);
  return info.end;
}

/**
 * Unpickles a legacy torch.save file. The object comes back with its tensors as TensorRefs whose storages have
 * their bytes attached (subarrays of `buf`: nothing is allocated from a size the file states).
 */
export function readLegacyPth(buf: Buffer, file: string): unknown {
  const roots = new Map<string, StorageRef>();
  const views = new Map<string, StorageRef>();
  const persistentLoad = (pid: unknown): StorageRef => {
    const id = parseStorageId(pid, file);
    let root = roots.get(id.key);
    if (!root) roots.set(id.key, (root = { key: id.key, dtype: id.dtype, numel: id.numel }));
    else if (root.dtype !== id.dtype || root.numel !== id.numel)
      throw new FormatError(`${file}: storage ${id.key} is referred to as two different storages`);
    if (!id.view) return root;
    let view = views.get(id.view.key);
    if (!view) {
      view = { key: id.view.key, dtype: id.dtype, numel: id.view.numel, root, offset: id.view.offset };
      views.set(id.view.key, view);
    }
    return view;
  };
  const main = unpickleAt(buf, readHeader(buf, file), torchHooks(file, persistentLoad), file);
  const keys = unpickleAt(buf, main.end, dataOnly(file), file);
  if (!Array.isArray(keys.value)) throw new FormatError(`${file}: the list of storage keys is not a list`);
  let pos = keys.end;
  for (const k of keys.value) {
    const root = roots.get(String(k));
    if (!root) throw new FormatError(`${file}: the storage list names ${String(k)}, which the pickle never uses`);
    if (root.bytes) throw new FormatError(`${file}: storage ${root.key} is listed twice`);
    if (pos + 8 > buf.length) throw new FormatError(`${file} is truncated: storage ${root.key} is missing`);
    const stated = buf.readBigInt64LE(pos);
    if (stated !== BigInt(root.numel))
      throw new FormatError(
        `${file}: storage ${root.key} holds ${stated} elements by its own count, ${root.numel} by the pickle's`,
      );
    const n = root.numel * DTYPE_SIZE[root.dtype];
    if (pos + 8 + n > buf.length)
      throw new FormatError(
        `${file} is truncated: storage ${root.key} needs ${n} bytes, ${Math.max(0, buf.length - pos - 8)} are left`,
      );
    root.bytes = buf.subarray(pos + 8, pos + 8 + n);
    pos += 8 + n;
  }
  for (const r of roots.values())
    if (!r.bytes) throw new FormatError(`${file}: storage ${r.key} is used but its data is not in the file`);
  return main.value;
}
