// Training checkpoints (safetensors): "model.<key>" (the state dict), "optim.<name>" (optimiser state), "rng.cpu";
// metadata with the model record, the run configuration, progress, history and optimiser scalars. Writes are
// atomic (temporary file, fsync, rename): a crash mid-write leaves the previous file intact.
import { FormatError, UserError } from '../errors';
import { loadSafetensors, saveSafetensors } from '../io/safetensors';
import { AlexNet } from '../models/alexnet';
import { Tensor } from '../tensor/tensor';
import { CHECKPOINT_FORMAT, ModelRecord, readRecord, recordMetadata, WEIGHTS_FORMAT } from './record';
import { FieldReader } from './validate';
import { weightsKind } from './kind';

export interface Progress {
  /** Epochs completed. */
  epoch: number;
  /** Batches completed in the current (unfinished) epoch; 0 at an epoch boundary. */
  batch: number;
  globalStep: number;
}

export interface OptimizerMeta {
  type: string;
  scalars: Record<string, number>;
  schedule: Record<string, number>;
  scaler?: { scale: number; growthTracker: number };
}

export interface CheckpointData {
  record: ModelRecord;
  progress: Progress;
  config: Record<string, unknown>;
  optimizer: OptimizerMeta;
  history: Record<string, number>[];
  /** The run this checkpoint belongs to (metrics records carry the same id). */
  runId?: string;
  tensors: Map<string, Tensor>;
}

export interface CheckpointContents extends Omit<CheckpointData, 'tensors'> {
  optimizerTensors: [string, Tensor][];
  rng: Tensor;
}

export function saveCheckpoint(file: string, model: AlexNet, c: CheckpointContents, what = '--save'): void {
  const entries: [string, Tensor][] = [];
  for (const [k, t] of model.stateDict()) entries.push([`model.${k}`, t]);
  for (const [k, t] of c.optimizerTensors) entries.push([`optim.${k}`, t]);
  entries.push(['rng.cpu', c.rng]);
  saveSafetensors(
    file,
    entries,
    {
      ...recordMetadata(c.record, CHECKPOINT_FORMAT),
      progress: JSON.stringify(c.progress),
      config: JSON.stringify(c.config),
      optimizer: JSON.stringify(c.optimizer),
      history: JSON.stringify(c.history),
      ...(c.runId ? { run_id: c.runId } : {}),
    },
    what,
  );
}

export function loadCheckpoint(file: string, what = '--resume'): CheckpointData {
  if (weightsKind(file, what) === 'pth') {
    throw new UserError(
      `${what} ${file} is a PyTorch state dict, not an alexnet-ts training checkpoint: use it with --weights (eval, predict, export)`,
    );
  }
  const { tensors, metadata } = loadSafetensors(file, what);
  try {
    if (metadata.format !== CHECKPOINT_FORMAT) {
      const hint = metadata.format === WEIGHTS_FORMAT ? ' (it holds weights only: use it with eval or predict)' : '';
      throw new UserError(`${file} is not an alexnet-ts training checkpoint${hint}`);
    }
    const f = new FieldReader(file);
    const progress = f.object('progress', f.json('progress', metadata.progress));
    const steps = (k: string) => f.int(`progress.${k}`, progress[k], 0, Number.MAX_SAFE_INTEGER);
    if (!tensors.get('rng.cpu'))
      throw new FormatError(`${file} has no RNG state ('rng.cpu'): it cannot be resumed exactly`);
    return {
      record: readRecord(metadata, file),
      progress: { epoch: steps('epoch'), batch: steps('batch'), globalStep: steps('globalStep') },
      config: f.object('config', f.json('config', metadata.config)),
      optimizer: f.object('optimizer', f.json('optimizer', metadata.optimizer)) as unknown as OptimizerMeta,
      history: f.array('history', f.json('history', metadata.history), 0, 1e6, (x) => f.object('history', x)) as Record<
        string,
        number
      >[],
      runId: metadata.run_id,
      tensors,
    };
  } catch (e) {
    for (const t of tensors.values()) t.dispose();
    throw e;
  }
}

export function saveWeights(file: string, model: AlexNet, record: ModelRecord, what?: string): void {
  saveSafetensors(file, model.stateDict(), recordMetadata(record, WEIGHTS_FORMAT), what);
}

/** Splits a checkpoint's tensors by prefix ("model." -> the state dict, "optim." -> optimiser state). */
export function tensorsWithPrefix(tensors: Map<string, Tensor>, prefix: string): Map<string, Tensor> {
  return new Map([...tensors].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]));
}
