// alexnet stats --dataset folder:PATH
import { UserError } from '../errors';
import { folderPath, scanImageFolder } from '../data/image-folder';
import { computeStats, ImageStats } from '../data/stats';
import { writeFileAtomic } from '../util/files';
import { planOutputs } from '../util/outputs';
import { problemLogger } from '../train/data';
import { ProgressBar } from '../train/progress';
import { COMMON, flag, optionHelp, parseCommand, text, withHelp } from './options';

const OPTIONS = {
  dataset: text('folder:PATH', 'the data set (train/ when it has train/ and val/ folders, else all of it)'),
  out: text('FILE', 'write the statistics as JSON (default: print only); checked before any image is read'),
  overwrite: flag('replace an existing --out file'),
  limit: withHelp(COMMON.limit, 'use N images, spread evenly over the data set (default: all)'),
  grayscale: flag('statistics of grayscale images (for 1-channel models)'),
  json: withHelp(COMMON.json, 'print JSON instead of a table'),
};

export const HELP = `Usage: alexnet stats --dataset folder:PATH [--out FILE] [options]

Computes the channel statistics of an image folder's training images on [0, 1] pixels: mean and standard
deviation (for normalisation) and the eigenvalues and eigenvectors of the RGB covariance (for the paper's
PCA colour augmentation). Images are shrunk so that their short side is at most 256 first. Use the file with
'alexnet train --stats FILE'; without it, training uses ImageNet's values.

Options:
${optionHelp(OPTIONS)}`;

export function formatStats(s: ImageStats): string {
  const f = (x: number) => x.toFixed(4).padStart(8);
  return [
    `images: ${s.images}, pixels: ${s.pixels.toLocaleString('en-US')}`,
    `mean:    ${s.mean.map(f).join('')}`,
    `std:     ${s.std.map(f).join('')}`,
    `eigenvalues: ${s.eigval.map((x) => x.toExponential(3)).join('  ')}`,
    'eigenvectors (columns):',
    ...s.eigvec.map((r) => `  ${r.map(f).join('')}`),
  ].join('\n');
}

export async function statsCommand(argv: string[]): Promise<void> {
  const { values, help } = parseCommand('stats', argv, OPTIONS);
  if (help) return console.log(HELP);
  const root = folderPath(values.dataset);
  if (!root) throw new UserError('--dataset folder:PATH is required (an image folder with one subfolder per class)');
  const outputs = values.out
    ? planOutputs([
        { option: '--out', path: values.out, kind: 'report', policy: 'refuse', overwrite: values.overwrite },
      ])
    : undefined;
  try {
    await writeStats(root, values);
  } finally {
    outputs?.release();
  }
}

async function writeStats(
  root: string,
  values: { out?: string; limit?: number; grayscale: boolean; json: boolean },
): Promise<void> {
  const folder = scanImageFolder(root, { valSplit: 0 });
  const warn = problemLogger((l) => console.error(l));
  folder.problems.forEach(warn);
  let files = folder.train.map((s) => s.file);
  const limit = values.limit;
  if (limit && limit < files.length) {
    const step = files.length / limit;
    files = Array.from({ length: limit }, (_, i) => files[Math.floor(i * step)]);
  }
  const bar = new ProgressBar('reading images', files.length);
  const s = await computeStats(files, {
    channels: values.grayscale ? 1 : 3,
    onProblem: warn,
    onProgress: (d) => bar.update(d),
  });
  bar.done();
  const json = JSON.stringify({ dataset: folder.root, ...s }, null, 2) + '\n';
  if (values.out) {
    writeFileAtomic(values.out, Buffer.from(json), { what: '--out' });
    if (!values.json) console.error(`wrote ${values.out}`);
  }
  console.log(values.json ? json.trimEnd() : formatStats(s));
}
