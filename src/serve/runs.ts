// Training runs for the page: the run folders under --runs DIR, and each one's metrics file followed live and
// streamed as server-sent events (the records there first, then each new one; `Last-Event-ID` resumes exactly).
//
// Routes:
//   GET /v1/runs             → {runs: [{id, name, file, records, runIds, malformed, updated}]}: DIR itself and its
//                              direct subfolders that hold a metrics.jsonl (file is relative to DIR).
//   GET /v1/runs/:id/events  → text/event-stream: `id: <inode>:<offset>` + `data: <record JSON>` per record;
//                              `event: reset` (data {reason}) when the file was truncated or replaced (drop what
//                              was shown; the records follow again from the start); `: heartbeat` comments.
// Run ids are folder names, never paths: an id is looked up in the listing, so nothing outside DIR is served.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import type { ServerResponse } from 'node:http';
import { ErrorOptions, ServeError, useErrorCatalogue } from './errors';
import { MetricsFollower, readMetricsFile } from './follow';

export interface RunRoutesOptions {
  /** A folder of runs (each a metrics.jsonl, directly or one level down). */
  runsDir: string;
  /** Comment lines keep idle streams open through proxies (default 15 s). */
  heartbeatMs?: number;
  /** The followers' poll interval, their fallback when fs.watch is silent (default 1 s). */
  pollMs?: number;
  /** The open streams, for whoever ends them at shutdown (default: the plugin's own, ended when the server closes). */
  streams?: EventStreams;
  /** Told every refusal and 5xx, as the server's other routes are (default: stderr, no metrics). */
  errors?: Pick<ErrorOptions, 'onRejection' | 'log'>;
}

export const METRICS_FILE = 'metrics.jsonl';

/** One run folder as GET /v1/runs lists it. */
export interface RunInfo {
  /** The name in URLs: the folder's name. */
  id: string;
  name: string;
  /** The metrics file, relative to the runs folder. */
  file: string;
  /** Records in the file (complete lines that are JSON objects). */
  records: number;
  /** The training runs whose records the file holds (one per `alexnet train`), in order of appearance. */
  runIds: string[];
  /** Complete lines that were not records. */
  malformed: number;
  /** When the file last changed (ISO 8601). */
  updated: string;
}

type Counted = { ino: number; end: number; records: number; runIds: Set<string>; malformed: number };
const counts = new Map<string, Counted>();

/**
 * The records and run ids of a metrics file. Counted incrementally: a file that grew is read from where the last
 * count stopped (a page asks for the list every few seconds while a run appends); a new inode or a shorter file
 * is counted again.
 */
function countRecords(file: string, st: fs.Stats): Counted {
  let c = counts.get(file);
  if (!c || c.ino !== st.ino || st.size < c.end)
    c = { ino: st.ino, end: 0, records: 0, runIds: new Set(), malformed: 0 };
  if (st.size > c.end) {
    const more = readMetricsFile(file, c.end);
    c.end = more.end;
    c.records += more.records.length;
    c.malformed += more.malformed;
    for (const r of more.records) if (typeof r.run === 'string') c.runIds.add(r.run);
  }
  counts.set(file, c);
  return c;
}

/** The metrics file of `dir` when it is a regular file whose real path lies inside `root` (a real path). */
function metricsIn(dir: string, root: string): { file: string; st: fs.Stats } | undefined {
  const file = path.join(dir, METRICS_FILE);
  try {
    const real = fs.realpathSync(file);
    if (real !== path.join(root, METRICS_FILE) && !real.startsWith(root + path.sep)) return undefined;
    const st = fs.statSync(real);
    return st.isFile() ? { file: real, st } : undefined;
  } catch {
    return undefined;
  }
}

/** The runs under `runsDir` (itself first, then its subfolders by name), with the file each one follows. */
export function listRuns(runsDir: string): { info: RunInfo; path: string }[] {
  let root: string;
  let entries: fs.Dirent[];
  try {
    root = fs.realpathSync(runsDir);
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch {
    return [];
  }
  const subdirs = entries
    .filter((e) => e.isDirectory() || e.isSymbolicLink())
    .map((e) => e.name)
    .sort();
  const base = path.basename(root) || 'runs';
  const rootId = subdirs.includes(base) ? `${base}.root` : base;
  const found: { id: string; file: string; st: fs.Stats }[] = [];
  const top = metricsIn(root, root);
  if (top) found.push({ id: rootId, ...top });
  for (const name of subdirs) {
    const m = metricsIn(path.join(root, name), root);
    if (m) found.push({ id: name, ...m });
  }
  return found.map(({ id, file, st }) => {
    const c = countRecords(file, st);
    const rel = path.relative(root, file).split(path.sep).join('/');
    const info = { id, name: id, file: rel, records: c.records, runIds: [...c.runIds], malformed: c.malformed };
    return { info: { ...info, updated: st.mtime.toISOString() }, path: file };
  });
}

/** Why `id` cannot be a run id (a name, not a path), or undefined when it can. */
function badRunId(id: string): string | undefined {
  if (id === '' || id.length > 255) return 'a folder name of 1 to 255 characters';
  if (/[/\\\0]/.test(id) || id === '.' || id === '..') return 'a folder name, not a path';
  return undefined;
}

type Stream = { end(): void };

/** The open event streams: `endAll()` ends them and refuses new ones (a server that begins to drain calls it). */
export class EventStreams {
  private readonly open = new Set<Stream>();
  closing = false;

  add(s: Stream): void {
    this.open.add(s);
  }

  delete(s: Stream): void {
    this.open.delete(s);
  }

  endAll(): void {
    this.closing = true;
    for (const s of this.open) s.end();
    this.open.clear();
  }
}

/** GET /v1/runs and the live stream of their records, as a plugin. */
export const runsPlugin: FastifyPluginAsync<RunRoutesOptions> = async (app, o) => {
  const streams = o.streams ?? new EventStreams();
  useErrorCatalogue(app, o.errors ?? {});
  app.get('/v1/runs', async () => ({ runs: listRuns(o.runsDir).map((r) => r.info) }));
  app.get<{ Params: { id: string } }>('/v1/runs/:id/events', async (req, reply) => {
    const id = req.params.id;
    const bad = badRunId(id);
    if (bad) throw new ServeError('bad_run_id', `expected a run id from /v1/runs (${bad}), got '${id}'`);
    const run = listRuns(o.runsDir).find((r) => r.info.id === id);
    if (!run) throw new ServeError('unknown_run', `no run '${id}' (GET /v1/runs lists them)`);
    if (streams.closing) throw new ServeError('shutting_down', 'the server is shutting down');
    const lastId = req.headers['last-event-id'];
    const s = openStream(reply, run.path, typeof lastId === 'string' ? lastId : undefined, o);
    streams.add(s);
    req.raw.once('close', () => {
      s.end();
      streams.delete(s);
    });
  });
  // An open stream would keep close() waiting: fastify's own close ends them first too.
  app.addHook('preClose', (done) => {
    streams.endAll();
    done();
  });
};

/**
 * Resolves when `res` has drained or closed. Each wait removes both of its listeners, whichever fires: a slow reader
 * of a long stream waits thousands of times on one response, and a listener left behind per wait would pile up.
 */
function drained(res: ServerResponse): Promise<void> {
  return new Promise<void>((done) => {
    const settle = () => {
      res.off('drain', settle);
      res.off('close', settle);
      done();
    };
    res.on('drain', settle);
    res.on('close', settle);
  });
}

/** Takes the response over from fastify and streams `file`'s records into it until `end()` or the client leaves. */
function openStream(reply: FastifyReply, file: string, from: string | undefined, o: RunRoutesOptions): Stream {
  reply.hijack();
  const res: ServerResponse = reply.raw;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache, no-transform',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  const send = (text: string) => {
    if (!res.writableEnded && !res.destroyed) res.write(text);
  };
  send('retry: 2000\n\n');
  const follower = new MetricsFollower(
    file,
    {
      onRecord: (r, id) => send(`id: ${id}\ndata: ${JSON.stringify(r)}\n\n`),
      onReset: (id, reason) => send(`id: ${id}\nevent: reset\ndata: ${JSON.stringify({ reason })}\n\n`),
    },
    {
      from,
      pollMs: o.pollMs,
      ready: () => (res.writableNeedDrain && !res.destroyed ? drained(res) : undefined),
    },
  );
  const heartbeat = setInterval(() => send(': heartbeat\n\n'), o.heartbeatMs ?? 15_000);
  heartbeat.unref();
  let ended = false;
  return {
    end() {
      if (ended) return;
      ended = true;
      follower.close();
      clearInterval(heartbeat);
      if (!res.writableEnded) res.end();
    },
  };
}
