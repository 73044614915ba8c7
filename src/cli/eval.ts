// alexnet eval --weights PATH
import { UserError } from '../errors';
import { loadIdxDataset } from '../data/fashion-mnist';
import { folderPath } from '../data/image-folder';
import { BatchSource, TensorSource } from '../data/source';
import { folderEvalSource } from '../train/data';
import { loadModel } from '../train/checkpoint';
import { evaluate, EvalResult } from '../train/evaluate';
import { ProgressBar } from '../train/progress';
import { problemLogger, resolveDevice } from '../train/trainer';
import { setNumThreads } from '../tensor/tensor';
import * as os from 'node:os';
import { intOption, parse } from './args';

export const HELP = `Usage: alexnet eval --weights PATH [options]

Evaluates a trained model: loss, top-1 and top-5 accuracy, accuracy per class and the confusion matrix (rows:
true class, columns: predicted). Fashion-MNIST/MNIST models use the test split; image-folder models the
validation images of their data set (its val/ folder, or the same seeded split they were trained with).

Options:
  --weights PATH     a checkpoint or weights file written by alexnet train
  --dataset D        folder:PATH to evaluate on another image folder (default: the model's own data set)
  --data DIR         IDX folder (default: the one the model was trained on, else Debian's Fashion-MNIST)
  --split S          image folders: val (default), train or all
  --ten-crop         image folders: the paper's test: 4 corner and centre crops and their mirror images,
                     softmax averaged (10× the compute)
  --limit N          evaluate the first N images only
  --batch-size N     (default 256; with --ten-crop, N/10 images per batch)
  --workers N        image decoding threads (default: cores − 1, at most 8)
  --strict           fail at the first unreadable image instead of skipping it
  --device D         auto (default), cpu, cuda
  --threads N        CPU threads (default: all cores)
  --json             machine-readable output
  -h, --help         this help`;

export function formatEval(r: EvalResult): string {
  const lines = [`images: ${r.n}   loss ${r.loss.toFixed(4)}   top-1 ${(100 * r.top1).toFixed(2)}%   top-5 ${(100 * r.top5).toFixed(2)}%   (${r.seconds.toFixed(1)} s)`, '', 'per class:'];
  const w = Math.max(...r.perClass.map((c) => c.name.length));
  for (const c of r.perClass) lines.push(`  ${c.name.padEnd(w)}  ${(100 * c.accuracy).toFixed(1).padStart(5)}%  of ${c.count}`);
  lines.push('', 'confusion matrix (rows: true, columns: predicted):');
  const cw = Math.max(4, ...r.confusion.flat().map((v) => String(v).length));
  lines.push(' '.repeat(w + 2) + r.perClass.map((_, i) => String(i).padStart(cw + 1)).join(''));
  r.confusion.forEach((row, i) => lines.push(`  ${`${i} ${r.perClass[i].name}`.slice(0, w).padEnd(w)}${row.map((v) => String(v).padStart(cw + 1)).join('')}`));
  return lines.join('\n');
}

export async function evalCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    weights: { type: 'string', short: 'w' }, dataset: { type: 'string' }, data: { type: 'string' }, split: { type: 'string' }, 'ten-crop': { type: 'boolean' },
    limit: { type: 'string' }, 'batch-size': { type: 'string' }, workers: { type: 'string' }, strict: { type: 'boolean' },
    device: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' },
  }, 'eval');
  if (values.help) return console.log(HELP);
  if (!values.weights) throw new UserError("--weights PATH is required (a checkpoint from 'alexnet train --save')");
  setNumThreads(intOption(values.threads as string | undefined, 'threads', { min: 1, fallback: os.cpus().length })!);
  const device = resolveDevice(((values.device as string | undefined) ?? 'auto') as 'auto');
  const { model, record } = loadModel(values.weights as string);
  if (device !== 'cpu') model.to(device);
  const limit = intOption(values.limit as string | undefined, 'limit', { min: 1 });
  const batchSize = intOption(values['batch-size'] as string | undefined, 'batch-size', { min: 1, fallback: 256 })!;
  const split = (values.split as string | undefined) ?? 'val';
  if (!['val', 'train', 'all'].includes(split)) throw new UserError(`--split must be val, train or all, got '${split}'`);
  const dataset = (values.dataset as string | undefined) ?? record.dataset;
  const root = folderPath(dataset);
  let source: BatchSource;
  let close = async () => {};
  if (root !== undefined) {
    if (!record.classIds || !record.transform) throw new UserError(`${values.weights} was not trained on an image folder: evaluate it on ${record.dataset ?? 'its data set'} (without --dataset)`);
    const warn = problemLogger((l) => console.error(l));
    const ev = folderEvalSource(root, { classIds: record.classIds, classes: record.classes, transform: record.transform, split: record.split }, {
      device, batchSize, tenCrop: !!values['ten-crop'], limit, strict: !!values.strict, split: split as 'val',
      workers: intOption(values.workers as string | undefined, 'workers', { min: 1 }), onProblem: warn,
    });
    ev.problems.forEach(warn);
    source = ev.source;
    close = ev.close;
  } else {
    if (values['ten-crop']) throw new UserError('--ten-crop is for models trained on image folders (photos), not on Fashion-MNIST/MNIST');
    const name = record.dataset === 'mnist' ? 'mnist' : 'fashion-mnist';
    if (dataset && dataset !== name) throw new UserError(`--dataset must be folder:PATH or the model's own data set (${name}), got '${dataset}'`);
    const ds = loadIdxDataset({ dir: values.data as string | undefined, split: 'test', name, limit });
    if (ds.classes.length !== record.classes.length) throw new UserError(`the model has ${record.classes.length} classes but the data set ${ds.classes.length}`);
    ds.classes = record.classes;
    source = new TensorSource(ds, record.preprocess, { batchSize, shuffle: false, seed: 0, device });
    close = () => source.close();
  }
  try {
    const bar = new ProgressBar(values['ten-crop'] ? 'evaluating (ten-crop)' : 'evaluating', source.numBatches);
    const r = await evaluate(model, source, { onBatch: (d) => bar.update(d) });
    bar.done();
    const skipped = source.skipped ? `\n${source.skipped} unreadable image(s) skipped` : '';
    console.log(values.json ? JSON.stringify({ weights: values.weights, model: record.model, tenCrop: !!values['ten-crop'], skipped: source.skipped, ...r }, null, 2) : formatEval(r) + skipped);
  } finally {
    await close();
  }
}
