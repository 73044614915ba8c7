// Shutdown of a real `alexnet serve` process: open event streams end at once (they are not work to finish), an
// upload still arriving is cut at --shutdown-timeout and named, and --shutdown-timeout 0 waits for nothing (exit 0
// when nothing was cut, 1 naming what was).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { BIN } from './helpers/cli';
import { lines } from './helpers/lines';

const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-shutdown-'));
fs.mkdirSync(path.join(runs, 'r1'));
fs.writeFileSync(path.join(runs, 'r1', 'metrics.jsonl'), `${JSON.stringify({ kind: 'step', run: 'a', step: 1 })}\n`);
after(() => fs.rmSync(runs, { recursive: true, force: true }));

/** A runs-only server as a child process, with its port once it listens. */
async function server(shutdownTimeout: string) {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--runs', runs, '--port', '0', '--shutdown-timeout', shutdownTimeout],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const exited = new Promise<{ code: number | null; at: number }>((r) =>
    child.on('exit', (code) => r({ code, at: Date.now() })),
  );
  const out = lines(child.stdout!, 30_000);
  const err = lines(child.stderr!, 30_000);
  const port = Number((await out.wait(/listening on \S+ \(port (\d+)\)/))[1]);
  return { child, exited, err, port };
}

/** A raw socket that sends `head`, and when the server ends it. */
function socket(port: number, head: string) {
  const s = net.connect(port, '127.0.0.1', () => s.write(head));
  let text = '';
  s.on('data', (d) => (text += d));
  s.on('error', () => undefined);
  const closed = new Promise<number>((r) => s.on('close', () => r(Date.now())));
  return { s, closed, text: () => text };
}

const stream = (port: number) => socket(port, 'GET /v1/runs/r1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
/** Headers and 10 bytes of a 100 kB body, and then nothing. */
const stalledUpload = (port: number) =>
  socket(
    port,
    'POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n0123456789',
  );

async function until(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const start = Date.now();
  while (!check()) {
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('SIGTERM with an open event stream and a stalled upload: the stream ends at once, the upload is cut at the timeout', async () => {
  const { child, exited, err, port } = await server('2');
  try {
    const sse = stream(port);
    await until(() => sse.text().includes('data: '), 'the stream to send its record');
    const up = stalledUpload(port);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    child.kill('SIGTERM');
    const streamEnded = await sse.closed;
    assert.ok(streamEnded - t0 < 1000, `the event stream ended ${streamEnded - t0} ms after SIGTERM`);
    const { code, at } = await exited;
    assert.equal(code, 1, err.text());
    assert.ok(at - t0 >= 1900 && at - t0 < 5000, `exit ${at - t0} ms after SIGTERM (--shutdown-timeout 2)`);
    assert.match(err.text(), /draining \(0 requests in flight, 0 queued, 1 upload still arriving\); exit within 2 s/);
    assert.match(err.text(), /shutdown took over 2 s \(--shutdown-timeout\): cut .*1 upload still arriving/);
    await up.closed;
  } finally {
    child.kill('SIGKILL');
  }
});

test('--shutdown-timeout 0 waits for nothing: exit 0 at once when idle (an open stream is no work), 1 naming a cut upload', async () => {
  const idle = await server('0');
  try {
    const sse = stream(idle.port);
    await until(() => sse.text().includes('data: '), 'the stream to send its record');
    const t0 = Date.now();
    idle.child.kill('SIGTERM');
    const { code, at } = await idle.exited;
    assert.equal(code, 0, idle.err.text());
    assert.ok(at - t0 < 2000, `exit ${at - t0} ms after SIGTERM`);
    assert.match(idle.err.text(), /not waiting \(--shutdown-timeout 0\)/);
    assert.match(idle.err.text(), /alexnet: stopped/);
    await sse.closed;
  } finally {
    idle.child.kill('SIGKILL');
  }
  const busy = await server('0');
  try {
    stalledUpload(busy.port);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    busy.child.kill('SIGTERM');
    const { code, at } = await busy.exited;
    assert.equal(code, 1, busy.err.text());
    assert.ok(at - t0 < 2000, `exit ${at - t0} ms after SIGTERM`);
    assert.match(busy.err.text(), /not waiting \(--shutdown-timeout\): cut 0 requests in flight, 0 queued, 1 upload/);
  } finally {
    busy.child.kill('SIGKILL');
  }
});
