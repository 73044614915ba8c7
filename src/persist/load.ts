// Loading a model from any supported file, and recognising which file it is:
//   alexnet-ts checkpoints and weights files (safetensors with our metadata): rebuilt exactly from their record;
//   plain state dicts (torch.save .pth/.pt, or safetensors without our metadata): the variant is recognised from
//   the keys and shapes (or named with `model`).
import * as fs from 'node:fs';
import { FormatError, UserError } from '../errors';
import { loadPth } from '../io/pth';
import { loadSafetensors } from '../io/safetensors';
import { isZip } from '../io/zip';
import { AlexNet } from '../models/alexnet';
import { getModel } from '../models/registry';
import { CHECKPOINT_FORMAT, ModelRecord, readRecord, WEIGHTS_FORMAT } from './record';
import { tensorsWithPrefix } from './checkpoint';
import { modelFromStateDict } from './variants';

export type WeightsKind = 'safetensors' | 'pth';

/** Refuses, before anything reads it, what is not a regular file (a directory, a FIFO, a device). */
export function checkRegularFile(file: string, what: string): fs.Stats {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (e as Error).message}`);
  }
  if (!st.isFile()) {
    const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'not a regular file';
    throw new UserError(`cannot read ${file}: it is ${kind} (expected ${what})`);
  }
  return st;
}

/** Which format `file` holds, from its first bytes. */
export function weightsKind(file: string): WeightsKind {
  checkRegularFile(file, 'a weights or checkpoint file');
  const fd = fs.openSync(file, 'r');
  let head = Buffer.alloc(9);
  try {
    head = head.subarray(0, fs.readSync(fd, head, 0, 9, 0));
  } finally {
    fs.closeSync(fd);
  }
  if (head.length >= 4 && isZip(head)) return 'pth';
  if (head.length === 9 && head[8] === 0x7b /* '{' */) return 'safetensors';
  if (head.length >= 2 && head[0] === 0x80 && head[1] <= 5) {
    throw new FormatError(`${file} is a legacy torch.save file (PyTorch before 1.6): load it in PyTorch and save it again with torch.save (the default zip format), or export it with safetensors`);
  }
  throw new FormatError(`${file} is neither a safetensors file nor a PyTorch (torch.save) checkpoint`);
}

/**
 * Loads weights into a freshly built model (eval mode): an alexnet-ts checkpoint or weights file, or a plain
 * state dict (torch.save .pth/.pt, or safetensors from elsewhere) whose variant is recognised from its keys.
 */
export function loadModel(file: string, o: { model?: string } = {}): { model: AlexNet; record: ModelRecord } {
  if (weightsKind(file) === 'pth') return modelFromStateDict(loadPth(file), o);
  const { tensors, metadata } = loadSafetensors(file);
  if (metadata.format !== CHECKPOINT_FORMAT && metadata.format !== WEIGHTS_FORMAT) return modelFromStateDict(tensors, o);
  let record: ModelRecord;
  try {
    record = readRecord(metadata, file);
    if (o.model !== undefined && o.model !== record.model) {
      throw new UserError(`--model ${o.model} does not match ${file}, which holds ${record.model} (leave --model out for alexnet-ts files)`);
    }
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    throw e;
  }
  // A checkpoint's state dict is under "model."; its optimiser and RNG tensors are not needed here.
  const checkpoint = metadata.format === CHECKPOINT_FORMAT;
  const sd = checkpoint ? tensorsWithPrefix(tensors, 'model.') : tensors;
  if (checkpoint) for (const [k, t] of tensors) if (!k.startsWith('model.')) t.dispose();
  try {
    const model = getModel(record.model, record.modelOptions);
    model.loadStateDict(sd);
    return { model: model.eval(), record };
  } finally {
    for (const t of sd.values()) t.dispose();
  }
}

