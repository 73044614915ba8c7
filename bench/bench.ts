// npm run bench: training and inference images/s of each AlexNet variant, ours and PyTorch's (Debian's
// python3-torch, the same libtorch) measured side by side in one run, alternating rounds; prints ratios and
// writes JSON and a markdown table to bench/results/.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { getModel } from '../src/models/registry';
import { Linear } from '../src/nn';
import { crossEntropy } from '../src/nn/functional';
import { SGD } from '../src/optim/optimizer';
import { manualSeed, noGrad, randint, randn, runtimeInfo, setNumThreads, tidy } from '../src/tensor/tensor';

const ROOT = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.ALEXNET_ORACLE_PYTHON || '/usr/bin/python3';

interface Speeds {
  train_ips: number;
  infer_ips: number;
}

function ours(name: string, batch: number, warmup: number, iters: number): Speeds {
  manualSeed(0);
  const model = getModel(name).train();
  const classes = (model.classifier.layers[model.classifier.layers.length - 1] as Linear).outFeatures;
  const x = randn([batch, ...model.inputShape]).keep();
  const y = randint(0, classes, [batch]).keep();
  const opt = new SGD(model.parameters(), { lr: 0.001, momentum: 0.9 });
  let t = 0;
  for (let i = 0; i < warmup + iters; i++) {
    if (i === warmup) t = performance.now();
    tidy(() => crossEntropy(model.forward(x), y).backward());
    opt.step();
    opt.zeroGrad();
  }
  const train = (batch * iters) / ((performance.now() - t) / 1000);
  model.eval();
  noGrad(() => {
    for (let i = 0; i < warmup + iters; i++) {
      if (i === warmup) t = performance.now();
      tidy(() => model.forward(x));
    }
  });
  const infer = (batch * iters) / ((performance.now() - t) / 1000);
  model.dispose();
  x.dispose();
  y.dispose();
  return { train_ips: train, infer_ips: infer };
}

function pytorch(name: string, batch: number, threads: number, warmup: number, iters: number, channelsLast: boolean): Speeds | undefined {
  const r = spawnSync(PYTHON, [path.join(ROOT, 'bench', 'torch_bench.py'), name, String(batch), String(threads), String(warmup), String(iters), channelsLast ? 'channels_last' : 'contiguous'], { encoding: 'utf8' });
  if (r.status !== 0) {
    console.error(`PyTorch run failed for ${name}: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
    return undefined;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function main(): void {
  const { values } = parseArgs({
    options: {
      models: { type: 'string', default: 'alexnet-torchvision,alexnet-d2l' }, 'batch-size': { type: 'string', default: '32' },
      threads: { type: 'string', default: String(os.cpus().length) }, warmup: { type: 'string', default: '2' },
      iters: { type: 'string', default: '5' }, rounds: { type: 'string', default: '3' }, 'no-torch': { type: 'boolean' },
      out: { type: 'string', default: path.join(ROOT, 'bench', 'results') }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log('Usage: npm run bench -- [--models a,b|all] [--batch-size 32] [--threads N] [--warmup 2] [--iters 5] [--rounds 3] [--no-torch] [--out DIR]');
    return;
  }
  const models = values.models === 'all' ? ['alexnet-torchvision', 'alexnet-d2l', 'alexnet-2012', 'alexnet-half', 'alexnet-bn'] : values.models!.split(',');
  const batch = Number(values['batch-size']);
  const threads = Number(values.threads);
  const warmup = Number(values.warmup);
  const iters = Number(values.iters);
  const rounds = Number(values.rounds);
  setNumThreads(threads);
  const haveTorch = !values['no-torch'] && spawnSync(PYTHON, ['-c', 'import torch, torchvision']).status === 0;
  if (!values['no-torch'] && !haveTorch) console.error(`PyTorch not found (${PYTHON}): measuring ours only (apt-get install python3-torch python3-torchvision)`);
  const info = runtimeInfo();
  console.log(`bench: batch ${batch}, ${threads} threads, ${rounds} alternating rounds of ${warmup} warm-up + ${iters} timed steps; libtorch ${info.libtorchVersion}, ${os.cpus()[0].model}`);
  const rows = [];
  for (const name of models) {
    // Ours (default configuration), PyTorch eager as users run it (NCHW), PyTorch eager channels-last (its
    // faster CPU layout, the same as ours): alternating within each round so that drift hits all three alike.
    const o: Speeds[] = [];
    const p: Speeds[] = [];
    const pcl: Speeds[] = [];
    for (let r = 0; r < rounds; r++) {
      o.push(ours(name, batch, warmup, iters));
      if (haveTorch) {
        const s = pytorch(name, batch, threads, warmup, iters, false);
        if (s) p.push(s);
        const c = pytorch(name, batch, threads, warmup, iters, true);
        if (c) pcl.push(c);
      }
    }
    const med = (xs: Speeds[], k: keyof Speeds) => (xs.length ? median(xs.map((s) => s[k])) : null);
    const ratio = (a: number | null, b: number | null) => (a && b ? a / b : null);
    const row = {
      model: name,
      ours_train_ips: med(o, 'train_ips')!,
      ours_infer_ips: med(o, 'infer_ips')!,
      torch_train_ips: med(p, 'train_ips'),
      torch_infer_ips: med(p, 'infer_ips'),
      torch_cl_train_ips: med(pcl, 'train_ips'),
      torch_cl_infer_ips: med(pcl, 'infer_ips'),
      train_ratio: null as number | null,
      infer_ratio: null as number | null,
      train_ratio_vs_cl: null as number | null,
      infer_ratio_vs_cl: null as number | null,
    };
    row.train_ratio = ratio(row.ours_train_ips, row.torch_train_ips);
    row.infer_ratio = ratio(row.ours_infer_ips, row.torch_infer_ips);
    row.train_ratio_vs_cl = ratio(row.ours_train_ips, row.torch_cl_train_ips);
    row.infer_ratio_vs_cl = ratio(row.ours_infer_ips, row.torch_cl_infer_ips);
    rows.push(row);
    const fmt = (x: number | null) => (x === null ? '–' : x.toFixed(2));
    console.log(`${name}: train ${row.ours_train_ips.toFixed(1)} img/s (ratio ${fmt(row.train_ratio)} vs PyTorch, ${fmt(row.train_ratio_vs_cl)} vs PyTorch channels-last), ` +
      `inference ${row.ours_infer_ips.toFixed(1)} img/s (ratio ${fmt(row.infer_ratio)}, ${fmt(row.infer_ratio_vs_cl)})`);
  }
  const f = (x: number | null, d = 1) => (x === null ? '–' : x.toFixed(d));
  const md = [
    `batch ${batch}, ${threads} threads, device cpu, libtorch ${info.libtorchVersion}; medians of ${rounds} alternating rounds`, '',
    'PyTorch = eager NCHW (its default); PyTorch CL = eager channels-last (its faster CPU layout); ratio = ours / theirs', '',
    '| model | train ours | train PyTorch | train PyTorch CL | ratio | ratio vs CL | infer ours | infer PyTorch | infer PyTorch CL | ratio | ratio vs CL |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.model} | ${f(r.ours_train_ips)} | ${f(r.torch_train_ips)} | ${f(r.torch_cl_train_ips)} | ${f(r.train_ratio, 2)} | ${f(r.train_ratio_vs_cl, 2)} | ${f(r.ours_infer_ips)} | ${f(r.torch_infer_ips)} | ${f(r.torch_cl_infer_ips)} | ${f(r.infer_ratio, 2)} | ${f(r.infer_ratio_vs_cl, 2)} |`),
  ].join('\n');
  fs.mkdirSync(values.out!, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  fs.writeFileSync(path.join(values.out!, `bench-${stamp}.json`), JSON.stringify({ batch, threads, rounds, warmup, iters, libtorch: info.libtorchVersion, cpu: os.cpus()[0].model, rows }, null, 2) + '\n');
  fs.writeFileSync(path.join(values.out!, `bench-${stamp}.md`), md + '\n');
  console.log('\n' + md + `\n\nwritten to ${path.relative(process.cwd(), values.out!)}/bench-${stamp}.{json,md}`);
}

main();
