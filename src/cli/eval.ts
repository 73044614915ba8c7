// alexnet eval --weights PATH
import { UserError } from '../errors';
import { loadIdxDataset } from '../data/fashion-mnist';
import { loadModel } from '../train/checkpoint';
import { evaluate, EvalResult } from '../train/evaluate';
import { ProgressBar } from '../train/progress';
import { resolveDevice } from '../train/trainer';
import { setNumThreads } from '../tensor/tensor';
import * as os from 'node:os';
import { intOption, parse } from './args';

export const HELP = `Usage: alexnet eval --weights PATH [options]

Evaluates a trained model on the test split of its data set: loss, top-1 and top-5 accuracy, accuracy per
class and the confusion matrix (rows: true class, columns: predicted).

Options:
  --weights PATH     a checkpoint or weights file written by alexnet train
  --data DIR         IDX folder (default: the one the model was trained on, else Debian's Fashion-MNIST)
  --limit N          evaluate the first N test images only
  --batch-size N     (default 256)
  --device D         auto (default), cpu, cuda
  --threads N        CPU threads (default: all cores)
  --json             machine-readable output
  -h, --help         this help`;

export function formatEval(r: EvalResult): string {
  const lines = [`test images: ${r.n}   loss ${r.loss.toFixed(4)}   top-1 ${(100 * r.top1).toFixed(2)}%   top-5 ${(100 * r.top5).toFixed(2)}%   (${r.seconds.toFixed(1)} s)`, '', 'per class:'];
  const w = Math.max(...r.perClass.map((c) => c.name.length));
  for (const c of r.perClass) lines.push(`  ${c.name.padEnd(w)}  ${(100 * c.accuracy).toFixed(1).padStart(5)}%  of ${c.count}`);
  lines.push('', 'confusion matrix (rows: true, columns: predicted):');
  const cw = Math.max(4, ...r.confusion.flat().map((v) => String(v).length));
  lines.push(' '.repeat(w + 2) + r.perClass.map((_, i) => String(i).padStart(cw + 1)).join(''));
  r.confusion.forEach((row, i) => lines.push(`  ${`${i} ${r.perClass[i].name}`.slice(0, w).padEnd(w)}${row.map((v) => String(v).padStart(cw + 1)).join('')}`));
  return lines.join('\n');
}

export async function evalCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, { weights: { type: 'string', short: 'w' }, data: { type: 'string' }, limit: { type: 'string' }, 'batch-size': { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' } }, 'eval');
  if (values.help) return console.log(HELP);
  if (!values.weights) throw new UserError("--weights PATH is required (a checkpoint from 'alexnet train --save')");
  setNumThreads(intOption(values.threads as string | undefined, 'threads', { min: 1, fallback: os.cpus().length })!);
  const device = resolveDevice(((values.device as string | undefined) ?? 'auto') as 'auto');
  const { model, record } = loadModel(values.weights as string);
  if (device !== 'cpu') model.to(device);
  const name = record.dataset === 'mnist' ? 'mnist' : 'fashion-mnist';
  const ds = loadIdxDataset({ dir: values.data as string | undefined, split: 'test', name, limit: intOption(values.limit as string | undefined, 'limit', { min: 1 }) });
  if (ds.classes.length !== record.classes.length) throw new UserError(`the model has ${record.classes.length} classes but the data set ${ds.classes.length}`);
  ds.classes = record.classes;
  const batchSize = intOption(values['batch-size'] as string | undefined, 'batch-size', { min: 1, fallback: 256 })!;
  const bar = new ProgressBar('evaluating', Math.ceil(ds.labels.size(0) / batchSize));
  const r = evaluate(model, ds, record.preprocess, { batchSize, device, onBatch: (d) => bar.update(d) });
  bar.done();
  console.log(values.json ? JSON.stringify({ weights: values.weights, model: record.model, ...r }, null, 2) : formatEval(r));
}
