// A whole model-parallel training run (src/distributed/model-parallel-train.ts) against the one-process trainer:
// two real ranks (test/helpers/mp-train-worker.ts) train alexnet-2012 on Fashion-MNIST, and their saved weights
// must be what `alexnet train` saves for the same configuration; `alexnet eval` loads them as a plain model.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { trainModelParallel } from '../src/distributed/model-parallel-train';
import { DistEnv } from '../src/distributed/env';
import { UserError } from '../src/errors';
import { loadSafetensors, readSafetensorsMetadata } from '../src/io/safetensors';
import { getModel } from '../src/models/registry';
import { WEIGHTS_FORMAT } from '../src/persist/record';
import { manualSeed } from '../src/tensor/tensor';
import { buildRunConfig, TrainOptions } from '../src/train/config';
import { cli } from './helpers/cli';
import { maxAbs, maxAbsDiff } from './helpers/oracle';
import { freePort } from '../src/distributed/launch';

// alexnet-2012 at 99×99 keeps every layer of the paper's network (FC6 reads 256·2·2 features); 8 images in
// batches of 4 with --max-steps 3: an epoch boundary (evaluation, schedule, save) and a stop inside epoch 2.
const RUN = {
  model: 'alexnet-2012',
  inputSize: 99,
  trainLimit: 8,
  testLimit: 8,
  batchSize: 4,
  evalBatchSize: 8,
  epochs: 2,
  maxSteps: 3,
  dropout: 0,
  precision: 'fp32',
  seed: 5,
  threads: 1,
} satisfies TrainOptions;

const flags = (o: Record<string, unknown>): string[] =>
  Object.entries(o).flatMap(([k, v]) => [`--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`, String(v)]);

interface RankRun {
  code: number | null;
  output: string;
  last: { result?: { stopped: string; globalStep: number; history: { test_loss: number }[] }; error?: string };
}

/** Both ranks of the worker on `options` (killed past `limitMs`: nothing hangs); `env[r]` adds to rank r's. */
async function twoRanks(options: object, env: NodeJS.ProcessEnv[] = [{}, {}], limitMs = 45_000): Promise<RankRun[]> {
  const port = await freePort();
  const worker = path.join(__dirname, 'helpers', 'mp-train-worker.js');
  const one = (rank: number): Promise<RankRun> => {
    const rankEnv = { RANK: String(rank), WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
    const proc = spawn(process.execPath, [worker, JSON.stringify(options)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...rankEnv, ...env[rank] },
    });
    let output = '';
    proc.stdout.on('data', (d) => (output += d));
    proc.stderr.on('data', (d) => (output += d));
    const kill = setTimeout(() => proc.kill('SIGKILL'), limitMs);
    return new Promise((resolve) =>
      proc.on('exit', (code) => {
        clearTimeout(kill);
        const lines = output.trim().split('\n');
        resolve({ code, output, last: JSON.parse(lines[lines.length - 1] || '{}') as RankRun['last'] });
      }),
    );
  };
  return Promise.all([one(0), one(1)]);
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-mptrain-'));

/** The run's starting weights: the one-process model from the run's seed, as both trainers build it. */
function initialWeights() {
  manualSeed(RUN.seed);
  return getModel('alexnet-2012', { inputSize: RUN.inputSize, dropout: 0, numClasses: 10, inChannels: 1 });
}

test("alexnet train --nproc 2 --model-parallel 2 trains alexnet-2012 to the one-process trainer's weights, saved as a file eval loads", async () => {
  const dir = tmp();
  try {
    const mp = path.join(dir, 'mp.safetensors');
    const metrics = path.join(dir, 'mp.jsonl');
    // The real command: the launcher starts both ranks.
    const run = cli(['train', '--nproc', '2', '--model-parallel', '2', ...flags({ ...RUN, save: mp, metrics })]);
    const output = run.stdout + run.stderr;
    assert.equal(run.code, 0, output);
    assert.match(output, /stopped after step 3 /);
    // Only rank 0 speaks and writes: the start line names the split; one epoch record.
    assert.match(run.stdout, /model-parallel: 2 ranks, each half the kernels of every layer/);
    assert.match(run.stdout, /epoch 1\/2: train loss/);
    assert.match(run.stderr, /\[rank 1\] rank 1\/2/);
    assert.doesNotMatch(output, /\[rank 1\] (training alexnet-2012|epoch 1\/2)/);
    assert.equal(fs.readFileSync(metrics, 'utf8').trim().split('\n').length, 1);
    assert.equal(readSafetensorsMetadata(mp)?.format, WEIGHTS_FORMAT);

    // The same configuration in one process (the trainer's own checkpoint, weights under "model.").
    const one = path.join(dir, 'one.safetensors');
    const single = cli(['train', ...flags({ ...RUN, save: one })]);
    assert.equal(single.code, 0, single.stderr);
    const got = loadSafetensors(mp).tensors;
    const want = loadSafetensors(one).tensors;
    const start = initialWeights().stateDict();
    assert.deepEqual([...got.keys()], [...start.keys()], "alexnet-2012's keys, in its order");
    for (const [k, t0] of start) {
      const w = want.get(`model.${k}`)!;
      const diff = maxAbsDiff(got.get(k)!, w);
      const moved = maxAbsDiff(w, t0);
      // float32 rounding only: a few units in the last place of the weights, or — for a tensor that started at 0,
      // like conv1's biases, whose value is all change — a small share of the change (its rounding follows the
      // gradient's many terms, not the small sum)...
      const tol = Math.max(1e-5 * maxAbs(w), 1e-2 * moved);
      assert.ok(diff <= tol, `${k}: ${diff} from one process' (largest |w| ${maxAbs(w)}, moved ${moved})`);
      // ...and far below what the three steps moved them: a wrong gradient anywhere would differ by about as much.
      if (k.endsWith('.weight'))
        assert.ok(moved >= 100 * diff && moved > 0, `${k} moved ${moved}, the runs differ by ${diff}`);
    }

    // `alexnet eval` loads the file as a plain alexnet-2012 and sees what the run's last evaluation saw.
    const stopLine = /stopped after step 3 .*test loss ([\d.]+) top-1 ([\d.]+)/.exec(output);
    assert.ok(stopLine, output);
    const ev = cli(['eval', '--weights', mp, '--limit', '8', '--json', '--threads', '1']);
    assert.equal(ev.code, 0, ev.stderr);
    const report = JSON.parse(ev.stdout) as { model: string; loss: number; top1: number };
    assert.equal(report.model, 'alexnet-2012');
    assert.ok(Math.abs(report.loss - Number(stopLine[1])) <= 1e-4 * Math.max(1, report.loss), `${report.loss}`);
    assert.equal(report.top1.toFixed(4), stopLine[2]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a stop asked on one rank only (Ctrl-C) stops both at the same step, and the weights are saved', async () => {
  const dir = tmp();
  try {
    const mp = path.join(dir, 'mp.safetensors');
    const options = { ...RUN, epochs: 1, maxSteps: undefined, save: mp };
    // Rank 1 asks at its second poll (before step 2): rank 0 never asks, yet stops there too.
    const ranks = await twoRanks(options, [{}, { MP_STOP_AT: '2' }]);
    for (const [r, run] of ranks.entries()) {
      assert.equal(run.code, 0, `rank ${r}: ${run.output}`);
      assert.equal(run.last.result?.stopped, 'interrupted');
      assert.equal(run.last.result?.globalStep, 1);
    }
    assert.match(ranks[0].output, /interrupted after step 1: weights saved to .*mp\.safetensors/);
    const ev = cli(['eval', '--weights', mp, '--limit', '8', '--json', '--threads', '1']);
    assert.equal(ev.code, 0, ev.stderr);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('what model parallelism cannot run is refused in one line before the ranks meet', async () => {
  const env = (worldSize: number): DistEnv => ({
    rank: 0,
    worldSize,
    localRank: 0,
    localWorldSize: worldSize,
    nodeRank: 0,
    nnodes: 1,
    masterAddr: '127.0.0.1',
    masterPort: 1, // never reached: every refusal comes first (a rendezvous would fail on this port)
  });
  const refused = async (o: TrainOptions, re: RegExp, extra: { worldSize?: number; resume?: string } = {}) => {
    const cfg = buildRunConfig({ ...RUN, ...o });
    await assert.rejects(
      trainModelParallel(
        cfg,
        env(extra.worldSize ?? 2),
        { log: () => {} },
        { timeoutSeconds: 2, resume: extra.resume },
      ),
      (e: unknown) => e instanceof UserError && re.test(e.message) && !e.message.includes('\n'),
    );
  };
  await refused({}, /--model-parallel 2 needs exactly 2 ranks: --nproc 2/, { worldSize: 3 });
  await refused({}, /--resume is not supported with --model-parallel yet/, { resume: '/tmp/x.safetensors' });
  await refused({ precision: 'bf16' }, /--model-parallel runs in fp32.*--precision bf16/);
  await refused({ model: 'alexnet-bn' }, /model parallelism cannot split features\.1 \(BatchNorm2d/);
  // A --save whose folder is a file: found before the run trains (or meets its peer), not at the first save.
  const dir = tmp();
  try {
    fs.writeFileSync(path.join(dir, 'file'), '');
    await refused({ save: path.join(dir, 'file', 'w.safetensors') }, /--save .*is a file, not a directory/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
