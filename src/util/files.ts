// Files the user names: reading them safely and writing them without ever leaving half a file behind.
//
// Who calls what:
//   - every writer of a whole file (checkpoints, weights, ONNX, reports, stats) calls `writeFileAtomic`;
//   - every append-only log (metrics JSON Lines) calls `appendLine`;
//   - every command that reads a user-named file (--weights, --resume, --data files) calls `checkInputFile` (or
//     `openInputFile`, which cannot be raced) before reading, so a FIFO, a directory or /dev/zero is refused in
//     one line instead of hanging, crashing or allocating without bound;
//   - anything that turns a Node `fs` error into a message uses `describeFsError` / `cannotRead` / `cannotWrite`.
// Output planning before a run (free space, locks, overwrite policy) lives in `./outputs`.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';

/** Writes the file's bytes to an open file descriptor (for data too large to hold in one buffer). */
export type FdWriter = (fd: number) => void;
export type FileData = Buffer | Buffer[] | FdWriter;

/** Node's errno code of a file-system error, if it is one. */
export function errnoCode(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

const REASONS: Record<string, string> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large (a file-size limit of this file system or process)',
  EISDIR: 'is a directory',
  ENOTDIR: 'a parent in the path is not a directory',
  EEXIST: 'already exists',
  ENOTEMPTY: 'directory not empty',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  EMFILE: 'too many open files in this process',
  ENFILE: 'too many open files in the system',
  EIO: 'input/output error (the disk or network file system failed)',
  EBUSY: 'device or resource busy',
  ETXTBSY: 'file is busy',
  ENXIO: 'no such device or address',
  ENODEV: 'no such device',
  EXDEV: 'cannot move across file systems',
  ESTALE: 'stale network file handle',
  EAGAIN: 'resource temporarily unavailable',
  EINVAL: 'invalid argument',
};

/** Free bytes for an unprivileged writer on the file system holding `dir`, or undefined when unknown. */
export function freeBytes(dir: string): number | undefined {
  try {
    const s = fs.statfsSync(dir);
    return Number(s.bavail) * Number(s.bsize);
  } catch {
    return undefined;
  }
}

/** Bytes in human units: "1.5 MB", "370 MB", "812 bytes". */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} bytes`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n / 1000;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 ? Math.round(v) : Number(v.toPrecision(2))} ${units[i]}`;
}

/**
 * A file-system error in words: "read-only file system", "no space left on device (needs 370 MB, 12 MB free)".
 * `o.needed` (bytes) and `o.dir` (where free space is measured) add the amounts to ENOSPC.
 */
export function describeFsError(e: unknown, o: { needed?: number; dir?: string } = {}): string {
  const code = errnoCode(e);
  let words = code ? REASONS[code] : undefined;
  if (!words) {
    // Node's message is "CODE: words, syscall 'path'": keep the words.
    const m = /^[A-Z0-9_]+: ([^,]+)/.exec((e as Error)?.message ?? '');
    words = m ? m[1] : String((e as Error)?.message ?? e);
  }
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    const free = o.dir !== undefined ? freeBytes(o.dir) : undefined;
    const parts = [
      o.needed !== undefined ? `needs ${formatBytes(o.needed)}` : '',
      free !== undefined ? `${formatBytes(free)} free` : '',
    ];
    if (parts.some(Boolean)) words += ` (${parts.filter(Boolean).join(', ')})`;
  }
  return words;
}

const prefix = (what?: string) => (what ? `${what}: ` : '');

/** "--weights: cannot read FILE: permission denied". The one place for this idiom. */
export function cannotRead(file: string, e: unknown, what?: string): UserError {
  return new UserError(`${prefix(what)}cannot read ${file}: ${describeFsError(e)}`);
}

/** "--save: cannot write FILE: read-only file system". */
export function cannotWrite(file: string, e: unknown, o: { what?: string; needed?: number } = {}): UserError {
  return new UserError(
    `${prefix(o.what)}cannot write ${file}: ${describeFsError(e, { needed: o.needed, dir: path.dirname(path.resolve(file)) })}`,
  );
}

/** What a non-regular file is, in words ("a directory", "a FIFO (named pipe)"), or undefined for a regular file. */
export function fileTypeWords(s: fs.Stats): string | undefined {
  if (s.isFile()) return undefined;
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

function inputError(file: string, e: unknown, what?: string): UserError {
  if (errnoCode(e) === 'ENOENT') {
    try {
      if (fs.lstatSync(file).isSymbolicLink()) {
        return new UserError(
          `${prefix(what)}cannot read ${file}: no such file (it is a symbolic link to ${fs.readlinkSync(file)}, which does not exist)`,
        );
      }
    } catch {
      /* not a dangling link: the plain message */
    }
  }
  return cannotRead(file, e, what);
}

/**
 * Checks a user-named input before anything opens it: it must exist, be a regular file (not a directory, FIFO,
 * socket or device) and be readable. Returns its stat, so the caller can bound what it reads by `size`.
 * Errors: "--weights: cannot read FILE: no such file", "--weights: /dev/zero is a character device, expected a
 * regular file", "--weights: cannot read FILE: permission denied".
 */
export function checkInputFile(file: string, what?: string): fs.Stats {
  let s: fs.Stats;
  try {
    s = fs.statSync(file);
  } catch (e) {
    throw inputError(file, e, what);
  }
  const kind = fileTypeWords(s);
  if (kind) throw new UserError(`${prefix(what)}${file} is ${kind}, expected a regular file`);
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch (e) {
    throw cannotRead(file, e, what);
  }
  return s;
}

/**
 * Opens a user-named input without a stat-then-open race: non-blocking (a FIFO cannot hang the open), then
 * fstat on the descriptor itself; anything but a regular file is closed and refused as in `checkInputFile`.
 * The caller closes `fd`.
 */
export function openInputFile(file: string, what?: string): { fd: number; stat: fs.Stats } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY);
  } catch (e) {
    throw inputError(file, e, what);
  }
  const stat = fs.fstatSync(fd);
  const kind = fileTypeWords(stat);
  if (kind) {
    fs.closeSync(fd);
    throw new UserError(`${prefix(what)}${file} is ${kind}, expected a regular file`);
  }
  return { fd, stat };
}

/** Reads a whole user-named input through `openInputFile`; refuses files over `maxBytes` before reading. */
export function readInputFile(file: string, what?: string, o: { maxBytes?: number } = {}): Buffer {
  const { fd, stat } = openInputFile(file, what);
  try {
    if (o.maxBytes !== undefined && stat.size > o.maxBytes) {
      throw new UserError(
        `${prefix(what)}${file} is ${formatBytes(stat.size)}, more than the ${formatBytes(o.maxBytes)} allowed`,
      );
    }
    const buf = Buffer.allocUnsafe(stat.size);
    let got = 0;
    while (got < stat.size) {
      const n = fs.readSync(fd, buf, got, stat.size - got, got);
      if (n === 0)
        throw new UserError(
          `${prefix(what)}cannot read ${file}: it shrank while being read (${got} of ${stat.size} bytes)`,
        );
      got += n;
    }
    return buf;
  } catch (e) {
    throw e instanceof UserError ? e : cannotRead(file, e, what);
  } finally {
    fs.closeSync(fd);
  }
}

// ---- temporary files -------------------------------------------------------------------------------------------

/** Eight hex digits naming this host in temporary-file names (so another host's temporaries are left alone). */
export const HOST_TAG = crypto.createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
const MAX_BASE = 200; // keeps ".<base>.<pid>.<host>.<random>.tmp" under NAME_MAX (255)

/** The temporary file `writeFileAtomic` uses for `file`: ".<base>.<pid>.<host>.<random>.tmp" beside it. */
export function tempPath(file: string, pid = process.pid): string {
  const base = path.basename(file).slice(0, MAX_BASE);
  return path.join(path.dirname(file), `.${base}.${pid}.${HOST_TAG}.${crypto.randomBytes(4).toString('hex')}.tmp`);
}

/**
 * The PID and host tag in a temporary's name if it belongs to `base`; the older ".<base>.<pid>.tmp" counts as this
 * host's.
 */
export function parseTempName(name: string, base: string): { pid: number; host: string } | undefined {
  const b = base.slice(0, MAX_BASE);
  if (!name.startsWith(`.${b}.`) || !name.endsWith('.tmp')) return undefined;
  const m = /^(\d+)(?:\.([0-9a-f]{8})\.[0-9a-f]+)?\.tmp$/.exec(name.slice(b.length + 2));
  return m ? { pid: Number(m[1]), host: m[2] ?? HOST_TAG } : undefined;
}

/** Whether a process with this PID exists on this host (EPERM means it exists but belongs to someone else). */
export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errnoCode(e) === 'EPERM';
  }
}

/**
 * Removes the temporaries of `dir/base` left by runs that died mid-write: this host's whose PID is gone, and
 * other hosts' older than `otherHostStaleMs` (default one day; their PIDs cannot be checked from here).
 * Returns the paths removed. Temporaries of live processes are kept.
 */
export function cleanStaleTemps(dir: string, base: string, o: { otherHostStaleMs?: number } = {}): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const t = parseTempName(name, base);
    if (!t) continue;
    const full = path.join(dir, name);
    try {
      const stale =
        t.host === HOST_TAG
          ? !pidAlive(t.pid)
          : Date.now() - fs.lstatSync(full).mtimeMs > (o.otherHostStaleMs ?? 86_400_000);
      if (!stale) continue;
      fs.unlinkSync(full);
      removed.push(full);
    } catch {
      /* gone already, or not ours to remove: leave it */
    }
  }
  return removed;
}

// ---- writing ---------------------------------------------------------------------------------------------------

/**
 * The nearest existing ancestor of `dir` (itself included) that is not a directory, if any: "runs" in runs/x/y when
 * runs is a file.
 */
export function nonDirectoryAncestor(dir: string): string | undefined {
  let p = path.resolve(dir);
  for (;;) {
    try {
      return fs.statSync(p).isDirectory() ? undefined : p;
    } catch {
      const up = path.dirname(p);
      if (up === p) return undefined;
      p = up;
    }
  }
}

/** Creates `dir` one level at a time (a recursive mkdir reports EROFS and EACCES as ENOENT): the real error. */
function mkdirChain(dir: string): void {
  const missing: string[] = [];
  for (let p = path.resolve(dir); !fs.existsSync(p); p = path.dirname(p)) missing.unshift(p);
  for (const p of missing) fs.mkdirSync(p);
}

/** Creates `dir` and its parents; errors in words ("runs/a is a file, not a directory", "read-only file system"). */
export function ensureDir(dir: string, what?: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    const bad = nonDirectoryAncestor(dir);
    if (bad) throw new UserError(`${prefix(what)}cannot create ${dir}: ${bad} is a file, not a directory`);
    let real = e;
    try {
      mkdirChain(dir);
      return;
    } catch (e2) {
      real = e2;
    }
    throw new UserError(`${prefix(what)}cannot create ${dir}: ${describeFsError(real)}`);
  }
}

/**
 * The absolute path a write to `file` lands on, symbolic links resolved: a link's target (so the link survives);
 * for a new file, its directory's real path. Two names of one file give the same result.
 */
export function writeTarget(file: string): string {
  const abs = path.resolve(file);
  try {
    return fs.realpathSync(abs);
  } catch {
    try {
      return path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
    } catch {
      return abs;
    }
  }
}

function dataBytes(data: FileData): number | undefined {
  if (typeof data === 'function') return undefined;
  return Array.isArray(data) ? data.reduce((n, b) => n + b.length, 0) : data.length;
}

function writeAll(fd: number, data: FileData): void {
  if (typeof data === 'function') return data(fd);
  for (const chunk of Array.isArray(data) ? data : [data]) {
    let written = 0;
    while (written < chunk.length) written += fs.writeSync(fd, chunk, written, chunk.length - written);
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* some file systems do not allow fsync on directories */
  }
}

/** Refuses a target that exists and is not a regular file: renaming over it would replace a FIFO or device. */
function checkTarget(target: string, file: string, what?: string): fs.Stats | undefined {
  let s: fs.Stats;
  try {
    s = fs.statSync(target);
  } catch {
    return undefined;
  }
  const kind = fileTypeWords(s);
  if (kind)
    throw new UserError(`${prefix(what)}cannot write ${file}: it is ${kind}, expected a regular file or a new name`);
  return s;
}

/**
 * Replaces `file` atomically: writes a temporary beside it (".<base>.<pid>.<host>.<random>.tmp"), fsyncs it,
 * renames it over `file`, fsyncs the directory. A crash at any point leaves the previous file intact; a failure
 * removes the temporary and throws a UserError naming the file and the reason in words
 * ("--save: cannot write runs/x.safetensors: no space left on device (needs 370 MB, 12 MB free)").
 * Errors thrown by an `FdWriter` that are not file-system errors are rethrown unchanged (after the cleanup).
 * A symbolic link is followed: its target is replaced and the link kept. An existing file's mode is kept.
 */
export function writeFileAtomic(file: string, data: FileData, o: { what?: string } = {}): void {
  const target = writeTarget(file);
  const dir = path.dirname(target);
  ensureDir(dir, o.what);
  const old = checkTarget(target, file, o.what);
  const tmp = tempPath(target);
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'wx', old ? old.mode & 0o7777 : 0o666);
    writeAll(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, target);
  } catch (e) {
    try {
      if (fd !== undefined) fs.closeSync(fd);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    if (!errnoCode(e)) throw e;
    throw cannotWrite(file, e, { what: o.what, needed: dataBytes(data) });
  }
  fsyncDir(dir);
}

/**
 * Appends one line (a newline is added if missing) in a single write to an append-only log such as metrics
 * JSON Lines. On failure the file is cut back to its previous length, so no half record is left, and a
 * UserError in words is thrown.
 */
export function appendLine(file: string, line: string, o: { what?: string } = {}): void {
  const bytes = Buffer.from(line.endsWith('\n') ? line : `${line}\n`);
  ensureDir(path.dirname(path.resolve(file)), o.what);
  const existing = fs.statSync(file, { throwIfNoEntry: false });
  if (existing && !existing.isFile() && !existing.isCharacterDevice()) {
    throw new UserError(
      `${prefix(o.what)}cannot write ${file}: it is ${fileTypeWords(existing)}, expected a regular file`,
    );
  }
  let fd: number | undefined;
  let before = 0;
  try {
    fd = fs.openSync(
      file,
      fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NONBLOCK,
      0o666,
    );
    const s = fs.fstatSync(fd);
    if (!s.isFile() && !s.isCharacterDevice())
      throw new UserError(`${prefix(o.what)}cannot write ${file}: it is ${fileTypeWords(s)}, expected a regular file`);
    before = s.size;
    writeAll(fd, bytes);
  } catch (e) {
    if (fd !== undefined) {
      try {
        if (fs.fstatSync(fd).isFile()) fs.ftruncateSync(fd, before);
      } catch {
        /* best effort */
      }
    }
    if (e instanceof UserError) throw e;
    throw cannotWrite(file, e, { what: o.what, needed: bytes.length });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
