// alexnet demo: the main job end to end on Debian's Fashion-MNIST: train, evaluate on the full test set, save a
// checkpoint, predict a few test images written as PNG files, and say where everything went.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadIdxDataset } from '../data/fashion-mnist';
import { TrainConfig } from '../train/trainer';
import { cudaAvailable } from '../tensor/tensor';
import { formatDuration } from '../train/progress';
import { UserError } from '../errors';
import { intOption, parse } from './args';
import { formatEval } from './eval';
import { predictFiles } from './predict';
import { runTraining } from './train';

export const HELP = `Usage: alexnet demo [--out DIR] [--device auto|cpu|cuda] [--threads N]

Trains AlexNet (the d2l variant) on Fashion-MNIST from Debian's dataset-fashion-mnist, evaluates it on all
10,000 test images, saves a checkpoint, and classifies a few test images written out as PNG files.

On a GPU it runs d2l's full recipe (224×224, 10 epochs, SGD lr 0.01, batch 128; d2l reports ≈ 0.88 test
accuracy). On a CPU it runs a reduced recipe sized to finish in a few minutes on two cores: 67×67 inputs (the
smallest the d2l layers take, bilinear from 28×28), 24,000 training images for one epoch, batch 64, SGD with
momentum 0.9 and normalised inputs.

Options:
  --out DIR      where to write the checkpoint, metrics, evaluation and sample images (default runs/demo)
  --device D     auto (default), cpu or cuda
  --threads N    CPU threads (default: all cores)
  -h, --help     this help`;

export function demoConfig(gpu: boolean, out: string): { cfg: TrainConfig; description: string } {
  const common = {
    model: 'alexnet-d2l', dataset: 'fashion-mnist' as const, evalBatchSize: 256, optimizer: 'sgd' as TrainConfig['optimizer'], weightDecay: 0,
    schedule: 'constant', seed: 0, save: path.join(out, 'checkpoint.safetensors'), metrics: path.join(out, 'metrics.jsonl'),
  };
  if (gpu) {
    return {
      description: "d2l's full recipe: alexnet-d2l at 224×224, all 60,000 training images, 10 epochs, SGD lr 0.01, batch 128",
      cfg: { ...common, modelOptions: { inputSize: 224 }, epochs: 10, batchSize: 128, lr: 0.01, momentum: 0, device: 'cuda', preprocess: { inputSize: [224, 224], resize: 'bilinear', mean: [], std: [] } },
    };
  }
  return {
    description: 'a CPU-sized run: alexnet-d2l at 67×67 (the smallest input its layers take), the first 20,000 training images for 1 epoch, Adam lr 1e-4, batch 64, inputs normalised (mean 0.286, std 0.353). The full recipe (224×224, 10 epochs) takes hours on two cores: alexnet train runs it',
    cfg: { ...common, modelOptions: { inputSize: 67 }, trainLimit: 20000, epochs: 1, batchSize: 64, optimizer: 'adam', lr: 1e-4, momentum: 0, device: 'cpu', preprocess: { inputSize: [67, 67], resize: 'bilinear', mean: [0.286], std: [0.353] } },
  };
}

export async function demoCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, { out: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' } }, 'demo');
  if (values.help) return console.log(HELP);
  const started = Date.now();
  const out = path.resolve((values.out as string | undefined) ?? path.join('runs', 'demo'));
  const device = (values.device as string | undefined) ?? 'auto';
  if (!['auto', 'cpu', 'cuda'].includes(device)) throw new UserError(`--device must be auto, cpu or cuda, got '${device}'`);
  const gpu = device === 'cuda' || (device === 'auto' && cudaAvailable());
  const { cfg, description } = demoConfig(gpu, out);
  cfg.threads = intOption(values.threads as string | undefined, 'threads', { min: 1, fallback: os.cpus().length });
  if (gpu) cfg.device = device === 'auto' ? 'cuda' : (device as 'cuda');
  fs.mkdirSync(out, { recursive: true });
  // A fresh run each time: an old checkpoint or metrics file from an earlier demo is replaced.
  fs.rmSync(cfg.metrics!, { force: true });

  console.log(`alexnet demo: ${description}.\n`);
  const r = await runTraining(cfg);
  if (r.stopped === 'interrupted') {
    process.exitCode = 130;
    return;
  }
  const ev = r.lastEval!;
  fs.writeFileSync(path.join(out, 'eval.json'), JSON.stringify({ model: cfg.model, ...ev }, null, 2) + '\n');
  console.log(`\nevaluation on the full Fashion-MNIST test set:\n${formatEval(ev)}\n`);

  // A few test images as PNG files, classified through the same path a user's own images take.
  const sharp = (await import('sharp')).default;
  const test = loadIdxDataset({ split: 'test', limit: 8 });
  const samples = path.join(out, 'samples');
  fs.mkdirSync(samples, { recursive: true });
  const pixels = test.images.data() as Uint8Array;
  const labels = test.labels.toArray();
  const files: string[] = [];
  for (let i = 0; i < labels.length; i++) {
    const file = path.join(samples, `test-${i}-${test.classes[labels[i]].replace(/[^A-Za-z0-9-]+/g, '_')}.png`);
    await sharp(Buffer.from(pixels.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(file);
    files.push(file);
  }
  r.model.dispose();
  const preds = await predictFiles(cfg.save!, files, 3, gpu ? 'cuda' : 'cpu');
  console.log('predictions for test images saved as PNG (alexnet predict --weights … FILE):');
  let right = 0;
  preds.forEach((p, i) => {
    const ok = p.top[0].index === labels[i];
    right += ok ? 1 : 0;
    console.log(`  ${ok ? '✓' : '✗'} ${path.basename(p.file).padEnd(28)} true: ${test.classes[labels[i]].padEnd(12)} predicted: ${p.top[0].class.padEnd(12)} ${(100 * p.top[0].probability).toFixed(1)}%`);
  });
  console.log(`  ${right}/${preds.length} correct\n`);
  console.log(`written to ${out}:`);
  const rel = path.relative(process.cwd(), cfg.save!);
  console.log(`  checkpoint.safetensors  weights + optimiser state (alexnet eval|predict --weights ${rel.startsWith('..') ? cfg.save : rel})`);
  console.log('  metrics.jsonl           one JSON record per epoch');
  console.log('  eval.json               top-1, top-5, per-class accuracy, confusion matrix');
  console.log('  samples/                the test images classified above');
  console.log(`\ndemo finished in ${formatDuration((Date.now() - started) / 1000)}: test accuracy ${(100 * ev.top1).toFixed(2)}% on ${ev.n} images.`);
}
