// alexnet train
import { UserError } from '../errors';
import { AUGMENTS } from '../data/transforms';
import { describeModel, listModels } from '../models/registry';
import { PRECISIONS } from '../runtime/precision';
import {
  buildRunConfig,
  CUDA_GRAPH_MODES,
  OptionError,
  OPTIMIZERS,
  RESUME_OVERRIDES,
  TrainOptions,
} from '../train/config';
import { recipeFor } from '../train/recipes';
import { checkFreeze, variantOf } from '../train/reuse';
import { resume, train, TrainHooks, TrainResult } from '../train/run';
import { DistEnv, distRole, ignoredOutputs, watchLauncher } from '../distributed/env';
import { checkModelParallel, trainModelParallel } from '../distributed/model-parallel-train';
import { checkRunOutputs } from '../distributed/preflight';
import { DdpGroup } from '../distributed/data-parallel';
import { asRank } from '../distributed/group';
import { launch, rankBytes } from '../distributed/launch';
import { EXIT_INTERRUPTED, stopOnSignals } from '../train/signals';
import {
  choice,
  ARCHITECTURE,
  architectureOf,
  COMMON,
  flag,
  flagOf,
  int,
  LIMITS,
  num,
  Opt,
  optionHelp,
  parseCommand,
  text,
  Values,
  withHelp,
} from './options';

const normalize: Opt<{ mean: number; std: number } | undefined> = {
  type: 'string',
  value: 'M,S',
  help: 'IDX data: subtract mean M and divide by std S after scaling to [0, 1] (default: none)',
  parse: (raw, f) => {
    if (raw === undefined) return undefined;
    const p = String(raw).split(',').map(Number);
    if (p.length !== 2 || p.some((x) => !Number.isFinite(x)) || p[1] <= 0)
      throw new UserError(`${f} takes MEAN,STD (e.g. 0.286,0.353), got '${raw}'`);
    return { mean: p[0], std: p[1] };
  },
};

const DATA = {
  dataset: text(
    'D',
    "fashion-mnist (default), mnist, cifar10:DIR (CIFAR-10's binary version: data_batch_1.bin …\ntest_batch.bin, at the model's input size: 32×32 for convnet-cifar), or folder:PATH — an image\nfolder in torchvision's ImageFolder layout: one subfolder per class (class index by sorted name),\nor train/ and val/ (or test/) folders that hold them. JPEG, PNG, WebP, GIF, TIFF, AVIF.",
  ),
  data: text(
    'DIR',
    "IDX folder (default: /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist);\nMNIST needs it",
  ),
  valSplit: num('F', 'image folders without val/: share of each class held out, seeded (default 0.1)', {
    min: 0,
    max: 0.95,
  }),
  labels: text(
    'FILE',
    'display names for class folders: lines \'FOLDER NAME\' (e.g. ImageNet\'s synset list) or a JSON\nobject {"FOLDER": "NAME"}',
  ),
  augment: choice(
    'A',
    'image folders: paper (256 short side, random crops of the centre square, flips, PCA colour\nnoise), torchvision (random resized crops, flips) or none (centre crops)',
    AUGMENTS,
  ),
  shortSide: int('N', 'image folders: resize the short side to N before cropping (default input × 8/7)', {
    min: 1,
    max: 2 * LIMITS.imageSide,
  }),
  pcaStd: num('X', "image folders: std of the PCA colour noise's α (default 0.1 with paper, else 0)", {
    min: 0,
    max: 10,
  }),
  stats: text('FILE', "image folders: mean, std and colour eigenvectors from 'alexnet stats' (default: ImageNet's)"),
  workers: COMMON.workers,
  prefetch: int('N', 'batches decoded ahead (default 3)', { min: 1, max: 64 }),
  strict: COMMON.strict,
  inputSize: int('N', "model input size (default: the model's, 224 or 227; the smallest is 63 or 65)", {
    min: 1,
    max: LIMITS.imageSide,
  }),
  resize: choice('MODE', "IDX data: bilinear (default; as torchvision's Resize) or pad (TF's resize_with_pad)", [
    'bilinear',
    'pad',
  ] as const),
  normalize,
  trainLimit: int('N', 'use the first N training images', { min: 1 }),
  testLimit: int('N', 'use the first N test (validation) images', { min: 1 }),
};
const MODEL = {
  model: withHelp(
    COMMON.model,
    listModels()
      .map((m) => m.name)
      .join(', '),
  ),
  dropout: num('P', 'classifier dropout (default 0.5)', { min: 0, max: 0.99 }),
  initFrom: text(
    'FILE',
    "start from these weights (alexnet-ts files, or a torch.save state dict such as torchvision's\nalexnet-owt-7be5be79.pth): tensors whose shapes differ (a head for another number of classes) start\nafresh; --model defaults to the file's variant",
  ),
  freeze: text(
    'LAYER',
    'features (every convolutional layer) or a layer name (e.g. classifier.4: it and every layer\nbefore it): those layers get no gradients and stay in evaluation mode',
  ),
  ...ARCHITECTURE,
};
const OPTIM = {
  epochs: int('N', 'epochs in all (with --resume: the new total)', { min: 1, max: 1e6 }),
  batchSize: withHelp(COMMON.batchSize, 'images per training step'),
  evalBatchSize: withHelp(COMMON.batchSize, 'images per evaluation batch (default 256 for IDX data, 128 for folders)'),
  optimizer: choice('NAME', "sgd (PyTorch's form), sgd-paper (v ← μv − λεw − ε∇, w ← w + v) or adam", OPTIMIZERS),
  lr: num('X', 'learning rate', { min: 1e-12 }),
  headLr: num('X', "learning rate of the classifier's last layer (the head --init-from makes afresh; default --lr)", {
    min: 1e-12,
  }),
  momentum: num('X', 'momentum', { min: 0, max: 1 }),
  weightDecay: num('X', 'weight decay', { min: 0, max: 1 }),
  schedule: text(
    'S',
    'constant, plateau (÷10 when validation error stops improving, 3 times at most, as the paper)\nor step:EPOCHS[:GAMMA]',
  ),
  maxSteps: int('N', 'stop after N optimiser steps in all (resume later with --resume)', { min: 1 }),
};
const RUN = {
  device: COMMON.device,
  precision: choice(
    'P',
    'auto (default: bf16 on a GPU, fp32 on the CPU), fp32, bf16 (autocast: convolutions and matrix\nproducts in bfloat16) or fp16 (autocast with dynamic loss scaling; GPU only)',
    PRECISIONS,
  ),
  threads: COMMON.threads,
  cudaGraph: choice(
    'M',
    'off (default) or on: record the training step once as a CUDA graph and replay it, so that the\nGPU stops waiting for each kernel launch (GPU, SGD, bf16 or fp32; experimental: not yet verified)',
    CUDA_GRAPH_MODES,
  ),
  seed: int('N', 'seeds weights, dropout, shuffling, splits and augmentation (default 0)', {
    min: 0,
    max: 2 ** 32 - 1,
  }),
  save: text(
    'PATH',
    'checkpoint (safetensors), written atomically at every epoch end and on Ctrl-C; checked before\ntraining starts',
  ),
  overwrite: flag('let --save replace an existing checkpoint of another run (default: refuse, and offer --resume)'),
  resume: text(
    'PATH',
    'continue a checkpoint exactly where it stopped (its settings are reused; only --epochs,\n--max-steps, --lr, --save, --metrics, --metrics-every, --threads and --device may change)',
  ),
  metrics: text(
    'FILE',
    'append JSON Lines: one record per epoch and one every --metrics-every steps, each with the run id',
  ),
  metricsEvery: int('N', 'steps between per-step metrics records (default 50; 0: epoch records only)', { min: 0 }),
};
const DIST = {
  nproc: int(
    'N',
    'start N processes here, each training on its shard (data-parallel, as PyTorch DDP), the cores\nshared between them; at most one a core, and as many as the free memory holds',
    { min: 1, max: 1024 },
  ),
  oversubscribe: flag('let --nproc start more ranks than the cores or the free memory allow'),
  nnodes: int('N', 'machines in the run (default 1); each runs the same command with its --node-rank', {
    min: 1,
    max: 65536,
  }),
  nodeRank: int('N', "this machine's index, 0 to --nnodes − 1 (default 0)", { min: 0, max: 65535 }),
  masterAddr: text('HOST', 'address of node 0, where rank 0 listens (default 127.0.0.1; or MASTER_ADDR)'),
  masterPort: int('PORT', 'port of rank 0 (default: a free port on one machine, 29500 on several; or MASTER_PORT)', {
    min: 1,
    max: 65535,
  }),
  modelParallel: int(
    'N',
    "2: the paper's two GPUs as two ranks (alexnet-2012; with --nproc 2), each holding\nhalf the kernels of every layer; saves a weights file",
    { min: 1, max: 1024 },
  ),
  distTimeout: num('S', 'seconds a rank waits for the others before it stops with an error naming them\n(default 60)', {
    min: 1,
    max: 86_400,
  }),
};
const OPTIONS = { ...DATA, ...MODEL, ...OPTIM, ...RUN, ...DIST };
/** Flags of the distributed run: they may accompany --resume (a run may continue with another world size). */
const DIST_KEYS = Object.keys(DIST);

const W = 24;
export const HELP = `Usage: alexnet train [options]

Trains an AlexNet variant on Fashion-MNIST (or MNIST, or any IDX folder), or on your own photos in an
image folder. The defaults are a recipe for the model and data set:
  Fashion-MNIST/MNIST (Dive into Deep Learning's): alexnet-d2l, 224×224 inputs (bilinear from 28×28), SGD
    lr 0.01, batch 128, 10 epochs; d2l reports test accuracy ≈ 0.88 after 10 epochs. Every variant trains
    on them: its input channels follow the data (1).
  image folders, alexnet-bn (the default there): 227×227, Adam lr 1e-4, batch 64, 20 epochs, torchvision's
    augmentation (random resized crops, flips).
  image folders, alexnet-2012 (the paper): 227×227 crops of the 259×259 centre (the paper's 224 of 256),
    flips, PCA colour noise (α ~ N(0, 0.1)); SGD in the paper's form, lr 0.01, momentum 0.9, weight decay
    0.0005, batch 128, ÷10 when validation error stops improving (3 times), 90 epochs.
  image folders, other models: torchvision's reference: SGD lr 0.01, momentum 0.9, weight decay 0.0005,
    batch 128, ÷10 every 30 epochs, 90 epochs, torchvision's augmentation.
Any option below overrides its recipe value.

Data:
${optionHelp(DATA, { helpRow: false, width: W })}

Model:
${optionHelp(MODEL, { helpRow: false, width: W })}

Optimisation:
${optionHelp(OPTIM, { helpRow: false, width: W })}

Run:
${optionHelp(RUN, { width: W })}

Many processes (data-parallel; torchrun's conventions). \`--nproc N\` starts N ranks on this machine; for
several machines run the same command on each with --nnodes, --node-rank and --master-addr. A rank can also be
started by Slurm, Kubernetes or a torchrun-style script that sets MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE,
LOCAL_RANK and LOCAL_WORLD_SIZE. --batch-size is per rank; only rank 0 prints progress and writes files.
${optionHelp(DIST, { helpRow: false, width: W })}

Exit codes: 0 done, 1 failed, 2 usage or input error, 130 interrupted (Ctrl-C or SIGTERM; the checkpoint is
saved first).`;

type TrainValues = Values<typeof OPTIONS>;

/** The options that may accompany --resume; anything else is the checkpoint's. */
function resumeOverrides(v: TrainValues): Record<string, unknown> {
  const given = (k: string) => v[k as keyof TrainValues] !== undefined && v[k as keyof TrainValues] !== false;
  const fixed = Object.keys(v).filter(
    (k) => given(k) && k !== 'resume' && !(RESUME_OVERRIDES as string[]).includes(k) && !DIST_KEYS.includes(k),
  );
  if (fixed.length) {
    const allowed = RESUME_OVERRIDES.map(flagOf).join(', ');
    throw new UserError(
      `${flagOf(fixed[0])} cannot be changed when resuming: the checkpoint's settings are used (only ${allowed} can be given with --resume)`,
    );
  }
  return Object.fromEntries(RESUME_OVERRIDES.map((k) => [k, v[k]]));
}

export async function trainCommand(argv: string[]): Promise<void> {
  const { values, help } = parseCommand('train', argv, OPTIONS);
  if (help) return console.log(HELP);
  const { nproc, nnodes, nodeRank, masterAddr, masterPort, distTimeout, modelParallel, oversubscribe, ...rest } =
    values;
  const role = distRole({ nproc, nnodes, nodeRank, masterAddr, masterPort });
  if (modelParallel !== undefined && modelParallel !== 2)
    throw new UserError(`--model-parallel takes 2 (the paper's two GPUs), got ${modelParallel}`);
  if (modelParallel && role.kind === 'single')
    throw new UserError(
      '--model-parallel 2 runs as 2 ranks: add --nproc 2 (or start the ranks with RANK and WORLD_SIZE)',
    );
  // Refusals that need no data, weights or peer come first: before --init-from is read, before any rank starts.
  if (values.freeze !== undefined)
    checkFreeze(values.freeze, modelAsked(values, !!modelParallel), architectureOf(values));
  if (role.kind === 'launcher') {
    beforeLaunch(values, role, !!modelParallel);
    const graceMs = (distTimeout ?? 60) * 1000;
    const perRank = rankEstimate(values);
    const o = { ...role, argv: ['train', ...argv], threads: values.threads, graceMs, oversubscribe };
    process.exitCode = await launch({ ...o, rankBytes: perRank });
    return;
  }
  if (role.kind === 'rank') {
    // A rank whose launcher is killed outright stops (the launcher's SIGKILL cannot be passed on).
    watchLauncher(() => {
      process.stderr.write(`rank ${role.env.rank}: the launcher is gone; stopping\n`);
      process.exit(1);
    });
    const ignored = ignoredOutputs(role.env, values);
    if (ignored) console.error(`warning: ${ignored}`);
  }
  if (modelParallel && role.kind === 'rank') return towersCommand(rest, role.env, distTimeout);
  const stop = stopOnSignals();
  let r: TrainResult;
  try {
    const start = (strategy?: DdpGroup) => startRun(rest, { shouldStop: stop.requested, strategy });
    r = role.kind === 'rank' ? await asRank(role.env, { timeoutSeconds: distTimeout }, start) : await start();
  } finally {
    stop.dispose();
  }
  const saved = values.save ?? values.resume;
  if (saved && (role.kind !== 'rank' || role.env.rank === 0)) console.log(`checkpoint: ${saved}`);
  r.model.dispose();
  if (r.stopped === 'interrupted') process.exitCode = EXIT_INTERRUPTED;
}

/** The model a new run trains, known before any file is read: --model or the recipe's; not yet --init-from's. */
function modelAsked(v: TrainValues, towers: boolean): string | undefined {
  if (v.model !== undefined || v.initFrom !== undefined) return v.model;
  // The paper's network is the one with two towers (as towersCommand).
  return towers ? 'alexnet-2012' : recipeFor(undefined, v.dataset?.startsWith('folder:') ?? false).model;
}

/**
 * What the launcher refuses before it starts a rank, so that no rank waits for a peer that has already stopped:
 * model parallelism's refusals, and on rank 0's machine rank 0's outputs (only rank 0 checks them otherwise).
 */
function beforeLaunch(v: TrainValues, place: { nproc: number; nnodes: number; nodeRank: number }, towers: boolean) {
  if (towers) {
    const { resume, precision, cudaGraph, freeze } = v;
    checkModelParallel({ worldSize: place.nproc * place.nnodes, resume, precision, cudaGraph, freeze });
  }
  const { save, metrics, overwrite, resume } = v;
  if (place.nodeRank === 0) checkRunOutputs({ save, metrics, overwrite, resume, weightsOnly: towers });
}

/** `--model-parallel 2`: this rank's tower of alexnet-2012 (the run calls asRank itself). */
async function towersCommand(
  values: Omit<TrainValues, keyof typeof DIST>,
  env: DistEnv,
  timeoutSeconds?: number,
): Promise<void> {
  const stop = stopOnSignals();
  try {
    const { resume: resumeFile, activation, lrn, pool, groups, widths, ...options } = values;
    // The paper's network is the one with two towers.
    options.model ??= options.initFrom ? variantOf(options.initFrom) : 'alexnet-2012';
    const architecture = architectureOf({ activation, lrn, pool, groups, widths });
    const r = await inFlags(() => {
      const cfg = buildRunConfig({ ...options, architecture } satisfies TrainOptions);
      return trainModelParallel(cfg, env, { shouldStop: stop.requested }, { timeoutSeconds, resume: resumeFile });
    });
    if (options.save && env.rank === 0) console.log(`weights: ${options.save} (alexnet eval/predict --weights)`);
    if (r.stopped === 'interrupted') process.exitCode = EXIT_INTERRUPTED;
  } finally {
    stop.dispose();
  }
}

/** Memory a rank needs for the model asked for (the recipe's default model otherwise), for the launcher's bound. */
function rankEstimate(v: TrainValues): number | undefined {
  const name = v.model ?? (v.dataset?.startsWith('folder:') ? 'alexnet-bn' : 'alexnet-d2l');
  try {
    return rankBytes(describeModel(name).totalParams);
  } catch {
    return undefined;
  }
}

/** A new run from the options, or --resume. */
function startRun(values: Omit<TrainValues, keyof typeof DIST>, hooks: TrainHooks): Promise<TrainResult> {
  if (values.resume) {
    const file = values.resume;
    return inFlags(() => resume(file, resumeOverrides(values as TrainValues), hooks));
  }
  const { resume: _resume, activation, lrn, pool, groups, widths, ...options } = values;
  if (options.initFrom && !options.model) options.model = variantOf(options.initFrom);
  const architecture = architectureOf({ activation, lrn, pool, groups, widths });
  return inFlags(() => train(buildRunConfig({ ...options, architecture } satisfies TrainOptions), hooks));
}

/** Runs `fn`; the library's mistakes in a run's options are told with the flags that give them. */
async function inFlags<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw e instanceof OptionError ? e.reworded(flagOf) : e;
  }
}
