// npm run bench: training and inference images/s of each AlexNet variant, ours and PyTorch's (Debian's
// python3-torch on the CPU machines, the installed CUDA PyTorch on a GPU machine) measured side by side in one
// run, alternating rounds, on the same device, batch and precision; prints ratios (and, on a GPU, model FLOPs
// utilisation) and writes JSON and a markdown table to bench/results/.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { getModel } from '../src/models/registry';
import { Linear } from '../src/nn';
import { SGD } from '../src/optim/optimizer';
import { parseDevice, prepareDevice, prepareModel, synchronize } from '../src/runtime/device';
import { cpuInfo, describeCpu } from '../src/runtime/cpu';
import { autocast, GradScaler, Precision, resolvePrecision } from '../src/runtime/precision';
import { Device } from '../src/tensor/dtype';
import { manualSeed, noGrad, randint, randn, runtimeInfo, Tensor, tidy } from '../src/tensor/tensor';
import { cudaGraphObstacle, GraphedStep } from '../src/train/graph';
import { StepContext, trainStep } from '../src/train/step';

const ROOT = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.ALEXNET_ORACLE_PYTHON || '/usr/bin/python3';

interface Speeds {
  train_ips: number;
  infer_ips: number;
  /** Training with the step recorded as a CUDA graph (GPUs; what `alexnet train` does there). */
  graph_train_ips?: number;
}

/** Multiply-accumulates of one forward pass of `name` at its input size. */
export function forwardMacs(name: string): number {
  const m = getModel(name);
  const macs = m.layerTable().reduce((a, r) => a + r.macs, 0);
  m.dispose();
  return macs;
}

function ours(
  name: string,
  batch: number,
  warmup: number,
  iters: number,
  device: Device,
  precision: Precision,
): Speeds {
  manualSeed(0);
  const model = prepareModel(getModel(name), device).train();
  const classes = (model.classifier.layers[model.classifier.layers.length - 1] as Linear).outFeatures;
  const x = randn([batch, ...model.inputShape], { device }).keep();
  const y = randint(0, classes, [batch], { device }).keep();
  // The trainer's own step: the same autocast, loss scaling and optimiser call `alexnet train` runs.
  const ctx: StepContext = {
    model,
    device,
    precision,
    optimizer: new SGD(model.parameters(), { lr: 0.001, momentum: 0.9 }),
    scaler: precision === 'fp16' ? new GradScaler() : undefined,
  };
  const train = imagesPerSecond(device, batch, warmup, iters, () => trainStep(ctx, x, y));
  const graphTrain = graphedSteps(ctx, x, y, warmup, iters);
  model.eval();
  const infer = noGrad(() =>
    imagesPerSecond(device, batch, warmup, iters, () =>
      tidy(() => autocast(device, precision, () => model.forward(x))),
    ),
  );
  model.dispose();
  x.dispose();
  y.dispose();
  return { train_ips: train, infer_ips: infer, graph_train_ips: graphTrain };
}

/** Images/s of training steps replayed as a CUDA graph; undefined where they cannot be (saying why once). */
function graphedSteps(ctx: StepContext, x: Tensor, y: Tensor, warmup: number, iters: number): number | undefined {
  const obstacle = cudaGraphObstacle(ctx);
  if (obstacle) {
    if (ctx.device !== 'cpu') console.error(`CUDA graph not measured: ${obstacle}`);
    return undefined;
  }
  const g = new GraphedStep(ctx);
  try {
    const ips = imagesPerSecond(ctx.device, y.size(0), warmup, iters, () => g.step(x, y));
    if (g.replays < iters) throw new Error(`${g.replays} replays of ${iters} steps`);
    return ips;
  } catch (e) {
    console.error(`CUDA graph not measured: ${(e as Error).message}`);
    return undefined;
  } finally {
    g.dispose();
  }
}

/** Images/s of `step` (a batch of `batch` images) over `iters` calls after `warmup`, the device synchronised. */
function imagesPerSecond(device: Device, batch: number, warmup: number, iters: number, step: () => void): number {
  for (let i = 0; i < warmup; i++) step();
  synchronize(device);
  const t = performance.now();
  for (let i = 0; i < iters; i++) step();
  synchronize(device);
  return (batch * iters) / ((performance.now() - t) / 1000);
}

function pytorch(
  name: string,
  batch: number,
  threads: number,
  warmup: number,
  iters: number,
  channelsLast: boolean,
  device: Device,
  precision: Precision,
): (Speeds & { gpu?: string }) | undefined {
  const r = spawnSync(
    PYTHON,
    [
      path.join(ROOT, 'bench', 'torch_bench.py'),
      name,
      String(batch),
      String(threads),
      String(warmup),
      String(iters),
      channelsLast ? 'channels_last' : 'contiguous',
      device,
      precision,
    ],
    { encoding: 'utf8' },
  );
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
      models: { type: 'string', default: 'alexnet-torchvision,alexnet-d2l' },
      'batch-size': { type: 'string', default: '32' },
      threads: { type: 'string', default: String(os.cpus().length) },
      warmup: { type: 'string', default: '2' },
      iters: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      'no-torch': { type: 'boolean' },
      device: { type: 'string', default: 'auto' },
      precision: { type: 'string', default: 'auto' },
      'peak-tflops': { type: 'string' },
      out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(
      'Usage: npm run bench -- [--models a,b|all] [--batch-size 32] [--threads N] [--warmup 2] [--iters 5] [--rounds 3]\n' +
        '                        [--device auto|cpu|cuda] [--precision auto|fp32|bf16|fp16] [--peak-tflops T] [--no-torch] [--out DIR]\n' +
        'On a GPU, MFU = achieved model FLOP/s ÷ peak (--peak-tflops, or the dense tensor-core peak of a known GPU).',
    );
    return;
  }
  const { device } = prepareDevice(parseDevice(values.device!), Number(values.threads));
  const precision = resolvePrecision(values.precision as Precision | 'auto', device);
  const models =
    values.models === 'all'
      ? ['alexnet-torchvision', 'alexnet-d2l', 'alexnet-2012', 'alexnet-half', 'alexnet-bn']
      : values.models!.split(',');
  const batch = Number(values['batch-size']);
  const threads = Number(values.threads);
  const warmup = Number(values.warmup);
  const iters = Number(values.iters);
  const rounds = Number(values.rounds);
  const haveTorch = !values['no-torch'] && spawnSync(PYTHON, ['-c', 'import torch, torchvision']).status === 0;
  if (!values['no-torch'] && !haveTorch)
    console.error(
      `PyTorch not found (${PYTHON}): measuring ours only (apt-get install python3-torch python3-torchvision)`,
    );
  const info = runtimeInfo();
  console.log(
    `bench: batch ${batch}, ${device}, ${precision}, ${device === 'cpu' ? `${threads} threads, ` : ''}${rounds} alternating rounds of ${warmup} warm-up + ${iters} timed steps; libtorch ${info.libtorchVersion}, ${describeCpu()}`,
  );
  let gpuName: string | undefined;
  const rows = [];
  for (const name of models) {
    // Ours (default configuration), PyTorch eager as users run it (NCHW), PyTorch eager channels-last (its
    // faster CPU layout, the same as ours): alternating within each round so that drift hits all three alike.
    const o: Speeds[] = [];
    const p: Speeds[] = [];
    const pcl: Speeds[] = [];
    for (let r = 0; r < rounds; r++) {
      o.push(ours(name, batch, warmup, iters, device, precision));
      if (haveTorch) {
        const s = pytorch(name, batch, threads, warmup, iters, false, device, precision);
        if (s) p.push(s);
        const c = pytorch(name, batch, threads, warmup, iters, true, device, precision);
        if (c) pcl.push(c);
        gpuName ??= s?.gpu ?? c?.gpu;
      }
    }
    const macs = forwardMacs(name);
    // Training is three passes' worth of FLOPs (forward, and backward's two), inference one; a MAC is two FLOPs.
    const peak = Number(values['peak-tflops'] ?? peakTflops(gpuName, precision) ?? NaN) * 1e12;
    const med = (xs: Speeds[], k: keyof Speeds) => (xs.length ? median(xs.map((s) => s[k] ?? NaN)) : null);
    const ratio = (a: number | null, b: number | null) => (a && b ? a / b : null);
    const row = {
      model: name,
      ours_train_ips: med(o, 'train_ips')!,
      ours_infer_ips: med(o, 'infer_ips')!,
      ours_graph_train_ips: o.some((s) => s.graph_train_ips === undefined) ? null : med(o, 'graph_train_ips'),
      torch_train_ips: med(p, 'train_ips'),
      torch_infer_ips: med(p, 'infer_ips'),
      torch_cl_train_ips: med(pcl, 'train_ips'),
      torch_cl_infer_ips: med(pcl, 'infer_ips'),
      train_ratio: null as number | null,
      infer_ratio: null as number | null,
      train_ratio_vs_cl: null as number | null,
      infer_ratio_vs_cl: null as number | null,
      forward_gflops_per_image: (2 * macs) / 1e9,
      ours_train_mfu: null as number | null,
      ours_infer_mfu: null as number | null,
      torch_cl_train_mfu: null as number | null,
    };
    if (Number.isFinite(peak)) {
      row.ours_train_mfu = (row.ours_train_ips * 6 * macs) / peak;
      row.ours_infer_mfu = (row.ours_infer_ips * 2 * macs) / peak;
      row.torch_cl_train_mfu = row.torch_cl_train_ips === null ? null : (row.torch_cl_train_ips * 6 * macs) / peak;
    }
    row.train_ratio = ratio(row.ours_train_ips, row.torch_train_ips);
    row.infer_ratio = ratio(row.ours_infer_ips, row.torch_infer_ips);
    row.train_ratio_vs_cl = ratio(row.ours_train_ips, row.torch_cl_train_ips);
    row.infer_ratio_vs_cl = ratio(row.ours_infer_ips, row.torch_cl_infer_ips);
    const graphRatio = ratio(row.ours_graph_train_ips, Math.max(row.torch_train_ips ?? 0, row.torch_cl_train_ips ?? 0));
    rows.push({ ...row, graph_train_ratio_vs_best: graphRatio });
    const fmt = (x: number | null) => (x === null ? '–' : x.toFixed(2));
    console.log(
      `${name}: train ${row.ours_train_ips.toFixed(1)} img/s (ratio ${fmt(row.train_ratio)} vs PyTorch, ${fmt(row.train_ratio_vs_cl)} vs PyTorch channels-last), ` +
        `inference ${row.ours_infer_ips.toFixed(1)} img/s (ratio ${fmt(row.infer_ratio)}, ${fmt(row.infer_ratio_vs_cl)})` +
        (row.ours_train_mfu !== null
          ? `; MFU train ${(100 * row.ours_train_mfu).toFixed(1)}%, inference ${(100 * row.ours_infer_mfu!).toFixed(1)}%`
          : '') +
        (row.ours_graph_train_ips !== null
          ? `; train as a CUDA graph ${row.ours_graph_train_ips.toFixed(1)} img/s (ratio ${fmt(graphRatio)} vs PyTorch's best)`
          : ''),
    );
  }
  const f = (x: number | null, d = 1) => (x === null ? '–' : x.toFixed(d));
  const md = [
    `batch ${batch}, ${device === 'cpu' ? `${threads} threads, cpu` : `${device} (${gpuName ?? 'GPU'})`}, ${precision}, libtorch ${info.libtorchVersion}; medians of ${rounds} alternating rounds`,
    '',
    'PyTorch = eager NCHW (its default); PyTorch CL = eager channels-last (its faster CPU layout); ratio = ours / theirs',
    '',
    '| model | train ours | train PyTorch | train PyTorch CL | ratio | ratio vs CL | infer ours | infer PyTorch | infer PyTorch CL | ratio | ratio vs CL |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.model} | ${f(r.ours_train_ips)} | ${f(r.torch_train_ips)} | ${f(r.torch_cl_train_ips)} | ${f(r.train_ratio, 2)} | ${f(r.train_ratio_vs_cl, 2)} | ${f(r.ours_infer_ips)} | ${f(r.torch_infer_ips)} | ${f(r.torch_cl_infer_ips)} | ${f(r.infer_ratio, 2)} | ${f(r.infer_ratio_vs_cl, 2)} |`,
    ),
    ...(rows.some((r) => r.ours_train_mfu !== null)
      ? [
          '',
          '| model | MFU train ours | MFU train PyTorch CL | MFU inference ours |',
          '|---|---|---|---|',
          ...rows.map(
            (r) =>
              `| ${r.model} | ${f(r.ours_train_mfu && 100 * r.ours_train_mfu)}% | ${f(r.torch_cl_train_mfu && 100 * r.torch_cl_train_mfu)}% | ${f(r.ours_infer_mfu && 100 * r.ours_infer_mfu)}% |`,
          ),
        ]
      : []),
    ...(rows.some((r) => r.ours_graph_train_ips !== null)
      ? [
          '',
          '| model | train ours, CUDA graph | ratio vs PyTorch eager, best layout |',
          '|---|---|---|',
          ...rows.map((r) => `| ${r.model} | ${f(r.ours_graph_train_ips)} | ${f(r.graph_train_ratio_vs_best, 2)} |`),
        ]
      : []),
  ].join('\n');
  fs.mkdirSync(values.out!, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  fs.writeFileSync(
    path.join(values.out!, `bench-${stamp}.json`),
    JSON.stringify(
      {
        batch,
        threads,
        device,
        precision,
        gpu: gpuName,
        rounds,
        warmup,
        iters,
        libtorch: info.libtorchVersion,
        cpu: describeCpu(),
        isa: cpuInfo().isa,
        rows,
      },
      null,
      2,
    ) + '\n',
  );
  fs.writeFileSync(path.join(values.out!, `bench-${stamp}.md`), md + '\n');
  console.log('\n' + md + `\n\nwritten to ${path.relative(process.cwd(), values.out!)}/bench-${stamp}.{json,md}`);
}

/** Dense tensor-core peak TFLOP/s of GPUs we measure on (NVIDIA's datasheets; SXM parts); undefined if unknown. */
export function peakTflops(gpu: string | undefined, precision: Precision): number | undefined {
  if (!gpu) return undefined;
  const table: [RegExp, Record<Precision, number>][] = [
    [/H100|H200/, { bf16: 989.4, fp16: 989.4, fp32: 494.7 }],
    [/A100/, { bf16: 312, fp16: 312, fp32: 156 }],
  ];
  // fp32 counts TF32 tensor cores, which cuDNN uses for float32 convolutions by default.
  return table.find(([re]) => re.test(gpu))?.[1][precision];
}

if (require.main === module) main();
