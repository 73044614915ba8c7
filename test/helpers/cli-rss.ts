import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { BIN } from './cli';

const PRELOAD = path.join(__dirname, 'peak-rss.js');

/** Runs the alexnet command in a child process and reports its peak resident set size in MB. */
export function cliPeakRss(args: string[]): { code: number | null; stdout: string; stderr: string; peakMb: number } {
  const r = spawnSync(process.execPath, ['-r', PRELOAD, BIN, ...args], { encoding: 'utf8' });
  const m = /peak-rss-kb (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`the child printed no peak RSS (exit ${r.status}): ${r.stderr}`);
  return {
    code: r.status,
    stdout: r.stdout,
    stderr: r.stderr.replace(/\npeak-rss-kb \d+\n/, ''),
    peakMb: Number(m[1]) / 1024,
  };
}
