// What a distributed run is refused for before any rank starts: the launcher checks rank 0's output files on
// rank 0's machine (only rank 0 writes), so that a refusal there is one line at once instead of a lone peer
// waiting --dist-timeout for a rank 0 that has already stopped.
import { OutputSpec, planOutputs } from '../util/outputs';

export interface RunOutputFlags {
  save?: string;
  metrics?: string;
  overwrite?: boolean;
  /** The checkpoint resumed (--resume): writing over it continues it. */
  resume?: string;
  /**
   * --save is a weights file (model parallelism): an existing one is replaced with --overwrite, never continued
   * (model parallelism refuses --resume, so its refusal does not offer it).
   */
  weightsOnly?: boolean;
}

/**
 * Checks --save and --metrics as rank 0's run will (parent, writability, type, an existing checkpoint refused
 * without --overwrite, no live run holding the lock) without taking anything: the locks are released at once and
 * rank 0 takes them again when it starts.
 */
export function checkRunOutputs(o: RunOutputFlags): void {
  const specs: OutputSpec[] = [];
  if (o.save)
    specs.push(
      o.weightsOnly
        ? { option: '--save', path: o.save, kind: 'file', policy: 'refuse', overwrite: o.overwrite, lock: true }
        : { option: '--save', path: o.save, kind: 'checkpoint', overwrite: o.overwrite, resuming: o.resume },
    );
  if (o.metrics) specs.push({ option: '--metrics', path: o.metrics, kind: 'metrics' });
  if (specs.length) planOutputs(specs, { warn: () => undefined }).release();
}
