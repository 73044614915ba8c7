// Lock files for outputs: `<target>.lock`, created whole and exclusively, holding who writes the target (PID, host,
// start, command, a token). planOutputs (./outputs) takes one per checkpoint; a live holder refuses, a stale one
// (its PID gone on this host, or not refreshed for a while from another host) is taken over with a warning. Held
// locks are released at exit and on SIGINT/SIGTERM/SIGHUP when nothing else handles them.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import { describeFsError, ensureDir, errnoCode, pidAlive, tempPath, writeTarget } from './files';

const defaultWarn = (m: string) => process.stderr.write(`warning: ${m}\n`);

/** What a lock file holds. */
export interface LockInfo {
  pid: number;
  host: string;
  /** ISO time the run took the lock. */
  started: string;
  command: string;
  /** Random: tells this lock from a later one with the same PID. */
  token: string;
}

export interface LockOptions {
  /** Recorded in the lock: this run's command line (default: process.argv). */
  command?: string;
  /** The option naming the target, for messages ('--save'). */
  what?: string;
  warn?: (message: string) => void;
  /** A lock from another host not refreshed for this long is stale (default one hour); refreshed every staleMs/4. */
  staleMs?: number;
}

/** Locks held by this process: lock file -> release. */
const held = new Map<string, () => void>();
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function releaseAllOnExit(): void {
  for (const r of [...held.values()]) r();
}

/** Killed by a signal nobody else handles: release the locks, then die of the signal as we would have. */
function onSignal(sig: NodeJS.Signals): void {
  // The command handles it (train's Ctrl-C saves and exits; 'exit' releases).
  if (process.listenerCount(sig) > 1) return;
  releaseAllOnExit();
  process.kill(process.pid, sig);
}

function track(lockFile: string, release: () => void): void {
  if (held.size === 0) {
    process.on('exit', releaseAllOnExit);
    for (const sig of SIGNALS) process.on(sig, onSignal);
  }
  held.set(lockFile, release);
}

function untrack(lockFile: string): void {
  held.delete(lockFile);
  if (held.size === 0) {
    process.off('exit', releaseAllOnExit);
    for (const sig of SIGNALS) process.off(sig, onSignal);
  }
}

/** The lock file of an output: "<target>.lock" beside its real path. */
export function lockPath(target: string): string {
  return `${writeTarget(target)}.lock`;
}

/** Reads a lock: its content if it parses, and its inode and age; undefined when it is gone. */
export function readLock(lockFile: string): { info?: LockInfo; ino: number; ageMs: number } | undefined {
  let text: string;
  let st: fs.Stats;
  try {
    st = fs.statSync(lockFile);
    text = fs.readFileSync(lockFile, 'utf8');
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined;
    throw new UserError(`cannot read the lock ${lockFile}: ${describeFsError(e)}`);
  }
  let info: LockInfo | undefined;
  try {
    const j = JSON.parse(text) as Partial<LockInfo>;
    if (typeof j.pid === 'number' && typeof j.host === 'string')
      info = { started: '', command: '', token: '', ...j } as LockInfo;
  } catch {
    info = undefined;
  }
  return { info, ino: st.ino, ageMs: Date.now() - st.mtimeMs };
}

/** Creates the lock with its whole content at once: written to a temporary, then hard-linked (fails if it exists). */
function tryCreate(lockFile: string, info: LockInfo): boolean {
  const tmp = tempPath(lockFile);
  try {
    fs.writeFileSync(tmp, JSON.stringify(info) + '\n', { flag: 'wx' });
    fs.linkSync(tmp, lockFile);
    return true;
  } catch (e) {
    if (errnoCode(e) === 'EEXIST') return false;
    if (!['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS'].includes(errnoCode(e) ?? '')) throw e;
    // No hard links here (some FUSE and SMB mounts): exclusive create; a reader may briefly see it empty.
    try {
      fs.writeFileSync(lockFile, JSON.stringify(info) + '\n', { flag: 'wx' });
      return true;
    } catch (e2) {
      if (errnoCode(e2) === 'EEXIST') return false;
      throw e2;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

type Verdict = { live: true; who: string } | { live: false; reason: string };

const when = (iso: string) => (iso ? `${iso.slice(0, 19).replace('T', ' ')} UTC` : 'at an unknown time');

/** Whether an existing lock belongs to a live run. Same host: its PID is checked; another host: its refresh time. */
function judge(lock: NonNullable<ReturnType<typeof readLock>>, staleMs: number): Verdict {
  const i = lock.info;
  if (!i)
    return lock.ageMs < 10_000
      ? { live: true, who: 'another run (starting now)' }
      : { live: false, reason: 'it is unreadable' };
  const cmd = i.command ? `: ${i.command}` : '';
  if (i.host === os.hostname()) {
    // Our own PID without holding it here: a previous process that had our PID (a restarted container).
    const alive = i.pid !== process.pid && pidAlive(i.pid);
    if (alive && !startedAfter(i.pid, i.started))
      return { live: true, who: `another run (PID ${i.pid}, started ${when(i.started)}${cmd})` };
    const gone = alive ? 'now belongs to a program started later' : 'is no longer running';
    return { live: false, reason: `PID ${i.pid}, started ${when(i.started)}, ${gone}` };
  }
  if (lock.ageMs < staleMs)
    return { live: true, who: `another run (PID ${i.pid} on ${i.host}, started ${when(i.started)}${cmd})` };
  return { live: false, reason: `host ${i.host} has not refreshed it for ${Math.round(lock.ageMs / 60_000)} minutes` };
}

/**
 * Whether the process now holding `pid` started clearly after the lock was taken: the PID was reused by another
 * program, so the lock's run is gone. Linux only (/proc; start times in USER_HZ = 100 ticks per second).
 */
function startedAfter(pid: number, lockStarted: string): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ticks = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
    const btime = Number(/^btime (\d+)$/m.exec(fs.readFileSync('/proc/stat', 'utf8'))?.[1]);
    const startMs = btime * 1000 + ticks * 10;
    return Number.isFinite(startMs) && startMs > Date.parse(lockStarted) + 60_000;
  } catch {
    return false;
  }
}

/** Moves a stale lock aside and removes it, unless it changed since it was judged (then it is put back). */
function takeOver(lockFile: string, ino: number): boolean {
  const aside = tempPath(lockFile);
  try {
    fs.renameSync(lockFile, aside);
  } catch {
    return false;
  }
  if (fs.statSync(aside).ino === ino) {
    fs.unlinkSync(aside);
    return true;
  }
  try {
    fs.linkSync(aside, lockFile);
  } catch {
    /* a third run took it meanwhile: it is theirs */
  }
  fs.rmSync(aside, { force: true });
  return false;
}

function startHolding(lockFile: string, info: LockInfo, staleMs: number): () => void {
  const timer = setInterval(
    () => {
      try {
        const now = new Date();
        fs.utimesSync(lockFile, now, now);
      } catch {
        /* the refresh is for other hosts' staleness check only */
      }
    },
    Math.max(1000, staleMs / 4),
  );
  timer.unref();
  let done = false;
  const release = () => {
    if (done) return;
    done = true;
    clearInterval(timer);
    untrack(lockFile);
    try {
      if (readLock(lockFile)?.info?.token === info.token) fs.unlinkSync(lockFile);
    } catch {
      /* already gone */
    }
  };
  track(lockFile, release);
  return release;
}

/**
 * Takes `<target>.lock` for this run: created whole and exclusively, holding {pid, host, started, command, token}.
 * A lock of a live run refuses ("another run (PID 1234, started 2025-01-14 10:15:30 UTC: alexnet train …) is
 * writing runs/x.safetensors: wait for it to finish, or choose another --save"); a stale one (its PID gone on
 * this host, or not refreshed for `staleMs` from another host) is replaced with a warning. Returns the release
 * function; the lock is also released at process exit and on SIGINT/SIGTERM/SIGHUP when nothing else handles them.
 */
export function acquireLock(target: string, o: LockOptions = {}): () => void {
  const lockFile = lockPath(target);
  const what = o.what ? `${o.what} ` : '';
  if (held.has(lockFile)) throw new UserError(`${what}${target} is already being written by this run`);
  const staleMs = o.staleMs ?? 3_600_000;
  const info: LockInfo = {
    pid: process.pid,
    host: os.hostname(),
    started: new Date().toISOString(),
    command: o.command ?? process.argv.slice(1).join(' '),
    token: crypto.randomBytes(8).toString('hex'),
  };
  ensureDir(path.dirname(lockFile), o.what);
  for (let attempt = 0; ; attempt++) {
    if (attempt > 5) throw new UserError(`${what}cannot take the lock ${lockFile}: other runs keep changing it`);
    try {
      if (tryCreate(lockFile, info)) break;
    } catch (e) {
      throw new UserError(`${what}cannot create the lock ${lockFile}: ${describeFsError(e)}`);
    }
    const cur = readLock(lockFile);
    if (!cur) continue;
    const v = judge(cur, staleMs);
    if (v.live) {
      const hint = cur.info && cur.info.host !== os.hostname() ? ` (if that run is gone, remove ${lockFile})` : '';
      throw new UserError(
        `${v.who} is writing ${target}: wait for it to finish, or choose another ${o.what ?? 'path'}${hint}`,
      );
    }
    if (takeOver(lockFile, cur.ino)) (o.warn ?? defaultWarn)(`removed the stale lock ${lockFile} (${v.reason})`);
  }
  return startHolding(lockFile, info, staleMs);
}
