// The one owner of a command's output files, checked BEFORE any work starts, so that no run trains for an hour
// and then cannot save.
//
// Who calls what: a command that writes files (train --save/--metrics, export --out, stats --out, demo --out,
// eval --json-out …) builds one `OutputSpec` per output, calls `planOutputs` right after parsing its options
// and opening its inputs (before loading data or building the model), keeps the returned plan and calls
// `plan.release()` when it is done (a process 'exit' handler releases it too). Whole files are then written with
// `writeFileAtomic` and logs with `appendLine` (./files). JSON Lines records carry `newRunId()`.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import {
  cleanStaleTemps,
  describeFsError,
  ensureDir,
  errnoCode,
  fileTypeWords,
  formatBytes,
  freeBytes,
  nonDirectoryAncestor,
  pidAlive,
  tempPath,
  writeTarget,
} from './files';

export type OutputKind = 'checkpoint' | 'metrics' | 'report' | 'file';
/** refuse: an existing file is an error; replace: it is replaced atomically; append: records are added to it. */
export type OverwritePolicy = 'refuse' | 'replace' | 'append';

const DEFAULT_POLICY: Record<OutputKind, OverwritePolicy> = {
  checkpoint: 'refuse',
  metrics: 'append',
  report: 'replace',
  file: 'replace',
};

export interface OutputSpec {
  /** The option that named it, for messages: '--save'. */
  option: string;
  path: string;
  kind: OutputKind;
  /** Bytes the output will take (a checkpoint's tensors are known before training: see estimateSafetensorsBytes). */
  expectedBytes?: number;
  /** Files the command reads: the output must not be any of them (compared by real path and by device + inode). */
  inputs?: { option: string; path: string }[];
  /** Default by kind: checkpoint refuse, metrics append, report and file replace. */
  policy?: OverwritePolicy;
  /** --overwrite: 'refuse' becomes 'replace'. */
  overwrite?: boolean;
  /** The checkpoint being resumed (--resume): writing over it continues it: neither refused nor an input clash. */
  resuming?: string;
  /** Take `<target>.lock` for the run (default: checkpoints only). */
  lock?: boolean;
  /** Says what an existing file holds, for the refusal: "epoch 3 of 10, alexnet-d2l on fashion-mnist". */
  describeExisting?: (file: string) => string | undefined;
}

export interface PlanOptions {
  /** Free space required beyond the expected bytes, per file system (default: 1% of them + 64 KiB). */
  marginBytes?: number;
  /** Recorded in lock files: the command line of this run. */
  command?: string;
  /** Where warnings go (a stale lock or temporary removed). Default: stderr with a "warning: " prefix. */
  warn?: (message: string) => void;
  /** A lock from another host whose file has not been refreshed for this long is stale (default one hour). */
  staleLockMs?: number;
}

export interface PlannedOutput {
  option: string;
  /** As the user gave it (for messages). */
  path: string;
  /** Absolute, symbolic links resolved: where the bytes land. */
  target: string;
  kind: OutputKind;
  policy: OverwritePolicy;
  exists: boolean;
  expectedBytes?: number;
  /** Free bytes in the target's directory when planned (undefined where the file system cannot tell). */
  freeBytes?: number;
}

export interface OutputPlan {
  outputs: PlannedOutput[];
  /** Temporaries of dead runs removed while planning. */
  cleaned: string[];
  /** Releases the locks taken (idempotent; also done by a process 'exit' handler). */
  release(): void;
}

const defaultWarn = (m: string) => process.stderr.write(`warning: ${m}\n`);

/** Whether two paths name the same file: same real path, or (both existing) same device and inode. */
export function sameFile(a: string, b: string): boolean {
  if (writeTarget(a) === writeTarget(b)) return true;
  const sa = fs.statSync(a, { throwIfNoEntry: false });
  const sb = fs.statSync(b, { throwIfNoEntry: false });
  return !!sa && !!sb && sa.dev === sb.dev && sa.ino === sb.ino;
}

/**
 * The size of a safetensors file holding tensors of `tensorBytes` bytes in all, `tensorCount` of them, with
 * about `metadataBytes` of metadata: an estimate for `expectedBytes` (the header is a few kB; the margin covers it).
 */
export function estimateSafetensorsBytes(tensorBytes: number, tensorCount: number, metadataBytes = 0): number {
  return 8 + 1024 + tensorCount * 128 + metadataBytes + tensorBytes;
}

/** This process's last run id: its second and its number (see newRunId). */
let lastRunId = { second: '', n: 0n };

/**
 * A short unique id for a run, sortable by start time: "20250114T101530Z-3fa9c2d41b07e85a", the start's second (UTC)
 * and a 16-digit hex number. A process's first id in a second draws that number at random below 2^63; its further
 * ids in the same second count up from it, so one process never repeats an id and its ids sort in the order they
 * were made. Two processes share an id only when their counts in the same second overlap: for n ids a second from
 * p processes the chance is about p·n/2^63 a second (1e-10 for a million ids from a thousand processes).
 */
export function newRunId(now = new Date()): string {
  const second = now.toISOString().replace(/[-:]/g, '').slice(0, 15);
  if (second === lastRunId.second) lastRunId.n += 1n;
  else lastRunId = { second, n: crypto.randomBytes(8).readBigUInt64BE() >> 1n };
  return `${second}Z-${lastRunId.n.toString(16).padStart(16, '0')}`;
}

/**
 * Checks every output before any work: the parent exists or is created (and is a directory), it is really
 * writable (a probe file is created and removed), the target is not a directory, FIFO or device, enough space is
 * free for the expected bytes, no output is an input or another output, an existing checkpoint is not replaced
 * without --overwrite (unless it is the one being resumed), and no other live run holds the target's lock.
 * Temporaries of dead runs beside the targets are removed before free space is measured. Throws a UserError naming
 * the option, the path and what was expected; on error no lock stays taken.
 */
export function planOutputs(specs: OutputSpec[], o: PlanOptions = {}): OutputPlan {
  const releases: (() => void)[] = [];
  const release = () => releases.splice(0).forEach((r) => r());
  try {
    refuseSameOutputs(specs);
    const cleaned: string[] = [];
    const outputs = specs.map((s) => planOne(s, o, releases, cleaned));
    checkSpace(outputs, o.marginBytes);
    return { outputs, cleaned, release };
  } catch (e) {
    release();
    throw e;
  }
}

function refuseSameOutputs(specs: OutputSpec[]): void {
  for (let i = 0; i < specs.length; i++) {
    for (let j = i + 1; j < specs.length; j++) {
      if (specs[i].path && specs[j].path && sameFile(specs[i].path, specs[j].path)) {
        throw new UserError(
          `${specs[i].option} ${specs[i].path} and ${specs[j].option} ${specs[j].path} are the same file: give them different paths`,
        );
      }
    }
  }
}

function planOne(s: OutputSpec, o: PlanOptions, releases: (() => void)[], cleaned: string[]): PlannedOutput {
  const where = `${s.option} ${s.path}`;
  if (!s.path) throw new UserError(`${s.option}: expected a file path, got an empty string`);
  const asked = s.policy ?? DEFAULT_POLICY[s.kind];
  const policy: OverwritePolicy = asked === 'refuse' && s.overwrite ? 'replace' : asked;
  checkInputs(s, where);
  const target = writeTarget(s.path);
  const dir = path.dirname(target);
  const bad = nonDirectoryAncestor(dir);
  if (bad) throw new UserError(`${where}: ${bad} is a file, not a directory`);
  ensureDir(dir, s.option);
  const existing = fs.statSync(target, { throwIfNoEntry: false });
  checkTargetType(where, existing, policy);
  probeWritable(where, target, existing, policy);
  for (const f of cleanStaleTemps(dir, path.basename(target))) cleaned.push(f);
  if (s.lock ?? s.kind === 'checkpoint')
    releases.push(acquireLock(s.path, { command: o.command, warn: o.warn, what: s.option, staleMs: o.staleLockMs }));
  if (existing && policy === 'refuse' && !(s.resuming && sameFile(s.resuming, target))) refuseExisting(s, existing);
  return {
    option: s.option,
    path: s.path,
    target,
    kind: s.kind,
    policy,
    exists: !!existing,
    expectedBytes: s.expectedBytes,
    freeBytes: freeBytes(dir),
  };
}

function checkTargetType(where: string, s: fs.Stats | undefined, policy: OverwritePolicy): void {
  if (!s || s.isFile() || (policy === 'append' && s.isCharacterDevice())) return;
  if (s.isDirectory()) throw new UserError(`${where} is a directory: expected a file name`);
  throw new UserError(`${where} is ${fileTypeWords(s)}: expected a regular file or a new file name`);
}

function checkInputs(s: OutputSpec, where: string): void {
  for (const input of s.inputs ?? []) {
    if (!input.path || (s.resuming && sameFile(input.path, s.resuming))) continue;
    if (sameFile(s.path, input.path)) {
      throw new UserError(
        `${where} is the same file as ${input.option} ${input.path}: writing it would destroy the input; choose another ${s.option}`,
      );
    }
  }
}

/**
 * Really writes in the directory (access() says yes to root on a read-only mount); to append to an existing file
 * (which needs no directory write permission: /dev/null, a shared log) opens that file for appending instead.
 */
function probeWritable(where: string, target: string, existing: fs.Stats | undefined, policy: OverwritePolicy): void {
  if (existing && policy === 'append') {
    try {
      fs.closeSync(fs.openSync(target, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_NONBLOCK));
      return;
    } catch (e) {
      throw new UserError(`${where}: cannot append to it: ${describeFsError(e)}`);
    }
  }
  const dir = path.dirname(target);
  const probe = tempPath(target);
  try {
    fs.closeSync(fs.openSync(probe, 'wx'));
    fs.unlinkSync(probe);
  } catch (e) {
    fs.rmSync(probe, { force: true });
    throw new UserError(`${where}: cannot write in ${dir}: ${describeFsError(e)}`);
  }
}

function refuseExisting(s: OutputSpec, existing: fs.Stats): void {
  const where = `${s.option} ${s.path}`;
  if (s.kind === 'checkpoint') {
    let desc: string | undefined;
    try {
      desc = s.describeExisting?.(s.path);
    } catch {
      desc = undefined;
    }
    throw new UserError(
      `${where} already holds a checkpoint${desc ? ` (${desc})` : ` (${formatBytes(existing.size)}, written ${existing.mtime.toISOString().slice(0, 19).replace('T', ' ')} UTC)`}: ` +
        `continue it with --resume ${s.path}, or pass --overwrite to replace it`,
    );
  }
  throw new UserError(`${where} already exists: pass --overwrite to replace it, or choose another ${s.option}`);
}

/** Expected bytes (plus margin) against free space, summed over the outputs that share a file system. */
function checkSpace(outputs: PlannedOutput[], marginBytes?: number): void {
  const byDevice = new Map<number, PlannedOutput[]>();
  for (const p of outputs) {
    if (!p.expectedBytes || p.freeBytes === undefined) continue;
    const dev = fs.statSync(path.dirname(p.target)).dev;
    byDevice.set(dev, [...(byDevice.get(dev) ?? []), p]);
  }
  for (const group of byDevice.values()) {
    const total = group.reduce((n, p) => n + (p.expectedBytes ?? 0), 0);
    const needed = total + (marginBytes ?? Math.ceil(total * 0.01) + 65536);
    const free = group[0].freeBytes ?? Infinity;
    if (needed <= free) continue;
    const p = group[group.length - 1];
    const others =
      group.length > 1
        ? ` (with ${group
            .slice(0, -1)
            .map((q) => q.option)
            .join(', ')} on the same file system)`
        : '';
    throw new UserError(
      `${p.option} ${p.path} needs about ${formatBytes(needed)}${others} but only ${formatBytes(free)} is free in ${path.dirname(p.target)}: free some space or choose another ${p.option}`,
    );
  }
}

// ---- locks -----------------------------------------------------------------------------------------------------

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
