// alexnet summary: the layer table of a model (output shapes, parameters, multiply-accumulates).
import { OPTION_LIMITS } from '../models/alexnet';
import { describeModel, listModels } from '../models/registry';
import {
  ARCHITECTURE,
  architectureOf,
  COMMON,
  int,
  optionHelp,
  parseCommand,
  parseInputShape,
  text,
  thousands,
  withHelp,
} from './options';

const OPTIONS = {
  model: withHelp(
    COMMON.model,
    `one of: ${listModels()
      .map((m) => m.name)
      .join(', ')} (default alexnet-torchvision)`,
  ),
  input: text('CxHxW', "input shape (default: the variant's own, e.g. 3x224x224); HxW or S keep its channels"),
  classes: int('N', "number of output classes (default: the variant's)", { min: 1, max: OPTION_LIMITS.numClasses }),
  json: COMMON.json,
  ...ARCHITECTURE,
};

export const HELP = `Usage: alexnet summary --model NAME [--input CxHxW] [--classes N] [--lrn …] [--pool K/S] [--groups G] [--json]

Prints each layer of an AlexNet variant: its name (the state_dict prefix), type, output shape for one image,
parameter count and multiply-accumulates (conv and linear layers, as torchvision counts them); then totals.
The architecture options change the variant as the paper's comparisons did, e.g. the one-GPU net with half the
kernels: --model alexnet-2012 --groups 1 --widths 48-128-192-192-256.

Options:
${optionHelp(OPTIONS)}`;

export function summaryCommand(argv: string[], out: (s: string) => void = console.log): void {
  const { values, help } = parseCommand('summary', argv, OPTIONS);
  if (help) return out(HELP);
  const name = values.model ?? 'alexnet-torchvision';
  const classes = values.classes;
  const arch = architectureOf(values);
  const base = describeModel(name, { ...arch, numClasses: classes });
  const input = values.input ? parseInputShape(values.input, base.input[0]) : base.input;
  // Another input size describes the variant built for that size (its classifier may depend on it); a size that is
  // too small fails here with the layer that cannot take it and the smallest size that works. Nothing is allocated.
  const same = input.join() === base.input.join();
  const { rows, totalParams, totalMacs } = same
    ? base
    : describeModel(name, { ...arch, numClasses: classes, inChannels: input[0], inputSize: [input[1], input[2]] });
  if (values.json) {
    out(JSON.stringify({ model: name, input, layers: rows, totalParams, totalMacs }, null, 2));
    return;
  }
  const table = [
    ['layer', 'type', 'output', 'params', 'MACs'],
    ...rows.map((r) => [r.name, r.layer, r.outputShape.join('×'), thousands(r.params), thousands(r.macs)]),
  ];
  const widths = table[0].map((_, i) => Math.max(...table.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((c, i) => (i >= 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ');
  out(`${name}: input ${input.join('×')}`);
  out(line(table[0]));
  out(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of table.slice(1)) out(line(row));
  out(
    `total: ${thousands(totalParams)} parameters (${((totalParams * 4) / 1e6).toFixed(1)} MB as float32), ${thousands(totalMacs)} MACs per image (${(totalMacs / 1e9).toFixed(3)} G)`,
  );
}
