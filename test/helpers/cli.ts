import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

export const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'alexnet.js');

/** Runs the alexnet command in a child process. */
export function cli(args: string[], o: { env?: NodeJS.ProcessEnv; input?: string } = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...o.env },
    input: o.input,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `alexnet train` arguments for a tiny real run (d2l at 65×65 on 64 Fashion-MNIST images, a few seconds). */
export const TINY_TRAIN = ['train', '--train-limit', '64', '--test-limit', '32', '--epochs', '1', '--input-size', '65'];
