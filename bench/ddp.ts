// `npm run bench -- --nproc 2`: data-parallel training against one process, side by side in one run.
// torchvision's AlexNet (61 M parameters: 244 MB of float32 gradients a step), SGD with momentum, one global batch:
//   one process × N threads, batch B     against     N ranks × 1 thread each, batch B/N each (DDP over Gloo)
// and, inside the ranks, what a step's communication costs: the gradients' all-reduce alone (one 244 MB tensor),
// the step without communication, and the share of the all-reduce hidden behind backward by the Reducer's buckets:
//   hidden = (local step + all-reduce alone − DDP step) / all-reduce alone,
// and the share of the Reducer's communication time that ran while backward was still computing.
import { spawn } from 'node:child_process';
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { describeCpu } from '../src/runtime/cpu';
import { prepareDevice, prepareModel } from '../src/runtime/device';
import { getModel } from '../src/models/registry';
import { SGD } from '../src/optim/optimizer';
import { randint, randn, Tensor, zeros } from '../src/tensor/tensor';
import { StepContext, trainStep } from '../src/train/step';
import { joinDataParallel } from '../src/distributed/group';
import { DdpGroup } from '../src/distributed/data-parallel';
import { readDistEnv } from '../src/distributed/env';
import { freePort } from '../src/distributed/launch';

interface Options {
  nproc: number;
  batch: number;
  warmup: number;
  iters: number;
  model: string;
}

interface RankReport {
  ddpStepMs: number;
  localStepMs: number;
  allreduceMs: number;
  reducer: { backwardComputeMs: number; backwardCommMs: number; commAfterComputeMs: number };
  gradientMB: number;
  buckets: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function options(): Options & { worker?: string } {
  const { values } = parseArgs({
    options: {
      nproc: { type: 'string', default: '2' },
      'batch-size': { type: 'string', default: '32' },
      warmup: { type: 'string', default: '2' },
      iters: { type: 'string', default: '5' },
      model: { type: 'string', default: 'alexnet-torchvision' },
      worker: { type: 'string' },
    },
    allowPositionals: false,
  });
  const o = {
    nproc: Number(values.nproc),
    batch: Number(values['batch-size']),
    warmup: Number(values.warmup),
    iters: Number(values.iters),
    model: values.model!,
    worker: values.worker,
  };
  if (!Number.isInteger(o.nproc) || o.nproc < 2) throw new Error(`--nproc must be 2 or more, got ${values.nproc}`);
  if (o.batch % o.nproc) throw new Error(`--batch-size ${o.batch} must be a multiple of --nproc ${o.nproc}`);
  return o;
}

/** A model, SGD and one fixed random batch: what every measured step trains on. */
function setUp(o: Options, batch: number) {
  // As the trainer prepares it: channels-last convolutions (oneDNN's fast layout on the CPU).
  const model = prepareModel(getModel(o.model, {}), 'cpu');
  model.train();
  const optimizer = new SGD(model.parameters(), { lr: 1e-4, momentum: 0.9, weightDecay: 5e-4, form: 'pytorch' });
  const [c, h, w] = model.inputShape;
  const x = randn([batch, c, h, w]).keep();
  const y = randint(0, 1000, [batch]).keep();
  return { model, optimizer, x, y };
}

/** Median milliseconds of `iters` steps after `warmup` ones. */
function timeSteps(ctx: StepContext, x: Tensor, y: Tensor, o: Options, between?: () => void): number {
  const times: number[] = [];
  for (let i = 0; i < o.warmup + o.iters; i++) {
    const t0 = performance.now();
    trainStep(ctx, x, y);
    if (i >= o.warmup) times.push(performance.now() - t0);
    between?.();
  }
  return median(times);
}

/** One process with every thread and the whole batch. */
function single(o: Options): { stepMs: number } {
  prepareDevice('cpu', o.nproc);
  const { model, optimizer, x, y } = setUp(o, o.batch);
  return { stepMs: timeSteps({ model, optimizer, device: 'cpu', precision: 'fp32' }, x, y, o) };
}

/** One rank: DDP steps, then the same steps without communication, then the all-reduce alone. */
function rank(o: Options): RankReport | undefined {
  const env = readDistEnv()!;
  prepareDevice('cpu', 1);
  const { model, optimizer, x, y } = setUp(o, o.batch / o.nproc);
  const par: DdpGroup = joinDataParallel(env, { timeoutSeconds: 300 });
  par.syncModel(model);
  const reducer: RankReport['reducer'][] = [];
  const ddp = timeSteps(
    {
      model,
      optimizer,
      device: 'cpu',
      precision: 'fp32',
      beforeForward: () => par.beforeForward(model),
      beforeBackward: () => par.beforeBackward(),
    },
    x,
    y,
    o,
    () => reducer.push({ ...par.timings()! }),
  );
  par.pg.barrier();
  const local = timeSteps({ model, optimizer, device: 'cpu', precision: 'fp32' }, x, y, o, () => par.pg.barrier());
  const numel = model.parameters().reduce((a, p) => a + p.numel, 0);
  const flat = zeros([numel]).keep();
  const reduceTimes: number[] = [];
  for (let i = 0; i < o.warmup + o.iters; i++) {
    par.pg.barrier();
    const t0 = performance.now();
    par.pg.allreduce(flat);
    if (i >= o.warmup) reduceTimes.push(performance.now() - t0);
  }
  const buckets = par.bucketCount();
  par.close();
  if (env.rank !== 0) return undefined;
  const timed = reducer.slice(o.warmup);
  const pick = (k: keyof RankReport['reducer']) => median(timed.map((r) => r[k]));
  return {
    ddpStepMs: ddp,
    localStepMs: local,
    allreduceMs: median(reduceTimes),
    reducer: {
      backwardComputeMs: pick('backwardComputeMs'),
      backwardCommMs: pick('backwardCommMs'),
      commAfterComputeMs: pick('commAfterComputeMs'),
    },
    gradientMB: (numel * 4) / 2 ** 20,
    buckets,
  };
}

/** Runs this script as a child with `args` and `env`; resolves to the JSON its last stdout line holds. */
function child<T>(args: string[], env: NodeJS.ProcessEnv = {}): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [__filename, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`${args.join(' ')} exited with ${code}`));
      const last = out.trim().split('\n').pop();
      resolve(last ? (JSON.parse(last) as T) : undefined);
    });
  });
}

async function main(): Promise<void> {
  const o = options();
  const common = ['--nproc', String(o.nproc), '--batch-size', String(o.batch), '--model', o.model];
  const timing = ['--warmup', String(o.warmup), '--iters', String(o.iters)];
  if (o.worker === 'single') return console.log(JSON.stringify(single(o)));
  if (o.worker === 'rank') return console.log(JSON.stringify(rank(o) ?? {}));
  console.log(
    `bench --nproc ${o.nproc}: ${o.model}, global batch ${o.batch}, fp32 SGD, ${o.warmup} warm-up + ${o.iters} timed ` +
      `steps (medians); cpu ${describeCpu()}, ${os.availableParallelism()} cores`,
  );
  const one = (await child<{ stepMs: number }>([...common, ...timing, '--worker', 'single']))!;
  const port = await freePort();
  const ranks = Array.from({ length: o.nproc }, (_, r) =>
    child<RankReport>([...common, ...timing, '--worker', 'rank'], {
      RANK: String(r),
      WORLD_SIZE: String(o.nproc),
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
      OMP_NUM_THREADS: '1',
    }),
  );
  const r0 = (await Promise.all(ranks))[0]!;
  const ips = (ms: number) => (o.batch * 1000) / ms;
  // Two views of overlap: how much of the communication ran while backward still computed (the Reducer's clock),
  // and how much of the all-reduce's own cost the step hides (step time against local step + all-reduce alone).
  const during = 1 - r0.reducer.commAfterComputeMs / Math.max(1e-9, r0.reducer.backwardCommMs);
  const hidden = Math.max(0, Math.min(1, (r0.localStepMs + r0.allreduceMs - r0.ddpStepMs) / r0.allreduceMs));
  const rows = [
    ['1 process × ' + o.nproc + ' threads, batch ' + o.batch, one.stepMs, ips(one.stepMs), 1],
    [`${o.nproc} ranks × 1 thread, batch ${o.batch / o.nproc} each (DDP)`, r0.ddpStepMs, ips(r0.ddpStepMs)],
    [`${o.nproc} ranks, the same steps without communication`, r0.localStepMs, ips(r0.localStepMs)],
  ] as const;
  console.log('\n| setting | ms/step | images/s | vs 1 process |\n|---|---|---|---|');
  for (const [name, ms, v] of rows)
    console.log(`| ${name} | ${ms.toFixed(0)} | ${v.toFixed(1)} | ${(v / ips(one.stepMs)).toFixed(2)}× |`);
  const ringGBs = (((2 * (o.nproc - 1)) / o.nproc) * r0.gradientMB) / (r0.allreduceMs / 1000) / 1024;
  console.log(
    `\nall-reduce of the ${r0.gradientMB.toFixed(0)} MB of gradients alone: ${r0.allreduceMs.toFixed(0)} ms ` +
      `(${ringGBs.toFixed(2)} GB/s of ring traffic per rank), ${r0.buckets} buckets. ` +
      `DDP step − local step: ${(r0.ddpStepMs - r0.localStepMs).toFixed(0)} ms. ` +
      `Communication while backward still runs: ${(100 * during).toFixed(0)}% ` +
      `(Reducer: backward ${r0.reducer.backwardComputeMs.toFixed(0)} ms, communication ` +
      `${r0.reducer.backwardCommMs.toFixed(0)} ms, ${r0.reducer.commAfterComputeMs.toFixed(0)} ms of it after backward); ` +
      `all-reduce cost hidden in the step: ${(100 * hidden).toFixed(0)}%`,
  );
  console.log(
    JSON.stringify({ nproc: o.nproc, batch: o.batch, model: o.model, single: one, rank0: r0, during, hidden }),
  );
}

if (require.main === module)
  main().catch((e) => {
    console.error(`bench: ${(e as Error).message}`);
    process.exitCode = 1;
  });
