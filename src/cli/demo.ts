// alexnet demo: the main job end to end on Debian's Fashion-MNIST: train, evaluate on the full test set, save a
// checkpoint, predict a few test images written as PNG files, and say where everything went.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadIdxDataset } from '../data/fashion-mnist';
import { sharpModule } from '../data/image';
import { predictAll } from '../infer/predictor';
import { TorchPredictor } from '../infer/torch';
import { cpuInfo } from '../runtime/cpu';
import { resolveDevice } from '../runtime/device';
import { buildRunConfig, demoOptions } from '../train/config';
import { formatDuration } from '../train/progress';
import { train } from '../train/run';
import { EXIT_INTERRUPTED, stopOnSignals } from '../train/signals';
import { UserError } from '../errors';
import { nonDirectoryAncestor } from '../util/files';
import { planOutputs } from '../util/outputs';
import { formatEval } from './format';
import { COMMON, optionHelp, parseCommand, text, withHelp } from './options';

const OPTIONS = {
  out: text(
    'DIR',
    'where to write the checkpoint, metrics, evaluation and sample images (default runs/demo);\nchecked before training starts',
  ),
  device: withHelp(COMMON.device, 'auto (default), cpu or cuda'),
  threads: COMMON.threads,
};

export const HELP = `Usage: alexnet demo [--out DIR] [--device auto|cpu|cuda] [--threads N]

Trains AlexNet (the d2l variant) on Fashion-MNIST from Debian's dataset-fashion-mnist, evaluates it on all
10,000 test images, saves a checkpoint, and classifies a few test images written out as PNG files.

On a GPU it runs d2l's full recipe (224×224, 10 epochs, SGD lr 0.01, batch 128; d2l reports ≈ 0.88 test
accuracy). On a CPU it runs a reduced recipe sized to finish in a few minutes on two cores: 67×67 inputs (the
smallest the d2l layers take, bilinear from 28×28), the first 20,000 training images for one epoch, Adam
lr 1e-4, batch 64, normalised inputs (it reaches about 78% test accuracy); on CPUs with native bf16 (AVX-512
BF16, AMX) it trains in bf16 autocast on the first 40,000 images instead, in about the same time. Each demo is a fresh run: an
earlier demo's files in DIR are replaced.

Options:
${optionHelp(OPTIONS)}

Exit codes: 0 done, 1 failed, 2 usage or input error, 130 interrupted (the checkpoint is saved first).`;

/** Eight test images as PNG files in `dir`, with their true labels. */
async function writeSamples(dir: string): Promise<{ files: string[]; labels: number[]; classes: string[] }> {
  const test = loadIdxDataset({ split: 'test', limit: 8 });
  fs.mkdirSync(dir, { recursive: true });
  const pixels = test.images.data() as Uint8Array;
  const labels = test.labels.toArray();
  const files: string[] = [];
  for (let i = 0; i < labels.length; i++) {
    const file = path.join(dir, `test-${i}-${test.classes[labels[i]].replace(/[^A-Za-z0-9-]+/g, '_')}.png`);
    await sharpModule()(Buffer.from(pixels.subarray(i * 784, (i + 1) * 784)), {
      raw: { width: 28, height: 28, channels: 1 },
    })
      .png()
      .toFile(file);
    files.push(file);
  }
  test.images.dispose();
  test.labels.dispose();
  return { files, labels, classes: test.classes };
}

/**
 * A line of the run inside the demo in the demo's words: its files are --out's (the run calls them --save and
 * --metrics), and the demo has no --resume: `alexnet train --resume` continues its checkpoint.
 */
function inDemoWords(line: string): string {
  return line
    .replace(/(?<![\w-])--(save|metrics)(?![\w-])/g, '--out')
    .replace(/continue (it )?with --resume /g, 'continue $1with alexnet train --resume ');
}

/**
 * The demo's files in DIR, checked before training under the flag the user typed (--out; the run inside names its
 * checkpoint --save): each a file that can be replaced, samples/ a folder.
 */
function checkOut(out: string): void {
  const bad = nonDirectoryAncestor(out);
  if (bad) throw new UserError(`--out ${out}: expected a folder, but ${bad} is a file`);
  const file = (name: string) => ({ option: '--out', path: path.join(out, name), kind: 'file' as const });
  // The checkpoint's lock too: a demo still running in DIR is named here, under --out.
  const specs = [{ ...file('checkpoint.safetensors'), lock: true }, file('metrics.jsonl'), file('eval.json')];
  planOutputs(specs, { warn: () => undefined }).release();
  const samples = path.join(out, 'samples');
  const st = fs.statSync(samples, { throwIfNoEntry: false });
  if (st && !st.isDirectory())
    throw new UserError(`--out ${out}: ${samples} is not a folder (the demo writes its sample images there)`);
}

export async function demoCommand(argv: string[]): Promise<void> {
  const { values, help } = parseCommand('demo', argv, OPTIONS);
  if (help) return console.log(HELP);
  const started = Date.now();
  const out = path.resolve(values.out ?? path.join('runs', 'demo'));
  const device = resolveDevice(values.device ?? 'auto');
  const gpu = device !== 'cpu';
  const { description, options } = demoOptions(gpu, !gpu && cpuInfo().nativeBf16);
  const save = path.join(out, 'checkpoint.safetensors');
  const metrics = path.join(out, 'metrics.jsonl');
  const cfg = buildRunConfig({ ...options, device, threads: values.threads, save, metrics, overwrite: true });
  checkOut(out);
  // A fresh run each time: an earlier demo's metrics would otherwise be appended to.
  fs.rmSync(metrics, { force: true });
  console.log(`alexnet demo: ${description}.\n`);
  const stop = stopOnSignals();
  const log = (line: string) => console.log(inDemoWords(line));
  const r = await train(cfg, { shouldStop: stop.requested, log })
    .catch((e: unknown) => {
      throw e instanceof UserError ? new UserError(inDemoWords(e.message)) : e;
    })
    .finally(() => stop.dispose());
  r.model.dispose();
  if (r.stopped === 'interrupted') {
    process.exitCode = EXIT_INTERRUPTED;
    return;
  }
  const ev = r.lastEval!;
  fs.writeFileSync(path.join(out, 'eval.json'), JSON.stringify({ model: cfg.model.name, ...ev }, null, 2) + '\n');
  console.log(`\nevaluation on the full Fashion-MNIST test set:\n${formatEval(ev)}\n`);

  // A few test images as PNG files, classified through the same path a user's own images take.
  const samples = path.join(out, 'samples');
  const { files, labels, classes } = await writeSamples(samples);
  const predictor = TorchPredictor.open(save, { device });
  const preds = await predictAll(predictor, files, { k: 3 }).finally(() => predictor.close());
  console.log('predictions for test images saved as PNG (alexnet predict --weights … FILE):');
  let right = 0;
  preds.forEach((p, i) => {
    const ok = p.top[0].index === labels[i];
    right += ok ? 1 : 0;
    console.log(
      `  ${ok ? '✓' : '✗'} ${path.basename(p.file).padEnd(28)} true: ${classes[labels[i]].padEnd(12)} predicted: ${p.top[0].class.padEnd(12)} ${(100 * p.top[0].probability).toFixed(1)}%`,
    );
  });
  console.log(`  ${right}/${preds.length} correct\n`);
  const rel = (f: string) => (path.relative(process.cwd(), f).startsWith('..') ? f : path.relative(process.cwd(), f));
  console.log(`written to ${out}:`);
  console.log(`  checkpoint.safetensors  weights + optimiser state (alexnet eval|predict --weights ${rel(save)})`);
  console.log('  metrics.jsonl           one JSON record per epoch and one every 50 steps, with the run id');
  console.log('  eval.json               top-1, top-5, per-class accuracy, confusion matrix');
  console.log('  samples/                the test images classified above');
  console.log(
    `\nsee it: alexnet report ${rel(out)} (one HTML file), or alexnet serve --weights ${rel(save)} --runs ${rel(path.dirname(out))}\n` +
      '(a page at http://127.0.0.1:8080: predict, filters, feature maps, confusion matrix, training curves)',
  );
  console.log(
    `\ndemo finished in ${formatDuration((Date.now() - started) / 1000)}: test accuracy ${(100 * ev.top1).toFixed(2)}% on ${ev.n} images.`,
  );
}
