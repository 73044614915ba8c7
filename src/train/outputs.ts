// The output files of a training run (--save, --metrics): checked before any training starts, locked while the
// run writes them, and never allowed to take a finished run's work down with them.
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import { estimateSafetensorsBytes, readSafetensorsMetadata } from '../io/safetensors';
import { Optimizer } from '../optim/optimizer';
import { DTYPE_SIZE } from '../tensor/dtype';
import { AlexNet } from '../models/alexnet';
import { appendLine } from '../util/files';
import { OutputSpec, planOutputs } from '../util/outputs';
import { RunConfig } from './config';

export interface RunOutputs {
  /** Where the checkpoint went last (the --save path, or a rescue file when that could not be written). */
  saved?: string;
  /** Writes the checkpoint with `write`; if --save fails now (a disk filled since the start), writes a rescue copy. */
  save(write: (file: string) => void, warn: (message: string) => void): string | undefined;
  /** Appends a metrics record; a failure becomes one warning, never the end of the run. */
  appendMetrics(record: object, warn: (message: string) => void): void;
  release(): void;
}

/** What an existing checkpoint holds, from its header alone: "alexnet-d2l, epoch 3 of 10". */
function describeCheckpoint(file: string): string | undefined {
  const m = readSafetensorsMetadata(file);
  if (!m?.progress || !m.config) return m?.format ? `a ${m.format} file` : undefined;
  try {
    const p = JSON.parse(m.progress) as { epoch: number };
    const c = JSON.parse(m.config) as { optimization?: { epochs?: number }; epochs?: number };
    return `${m.model}, epoch ${p.epoch} of ${c.optimization?.epochs ?? c.epochs}`;
  } catch {
    return undefined;
  }
}

/** Bytes the checkpoint of `model` and `optimizer` will take (without an optimiser: a weights file's). */
export function checkpointSize(model: AlexNet, optimizer?: Optimizer): number {
  const tensors = [...model.stateDict().values(), ...(optimizer?.stateTensors() ?? []).map(([, t]) => t)];
  const bytes = tensors.reduce((a, t) => a + t.numel * DTYPE_SIZE[t.dtype], 0);
  return estimateSafetensorsBytes(bytes, tensors.length + 1, 64 << 10);
}

/**
 * Checks --save and --metrics before the run starts (see planOutputs: parent, writability, type, free space for
 * `checkpointBytes`, not another run's checkpoint unless --overwrite, not locked by a live run) and takes the lock.
 */
export function planRunOutputs(
  cfg: RunConfig,
  checkpointBytes: number,
  o: { runId: string; resuming?: string; inputs?: { option: string; path: string }[]; warn: (m: string) => void },
): RunOutputs {
  const { save, metrics, overwrite } = cfg.output;
  const specs: OutputSpec[] = [];
  if (save) {
    specs.push({
      option: '--save',
      path: save,
      kind: 'checkpoint',
      expectedBytes: checkpointBytes,
      overwrite,
      resuming: o.resuming,
      inputs: o.inputs,
      describeExisting: describeCheckpoint,
    });
  }
  if (metrics)
    specs.push({
      option: '--metrics',
      path: metrics,
      kind: 'metrics',
      expectedBytes: cfg.optimization.epochs * 4096,
      inputs: o.inputs,
    });
  const plan = planOutputs(specs, { command: process.argv.slice(1).join(' '), warn: o.warn });
  for (const f of plan.cleaned) o.warn(`removed ${f}, a partial checkpoint left by a run that was killed`);
  if (plan.outputs.some((p) => p.kind === 'metrics' && p.exists)) {
    o.warn(
      `--metrics ${metrics} already has records: this run's are appended after them, each marked with its run id (${o.runId})`,
    );
  }
  let metricsFailed = false;
  // When resuming, the checkpoint resumed from is the last good one until this run writes another.
  const outputs: RunOutputs = {
    saved: o.resuming,
    save(write, warn) {
      if (!save) return undefined;
      try {
        write(save);
        return (outputs.saved = save);
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        const rescue = path.join(os.tmpdir(), `alexnet-rescue-${process.pid}-${path.basename(save)}`);
        write(rescue);
        warn(`warning: ${e.message}; the checkpoint was saved to ${rescue} instead (continue with --resume ${rescue})`);
        return (outputs.saved = rescue);
      }
    },
    appendMetrics(record, warn) {
      if (!metrics || metricsFailed) return;
      try {
        appendLine(metrics, JSON.stringify(record), { what: '--metrics' });
      } catch (e) {
        if (!(e instanceof UserError)) throw e;
        metricsFailed = true;
        warn(`warning: ${e.message}; no more metrics are written (the run goes on)`);
      }
    },
    release: () => plan.release(),
  };
  return outputs;
}
