// alexnet train
import * as os from 'node:os';
import { UserError } from '../errors';
import { listModels } from '../models/registry';
import { ResumeOverrides, TrainConfig, train, TrainResult } from '../train/trainer';
import { intOption, numOption, parse } from './args';

export const HELP = `Usage: alexnet train [options]

Trains an AlexNet variant on Fashion-MNIST (or MNIST, or any IDX folder). The defaults are Dive into Deep
Learning's recipe: alexnet-d2l, 224×224 inputs (bilinear from 28×28), SGD lr 0.01, batch 128, 10 epochs,
Xavier initialisation; d2l reports test accuracy ≈ 0.88 after 10 epochs.

Model and data:
  --model NAME          ${listModels().map((m) => m.name).join(', ')} (default alexnet-d2l)
  --dataset NAME        fashion-mnist (default) or mnist
  --data DIR            IDX folder (default: /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist)
  --input-size N        model input size (default 224; the smallest for the AlexNet layers is 65 or 63)
  --resize MODE         bilinear (default; as torchvision's Resize) or pad (TF's resize_with_pad)
  --normalize M,S       subtract mean M and divide by std S after scaling to [0, 1] (default: none, as d2l)
  --train-limit N       use the first N training images (default all 60000)
  --test-limit N        use the first N test images (default all 10000)
  --dropout P           classifier dropout (default 0.5)

Optimisation:
  --epochs N            (default 10)
  --batch-size N        (default 128)
  --optimizer NAME      sgd (PyTorch's form, default), sgd-paper (v ← μv − λεw − ε∇, w ← w + v) or adam
  --lr X                learning rate (default 0.01; 0.001 for adam)
  --momentum X          (default 0, as d2l; the paper uses 0.9)
  --weight-decay X      (default 0; the paper uses 0.0005)
  --schedule S          constant (default), plateau (÷10 when test error stops improving, 3 times at most,
                        as the paper) or step:EPOCHS[:GAMMA]
  --max-steps N         stop after N optimiser steps (resume later with --resume)

Run:
  --device D            auto (default: cuda when available), cpu, cuda or cuda:N
  --threads N           CPU threads (default: all ${os.cpus().length} cores)
  --seed N              seeds weights, dropout and shuffling (default 0)
  --save PATH           checkpoint (safetensors), written atomically at every epoch end and on Ctrl-C
  --resume PATH         continue a checkpoint exactly where it stopped (its settings are reused)
  --metrics FILE        append one JSON record per epoch (JSON Lines)
  -h, --help            this help`;

export const TRAIN_OPTIONS = {
  model: { type: 'string' }, dataset: { type: 'string' }, data: { type: 'string' }, 'input-size': { type: 'string' },
  resize: { type: 'string' }, normalize: { type: 'string' }, 'train-limit': { type: 'string' }, 'test-limit': { type: 'string' },
  dropout: { type: 'string' }, epochs: { type: 'string' }, 'batch-size': { type: 'string' }, 'eval-batch-size': { type: 'string' },
  optimizer: { type: 'string' }, lr: { type: 'string' }, momentum: { type: 'string' }, 'weight-decay': { type: 'string' },
  schedule: { type: 'string' }, 'max-steps': { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' },
  seed: { type: 'string' }, save: { type: 'string' }, resume: { type: 'string' }, metrics: { type: 'string' },
} as const;

type Values = { [k: string]: string | boolean | string[] | undefined };

export function configFromOptions(v: Values): TrainConfig {
  const s = (k: string) => v[k] as string | undefined;
  const dataset = s('dataset') ?? 'fashion-mnist';
  if (dataset !== 'fashion-mnist' && dataset !== 'mnist') throw new UserError(`--dataset must be fashion-mnist or mnist, got '${dataset}' (image folders come with the real-photos work)`);
  const optimizer = (s('optimizer') ?? 'sgd') as TrainConfig['optimizer'];
  if (!['sgd', 'sgd-paper', 'adam'].includes(optimizer)) throw new UserError(`--optimizer must be sgd, sgd-paper or adam, got '${optimizer}'`);
  const resizeMode = s('resize') ?? 'bilinear';
  if (resizeMode !== 'bilinear' && resizeMode !== 'pad') throw new UserError(`--resize must be bilinear or pad, got '${resizeMode}'`);
  const size = intOption(s('input-size'), 'input-size', { min: 1, fallback: 224 })!;
  let mean: number[] = [];
  let std: number[] = [];
  if (s('normalize')) {
    const parts = s('normalize')!.split(',').map(Number);
    if (parts.length !== 2 || parts.some((x) => !Number.isFinite(x)) || parts[1] <= 0) throw new UserError(`--normalize takes MEAN,STD (e.g. 0.286,0.353), got '${s('normalize')}'`);
    mean = [parts[0]];
    std = [parts[1]];
  }
  const device = s('device') ?? 'auto';
  if (!/^(auto|cpu|cuda|cuda:\d+)$/.test(device)) throw new UserError(`--device must be auto, cpu, cuda or cuda:N, got '${device}'`);
  return {
    model: s('model') ?? 'alexnet-d2l',
    modelOptions: { inputSize: size, dropout: numOption(s('dropout'), 'dropout', { min: 0, max: 0.99 }) },
    dataset,
    dataDir: s('data'),
    trainLimit: intOption(s('train-limit'), 'train-limit', { min: 1 }),
    testLimit: intOption(s('test-limit'), 'test-limit', { min: 1 }),
    epochs: intOption(s('epochs'), 'epochs', { min: 1, fallback: 10 })!,
    batchSize: intOption(s('batch-size'), 'batch-size', { min: 1, fallback: 128 })!,
    evalBatchSize: intOption(s('eval-batch-size'), 'eval-batch-size', { min: 1, fallback: 256 })!,
    optimizer,
    lr: numOption(s('lr'), 'lr', { min: 1e-12, fallback: optimizer === 'adam' ? 0.001 : 0.01 })!,
    momentum: numOption(s('momentum'), 'momentum', { min: 0, max: 1, fallback: 0 })!,
    weightDecay: numOption(s('weight-decay'), 'weight-decay', { min: 0, fallback: 0 })!,
    schedule: s('schedule') ?? 'constant',
    preprocess: { inputSize: [size, size], resize: resizeMode, mean, std },
    seed: intOption(s('seed'), 'seed', { min: 0, fallback: 0 })!,
    device: device as TrainConfig['device'],
    threads: intOption(s('threads'), 'threads', { min: 1 }),
    save: s('save'),
    metrics: s('metrics'),
    maxSteps: intOption(s('max-steps'), 'max-steps', { min: 1 }),
  };
}

/** Runs training with Ctrl-C handling: the first Ctrl-C stops after the current step and saves; a second one quits. */
export async function runTraining(cfg: TrainConfig | ResumeOverrides, resume?: string, log?: (s: string) => void): Promise<TrainResult> {
  let stop = false;
  const onSigint = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write('\nstopping after this step (Ctrl-C again to quit without saving)…\n');
  };
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigint);
  try {
    return await train(cfg, { shouldStop: () => stop, log }, resume);
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

export async function trainCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, TRAIN_OPTIONS, 'train');
  if (values.help) return console.log(HELP);
  const resume = values.resume as string | undefined;
  const cfg = configFromOptions(values);
  let settings: TrainConfig | ResumeOverrides = cfg;
  if (resume) {
    // Only the settings that can change mid-run are taken from the command line; the rest is the checkpoint's.
    const allowed: Record<string, keyof ResumeOverrides> = { epochs: 'epochs', 'max-steps': 'maxSteps', save: 'save', metrics: 'metrics', threads: 'threads', lr: 'lr', device: 'device' };
    const fixed = Object.keys(values).filter((k) => values[k] !== undefined && k !== 'resume' && !(k in allowed));
    if (fixed.length) throw new UserError(`--${fixed[0]} cannot be changed when resuming: the checkpoint's settings are used (only ${Object.keys(allowed).map((k) => `--${k}`).join(', ')} can be given with --resume)`);
    const overrides: ResumeOverrides = {};
    for (const [flag, key] of Object.entries(allowed)) if (values[flag] !== undefined) (overrides as Record<string, unknown>)[key] = cfg[key];
    settings = overrides;
  }
  const r = await runTraining(settings, resume);
  if (cfg.save || resume) console.log(`checkpoint: ${cfg.save ?? resume}`);
  if (r.stopped === 'interrupted') process.exitCode = 130;
}
