// npm run bench: training and inference images/s of each AlexNet variant, ours and PyTorch's (Debian's
// python3-torch on the CPU machines, the installed CUDA PyTorch on a GPU machine) measured side by side in one
// run, alternating rounds, on the same device, batch and precision; prints ratios (and, on a GPU, model FLOPs
// utilisation) and writes JSON and a markdown table to bench/results/.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { exportOnnx } from '../src/io/onnx';
import { getModel } from '../src/models/registry';
import { F, Linear } from '../src/nn';
import { SGD } from '../src/optim/optimizer';
import { parseDevice, prepareDevice, prepareModel, synchronize } from '../src/runtime/device';
import { cpuInfo, describeCpu } from '../src/runtime/cpu';
import { GradScaler, Precision, resolvePrecision } from '../src/runtime/precision';
import { median, PIPELINE_OPTIONS, pipelineOnly, pipelineSection } from './pipeline';
import { imagesPerSecond, imagesPerSecondAsync, inferenceSpeed } from '../src/runtime/timing';
import { onednnPlan, onednnRun, releaseOnednnPlan } from '../src/tensor/onednn';
import { onednnAvailable } from '../src/tensor/runtime';
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
  // Inference as predict, eval and serve run it: a oneDNN plan on the CPU (src/runtime/inference.ts).
  const { imagesPerSecond: infer, engine } = inferenceSpeed(model, device, precision, x, warmup, iters);
  engines.set(name, engine);
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

function pytorch(
  name: string,
  batch: number,
  threads: number,
  warmup: number,
  iters: number,
  channelsLast: boolean,
  device: Device,
  precision: Precision,
  env?: NodeJS.ProcessEnv,
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
    { encoding: 'utf8', env: env ?? process.env },
  );
  if (r.status !== 0) {
    console.error(`PyTorch run failed for ${name}: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
    return undefined;
  }
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const JEMALLOC = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';

/**
 * PyTorch with the allocator Intel's CPU tuning guide recommends (Debian's libjemalloc2, preloaded), what a careful
 * user runs; undefined where jemalloc is not installed.
 */
function tunedEnv(): NodeJS.ProcessEnv | undefined {
  if (!fs.existsSync(JEMALLOC)) return undefined;
  return {
    ...process.env,
    LD_PRELOAD: JEMALLOC,
    MALLOC_CONF: 'oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1',
  };
}

/** Inference images/s of the same model exported to ONNX and run by onnxruntime-node (float32, CPU), same threads. */
async function onnxruntime(name: string, batch: number, threads: number, warmup: number, iters: number) {
  const ort = require('onnxruntime-node') as typeof import('onnxruntime-node');
  manualSeed(0);
  const model = getModel(name).eval();
  const { bytes } = exportOnnx(model);
  const shape = [batch, ...model.inputShape];
  model.dispose();
  const session = await ort.InferenceSession.create(bytes, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  const input = new ort.Tensor(
    'float32',
    Float32Array.from({ length: shape.reduce((a, b) => a * b) }, Math.random),
    shape,
  );
  const ips = await imagesPerSecondAsync('cpu', warmup, iters, async () => {
    await session.run({ input });
    return batch;
  });
  await session.release();
  return ips;
}

/**
 * The practical limit: GFLOP/s of a large matrix product in the precision, the best of three paths: matmul (BLAS
 * for float32 on the CPU, oneDNN for bf16), a 1×1 convolution over 2048 pixels (the same 2048×2048×2048 product
 * through libtorch's oneDNN convolution, which reorders its weights on every call), and oneDNN's inner product
 * with its weights packed once (a one-layer oneDNN plan: the kernel alone, as benchdnn times it). Best of a few runs.
 */
function matmulGflops(device: Device, precision: Precision): number {
  const n = 2048;
  const dtype = precision === 'fp32' ? 'float32' : precision === 'bf16' ? 'bfloat16' : 'float16';
  const flops = 2 * n ** 3;
  const a = randn([n, n], { device }).to(dtype).keep();
  const b = randn([n, n], { device }).to(dtype).keep();
  const x = randn([1, n, 32, n / 32], { device })
    .to(dtype)
    .to({ memoryFormat: 'channelsLast' })
    .keep();
  const w = randn([n, n, 1, 1], { device }).to(dtype).to({ memoryFormat: 'channelsLast' }).keep();
  const paths: (() => void)[] = [() => tidy(() => a.matmul(b)), () => tidy(() => F.conv2d(x, w, undefined))];
  const plan =
    device === 'cpu' && precision !== 'fp16' && onednnAvailable()
      ? onednnPlan([{ kind: 'linear', weight: 0 }], [b.float().keep()], precision === 'bf16')
      : undefined;
  const x2 = plan ? randn([n, n, 1, 1]).keep() : undefined;
  if (plan) paths.push(() => onednnRun(plan, x2!).dispose());
  let best = 0;
  noGrad(() => {
    for (const run of paths) {
      try {
        for (let r = 0; r < 4; r++) {
          synchronize(device);
          const t = performance.now();
          const k = device === 'cpu' ? 3 : 50;
          for (let i = 0; i < k; i++) run();
          synchronize(device);
          best = Math.max(best, (flops * k) / ((performance.now() - t) / 1000) / 1e9);
        }
      } catch {
        /* this path has no kernel for the precision here: the other one decides */
      }
    }
  });
  for (const t of [a, b, x, w, x2]) t?.dispose();
  if (plan) releaseOnednnPlan(plan);
  return best;
}

/** `--isa avx2`: the same benchmark again with oneDNN and ATen held to AVX2 (and PyTorch, which inherits it). */
function rerunUnderAvx2(): number {
  const argv = process.argv
    .slice(2)
    .filter((a, i, all) => a !== '--isa' && all[i - 1] !== '--isa' && a !== '--isa=avx2');
  const env = { ...process.env, DNNL_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' };
  return spawnSync(process.execPath, [process.argv[1], ...argv], { stdio: 'inherit', env }).status ?? 1;
}

interface Setting {
  batch: number;
  threads: number;
  warmup: number;
  iters: number;
  rounds: number;
  device: Device;
  precision: Precision;
  haveTorch: boolean;
  tuned?: NodeJS.ProcessEnv;
  onnx: boolean;
}

/** One model: ours and every peer, alternating within each round so that drift hits all alike; medians. */
async function measure(name: string, s: Setting) {
  const o: Speeds[] = [];
  const peers: Record<string, Speeds[]> = { torch: [], torch_cl: [], tuned: [], tuned_cl: [] };
  const ort: number[] = [];
  let gpu: string | undefined;
  for (let r = 0; r < s.rounds; r++) {
    o.push(ours(name, s.batch, s.warmup, s.iters, s.device, s.precision));
    if (s.haveTorch) {
      // PyTorch as shipped (NCHW, its default; channels-last, its faster CPU layout), then with jemalloc.
      type Run = [string, boolean, NodeJS.ProcessEnv | undefined];
      const runs: Run[] = [
        ['torch', false, undefined],
        ['torch_cl', true, undefined],
      ];
      if (s.tuned) runs.push(['tuned', false, s.tuned], ['tuned_cl', true, s.tuned]);
      for (const [k, cl, env] of runs) {
        const x = pytorch(name, s.batch, s.threads, s.warmup, s.iters, cl, s.device, s.precision, env);
        if (x) peers[k].push(x);
        gpu ??= x?.gpu;
      }
    }
    if (s.onnx) ort.push(await onnxruntime(name, s.batch, s.threads, s.warmup, s.iters));
  }
  const med = (xs: Speeds[], k: keyof Speeds) => (xs.length ? median(xs.map((x) => x[k] ?? NaN)) : null);
  const row = {
    model: name,
    ours_train_ips: med(o, 'train_ips')!,
    ours_infer_ips: med(o, 'infer_ips')!,
    ours_graph_train_ips: o.some((x) => x.graph_train_ips === undefined) ? null : med(o, 'graph_train_ips'),
    torch_train_ips: med(peers.torch, 'train_ips'),
    torch_infer_ips: med(peers.torch, 'infer_ips'),
    torch_cl_train_ips: med(peers.torch_cl, 'train_ips'),
    torch_cl_infer_ips: med(peers.torch_cl, 'infer_ips'),
    tuned_train_ips: med(peers.tuned, 'train_ips'),
    tuned_infer_ips: med(peers.tuned, 'infer_ips'),
    tuned_cl_train_ips: med(peers.tuned_cl, 'train_ips'),
    tuned_cl_infer_ips: med(peers.tuned_cl, 'infer_ips'),
    onnxruntime_infer_ips: ort.length ? median(ort) : null,
  };
  return { row, gpu };
}

type Row = Awaited<ReturnType<typeof measure>>['row'];

/** Ratios against each peer and the best one, achieved GFLOP/s and the share of the peak. */
function derive(row: Row, macs: number, peakGflops: number) {
  const ratio = (a: number | null, b: number | null) => (a && b ? a / b : null);
  const best = (...xs: (number | null)[]) => (xs.some((x) => x) ? Math.max(...xs.map((x) => x ?? 0)) : null);
  const bestTrain = best(row.torch_train_ips, row.torch_cl_train_ips, row.tuned_train_ips, row.tuned_cl_train_ips);
  const bestInfer = best(
    row.torch_infer_ips,
    row.torch_cl_infer_ips,
    row.tuned_infer_ips,
    row.tuned_cl_infer_ips,
    row.onnxruntime_infer_ips,
  );
  // Training is three passes' worth of FLOPs (forward, and backward's two), inference one; a MAC is two FLOPs.
  const trainGflops = (row.ours_train_ips * 6 * macs) / 1e9;
  const inferGflops = (row.ours_infer_ips * 2 * macs) / 1e9;
  const share = (g: number) => (Number.isFinite(peakGflops) ? g / peakGflops : null);
  return {
    ...row,
    train_ratio: ratio(row.ours_train_ips, row.torch_train_ips),
    infer_ratio: ratio(row.ours_infer_ips, row.torch_infer_ips),
    train_ratio_vs_cl: ratio(row.ours_train_ips, row.torch_cl_train_ips),
    infer_ratio_vs_cl: ratio(row.ours_infer_ips, row.torch_cl_infer_ips),
    train_ratio_vs_best: ratio(row.ours_train_ips, bestTrain),
    infer_ratio_vs_best: ratio(row.ours_infer_ips, bestInfer),
    infer_ratio_vs_onnxruntime: ratio(row.ours_infer_ips, row.onnxruntime_infer_ips),
    graph_train_ratio_vs_best: ratio(row.ours_graph_train_ips, bestTrain),
    forward_gflops_per_image: (2 * macs) / 1e9,
    ours_train_gflops: trainGflops,
    ours_infer_gflops: inferGflops,
    // On a GPU the peak is the datasheet's (MFU); on a CPU the measured matrix product's.
    ours_train_mfu: share(trainGflops),
    ours_infer_mfu: share(inferGflops),
    torch_cl_train_mfu: row.torch_cl_train_ips === null ? null : share((row.torch_cl_train_ips * 6 * macs) / 1e9),
  };
}

type Derived = ReturnType<typeof derive>;

/** Which path our inference took, per model ("onednn", or "libtorch (why)"). */
const engines = new Map<string, string>();

function markdown(rows: Derived[], head: string, peak: { gflops: number; source: string }): string {
  const f = (x: number | null | undefined, d = 1) => (x === null || x === undefined ? '–' : x.toFixed(d));
  const pct = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)}%`);
  return [
    head,
    '',
    'PyTorch = eager NCHW (its default); CL = eager channels-last (its faster CPU layout); tuned = with jemalloc ' +
      "(Intel's CPU tuning guide); ORT = onnxruntime-node on our ONNX export (float32 only); ratio = ours / theirs; " +
      `peak = ${peak.source}, ${f(peak.gflops, 0)} GFLOP/s`,
    '',
    `Our inference (what predict, eval and serve run): ${[...engines].map(([m, e]) => `${m} ${e}`).join('; ')}.`,
    '',
    '| model | train ours | PyTorch | CL | tuned | tuned CL | ours ÷ best | GFLOP/s | % of peak |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.model} | ${f(r.ours_train_ips)} | ${f(r.torch_train_ips)} | ${f(r.torch_cl_train_ips)} | ${f(r.tuned_train_ips)} | ${f(r.tuned_cl_train_ips)} | ${f(r.train_ratio_vs_best, 2)} | ${f(r.ours_train_gflops, 0)} | ${pct(r.ours_train_mfu)} |`,
    ),
    '',
    '| model | infer ours | PyTorch | CL | tuned | tuned CL | ORT | ours ÷ best | GFLOP/s | % of peak |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.model} | ${f(r.ours_infer_ips)} | ${f(r.torch_infer_ips)} | ${f(r.torch_cl_infer_ips)} | ${f(r.tuned_infer_ips)} | ${f(r.tuned_cl_infer_ips)} | ${f(r.onnxruntime_infer_ips)} | ${f(r.infer_ratio_vs_best, 2)} | ${f(r.ours_infer_gflops, 0)} | ${pct(r.ours_infer_mfu)} |`,
    ),
    ...(rows.some((r) => r.ours_graph_train_ips !== null)
      ? [
          '',
          '| model | train ours, CUDA graph | ratio vs PyTorch eager, best layout |',
          '|---|---|---|',
          ...rows.map((r) => `| ${r.model} | ${f(r.ours_graph_train_ips)} | ${f(r.graph_train_ratio_vs_best, 2)} |`),
        ]
      : []),
  ].join('\n');
}

function options() {
  const { values } = parseArgs({
    options: {
      models: { type: 'string', default: 'alexnet-torchvision,alexnet-d2l' },
      'batch-size': { type: 'string', default: '32' },
      threads: { type: 'string', default: String(os.cpus().length) },
      warmup: { type: 'string', default: '2' },
      iters: { type: 'string', default: '5' },
      rounds: { type: 'string', default: '3' },
      'no-torch': { type: 'boolean' },
      'no-onnx': { type: 'boolean' },
      'no-tuned': { type: 'boolean' },
      ...PIPELINE_OPTIONS,
      isa: { type: 'string', default: 'native' },
      device: { type: 'string', default: 'auto' },
      precision: { type: 'string', default: 'auto' },
      'peak-tflops': { type: 'string' },
      out: { type: 'string', default: path.join(ROOT, 'bench', 'results') },
      help: { type: 'boolean', short: 'h' },
    },
  });
  return values;
}

async function main(): Promise<void> {
  // --nproc N: data-parallel training against one process (bench/ddp.ts).
  if (process.argv.some((a) => a === '--nproc' || a.startsWith('--nproc='))) {
    const ddp = path.join(__dirname, 'ddp.js');
    process.exitCode = spawnSync(process.execPath, [ddp, ...process.argv.slice(2)], { stdio: 'inherit' }).status ?? 1;
    return;
  }
  const values = options();
  if (values.help) {
    console.log(
      'Usage: npm run bench -- [--models a,b|all] [--batch-size 32] [--threads N] [--warmup 2] [--iters 5] [--rounds 3]\n' +
        '                        [--device auto|cpu|cuda] [--precision auto|fp32|bf16|fp16] [--isa native|avx2]\n' +
        '                        [--peak-tflops T] [--no-torch] [--no-tuned] [--no-onnx] [--out DIR]\n' +
        '                        [--no-pipeline | --pipeline-only] [--photos folder:PATH] [--workers 2] (photos)\n' +
        '       npm run bench -- --nproc N [--batch-size 32] [--warmup 2] [--iters 5]   (data-parallel vs 1 process)\n' +
        'Peers, side by side in one run: PyTorch as shipped (NCHW and channels-last), PyTorch with jemalloc (tuned),\n' +
        'onnxruntime-node for float32 inference. --isa avx2 holds oneDNN and ATen to AVX2 (an AVX2 machine).\n' +
        'Each row: images/s, ratios, achieved GFLOP/s and its share of the peak: on a CPU the measured 2048² matrix\n' +
        "product in that precision, on a GPU the datasheet's dense tensor-core peak (--peak-tflops overrides).",
    );
    return;
  }
  if (values.isa !== 'native' && values.isa !== 'avx2')
    throw new Error(`--isa must be native or avx2, got ${values.isa}`);
  if (values.isa === 'avx2' && process.env.DNNL_MAX_CPU_ISA !== 'AVX2') {
    process.exitCode = rerunUnderAvx2();
    return;
  }
  const { device } = prepareDevice(parseDevice(values.device!), Number(values.threads));
  const precision = resolvePrecision(values.precision as Precision | 'auto', device);
  const models =
    values.models === 'all'
      ? ['alexnet-torchvision', 'alexnet-d2l', 'alexnet-2012', 'alexnet-half', 'alexnet-bn']
      : values.models!.split(',');
  const haveTorch = !values['no-torch'] && spawnSync(PYTHON, ['-c', 'import torch, torchvision']).status === 0;
  if (!values['no-torch'] && !haveTorch)
    console.error(
      `PyTorch not found (${PYTHON}): measuring ours only (apt-get install python3-torch python3-torchvision)`,
    );
  const tuned = values['no-tuned'] || !haveTorch ? undefined : tunedEnv();
  if (haveTorch && !values['no-tuned'] && !tuned)
    console.error(`jemalloc not found (${JEMALLOC}): no tuned PyTorch peer (apt-get install libjemalloc2)`);
  if (values['pipeline-only']) return pipelineOnly(values, haveTorch);
  const s: Setting = {
    batch: Number(values['batch-size']),
    threads: Number(values.threads),
    warmup: Number(values.warmup),
    iters: Number(values.iters),
    rounds: Number(values.rounds),
    device,
    precision,
    haveTorch,
    tuned,
    onnx: !values['no-onnx'] && device === 'cpu' && precision === 'fp32',
  };
  const info = runtimeInfo();
  const where = device === 'cpu' ? `${s.threads} threads, cpu (${describeCpu()})` : device;
  console.log(
    `bench: batch ${s.batch}, ${where}, ${precision}, ${s.rounds} alternating rounds of ${s.warmup} warm-up + ${s.iters} timed steps; libtorch ${info.libtorchVersion}`,
  );
  const cpuPeak = device === 'cpu' ? matmulGflops(device, precision) : NaN;
  if (device === 'cpu')
    console.log(`matrix product 2048², ${precision}: ${cpuPeak.toFixed(0)} GFLOP/s (the peak below)`);
  let gpuName: string | undefined;
  const rows: Derived[] = [];
  for (const name of models) {
    const { row, gpu } = await measure(name, s);
    gpuName ??= gpu;
    const gpuPeak = Number(values['peak-tflops'] ?? peakTflops(gpuName, precision) ?? NaN) * 1e3;
    const d = derive(row, forwardMacs(name), device === 'cpu' ? cpuPeak : gpuPeak);
    rows.push(d);
    const fmt = (x: number | null) => (x === null ? '–' : x.toFixed(2));
    console.log(
      `${name}: train ${d.ours_train_ips.toFixed(1)} img/s (${fmt(d.train_ratio_vs_best)}× the best peer), inference ${d.ours_infer_ips.toFixed(1)} img/s (${fmt(d.infer_ratio_vs_best)}×)`,
    );
  }
  const peakSource = device === 'cpu' ? `measured ${precision} matrix product` : `datasheet ${precision} peak`;
  const peakGflops =
    device === 'cpu' ? cpuPeak : Number(values['peak-tflops'] ?? peakTflops(gpuName, precision) ?? NaN) * 1e3;
  const head = `batch ${s.batch}, ${device === 'cpu' ? where : `${device} (${gpuName ?? 'GPU'})`}, ${precision}, ISA ${cpuInfo().isa}, libtorch ${info.libtorchVersion}; medians of ${s.rounds} alternating rounds`;
  const pipeline = device === 'cpu' ? await pipelineSection(values, haveTorch) : undefined;
  const md = markdown(rows, head, { gflops: peakGflops, source: peakSource }) + (pipeline?.md ?? '');
  fs.mkdirSync(values.out!, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const json = {
    ...s,
    tuned: Boolean(tuned),
    gpu: gpuName,
    libtorch: info.libtorchVersion,
    cpu: describeCpu(),
    isa: cpuInfo().isa,
    peak_gflops: peakGflops,
    peak_source: peakSource,
    rows,
    pipeline: pipeline?.row,
  };
  fs.writeFileSync(path.join(values.out!, `bench-${stamp}.json`), JSON.stringify(json, null, 2) + '\n');
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

if (require.main === module)
  main().catch((e) => {
    console.error(`bench: ${(e as Error).message}`);
    process.exitCode = 1;
  });
