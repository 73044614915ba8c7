// alexnet report RUN_DIR: a run's curves, conv1 filters and evaluation as one self-contained HTML file.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { METRICS_FILE } from '../serve/runs';
import { checkRunDir, collectReport, loadAssets, renderReport } from '../serve/report';
import { fileTypeWords, writeFileAtomic } from '../util/files';
import { planOutputs } from '../util/outputs';
import { flag, optionHelp, parseCommand, text } from './options';

const OPTIONS = {
  out: text('FILE', 'where the HTML goes (default: RUN_DIR/report.html)'),
  overwrite: flag('replace an existing report'),
};

export const HELP = `Usage: alexnet report RUN_DIR [--out FILE] [--overwrite]

Writes one HTML file that shows a run without a server: the training curves from RUN_DIR/metrics.jsonl (loss,
accuracy, learning rate, images/s; every training run in the file overlaid), and, when the folder has them, the
first convolution's filters from its checkpoint.safetensors (or another weights file) and the confusion matrix
and per-class accuracy from its eval.json ('alexnet demo' writes all three). The file needs no network: its
scripts and data are inside it.

Options:
${optionHelp(OPTIONS)}`;

/**
 * The files a report reads from the run folder (metrics.jsonl, eval.json, the weights files) must be its own: real
 * paths inside it, and regular files. Anything else (a symbolic link out of the folder, a FIFO) is refused before
 * any of them is read, named by its base name; its content is never read, so never shown.
 */
export function checkRunFiles(runDir: string): void {
  const root = fs.realpathSync(runDir);
  const names = fs
    .readdirSync(root)
    .filter((n) => n === METRICS_FILE || n === 'eval.json' || n.endsWith('.safetensors'))
    .sort();
  for (const name of names) {
    let real: string;
    try {
      real = fs.realpathSync(path.join(root, name));
    } catch {
      throw new UserError(`RUN_DIR: ${name} is a broken link: a report reads only the run folder's own files`);
    }
    const rel = path.relative(root, real);
    if (rel.startsWith('..') || path.isAbsolute(rel) || rel === '')
      throw new UserError(
        `RUN_DIR: ${name} leads out of the run folder (a link to a file elsewhere): a report reads only the folder's own files`,
      );
    const st = fs.statSync(real);
    if (!st.isFile())
      throw new UserError(`RUN_DIR: ${name} is ${fileTypeWords(st)}: a report reads only regular files`);
  }
}

export async function reportCommand(argv: string[]): Promise<void> {
  const { values: v, positionals, help } = parseCommand('report', argv, OPTIONS, { positionals: true });
  if (help) return console.log(HELP);
  if (positionals.length !== 1)
    throw new UserError(
      `expected one RUN_DIR (a folder holding metrics.jsonl), got ${positionals.length ? positionals.map((p) => `'${p}'`).join(' ') : 'none'} (see 'alexnet report --help')`,
    );
  const runDir = positionals[0];
  const metrics = checkRunDir(runDir);
  checkRunFiles(runDir);
  const out = v.out ?? path.join(runDir, 'report.html');
  const outputs = planOutputs([
    {
      option: '--out',
      path: out,
      kind: 'report',
      policy: 'refuse',
      overwrite: v.overwrite,
      inputs: [{ option: 'RUN_DIR', path: metrics }],
    },
  ]);
  try {
    const assets = loadAssets();
    const data = collectReport(runDir, (m) => console.error(`warning: ${m}`));
    writeFileAtomic(out, Buffer.from(renderReport(data, assets)), { what: '--out' });
    const shown = [`${data.records.length} records`];
    if (data.filters && assets.filtersJs) shown.push(`${data.filters.layer} filters from ${data.filters.file}`);
    if (data.evaluation) shown.push('eval.json');
    console.log(`${out}: ${shown.join(', ')}`);
  } finally {
    outputs.release();
  }
}
