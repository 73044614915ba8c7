// One rank of test/ddp-oracle.test.ts, run as its own process: `node ddp-worker.js DIR` with RANK, WORLD_SIZE,
// MASTER_ADDR and MASTER_PORT in the environment (torchrun's conventions). DIR is what the test wrote for both us
// and test/golden/ddp_oracle.py (config.json, init{R}.safetensors, batches.safetensors). The rank trains exactly as
// `alexnet train` does in a data-parallel run — joinDataParallel, syncModel, then trainStep with the trainer's
// beforeForward/beforeBackward hooks — and writes its final state dict (parameters and buffers) to
// ours-rank{R}.safetensors. A failure is one line on stderr and exit code 1.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readDistEnv } from '../../src/distributed/env';
import { joinDataParallel } from '../../src/distributed/group';
import { loadSafetensors, saveSafetensors } from '../../src/io/safetensors';
import { AlexNetOptions } from '../../src/models/alexnet';
import { getModel } from '../../src/models/registry';
import { SGD } from '../../src/optim/optimizer';
import { prepareModel } from '../../src/runtime/device';
import { StepContext, trainStep } from '../../src/train/step';
import { setNumThreads } from '../../src/tensor/tensor';

/** The run both implementations repeat (config.json). */
export interface DdpOracleConfig {
  model: 'alexnet-d2l' | 'alexnet-bn';
  options: AlexNetOptions & { widths: number[]; dropout: number };
  in_channels: number;
  num_classes: number;
  world_size: number;
  steps: number;
  lr: number;
  momentum: number;
  weight_decay: number;
}

function main(dir: string): void {
  const env = readDistEnv();
  if (!env) throw new Error('RANK and WORLD_SIZE must be set');
  setNumThreads(1);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as DdpOracleConfig;
  const model = prepareModel(getModel(cfg.model, cfg.options), 'cpu');
  const init = loadSafetensors(path.join(dir, `init${env.rank}.safetensors`)).tensors;
  model.loadStateDict(init, { strict: true });
  model.train();
  const par = joinDataParallel(env, { timeoutSeconds: 30 });
  try {
    par.syncModel(model);
    const optimizer = new SGD(model.parameters(), {
      lr: cfg.lr,
      momentum: cfg.momentum,
      weightDecay: cfg.weight_decay,
      form: 'pytorch',
    });
    const ctx: StepContext = {
      model,
      optimizer,
      device: 'cpu',
      precision: 'fp32',
      beforeForward: () => par.beforeForward(model),
      beforeBackward: () => par.beforeBackward(),
    };
    const batches = loadSafetensors(path.join(dir, 'batches.safetensors')).tensors;
    for (let s = 0; s < cfg.steps; s++) {
      const x = batches.get(`r${env.rank}.s${s}.x`);
      const y = batches.get(`r${env.rank}.s${s}.y`);
      if (!x || !y) throw new Error(`batches.safetensors has no batch for rank ${env.rank} at step ${s}`);
      trainStep(ctx, x, y);
    }
    saveSafetensors(path.join(dir, `ours-rank${env.rank}.safetensors`), model.stateDict());
  } finally {
    par.close();
  }
}

try {
  main(process.argv[2]);
} catch (e) {
  process.stderr.write(`ddp-worker rank ${process.env.RANK}: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
