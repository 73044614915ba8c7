// Loading a model from any supported file, and recognising which file it is:
//   alexnet-ts checkpoints and weights files (safetensors with our metadata): rebuilt exactly from their record;
//   plain state dicts (torch.save .pth/.pt, or safetensors without our metadata): the variant is recognised from
//   the keys and shapes (or named with `model`).
import { UserError } from '../errors';
import { loadPth } from '../io/pth';
import { loadSafetensors } from '../io/safetensors';
import { AlexNet } from '../models/alexnet';
import { getModel } from '../models/registry';
import { CHECKPOINT_FORMAT, ModelRecord, readRecord, WEIGHTS_FORMAT } from './record';
import { tensorsWithPrefix } from './checkpoint';
import { DataChoice, fitStateDictRecord, modelFromStateDict, StateDictFacts } from './variants';
import { weightsKind } from './kind';

export { weightsKind };

/**
 * Loads weights into a freshly built model (eval mode): an alexnet-ts checkpoint or weights file, or a plain
 * state dict (torch.save .pth/.pt, or safetensors from elsewhere) whose variant is recognised from its keys.
 * For a plain state dict `stateDict` is set and the record is a default one (fitStateDictRecord fits it to data).
 */
export function loadModel(
  file: string,
  o: { model?: string; what?: string } = {},
): { model: AlexNet; record: ModelRecord; stateDict?: StateDictFacts } {
  if (weightsKind(file, o.what) === 'pth') return modelFromStateDict(loadPth(file), o);
  const { tensors, metadata } = loadSafetensors(file, o.what);
  if (metadata.format !== CHECKPOINT_FORMAT && metadata.format !== WEIGHTS_FORMAT)
    return modelFromStateDict(tensors, o);
  let record: ModelRecord;
  try {
    record = readRecord(metadata, file);
    if (o.model !== undefined && o.model !== record.model) {
      throw new UserError(
        `--model ${o.model} does not match ${file}, which holds ${record.model} (leave --model out for alexnet-ts files)`,
      );
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

/**
 * A model file loaded to run on a data set: a plain PyTorch state dict, which carries no preprocessing and no class
 * names, gets its record fitted to the data set (fitStateDictRecord), and `say` is told how in one line.
 */
export function loadModelFor(
  file: string,
  data: DataChoice,
  say: (line: string) => void,
): { model: AlexNet; record: ModelRecord; stateDict?: StateDictFacts } {
  const l = loadModel(file);
  if (!l.stateDict) return l;
  const { record, note } = fitStateDictRecord({ ...l, stateDict: l.stateDict }, file, data);
  say(note);
  return { ...l, record };
}
