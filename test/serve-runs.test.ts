// Training runs on the page and in reports: the metrics-file follower (half-written lines, truncation and
// replacement, a file created later, malformed lines, exact resumption), the server-sent events of GET
// /v1/runs/:id/events through a real listening server and a plain HTTP client, the runs list and its refusal of
// paths, web/curves.js's smoothing against hand-computed values, and `alexnet report` on a small real run.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { after, test } from 'node:test';
import Fastify, { FastifyInstance } from 'fastify';
import { appendMetrics, MetricsFollower, MetricsRecord, parseFollowId } from '../src/serve/follow';
import { EventStreams, runsPlugin } from '../src/serve/runs';
import { jsonForScript } from '../src/serve/report';
import { loadModel } from '../src/persist/load';
import { Conv2d } from '../src/nn/conv2d';
import { cli, TINY_TRAIN } from './helpers/cli';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-runs-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let seq = 0;
const fresh = (name: string) => {
  const d = path.join(dir, `${name}-${seq++}`);
  fs.mkdirSync(d, { recursive: true });
  return d;
};

const step = (run: string, i: number): MetricsRecord => ({
  kind: 'step',
  run,
  step: i,
  epoch: 1,
  batch: i,
  loss: 1 / i,
});

/** Resolves once `check` holds (polled), rejects after `ms`. */
async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A follower whose callbacks land in arrays. */
function follow(file: string, from?: string) {
  const got = {
    records: [] as MetricsRecord[],
    ids: [] as string[],
    resets: [] as string[],
    malformed: [] as string[],
  };
  const f = new MetricsFollower(
    file,
    {
      onRecord: (r, id) => {
        got.records.push(r);
        got.ids.push(id);
      },
      onReset: (_id, reason) => got.resets.push(reason),
      onMalformed: (line) => got.malformed.push(line),
    },
    { pollMs: 30, from },
  );
  return { f, got };
}

test('a half-written last line waits for its newline, then is read whole from the same offset', async () => {
  const file = path.join(fresh('half'), 'metrics.jsonl');
  const first = `${JSON.stringify(step('a', 1))}\n`;
  const second = JSON.stringify(step('a', 2));
  fs.writeFileSync(file, first + second.slice(0, 20));
  const { f, got } = follow(file);
  try {
    await until(() => got.records.length === 1, 'the first record');
    assert.equal(parseFollowId(got.ids[0])!.offset, Buffer.byteLength(first));
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(got.records.length, 1, 'the partial line is not a record yet');
    assert.equal(f.malformed, 0, 'nor a malformed one');
    fs.appendFileSync(file, `${second.slice(20)}\n`);
    await until(() => got.records.length === 2, 'the completed record');
    assert.deepEqual(got.records[1], step('a', 2));
    assert.equal(parseFollowId(got.ids[1])!.offset, fs.statSync(file).size);
  } finally {
    f.close();
  }
});

test('truncation and replacement reset the follower, which reads the new contents from the start', async () => {
  const file = path.join(fresh('trunc'), 'metrics.jsonl');
  appendMetrics(file, [step('a', 1), step('a', 2), step('a', 3)]);
  const { f, got } = follow(file);
  try {
    await until(() => got.records.length === 3, 'three records');
    fs.truncateSync(file, 0);
    appendMetrics(file, [step('b', 1)]);
    await until(() => got.records.length === 4, 'the record after the truncation');
    assert.deepEqual(got.resets, ['the file was truncated']);
    assert.equal(got.records[3].run, 'b');
    // Replaced (a new file renamed over it, a new inode), even when it is longer than the old one.
    const tmp = `${file}.new`;
    appendMetrics(tmp, [step('c', 1), step('c', 2), step('c', 3), step('c', 4)]);
    fs.renameSync(tmp, file);
    await until(() => got.records.length === 8, 'the replacement file');
    assert.deepEqual(got.resets, ['the file was truncated', 'the file was replaced']);
    assert.deepEqual(
      got.records.slice(4).map((r) => r.step),
      [1, 2, 3, 4],
    );
  } finally {
    f.close();
  }
});

test('a file that does not exist yet (nor its folder) is waited for', async () => {
  const file = path.join(dir, `later-${seq++}`, 'metrics.jsonl');
  const { f, got } = follow(file);
  try {
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(got.records.length, 0);
    fs.mkdirSync(path.dirname(file));
    appendMetrics(file, [step('a', 1)]);
    await until(() => got.records.length === 1, 'the record of the new file');
    assert.deepEqual(got.resets, []);
  } finally {
    f.close();
  }
});

test('complete lines that are not JSON objects are skipped and counted; blank lines are neither', async () => {
  const file = path.join(fresh('bad'), 'metrics.jsonl');
  fs.writeFileSync(
    file,
    `${JSON.stringify(step('a', 1))}\nnot json\n\n[1,2]\n{"kind":"step",\n${JSON.stringify(step('a', 2))}\n`,
  );
  const { f, got } = follow(file);
  try {
    await until(() => got.records.length === 2, 'the two good records');
    assert.equal(f.malformed, 3);
    assert.deepEqual(got.malformed, ['not json', '[1,2]', '{"kind":"step",']);
    // A line longer than a read chunk (1 MiB) is dropped up to its end; the next record is read.
    fs.appendFileSync(file, `{"kind":"step","pad":"${'x'.repeat(1_500_000)}"}\n${JSON.stringify(step('a', 3))}\n`);
    await until(() => got.records.length === 3, 'the record after the long line');
    assert.equal(f.malformed, 4);
    assert.equal(f.offset, fs.statSync(file).size);
  } finally {
    f.close();
  }
});

test('a follower started from an id continues exactly after that line; a stale id resets', async () => {
  const file = path.join(fresh('from'), 'metrics.jsonl');
  appendMetrics(
    file,
    [1, 2, 3, 4, 5].map((i) => step('a', i)),
  );
  const a = follow(file);
  await until(() => a.got.records.length === 5, 'five records');
  a.f.close();
  const b = follow(file, a.got.ids[1]);
  try {
    await until(() => b.got.records.length === 3, 'the three after the second');
    assert.deepEqual(
      b.got.records.map((r) => r.step),
      [3, 4, 5],
    );
    assert.deepEqual(b.got.ids, a.got.ids.slice(2));
    assert.deepEqual(b.got.resets, []);
  } finally {
    b.f.close();
  }
  // An offset that does not end a line (the file was rewritten) and an id of another file start over.
  const { ino } = parseFollowId(a.got.ids[0])!;
  for (const [from, reason] of [
    [`${ino}:5`, 'the file was rewritten'],
    [`${ino + 1}:0`, 'the file was replaced'],
    [`${ino}:999999`, 'the file was truncated'],
  ]) {
    const c = follow(file, from);
    try {
      await until(() => c.got.records.length === 5, `all five records after ${from}`);
      assert.deepEqual(c.got.resets, [reason]);
    } finally {
      c.f.close();
    }
  }
});

type SseEvent = { id?: string; event?: string; data: string };

/** A plain HTTP client of a server-sent events stream: its events, its comments and its end. */
function sse(port: number, url: string, lastEventId?: string) {
  const events: SseEvent[] = [];
  const comments: string[] = [];
  let status = 0;
  let buffer = '';
  let req!: http.ClientRequest;
  const ended = new Promise<void>((resolve, reject) => {
    req = http.get(
      { host: '127.0.0.1', port, path: url, headers: lastEventId ? { 'last-event-id': lastEventId } : {} },
      (res) => {
        status = res.statusCode!;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffer += chunk;
          for (let i = buffer.indexOf('\n\n'); i >= 0; i = buffer.indexOf('\n\n')) {
            const block = buffer.slice(0, i);
            buffer = buffer.slice(i + 2);
            const ev: SseEvent = { data: '' };
            let isEvent = false;
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) comments.push(line.slice(1).trim());
              else if (line.startsWith('id: ')) ev.id = line.slice(4);
              else if (line.startsWith('event: ')) ev.event = line.slice(7);
              else if (line.startsWith('data: ')) [ev.data, isEvent] = [line.slice(6), true];
            }
            if (isEvent) events.push(ev);
          }
        });
        res.on('end', resolve);
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
  ended.catch(() => undefined);
  return {
    events,
    comments,
    ended,
    status: () => status,
    records: () => events.filter((e) => !e.event).map((e) => JSON.parse(e.data) as MetricsRecord),
    close: () => req.destroy(),
  };
}

async function listen(runsDir: string, o: { heartbeatMs?: number } = {}) {
  const app: FastifyInstance = Fastify();
  const streams = new EventStreams();
  await app.register(runsPlugin, { runsDir, pollMs: 30, streams, ...o });
  const end = () => streams.endAll();
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, end, port: (app.server.address() as AddressInfo).port };
}

test('the event stream sends the records in order, then live ones; Last-Event-ID resumes without gaps or duplicates', async () => {
  const runs = fresh('sse');
  const file = path.join(runs, 'run1', 'metrics.jsonl');
  fs.mkdirSync(path.dirname(file));
  appendMetrics(
    file,
    [1, 2, 3, 4, 5].map((i) => step('a', i)),
  );
  const { app, end, port } = await listen(runs);
  try {
    const s = sse(port, '/v1/runs/run1/events');
    await until(() => s.records().length === 5, 'the five records');
    assert.equal(s.status(), 200);
    appendMetrics(
      file,
      [6, 7].map((i) => step('a', i)),
    );
    await until(() => s.records().length === 7, 'the two live records');
    assert.deepEqual(
      s.records().map((r) => r.step),
      [1, 2, 3, 4, 5, 6, 7],
    );
    assert.deepEqual(s.records()[6], step('a', 7));
    const ids = s.events.map((e) => parseFollowId(e.id)!.offset);
    assert.deepEqual(
      ids,
      [...ids].sort((x, y) => x - y),
      'ids grow',
    );
    // The client goes away after the fourth record; more is written while it is gone.
    s.close();
    appendMetrics(
      file,
      [8, 9].map((i) => step('a', i)),
    );
    const again = sse(port, '/v1/runs/run1/events', s.events[3].id);
    await until(() => again.records().length === 5, 'the records after the fourth');
    appendMetrics(file, [step('a', 10)]);
    await until(() => again.records().length === 6, 'the live record after the reconnection');
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(
      again.records().map((r) => r.step),
      [5, 6, 7, 8, 9, 10],
    );
    assert.equal(again.events.filter((e) => e.event === 'reset').length, 0);
    // Truncation while connected: a reset event, then the new contents.
    fs.writeFileSync(file, `${JSON.stringify(step('b', 1))}\n`);
    await until(() => again.records().length === 7, 'the record after the reset');
    const last = again.events.slice(-2);
    assert.equal(last[0].event, 'reset');
    assert.equal(JSON.parse(last[0].data).reason, 'the file was truncated');
    assert.equal(again.records()[6].run, 'b');
    // The close function ends every open stream, and then the server closes.
    end();
    await again.ended;
    await app.close();
  } finally {
    end();
    await app.close();
  }
});

test('idle streams get heartbeat comments, and closing the server ends them', async () => {
  const runs = fresh('beat');
  appendMetrics(path.join(runs, 'metrics.jsonl'), [step('a', 1)]);
  const { app, end, port } = await listen(runs, { heartbeatMs: 40 });
  try {
    const s = sse(port, `/v1/runs/${path.basename(runs)}/events`);
    await until(() => s.comments.includes('heartbeat'), 'a heartbeat');
    assert.equal(s.records().length, 1);
    // fastify's close() alone ends the open stream (its preClose hook) instead of waiting for it.
    await app.close();
    await s.ended;
  } finally {
    end();
    await app.close();
  }
});

test('a slow reader of a long stream leaves no listeners behind: no MaxListenersExceededWarning, the count stays bounded', async () => {
  const runs = fresh('slow');
  const file = path.join(runs, 'metrics.jsonl');
  // 14 MiB of records: the follower reads 1 MiB at a time and waits for the socket to drain after each chunk.
  const pad = 'x'.repeat(1000);
  const n = 14 * 1024;
  fs.writeFileSync(
    file,
    Array.from({ length: n }, (_, i) => `${JSON.stringify({ ...step('a', i + 1), pad })}\n`).join(''),
  );
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on('warning', onWarning);
  const { app, end, port } = await listen(runs);
  const responses: http.ServerResponse[] = [];
  app.server.on('request', (_req: http.IncomingMessage, res: http.ServerResponse) => responses.push(res));
  const most = { close: 0, drain: 0 };
  let records = 0;
  let rest = '';
  try {
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: `/v1/runs/${path.basename(runs)}/events` }, (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          const blocks = (rest + chunk).split('\n\n');
          rest = blocks.pop()!;
          records += blocks.filter((b) => b.startsWith('id: ')).length;
          for (const r of responses) {
            most.close = Math.max(most.close, r.listenerCount('close'));
            most.drain = Math.max(most.drain, r.listenerCount('drain'));
          }
          // The slow reader: a pause after every chunk, so the server's writes wait for the socket to drain.
          res.pause();
          setImmediate(() => res.resume());
          if (records === n) {
            req.destroy();
            resolve();
          }
        });
        res.on('error', reject);
      });
      req.on('error', reject);
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(records, n);
    assert.deepEqual(
      warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
      [],
    );
    // fastify's and node's own listeners and one wait's two at most: never one per chunk.
    assert.ok(most.close <= 4 && most.drain <= 2, JSON.stringify(most));
  } finally {
    process.off('warning', onWarning);
    end();
    await app.close();
  }
});

test('GET /v1/runs lists the folder and its subfolders with metrics, and no id reaches outside it', async () => {
  const root = fresh('list');
  const outside = fresh('secret');
  appendMetrics(path.join(outside, 'metrics.jsonl'), [step('secret', 1)]);
  appendMetrics(path.join(root, 'metrics.jsonl'), [step('r', 1)]);
  fs.mkdirSync(path.join(root, 'b'));
  appendMetrics(path.join(root, 'b', 'metrics.jsonl'), [step('x', 1), step('y', 1), step('y', 2)]);
  fs.appendFileSync(path.join(root, 'b', 'metrics.jsonl'), 'garbage\n');
  fs.mkdirSync(path.join(root, 'a-empty'));
  fs.symlinkSync(outside, path.join(root, 'escape'));
  const app = Fastify();
  const streams = new EventStreams();
  await app.register(runsPlugin, { runsDir: root, streams });
  const end = () => streams.endAll();
  try {
    const r = await app.inject({ url: '/v1/runs' });
    assert.equal(r.statusCode, 200);
    const runs = r.json().runs as { id: string; file: string; records: number; runIds: string[]; malformed: number }[];
    assert.deepEqual(
      runs.map((x) => [x.id, x.file, x.records, x.runIds, x.malformed]),
      [
        [path.basename(root), 'metrics.jsonl', 1, ['r'], 0],
        ['b', 'b/metrics.jsonl', 3, ['x', 'y'], 1],
      ],
    );
    // A '..' segment (%2E%2E too) is resolved by the URL's normalisation before routing: no route, nothing served.
    for (const id of ['..', '%2E%2E']) {
      const dots = await app.inject({ url: `/v1/runs/${id}/events` });
      assert.ok(dots.statusCode === 400 || dots.statusCode === 404, `${id}: ${dots.statusCode}`);
      assert.doesNotMatch(dots.body, /secret/);
    }
    for (const id of ['..%2F' + path.basename(outside), 'a%2F..%2F..', 'b%5C..']) {
      const bad = await app.inject({ url: `/v1/runs/${id}/events` });
      assert.equal(bad.statusCode, 400, id);
      assert.equal(bad.json().code, 'bad_run_id');
      assert.match(bad.json().error, /expected a run id/);
    }
    // The counts follow the files: more records, then a rewritten file.
    appendMetrics(path.join(root, 'b', 'metrics.jsonl'), [step('z', 1)]);
    fs.appendFileSync(path.join(root, 'b', 'metrics.jsonl'), '{"half":');
    const grown = (await app.inject({ url: '/v1/runs' })).json().runs[1];
    assert.deepEqual([grown.records, grown.runIds, grown.malformed], [4, ['x', 'y', 'z'], 1]);
    fs.writeFileSync(path.join(root, 'b', 'metrics.jsonl'), `${JSON.stringify(step('w', 1))}\n`);
    const rewritten = (await app.inject({ url: '/v1/runs' })).json().runs[1];
    assert.deepEqual([rewritten.records, rewritten.runIds, rewritten.malformed], [1, ['w'], 0]);
    for (const id of ['escape', 'a-empty', 'nope', '..b']) {
      const missing = await app.inject({ url: `/v1/runs/${id}/events` });
      assert.equal(missing.statusCode, 404, id);
      assert.equal(missing.json().code, 'unknown_run');
    }
  } finally {
    end();
    await app.close();
  }
});

/** web/curves.js run in a bare context, as a classic script would run in a page. */
function curves() {
  const ctx: { window: Record<string, unknown> } = { window: {} };
  const file = path.resolve(__dirname, '..', '..', 'web', 'curves.js');
  vm.runInNewContext(fs.readFileSync(file, 'utf8'), ctx, { filename: file });
  return ctx.window.AlexnetCurves as {
    DEFAULT_SMOOTHING: number;
    smooth(v: (number | null)[], w?: number): (number | null)[];
    decimate(xs: number[], ys: number[], max: number): { xs: number[]; ys: number[] };
    align(tables: number[][][]): (number | null)[][];
  };
}

test("curves.js smooths as TensorBoard's debiased moving average (hand-computed values)", () => {
  const c = curves();
  assert.equal(c.DEFAULT_SMOOTHING, 0.6);
  const close = (got: (number | null)[], want: (number | null)[]) => {
    assert.equal(got.length, want.length);
    got.forEach((g, i) => (want[i] === null ? assert.equal(g, null) : assert.ok(Math.abs(g! - want[i]!) < 1e-12)));
  };
  // w = 0.5: last = 0.5, 1.25, 2.125; shown = last / (1 − 0.5ⁿ) = 1, 5/3, 17/7.
  close(c.smooth([1, 2, 3], 0.5), [1, 5 / 3, 17 / 7]);
  // w = 0.6 (the default): last = 0.4·2 = 0.8 → 2; 0.48 + 0.4·4 = 2.08 → 2.08 / 0.64 = 3.25.
  close(c.smooth([2, 4]), [2, 3.25]);
  // A gap passes through and does not count as a step.
  close(c.smooth([1, null, 2], 0.5), [1, null, 5 / 3]);
  close(c.smooth([3, 1, 4], 0), [3, 1, 4]);
  const xs = Array.from({ length: 2500 }, (_, i) => i);
  const d = c.decimate(xs, xs, 1000);
  assert.ok(d.xs.length <= 1000 && d.xs.length >= 800, `${d.xs.length} points`);
  assert.equal(d.xs[d.xs.length - 1], 2499, 'the last point is kept');
  // (Through JSON: arrays made in the script's context are not this context's arrays.)
  assert.deepEqual(
    JSON.parse(
      JSON.stringify(
        c.align([
          [
            [1, 3],
            [10, 30],
          ],
          [
            [2, 3],
            [20, 31],
          ],
        ]),
      ),
    ),
    [
      [1, 2, 3],
      [10, null, 30],
      [null, 20, 31],
    ],
  );
});

test('JSON embedded in a report cannot close its script element', () => {
  const s = jsonForScript({ text: '</script><script>alert(1)</script><!--' });
  assert.doesNotMatch(s, /<|>/);
  assert.deepEqual(JSON.parse(s), { text: '</script><script>alert(1)</script><!--' });
});

test('alexnet report writes one self-contained HTML file of a real run, refuses to overwrite, and names a bad RUN_DIR', () => {
  const run = fresh('report');
  const t = cli([
    ...TINY_TRAIN,
    '--metrics-every',
    '1',
    '--save',
    path.join(run, 'checkpoint.safetensors'),
    '--metrics',
    path.join(run, 'metrics.jsonl'),
  ]);
  assert.equal(t.code, 0, t.stderr);
  // A record with markup in a string: it must stay data.
  appendMetrics(path.join(run, 'metrics.jsonl'), [
    { kind: 'note', run: 'x', text: '</script><script>alert(1)</script>' },
  ]);
  const r = cli(['report', run]);
  assert.equal(r.code, 0, r.stderr);
  const html = fs.readFileSync(path.join(run, 'report.html'), 'utf8');
  assert.doesNotMatch(html, /(src|href)\s*=\s*["']?\s*(https?:)?\/\//i, 'no external URL');
  assert.doesNotMatch(html, /<script>alert/);
  const m = /<script type="application\/json" id="alexnet-report-data">([^<]*)<\/script>/.exec(html);
  assert.ok(m, 'the embedded data');
  const data = JSON.parse(m[1]);
  const lines = fs
    .readFileSync(path.join(run, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.deepEqual(data.records, lines);
  assert.match(html, /window\.AlexnetCurves|root\.AlexnetCurves/, 'curves.js inlined');
  assert.match(html, /uPlot/);
  if (fs.existsSync(path.resolve(__dirname, '..', '..', 'web', 'filters.js'))) {
    assert.deepEqual(data.filters.shape, [96, 1, 11, 11]);
    const { model } = loadModel(path.join(run, 'checkpoint.safetensors'));
    const w = (model.layers()[0][1] as Conv2d).weight.toArray();
    model.dispose();
    assert.equal(data.filters.data.length, w.length);
    w.forEach((x, i) => assert.ok(Math.abs(data.filters.data[i] - x) <= 1e-5 * Math.abs(x) + 1e-12, `weight ${i}`));
  }
  const again = cli(['report', run]);
  assert.equal(again.code, 2);
  assert.match(again.stderr, /already exists: pass --overwrite/);
  assert.equal(again.stderr.trim().split('\n').length, 1);
  // --overwrite replaces it (given as --out, the same file).
  const before = fs.statSync(path.join(run, 'report.html')).ino;
  const replaced = cli(['report', run, '--out', path.join(run, 'report.html'), '--overwrite']);
  assert.equal(replaced.code, 0, replaced.stderr);
  assert.notEqual(fs.statSync(path.join(run, 'report.html')).ino, before, 'written anew');
  for (const [args, re] of [
    [['report', path.join(run, 'nope')], /does not exist/],
    [['report', fresh('empty')], /without one/],
    [['report'], /expected one RUN_DIR/],
  ] as const) {
    const bad = cli([...args]);
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, re);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  }
});
