// One rank of a model-parallel training run for test/model-parallel-train.test.ts:
// `RANK=r WORLD_SIZE=2 MASTER_ADDR=… MASTER_PORT=… node mp-train-worker.js '<TrainOptions as JSON>'`. It builds the
// run configuration as `alexnet train` does (buildRunConfig) and calls trainModelParallel; it prints the run's log
// lines and ends with one JSON line: {result} or {error, user} (user: a UserError, one line for the person).
// MP_STOP_AT=n makes this rank ask to stop at its n-th poll (as Ctrl-C reaching only this rank would).
import { trainModelParallel } from '../../src/distributed/model-parallel-train';
import { readDistEnv } from '../../src/distributed/env';
import { UserError } from '../../src/errors';
import { buildRunConfig, TrainOptions } from '../../src/train/config';

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2]) as TrainOptions & { resume?: string };
  const { resume, ...rest } = options;
  try {
    const env = readDistEnv()!;
    const cfg = buildRunConfig(rest);
    const stopAt = Number(process.env.MP_STOP_AT ?? 0);
    let polls = 0;
    const shouldStop = () => stopAt > 0 && ++polls >= stopAt;
    const hooks = { log: (l: string) => console.log(l), shouldStop };
    const result = await trainModelParallel(cfg, env, hooks, { timeoutSeconds: 30, resume });
    process.stdout.write(JSON.stringify({ result }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: (e as Error).message, user: e instanceof UserError }) + '\n');
    process.exitCode = e instanceof UserError ? 2 : 1;
  }
}

if (require.main === module) void main();
