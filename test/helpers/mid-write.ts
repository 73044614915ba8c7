// Catching a child process in the middle of an atomic write, from outside and without hooks in the code under
// test: the directory is watched (inotify), and the moment the child's temporary appears the child is stopped
// with SIGSTOP. If the child won the race (its temporary was already renamed), it is continued and its next write
// is caught. The caller then SIGKILLs it (a crash mid-write) or SIGCONTs it.
import { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/**
 * Resolves with the path of `child`'s temporary for `dir/base` while `child` is stopped in the middle of writing
 * it. `when` (optional) must be true for a write to count (e.g. "the first checkpoint already exists").
 */
export function stopDuringWrite(
  child: ChildProcess,
  dir: string,
  base: string,
  o: { timeoutMs?: number; when?: () => boolean } = {},
): Promise<string> {
  const pid = child.pid!;
  const prefix = `.${base}.${pid}.`;
  return new Promise((resolve, reject) => {
    const done = (err?: Error, tmp?: string) => {
      watcher.close();
      clearTimeout(timer);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(tmp!);
    };
    const onExit = () => done(new Error(`the child exited before a write to ${base} could be caught`));
    const watcher = fs.watch(dir, (_event, name) => {
      if (!name || !name.startsWith(prefix) || !name.endsWith('.tmp') || (o.when && !o.when())) return;
      process.kill(pid, 'SIGSTOP');
      const tmp = path.join(dir, name);
      if (fs.existsSync(tmp)) done(undefined, tmp);
      else process.kill(pid, 'SIGCONT');
    });
    const timer = setTimeout(
      () => done(new Error(`no write to ${base} by PID ${pid} within ${o.timeoutMs ?? 120_000} ms`)),
      o.timeoutMs ?? 120_000,
    );
    child.on('exit', onExit);
  });
}
