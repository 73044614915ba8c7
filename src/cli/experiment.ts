// alexnet experiment NAME: one of the paper's claims, run here over several seeds, with a report and a plot.
import * as path from 'node:path';
import { UserError } from '../errors';
import { EXPERIMENTS } from '../experiments';
import { prepareDevice } from '../runtime/device';
import { writeFileAtomic } from '../util/files';
import { planOutputs } from '../util/outputs';
import { choice, COMMON, int, optionHelp, parseCommand, text } from './options';

const OPTIONS = {
  budget: choice('B', 'quick (default: a few minutes on 2 CPU cores) or full (the honest size, for a GPU)', [
    'quick',
    'full',
  ] as const),
  seeds: int('N', 'seeds per arm (default 3; the spread and the confidence interval come from them)', {
    min: 1,
    max: 100,
  }),
  out: text('DIR', 'where report.md, curves.svg and results.json go (default runs/experiments/NAME)'),
  steps: int('N', "training steps per run (default: the budget's)", { min: 1 }),
  trainLimit: int('N', "training images (default: the budget's)", { min: 64 }),
  testLimit: int('N', "test images the error is measured on (default: the budget's)", { min: 10 }),
  data: text('DIR', "Fashion-MNIST's IDX folder (default: Debian's)"),
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
  const files = ['report.md', 'curves.svg', 'results.json'].map((f) => path.join(dir, f));
  const plan = planOutputs(files.map((p) => ({ option: '--out', path: p, kind: 'report' as const })));
  try {
    const { device } = prepareDevice(v.device, v.threads);
    const started = Date.now();
    console.log(`${e.name}: ${e.claim}`);
    const r = await e.run({
      budget: v.budget ?? 'quick',
      seeds: v.seeds ?? 3,
      device,
      steps: v.steps,
      trainLimit: v.trainLimit,
      testLimit: v.testLimit,
      dataDir: v.data,
      log: (l) => console.log(`  ${l}`),
    });
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
