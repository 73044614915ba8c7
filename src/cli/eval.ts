// alexnet eval --weights PATH
import { UserError } from '../errors';
import { checkBatchFits } from '../models/budget';
import { AlexNet } from '../models/alexnet';
import { loadModelFor } from '../persist/load';
import { ModelRecord } from '../persist/record';
import { prepareDevice, prepareModel } from '../runtime/device';
import { sameFile } from '../util/outputs';
import { openEvalSource, problemLogger } from '../train/data';
import { evaluate } from '../train/evaluate';
import { formatEval } from './format';
import { ProgressBar } from '../train/progress';
import { choice, COMMON, flag, optionHelp, parseCommand, text, withHelp } from './options';

const OPTIONS = {
  weights: withHelp(
    COMMON.weights,
    "a checkpoint or weights file written by alexnet train (or a PyTorch state dict); several\n(--weights A B C): an ensemble, their softmax outputs averaged (the paper's five-CNN entry)",
  ),
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

export const HELP = `Usage: alexnet eval --weights PATH [PATH ...] [options]

Evaluates a trained model: loss, top-1 and top-5 accuracy, accuracy per class and the confusion matrix (rows:
true class, columns: predicted). Fashion-MNIST/MNIST models use the test split; image-folder models the
validation images of their data set (its val/ folder, or the same seeded split they were trained with). Several
weights files are evaluated as one ensemble: they must share classes and preprocessing, the data set is the first's.

Options:
${optionHelp(OPTIONS)}`;

export async function evalCommand(argv: string[]): Promise<void> {
  const { values: v, help, positionals } = parseCommand('eval', argv, OPTIONS, { positionals: true });
  if (help) return console.log(HELP);
  if (!v.weights) throw new UserError("--weights PATH is required (a checkpoint from 'alexnet train --save')");
  const files = [v.weights, ...positionals];
  refuseRepeats(files);
  const { device } = prepareDevice(v.device, v.threads);
  const loaded = files.map((f) => loadModelFor(f, { dataset: v.dataset }, (l) => console.error(l)));
  checkEnsemble(files, loaded);
  const models = loaded.map((l) => prepareModel(l.model, device));
  const { model, record } = loaded[0];
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
    const r = await evaluate(models, source, { onBatch: (d) => bar.update(d) });
    bar.done();
    const skipped = source.skipped ? `\n${source.skipped} unreadable image(s) skipped` : '';
    console.log(
      v.json
        ? JSON.stringify(
            {
              weights: files.length === 1 ? v.weights : files,
              model: record.model,
              tenCrop: v.tenCrop,
              skipped: source.skipped,
              ...r,
            },
            null,
            2,
          )
        : formatEval(r) + skipped,
    );
  } finally {
    await close();
    models.forEach((m) => m.dispose());
  }
}

/** The same file twice (by path, link or real path) would be an ensemble of one model weighted twice: refused. */
function refuseRepeats(files: string[]): void {
  // A path that cannot be looked at (under a file, say) is no repeat: loading it names the problem.
  const same = (a: string, b: string) => {
    try {
      return sameFile(a, b);
    } catch {
      return false;
    }
  };
  files.forEach((f, i) => {
    const j = files.findIndex((g, k) => k < i && same(g, f));
    if (j < 0) return;
    const what = files[j] === f ? `${f} twice` : `${files[j]} and ${f}, the same file`;
    throw new UserError(
      `--weights: an ensemble of different models was expected, got ${what}: give each weights file once`,
    );
  });
}

/** An ensemble's models must agree on what they classify and how their input is prepared. */
function checkEnsemble(files: string[], loaded: { model: AlexNet; record: ModelRecord }[]): void {
  const first = loaded[0];
  const facts = (l: { model: AlexNet; record: ModelRecord }) => ({
    classes: JSON.stringify(l.record.classes),
    input: l.model.inputShape.join('×'),
    preprocessing: JSON.stringify(l.record.preprocess ?? null),
  });
  const want = facts(first);
  loaded.slice(1).forEach((l, i) => {
    const got = facts(l);
    for (const k of Object.keys(want) as (keyof typeof want)[]) {
      if (got[k] !== want[k]) {
        throw new UserError(
          `--weights: ${files[i + 1]} differs from ${files[0]} in its ${k} (${got[k].slice(0, 80)} vs ${want[k].slice(0, 80)}): an ensemble's models must share classes, input size and preprocessing`,
        );
      }
    }
  });
}
