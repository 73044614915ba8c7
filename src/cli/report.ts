// alexnet report RUN_DIR: a run's curves, conv1 filters and evaluation as one self-contained HTML file.
import * as path from 'node:path';
import { UserError } from '../errors';
import { checkRunDir, collectReport, loadAssets, renderReport } from '../serve/report';
import { writeFileAtomic } from '../util/files';
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

export async function reportCommand(argv: string[]): Promise<void> {
  const { values: v, positionals, help } = parseCommand('report', argv, OPTIONS, { positionals: true });
  if (help) return console.log(HELP);
  if (positionals.length !== 1)
    throw new UserError(
      `expected one RUN_DIR (a folder holding metrics.jsonl), got ${positionals.length ? positionals.map((p) => `'${p}'`).join(' ') : 'none'} (see 'alexnet report --help')`,
    );
  const runDir = positionals[0];
  const metrics = checkRunDir(runDir);
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
