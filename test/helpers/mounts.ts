// Real file systems for the output tests: tmpfs mounts (tiny, read-only) and read-only bind mounts. They need
// root and permission to mount; where that is missing the tests that need them are skipped with the reason,
// except in CI (CI or ALEXNET_REQUIRE_MOUNT set), where they run and fail loudly.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const mounted: string[] = [];

function probe(): string | undefined {
  if (process.platform !== 'linux') return `mount tests need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'mount tests need root';
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    return undefined;
  } catch (e) {
    return `mount is not permitted here: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const problem = probe();
const required = !!(process.env.CI || process.env.ALEXNET_REQUIRE_MOUNT);

/** `skip` option for node:test: the reason when mounts are impossible here, false when they work or are required. */
export const mountSkip: string | false = problem && !required ? `skipped: ${problem}` : false;

function run(args: string[]): void {
  try {
    execFileSync('mount', args, { stdio: 'pipe' });
  } catch (e) {
    throw new Error(
      `mount ${args.join(' ')} failed${required && problem ? ` (mounts are required in CI: ${problem})` : ''}: ${String((e as { stderr?: Buffer }).stderr ?? e).trim()}`,
    );
  }
}

/** Mounts a tmpfs on `dir` (created): `size=64k`, `ro,size=1m`, … */
export function mountTmpfs(dir: string, options: string): void {
  fs.mkdirSync(dir, { recursive: true });
  run(['-t', 'tmpfs', '-o', options, 'tmpfs', dir]);
  mounted.push(dir);
}

/** Makes `dir` (created, with its current content) read-only through a read-only bind mount on itself. */
export function bindReadOnly(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  run(['--bind', dir, dir]);
  mounted.push(dir);
  run(['-o', 'remount,ro,bind', dir]);
}

/** Unmounts everything mounted here, newest first (lazily if still busy). */
export function unmountAll(): void {
  for (const dir of mounted.splice(0).reverse()) {
    try {
      execFileSync('umount', [dir], { stdio: 'pipe' });
    } catch {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
    }
  }
}
