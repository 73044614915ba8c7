// alexnet stats --dataset folder:PATH
import { UserError } from '../errors';
import { folderPath, scanImageFolder } from '../data/image-folder';
import { computeStats, ImageStats } from '../data/stats';
import { ProgressBar } from '../train/progress';
import { problemLogger } from '../train/trainer';
import { writeFileAtomic } from '../io/safetensors';
import { intOption, parse } from './args';

export const HELP = `Usage: alexnet stats --dataset folder:PATH [--out FILE] [options]

Computes the channel statistics of an image folder's training images on [0, 1] pixels: mean and standard
deviation (for normalisation) and the eigenvalues and eigenvectors of the RGB covariance (for the paper's
PCA colour augmentation). Images are shrunk so that their short side is at most 256 first. Use the file with
'alexnet train --stats FILE'; without it, training uses ImageNet's values.

Options:
  --dataset folder:PATH   the data set (train/ when it has train/ and val/ folders, else all of it)
  --out FILE              write the statistics as JSON (default: print only)
  --limit N               use N images, spread evenly over the data set (default: all)
  --grayscale             statistics of grayscale images (for 1-channel models)
  --json                  print JSON instead of a table
  -h, --help              this help`;

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
  const { values } = parse(argv, { dataset: { type: 'string' }, out: { type: 'string' }, limit: { type: 'string' }, grayscale: { type: 'boolean' }, json: { type: 'boolean' } }, 'stats');
  if (values.help) return console.log(HELP);
  const root = folderPath(values.dataset as string | undefined);
  if (!root) throw new UserError('--dataset folder:PATH is required (an image folder with one subfolder per class)');
  const folder = scanImageFolder(root, { valSplit: 0 });
  const warn = problemLogger((l) => console.error(l));
  folder.problems.forEach(warn);
  let files = folder.train.map((s) => s.file);
  const limit = intOption(values.limit as string | undefined, 'limit', { min: 1 });
  if (limit && limit < files.length) {
    const step = files.length / limit;
    files = Array.from({ length: limit }, (_, i) => files[Math.floor(i * step)]);
  }
  const bar = new ProgressBar('reading images', files.length);
  const s = await computeStats(files, { channels: values.grayscale ? 1 : 3, onProblem: warn, onProgress: (d) => bar.update(d) });
  bar.done();
  const json = JSON.stringify({ dataset: folder.root, ...s }, null, 2) + '\n';
  if (values.out) {
    writeFileAtomic(values.out as string, Buffer.from(json));
    if (!values.json) console.error(`wrote ${values.out}`);
  }
  console.log(values.json ? json.trimEnd() : formatStats(s));
}
