// Text that several commands print.
import { EvalResult } from '../train/evaluate';

/** Above this many classes the text report keeps to the classes involved. */
const WIDE = 30;

/** An evaluation as a person reads it: totals, accuracy per class, the confusion matrix. */
export function formatEval(r: EvalResult): string {
  const lines = [
    `images: ${r.n}   loss ${r.loss.toFixed(4)}   top-1 ${(100 * r.top1).toFixed(2)}%   top-5 ${(100 * r.top5).toFixed(2)}%   (${r.seconds.toFixed(1)} s)`,
    '',
    'per class:',
  ];
  // Many classes (ImageNet's 1000): only those the images belong to or were taken for; the full table is in --json.
  const many = r.perClass.length > WIDE;
  const shown = r.perClass
    .map((_, i) => i)
    .filter((i) => !many || r.perClass[i].count > 0 || r.confusion.some((row) => row[i] > 0));
  const w = Math.max(...shown.map((i) => r.perClass[i].name.length));
  for (const i of shown) {
    const c = r.perClass[i];
    if (!many || c.count > 0)
      lines.push(`  ${c.name.padEnd(w)}  ${(100 * c.accuracy).toFixed(1).padStart(5)}%  of ${c.count}`);
  }
  if (shown.length > WIDE) {
    lines.push('', `confusion matrix: ${shown.length} classes involved, too many to print (--json has it)`);
    return lines.join('\n');
  }
  lines.push('', `confusion matrix (rows: true, columns: predicted${many ? '; only the classes involved' : ''}):`);
  const cw = Math.max(4, ...shown.flatMap((i) => shown.map((j) => String(r.confusion[i][j]).length)));
  lines.push(' '.repeat(w + 2) + shown.map((i) => String(i).padStart(cw + 1)).join(''));
  for (const i of shown)
    lines.push(
      `  ${`${i} ${r.perClass[i].name}`.slice(0, w).padEnd(w)}${shown.map((j) => String(r.confusion[i][j]).padStart(cw + 1)).join('')}`,
    );
  return lines.join('\n');
}
