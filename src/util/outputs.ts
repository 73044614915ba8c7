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
import * as path from 'node:path';
import { UserError } from '../errors';
import {
  cleanStaleTemps,
  describeFsError,
  ensureDir,
  fileTypeWords,
  formatBytes,
  freeBytes,
  nonDirectoryAncestor,
  tempPath,
  writeTarget,
} from './files';
import { acquireLock } from './locks';

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
  /** Bytes the output will take (a checkpoint's: io/safetensors.ts estimateSafetensorsBytes). */
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

/** Whether two paths name the same file: same real path, or (both existing) same device and inode. */
export function sameFile(a: string, b: string): boolean {
  if (writeTarget(a) === writeTarget(b)) return true;
  const sa = fs.statSync(a, { throwIfNoEntry: false });
  const sb = fs.statSync(b, { throwIfNoEntry: false });
  return !!sa && !!sb && sa.dev === sb.dev && sa.ino === sb.ino;
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
