// alexnet features --weights W --out F.safetensors: one layer's outputs for every image of a data set (embeddings
// for nearest neighbours, as the paper's Figure 4, or for another classifier), with the labels and the file list.
import { UserError } from '../errors';
import { extractFeatures } from '../infer/features';
import { embeddingLayer } from '../infer/introspect';
import { writeEmbeddings } from '../persist/embeddings';
import { loadModelFor } from '../persist/load';
import { prepareDevice, prepareModel } from '../runtime/device';
import { openEvalSource, problemLogger } from '../train/data';
import { ProgressBar } from '../train/progress';
import { planOutputs } from '../util/outputs';
import { choice, COMMON, flag, optionHelp, parseCommand, text, withHelp } from './options';

const OPTIONS = {
  weights: withHelp(
    COMMON.weights,
    "the trained model (alexnet-ts file or a PyTorch state dict: then ImageNet's preprocessing for 3 channels)",
  ),
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
  // A plain state dict's classes need not match the data set's: the data set's label the rows.
  const { model, record } = loadModelFor(v.weights, { dataset: v.dataset, matchClasses: false }, (l) =>
    console.error(l),
  );
  const names = model.layers().map(([n]) => n);
  const layer = v.layer ?? embeddingLayer(model);
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
    const bar = new ProgressBar(`features of ${layer}`, source.numBatches);
    const { features, labels, files } = await extractFeatures(model, source, layer, {
      split,
      onBatch: (done) => bar.update(done),
    });
    bar.done();
    try {
      writeEmbeddings(
        v.out,
        {
          features,
          labels,
          files,
          classes: record.classes,
          model: record.model,
          layer,
          weights: v.weights,
          dataset: v.dataset ?? record.dataset ?? '',
          split,
        },
        '--out',
      );
      console.log(`${v.out}: ${features.shape[0]} × ${features.shape[1]} features of ${layer} (${record.model})`);
    } finally {
      features.dispose();
      labels.dispose();
    }
  } finally {
    await close();
    outputs.release();
    model.dispose();
  }
}
