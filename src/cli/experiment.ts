// alexnet experiment NAME: one of the paper's claims, run here over several seeds, with a report and a plot.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { EXPERIMENTS, Experiment, ExperimentOptions } from '../experiments';
import { duration } from '../experiments/types';
import { getModel } from '../models/registry';
import { SGD } from '../optim/optimizer';
import { prepareDevice, prepareModel } from '../runtime/device';
import { Device } from '../tensor/dtype';
import { manualSeed, randint, randn } from '../tensor/tensor';
import { trainStep } from '../train/step';
import { fileTypeWords, writeFileAtomic } from '../util/files';
import { planOutputs } from '../util/outputs';
import { choice, COMMON, flag, int, optionHelp, parseCommand, text } from './options';

const OPTIONS = {
  budget: choice(
    'B',
    'quick (default: a smoke run of a few minutes on 2 CPU cores), medium (the ablations past the point where training error falls below test error: about 30 minutes each on 2 cores) or full (the honest size, for a GPU)',
    ['quick', 'medium', 'full'] as const,
  ),
  seeds: int(
    'N',
    'seeds per arm (default 3; lrn --net cifar --budget full 5; relu-vs-tanh --net cifar --budget medium and full 5; the spread and the interval come from them)',
    {
      min: 1,
      max: 100,
    },
  ),
  out: text('DIR', 'where report.md, curves.svg and results.json go (default runs/experiments/NAME)'),
  overwrite: flag('replace an earlier report in --out'),
  steps: int('N', "training steps per run (default: the budget's)", { min: 1 }),
  trainLimit: int('N', "training images (default: the budget's)", { min: 64 }),
  testLimit: int('N', "test images the error is measured on (default: the budget's)", { min: 10 }),
  data: text('DIR', "Fashion-MNIST's IDX folder (default: Debian's)"),
  dataset: text(
    'D',
    "cifar10:DIR: CIFAR-10's binary version (data_batch_1.bin … test_batch.bin), for relu-vs-tanh and lrn --net cifar",
  ),
  net: choice(
    'N',
    "relu-vs-tanh's and lrn's network: cifar (the paper's four-layer net on CIFAR-10, Figure 1 and Section 3.3; needs --dataset cifar10:DIR) or alexnet (alexnet-d2l on Fashion-MNIST; the default without CIFAR-10)",
    ['cifar', 'alexnet'] as const,
  ),
  device: COMMON.device,
  threads: COMMON.threads,
};

export const HELP = `Usage: alexnet experiment NAME [options]     (alexnet experiment list: what there is)

Runs one of the paper's claims here: its arms over several seeds, then writes a report (the claim, the setting,
the measured effect with mean ± sd and a 95% confidence interval next to the paper's number, and whether it
held) and a plot of every arm's curve.

Experiments:
${EXPERIMENTS.map((e) => `  ${e.name.padEnd(22)}${e.claim}`).join('\n')}

Options:
${optionHelp(OPTIONS)}`;

export async function experimentCommand(argv: string[]): Promise<void> {
  const { values: v, help, positionals } = parseCommand('experiment', argv, OPTIONS, { positionals: true });
  if (help) return console.log(HELP);
  const name = positionals[0];
  if (!name || name === 'list') return console.log(HELP.split('\n\n')[2]);
  if (positionals.length > 1) throw new UserError(`one experiment at a time, got ${positionals.join(', ')}`);
  const e = EXPERIMENTS.find((x) => x.name === name);
  if (!e) {
    throw new UserError(`unknown experiment '${name}' (experiments: ${EXPERIMENTS.map((x) => x.name).join(', ')})`);
  }
  const dir = path.resolve(v.out ?? path.join('runs', 'experiments', name));
  checkOutDir(dir);
  const files = ['report.md', 'curves.svg', 'results.json'].map((f) => path.join(dir, f));
  const plan = planOutputs(
    files.map((p) => ({ option: '--out', path: p, kind: 'report' as const, policy: 'refuse', overwrite: v.overwrite })),
  );
  try {
    const { device } = prepareDevice(v.device, v.threads);
    const started = Date.now();
    console.log(`${e.name}: ${e.claim}`);
    if ((v.net || v.dataset) && e.name !== 'relu-vs-tanh' && e.name !== 'lrn')
      throw new UserError(
        `--net and --dataset are for relu-vs-tanh and lrn (the other experiments run on Fashion-MNIST), got ${e.name}`,
      );
    const o: ExperimentOptions = {
      budget: v.budget ?? 'quick',
      seeds: 3,
      device,
      steps: v.steps,
      trainLimit: v.trainLimit,
      testLimit: v.testLimit,
      dataDir: v.data,
      net: v.net,
      dataset: v.dataset,
      log: (l) => console.log(`  ${l}`),
    };
    o.seeds = v.seeds ?? e.seeds?.(o) ?? 3;
    if (o.budget === 'full' && device === 'cpu') console.log(`  ${await estimateLine(e, o, device)}`);
    const r = await e.run(o);
    const seconds = (Date.now() - started) / 1000;
    writeFileAtomic(files[0], Buffer.from(`${r.markdown}\nTook ${seconds.toFixed(0)} s (${device}).\n`));
    writeFileAtomic(files[1], Buffer.from(r.svg));
    writeFileAtomic(
      files[2],
      Buffer.from(JSON.stringify({ experiment: e.name, seconds, ...r.summary }, null, 2) + '\n'),
    );
    console.log(`${r.row.effect} (paper: ${r.row.paper}): ${r.row.held}; report: ${files[0]}`);
  } finally {
    plan.release();
  }
}

/** --out names a folder: an existing file (or anything else that is not a folder) is refused in one line. */
function checkOutDir(dir: string): void {
  let s: fs.Stats;
  try {
    s = fs.statSync(dir);
  } catch {
    return; // created when the report is written
  }
  if (!s.isDirectory())
    throw new UserError(
      `--out: expected a folder for report.md, curves.svg and results.json, got ${s.isFile() ? 'an existing file' : (fileTypeWords(s) ?? 'something that is not a folder')} ${dir}`,
    );
}

/**
 * How long the experiment would take here, before it starts: two training steps of its network at its size are
 * timed (after one untimed step) and multiplied by the steps it will take.
 */
async function estimateLine(e: Experiment, o: ExperimentOptions, device: Device): Promise<string> {
  const c = e.cost(o);
  manualSeed(0);
  const model = prepareModel(
    getModel(c.model, { inputSize: c.inputSize, inChannels: c.channels ?? 1, numClasses: 10 }),
    device,
  );
  try {
    const optimizer = new SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 0 });
    const ctx = { model: model.train(), device, precision: 'fp32' as const, optimizer };
    const x = randn([c.batchSize, c.channels ?? 1, c.inputSize, c.inputSize]);
    const y = randint(0, 10, [c.batchSize]);
    trainStep(ctx, x, y);
    const t0 = Date.now();
    for (let i = 0; i < 2; i++) trainStep(ctx, x, y);
    const perStep = (Date.now() - t0) / 2000;
    x.dispose();
    y.dispose();
    const total = perStep * c.steps * c.runs;
    return `--budget full on the CPU: ${+c.runs.toFixed(1)} runs × ${c.steps} steps × ${perStep.toFixed(2)} s per step (timed here, ${c.model} at ${c.inputSize}×${c.inputSize}, batch ${c.batchSize}) ≈ ${duration(total)} of training, plus evaluation; a GPU is what this budget is for (Ctrl-C stops).`;
  } finally {
    model.dispose();
  }
}
