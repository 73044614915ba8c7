// Text that several commands print.
import { EvalResult } from '../train/evaluate';

/** An evaluation as a person reads it: totals, accuracy per class, the confusion matrix. */
export function formatEval(r: EvalResult): string {
  const lines = [
    `images: ${r.n}   loss ${r.loss.toFixed(4)}   top-1 ${(100 * r.top1).toFixed(2)}%   top-5 ${(100 * r.top5).toFixed(2)}%   (${r.seconds.toFixed(1)} s)`,
    '',
    'per class:',
  ];
  const w = Math.max(...r.perClass.map((c) => c.name.length));
  for (const c of r.perClass)
    lines.push(`  ${c.name.padEnd(w)}  ${(100 * c.accuracy).toFixed(1).padStart(5)}%  of ${c.count}`);
  lines.push('', 'confusion matrix (rows: true, columns: predicted):');
  const cw = Math.max(4, ...r.confusion.flat().map((v) => String(v).length));
  lines.push(' '.repeat(w + 2) + r.perClass.map((_, i) => String(i).padStart(cw + 1)).join(''));
  r.confusion.forEach((row, i) =>
    lines.push(
      `  ${`${i} ${r.perClass[i].name}`.slice(0, w).padEnd(w)}${row.map((v) => String(v).padStart(cw + 1)).join('')}`,
    ),
  );
  return lines.join('\n');
}
