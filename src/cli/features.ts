// alexnet features --weights W --out F.safetensors: one layer's outputs for every image of a data set (embeddings
// for nearest neighbours, as the paper's Figure 4, or for another classifier), with the labels and the file list.
import { UserError } from '../errors';
import { BatchSource } from '../data/source';
import { AlexNet } from '../models/alexnet';
import { ReLU } from '../nn';
import { loadModel } from '../persist/load';
import { prepareDevice, prepareModel } from '../runtime/device';
import { saveSafetensors } from '../io/safetensors';
import { cat, noGrad, Tensor, tidy } from '../tensor/tensor';
import { openEvalSource, problemLogger } from '../train/data';
import { ProgressBar } from '../train/progress';
import { planOutputs } from '../util/outputs';
import { choice, COMMON, flag, optionHelp, parseCommand, text, withHelp } from './options';

export const FEATURES_FORMAT = 'alexnet-ts/features';

const OPTIONS = {
  weights: withHelp(COMMON.weights, 'the trained model (alexnet-ts file or a PyTorch state dict)'),
  out: text(
    'FILE',
    'where the embeddings go (safetensors): features (N × D), labels (N), and in the metadata the\nfile list, the classes, the model and the layer',
  ),
  layer: text(
    'NAME',
    "the layer whose output is wanted (default: the last hidden layer, the classifier's last ReLU;\n'alexnet summary' lists the names)",
  ),
  dataset: text('D', "folder:PATH for another image folder (default: the model's own data set)"),
  data: text('DIR', "IDX folder (default: Debian's Fashion-MNIST)"),
  split: choice('S', 'val (default; the test split of IDX data), train, or all (folders)', [
    'val',
    'train',
    'all',
  ] as const),
  limit: withHelp(COMMON.limit, 'the first N images only'),
  batchSize: withHelp(COMMON.batchSize, 'images per batch (default 128)'),
  overwrite: flag('replace an existing --out file'),
  workers: COMMON.workers,
  device: COMMON.device,
  threads: COMMON.threads,
};

export const HELP = `Usage: alexnet features --weights PATH --out FILE [options]

Runs every image of a data set through a trained model up to one layer and writes that layer's outputs, one row
per image (flattened), with the labels and the images' files (IDX data: split:index) in order. The paper's
Figure 4 finds nearest neighbours in the last hidden layer's 4096 numbers: that layer is the default.

Options:
${optionHelp(OPTIONS)}`;

export async function featuresCommand(argv: string[]): Promise<void> {
  const { values: v, help } = parseCommand('features', argv, OPTIONS);
  if (help) return console.log(HELP);
  if (!v.weights) throw new UserError('--weights PATH is required (a trained model)');
  if (!v.out) throw new UserError('--out FILE is required (where the embeddings go, .safetensors)');
  const { device } = prepareDevice(v.device, v.threads);
  const { model, record } = loadModel(v.weights);
  const layers = model.layers();
  const names = layers.map(([n]) => n);
  const relus = layers.filter(([n, m]) => n.startsWith('classifier.') && m instanceof ReLU).map(([n]) => n);
  const layer = v.layer ?? relus[relus.length - 1] ?? names[names.length - 2];
  if (!names.includes(layer))
    throw new UserError(`--layer must be a layer of ${record.model}: ${names.join(', ')}; got '${layer}'`);
  prepareModel(model, device);
  const outputs = planOutputs([
    {
      option: '--out',
      path: v.out,
      kind: 'file',
      policy: 'refuse',
      overwrite: v.overwrite,
      inputs: [{ option: '--weights', path: v.weights }],
    },
  ]);
  const { source, close } = openEvalSource(record, v.weights, {
    dataset: v.dataset,
    dir: v.data,
    split: v.split ?? 'val',
    limit: v.limit,
    batchSize: v.batchSize ?? 128,
    workers: v.workers,
    device,
    onProblem: problemLogger((l) => console.error(l)),
  });
  try {
    const split = v.split ?? 'val';
    const { features, labels: y, files } = await collect(model, source, layer, split);
    saveSafetensors(
      v.out,
      [
        ['features', features],
        ['labels', y],
      ],
      {
        format: FEATURES_FORMAT,
        model: record.model,
        layer,
        weights: v.weights,
        dataset: v.dataset ?? record.dataset ?? '',
        split,
        classes: JSON.stringify(record.classes),
        files: JSON.stringify(files),
      },
      '--out',
    );
    console.log(`${v.out}: ${features.shape[0]} × ${features.shape[1]} features of ${layer} (${record.model})`);
    features.dispose();
    y.dispose();
  } finally {
    await close();
    outputs.release();
    model.dispose();
  }
}

/** The layer's outputs (flattened, on the CPU), the labels and each row's file, in the source's order. */
async function collect(
  model: AlexNet,
  source: BatchSource,
  layer: string,
  split: string,
): Promise<{ features: Tensor; labels: Tensor; files: string[] }> {
  const rows: Tensor[] = [];
  const labels: Tensor[] = [];
  const files: string[] = [];
  try {
    model.eval();
    const bar = new ProgressBar(`features of ${layer}`, source.numBatches);
    for await (const b of source.batches(0)) {
      try {
        rows.push(noGrad(() => tidy(() => model.forwardTo(b.x, layer).flatten(1).float().cpu().contiguous())).keep());
        labels.push(b.y.cpu().keep());
        const n = b.y.size(0);
        files.push(...(b.files ?? Array.from({ length: n }, (_, i) => `${split}:${files.length + i}`)));
      } finally {
        b.x.dispose();
        b.y.dispose();
      }
      bar.update(b.index + 1);
    }
    bar.done();
    return { features: cat(rows, 0), labels: cat(labels, 0), files };
  } finally {
    rows.forEach((t) => t.dispose());
    labels.forEach((t) => t.dispose());
  }
}
