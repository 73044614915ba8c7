// alexnet eval --weights PATH
import { UserError } from '../errors';
import { checkBatchFits } from '../models/budget';
import { loadModel } from '../persist/load';
import { prepareDevice, prepareModel } from '../runtime/device';
import { openEvalSource, problemLogger } from '../train/data';
import { evaluate } from '../train/evaluate';
import { formatEval } from './format';
import { ProgressBar } from '../train/progress';
import { choice, COMMON, flag, optionHelp, parseCommand, text, withHelp } from './options';

const OPTIONS = {
  weights: withHelp(COMMON.weights, 'a checkpoint or weights file written by alexnet train (or a PyTorch state dict)'),
  dataset: text('D', "folder:PATH to evaluate on another image folder (default: the model's own data set)"),
  data: text('DIR', "IDX folder (default: Debian's Fashion-MNIST; MNIST models need it)"),
  split: choice('S', 'val (default: the validation images, or the test split of IDX data), train, or all (folders)', [
    'val',
    'train',
    'all',
  ] as const),
  tenCrop: flag(
    "image folders: the paper's test: 4 corner and centre crops and their mirror images, softmax\naveraged (10× the compute)",
  ),
  limit: withHelp(COMMON.limit, 'evaluate the first N images only'),
  batchSize: withHelp(COMMON.batchSize, 'images per batch (default 256; with --ten-crop, N/10 images per batch)'),
  workers: COMMON.workers,
  strict: COMMON.strict,
  device: COMMON.device,
  threads: COMMON.threads,
  json: COMMON.json,
};

export const HELP = `Usage: alexnet eval --weights PATH [options]

Evaluates a trained model: loss, top-1 and top-5 accuracy, accuracy per class and the confusion matrix (rows:
true class, columns: predicted). Fashion-MNIST/MNIST models use the test split; image-folder models the
validation images of their data set (its val/ folder, or the same seeded split they were trained with).

Options:
${optionHelp(OPTIONS)}`;

export async function evalCommand(argv: string[]): Promise<void> {
  const { values: v, help } = parseCommand('eval', argv, OPTIONS);
  if (help) return console.log(HELP);
  if (!v.weights) throw new UserError("--weights PATH is required (a checkpoint from 'alexnet train --save')");
  const { device } = prepareDevice(v.device, v.threads);
  const { model, record } = loadModel(v.weights);
  prepareModel(model, device);
  const batch = v.tenCrop ? Math.max(1, Math.floor((v.batchSize ?? 256) / 10)) * 10 : (v.batchSize ?? 256);
  const fit = checkBatchFits(model, batch, { mode: 'eval', device });
  if (fit.warning) console.error(`warning: ${fit.warning}`);
  const { source, close } = openEvalSource(record, v.weights, {
    dataset: v.dataset,
    dir: v.data,
    split: v.split ?? 'val',
    tenCrop: v.tenCrop,
    limit: v.limit,
    batchSize: v.batchSize ?? 256,
    workers: v.workers,
    strict: v.strict,
    device,
    onProblem: problemLogger((l) => console.error(l)),
  });
  try {
    const bar = new ProgressBar(v.tenCrop ? 'evaluating (ten-crop)' : 'evaluating', source.numBatches);
    const r = await evaluate(model, source, { onBatch: (d) => bar.update(d) });
    bar.done();
    const skipped = source.skipped ? `\n${source.skipped} unreadable image(s) skipped` : '';
    console.log(
      v.json
        ? JSON.stringify(
            { weights: v.weights, model: record.model, tenCrop: v.tenCrop, skipped: source.skipped, ...r },
            null,
            2,
          )
        : formatEval(r) + skipped,
    );
  } finally {
    await close();
    model.dispose();
  }
}
