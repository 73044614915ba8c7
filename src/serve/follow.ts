// Following a metrics file (JSON Lines) while `alexnet train --metrics` appends to it: the records already there,
// then each new one as its line is completed. As TensorBoard reads its event files: a partly written last line
// is not an error, it is read again from the same offset once its newline has arrived. A file that shrinks or is
// replaced (another inode) is read again from its start, and subscribers are told (`onReset`) so they drop what
// they had. A file that does not exist yet is waited for.
//
// Every record's id is where its line ends, "<inode>:<byte offset>", so a reader that reconnects with the last id
// it saw resumes exactly after that line: no record twice, none lost. An id from another file (replaced since) or
// one that does not end a line resets instead.
import * as fs from 'node:fs';
import * as path from 'node:path';

/** A record of a metrics file: `{kind: 'step' | 'epoch', run, …}` as `metricsReporter` writes them. */
export type MetricsRecord = Record<string, unknown>;

export interface FollowHandlers {
  /** A complete line's record; `id` resumes after it. */
  onRecord(record: MetricsRecord, id: string): void;
  /** The file was truncated, replaced or is not the one `from` named: what was read before is void. */
  onReset?(id: string, reason: string): void;
  /** A complete line that is not a JSON object: skipped (and counted in `malformed`). */
  onMalformed?(line: string, id: string): void;
  /** A read failed for another reason than the file being absent (it is tried again at the next poll). */
  onError?(e: Error): void;
}

export interface FollowOptions {
  /** An id a reader saw last: continue after it (default: from the start). */
  from?: string;
  /** The poll interval in ms, the fallback when fs.watch stays silent (some file systems never report). */
  pollMs?: number;
  /** Awaited between chunks: a reader applies back-pressure here (e.g. until a socket drains). */
  ready?: () => Promise<void> | undefined;
}

/** Bytes read per chunk; a line longer than this is skipped as malformed when its end arrives. */
const CHUNK = 1 << 20;
const NEWLINE = 0x0a;

/** The id of the position `offset` (just after a newline, or 0) in the file with inode `ino`. */
export const followId = (ino: number, offset: number): string => `${ino}:${offset}`;

/** Parses an id made by `followId`; undefined for anything else. */
export function parseFollowId(id: string | undefined): { ino: number; offset: number } | undefined {
  const m = /^(\d{1,20}):(\d{1,16})$/.exec(id ?? '');
  if (!m) return undefined;
  const ino = Number(m[1]);
  const offset = Number(m[2]);
  return Number.isSafeInteger(offset) ? { ino, offset } : undefined;
}

/** One line's bytes as a record, or undefined when it is not a JSON object. Blank lines are `null`. */
export function parseLine(bytes: Buffer): MetricsRecord | null | undefined {
  const text = bytes.toString('utf8').trim();
  if (text === '') return null;
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as MetricsRecord) : undefined;
  } catch {
    return undefined;
  }
}

/** Follows one metrics file; see the file's comment. `close()` stops it (no callback runs after). */
export class MetricsFollower {
  readonly file: string;
  /** Complete lines skipped because they were not JSON objects (or were too long). */
  malformed = 0;
  #ino: number | undefined;
  #offset = 0;
  /** The resume point given was checked against the file (once, when it was first seen). */
  #checkedFrom = false;
  /** Inside a line longer than CHUNK: bytes up to its newline are dropped. */
  #skipping = false;
  #busy = false;
  #again = false;
  #closed = false;
  #watcher: fs.FSWatcher | undefined;
  #timer: NodeJS.Timeout;

  constructor(
    file: string,
    private readonly handlers: FollowHandlers,
    private readonly o: FollowOptions = {},
  ) {
    this.file = path.resolve(file);
    // check() reports its own failures (onError): nothing to await here.
    this.#timer = setInterval(() => void this.check(), o.pollMs ?? 1000);
    this.#timer.unref();
    this.#watch();
    void this.check();
  }

  /** Where the next line starts (bytes). */
  get offset(): number {
    return this.#offset;
  }

  /** The id that resumes at the current position. */
  get id(): string {
    return followId(this.#ino ?? 0, this.#offset);
  }

  /** Reads what was added since the last look; resolves when done. Calls during a read make it look once more. */
  async check(): Promise<void> {
    if (this.#closed) return;
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#busy = true;
    try {
      do {
        this.#again = false;
        await this.#readMore();
      } while (this.#again && !this.#closed);
    } catch (e) {
      if (!this.#closed) this.handlers.onError?.(e as Error);
    } finally {
      this.#busy = false;
    }
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
  }

  /**
   * Watches the folder rather than the file: a watch on the file would stay on the old inode when the file is
   * replaced, and cannot be set before the file exists. Failures (no folder yet, no inotify) leave the poll.
   */
  #watch(): void {
    if (this.#watcher || this.#closed) return;
    try {
      const base = path.basename(this.file);
      this.#watcher = fs.watch(path.dirname(this.file), { persistent: false }, (_event, name) => {
        if (!name || name.toString() === base) void this.check();
      });
      this.#watcher.on('error', () => {
        this.#watcher?.close();
        this.#watcher = undefined;
      });
    } catch {
      this.#watcher = undefined;
    }
  }

  async #readMore(): Promise<void> {
    this.#watch();
    const st = await fs.promises.stat(this.file).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined;
      throw e;
    });
    if (!st) return;
    if (!st.isFile()) throw new Error(`${this.file} is not a regular file`);
    if (!this.#checkedFrom) {
      this.#checkedFrom = true;
      if (!(await this.#resume(st))) return;
    } else if (st.ino !== this.#ino) this.#reset(st.ino, 'the file was replaced');
    else if (st.size < this.#offset) this.#reset(st.ino, 'the file was truncated');
    if (st.size > this.#offset) await this.#readFrom(st.ino);
  }

  /** Starts at `from` when it names a line's end in this file; otherwise at 0, with a reset if `from` was given. */
  async #resume(st: fs.Stats): Promise<boolean> {
    this.#ino = st.ino;
    if (this.o.from === undefined) return true;
    const p = parseFollowId(this.o.from);
    if (!p) this.#reset(st.ino, `'${this.o.from}' is not an event id of this stream`);
    else if (p.ino !== st.ino) this.#reset(st.ino, 'the file was replaced');
    else if (p.offset > st.size) this.#reset(st.ino, 'the file was truncated');
    else if (p.offset > 0 && !(await this.#endsLine(p.offset))) this.#reset(st.ino, 'the file was rewritten');
    else this.#offset = p.offset;
    return !this.#closed;
  }

  async #endsLine(offset: number): Promise<boolean> {
    const fh = await fs.promises.open(this.file, 'r');
    try {
      const b = Buffer.alloc(1);
      const { bytesRead } = await fh.read(b, 0, 1, offset - 1);
      return bytesRead === 1 && b[0] === NEWLINE;
    } finally {
      await fh.close();
    }
  }

  #reset(ino: number, reason: string): void {
    this.#ino = ino;
    this.#offset = 0;
    this.#skipping = false;
    this.handlers.onReset?.(this.id, reason);
  }

  /** Reads complete lines from the offset to the end of the file, a chunk at a time. */
  async #readFrom(ino: number): Promise<void> {
    const fh = await fs.promises.open(this.file, 'r');
    try {
      // The file may have been replaced between stat and open: the next look sees the new inode.
      if ((await fh.stat()).ino !== ino) return void (this.#again = true);
      const buf = Buffer.alloc(CHUNK);
      for (;;) {
        if (this.#closed) return;
        const { bytesRead } = await fh.read(buf, 0, CHUNK, this.#offset);
        if (bytesRead === 0) return;
        const used = this.#lines(buf.subarray(0, bytesRead), ino);
        if (used === 0) {
          // No newline in a whole chunk: a line too long to be a record, dropped up to its end.
          if (bytesRead < CHUNK) return;
          this.#skipping = true;
          this.#offset += bytesRead;
        }
        await this.o.ready?.();
      }
    } finally {
      await fh.close();
    }
  }

  /** Hands out the complete lines of `chunk` (read at the offset); returns the bytes used. */
  #lines(chunk: Buffer, ino: number): number {
    let start = 0;
    for (let nl = chunk.indexOf(NEWLINE); nl >= 0 && !this.#closed; nl = chunk.indexOf(NEWLINE, start)) {
      const line = chunk.subarray(start, nl);
      start = nl + 1;
      this.#offset += line.length + 1;
      const id = followId(ino, this.#offset);
      const record = this.#skipping ? undefined : parseLine(line);
      if (record === undefined) {
        this.malformed++;
        this.handlers.onMalformed?.(line.subarray(0, 200).toString('utf8'), id);
      } else if (record !== null) this.handlers.onRecord(record, id);
      this.#skipping = false;
    }
    return start;
  }
}

/**
 * A metrics file's complete lines from byte `from` on, read once (the report, the runs list): the records, the
 * malformed lines skipped, and where the last complete line ends (the next read starts there).
 */
export function readMetricsFile(file: string, from = 0): { records: MetricsRecord[]; malformed: number; end: number } {
  const fd = fs.openSync(file, 'r');
  let data: Buffer;
  try {
    const size = fs.fstatSync(fd).size;
    data = Buffer.alloc(Math.max(0, size - from));
    let got = 0;
    while (got < data.length) {
      const n = fs.readSync(fd, data, got, data.length - got, from + got);
      if (n === 0) break;
      got += n;
    }
    data = data.subarray(0, got);
  } finally {
    fs.closeSync(fd);
  }
  const records: MetricsRecord[] = [];
  let malformed = 0;
  let start = 0;
  for (let nl = data.indexOf(NEWLINE); nl >= 0; nl = data.indexOf(NEWLINE, start)) {
    const r = parseLine(data.subarray(start, nl));
    start = nl + 1;
    if (r === undefined) malformed++;
    else if (r !== null) records.push(r);
  }
  return { records, malformed, end: from + start };
}

/** Appends records to a metrics file as `alexnet train --metrics` does (tests and demos drive live pages with it). */
export function appendMetrics(file: string, records: MetricsRecord[]): void {
  fs.appendFileSync(file, records.map((r) => `${JSON.stringify(r)}\n`).join(''));
}
