// The server exposed: the bind line and its warning, the token on state-changing routes (and on all with
// --token-all), the Host allow-list against DNS rebinding, Origin checks against cross-site "simple" POSTs, and
// slow clients (stalled bodies and headers) that must neither take admission places nor outlive the receive timeout.
// Real server processes on loopback and raw sockets.
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { buildServer } from '../src/serve/app';
import { hostAllowed } from '../src/serve/guard';
import { Engine } from '../src/serve/types';
import { BIN, cli, TINY_TRAIN } from './helpers/cli';

let dir = '';
let ckpt = '';
let image: Buffer;
const TOKEN = 'correct-horse-battery';

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-exposure-'));
  ckpt = path.join(dir, 'ckpt.safetensors');
  const r = cli([...TINY_TRAIN, '--save', ckpt]);
  assert.equal(r.code, 0, r.stderr);
  image = await sharp({ create: { width: 28, height: 28, channels: 3, background: '#888' } })
    .png()
    .toBuffer();
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Server {
  port: number;
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
}

/** `alexnet serve` on a free port with `args`; resolves once it prints its listening line. */
async function serve(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const child = spawn(
    process.execPath,
    [BIN, 'serve', '--weights', ckpt, '--port', '0', '--max-batch', '1', '--threads', '1', ...args],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => {
      // A server that is slow to start must not outlive the test (its pipes would hold the test file open).
      child.kill('SIGKILL');
      reject(new Error(`no listening line within 60 s: ${err}`));
    }, 60_000);
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${err}`)));
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /\(port (\d+)\)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
  });
  return { port, child, stdout: () => out, stderr: () => err };
}

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request on its own connection to 127.0.0.1, with any headers (Host and Origin included). */
function request(
  port: number,
  o: { method?: string; path: string; headers?: Record<string, string>; body?: Buffer | string },
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: o.method ?? 'GET', path: o.path, headers: o.headers, agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    req.end(o.body);
  });
}

const codeOf = (a: Answer) => (JSON.parse(a.body) as { code: string }).code;
const predict = (port: number, headers: Record<string, string> = {}) =>
  request(port, {
    method: 'POST',
    path: '/v1/predict',
    headers: { 'content-type': 'image/png', ...headers },
    body: image,
  });

test('--host 0.0.0.0 prints the real bind address and a warning; the token guards reload, not predictions', async () => {
  const s = await serve(['--host', '0.0.0.0', '--token', TOKEN]);
  try {
    assert.match(s.stdout(), new RegExp(`listening on http://0\\.0\\.0\\.0:${s.port} \\(port ${s.port}\\)`));
    assert.doesNotMatch(s.stdout(), /127\.0\.0\.1/);
    for (let i = 0; i < 40 && !/WARNING/.test(s.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
    assert.match(s.stderr(), /WARNING: listening on 0\.0\.0\.0, not only this machine.*need the token/);
    const reload = (headers: Record<string, string>) =>
      request(s.port, { method: 'POST', path: '/v1/reload', headers });
    const none = await reload({});
    assert.deepEqual([none.status, codeOf(none), none.headers['www-authenticate']], [401, 'unauthorized', 'Bearer']);
    const wrong = await reload({ authorization: 'Bearer not-the-token' });
    assert.deepEqual([wrong.status, wrong.headers['www-authenticate']], [401, 'Bearer error="invalid_token"']);
    const shorter = await reload({ authorization: `Bearer ${TOKEN.slice(0, -1)}` });
    assert.equal(shorter.status, 401);
    const good = await reload({ authorization: `Bearer ${TOKEN}` });
    assert.equal(good.status, 200, good.body);
    assert.equal(JSON.parse(good.body).reloaded, true);
    // The token is right, but the request comes from another site's page: refused all the same.
    const cross = await reload({ authorization: `Bearer ${TOKEN}`, origin: 'http://evil.example' });
    assert.deepEqual([cross.status, codeOf(cross)], [403, 'cross_origin']);
    // Predictions need no token by default.
    const p = await predict(s.port);
    assert.equal(p.status, 200, p.body);
    assert.equal(JSON.parse(p.body).top.length, 5);
    // Exactly one reload happened.
    assert.equal(s.stderr().match(/reloaded/g)?.length, 1, s.stderr());
  } finally {
    s.child.kill('SIGKILL');
  }
});

test("a cross-site text/plain POST cannot reload; a bad Host is refused; the server's own page may reload", async () => {
  const s = await serve([], { ALEXNET_TOKEN: '' });
  try {
    assert.match(s.stdout(), new RegExp(`listening on http://127\\.0\\.0\\.1:${s.port} \\(port ${s.port}\\)`));
    assert.doesNotMatch(s.stderr(), /WARNING/);
    // What a form or fetch() on another site sends without a preflight.
    const cross = await request(s.port, {
      method: 'POST',
      path: '/v1/reload',
      headers: { 'content-type': 'text/plain', origin: 'http://evil.example', host: `127.0.0.1:${s.port}` },
      body: 'x',
    });
    assert.deepEqual([cross.status, codeOf(cross)], [403, 'cross_origin'], cross.body);
    const opaque = await request(s.port, { method: 'POST', path: '/v1/reload', headers: { origin: 'null' } });
    assert.equal(opaque.status, 403);
    // DNS rebinding: evil.example resolved to 127.0.0.1, the browser sends its own name as Host.
    for (const host of [`evil.example:${s.port}`, 'evil.example', `127.0.0.1.evil.example:${s.port}`]) {
      const r = await request(s.port, { path: '/v1/models', headers: { host } });
      assert.deepEqual([r.status, codeOf(r)], [421, 'unknown_host'], host);
    }
    for (const host of [`localhost:${s.port}`, `127.0.0.1:${s.port}`, `[::1]:${s.port}`, 'localhost'])
      assert.equal((await request(s.port, { path: '/v1/models', headers: { host } })).status, 200, host);
    assert.equal(s.stderr().match(/reloaded/g), null, 'no refused request reloaded');
    // The server's own page (same origin) and a client without Origin (curl) may reload on loopback.
    const own = await request(s.port, {
      method: 'POST',
      path: '/v1/reload',
      headers: { origin: `http://127.0.0.1:${s.port}` },
    });
    assert.equal(own.status, 200, own.body);
    assert.equal((await request(s.port, { method: 'POST', path: '/v1/reload' })).status, 200);
  } finally {
    s.child.kill('SIGKILL');
  }
});

test('the guard in process: no token on a non-loopback bind refuses reload; --token-all; --allowed-hosts; --cors', async () => {
  const runs = fs.mkdtempSync(path.join(dir, 'runs-'));
  const exposed = buildServer({ runsDir: runs, bindHost: '0.0.0.0', log: () => undefined });
  try {
    const r = await exposed.inject({ method: 'POST', url: '/v1/reload' });
    assert.deepEqual([r.statusCode, r.json().code], [403, 'token_required']);
    // A 404/405 stays what it is.
    assert.equal((await exposed.inject({ method: 'DELETE', url: '/predictions/x' })).statusCode, 405);
  } finally {
    await exposed.close();
  }
  const all = buildServer({
    runsDir: runs,
    token: TOKEN,
    tokenAll: true,
    allowedHosts: ['alexnet.internal'],
    cors: ['https://ok.example'],
    log: () => undefined,
  } as Parameters<typeof buildServer>[0]);
  try {
    const bearer = { authorization: `Bearer ${TOKEN}` };
    assert.equal((await all.inject({ url: '/v1/runs' })).statusCode, 401);
    assert.equal((await all.inject({ url: '/v1/runs', headers: bearer })).statusCode, 200);
    assert.equal((await all.inject({ url: '/healthz' })).statusCode, 200, 'probes need no token');
    assert.equal((await all.inject({ url: '/readyz' })).statusCode, 200, 'probes need no token');
    const named = await all.inject({ url: '/v1/runs', headers: { ...bearer, host: 'alexnet.internal:8080' } });
    assert.equal(named.statusCode, 200);
    const allowed = await all.inject({
      method: 'POST',
      url: '/v1/reload',
      headers: { ...bearer, origin: 'https://ok.example' },
    });
    assert.equal(allowed.json().code, 'no_model', 'past the guard: a runs-only server has no model to reload');
  } finally {
    await all.close();
  }
  assert.equal(hostAllowed('Example.COM:80', { allowedHosts: ['example.com'] }), true);
  assert.equal(hostAllowed('10.1.2.3:8080', {}), true, 'an IP address is no rebinding target');
  assert.equal(hostAllowed('box.lan:8080', { bindHost: 'box.lan' }), true);
  assert.equal(hostAllowed('box.lan:8080', {}), false);
  assert.equal(hostAllowed('anything', { allowedHosts: ['*'] }), true);
});

/** `bytes` as the form field 'image'. */
function multipart(bytes: Buffer) {
  const b = 'exposure-boundary';
  const body = Buffer.concat([
    Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n`),
    Buffer.from('Content-Type: image/png\r\n\r\n'),
    bytes,
    Buffer.from(`\r\n--${b}--\r\n`),
  ]);
  return { headers: { 'content-type': `multipart/form-data; boundary=${b}` }, body };
}

interface Slow {
  socket: net.Socket;
  received: string;
  closedAt?: number;
}

/** A client that sends headers and 10 bytes of a 100 kB upload (raw or multipart), or part of its headers. */
function slowClient(port: number, kind: 'body' | 'multipart' | 'headers'): Slow {
  const socket = net.connect(port, '127.0.0.1');
  const s: Slow = { socket, received: '' };
  socket.on('data', (d: Buffer) => (s.received += d.toString('latin1')));
  socket.on('error', () => undefined);
  socket.on('close', () => (s.closedAt = performance.now()));
  const type = kind === 'multipart' ? 'multipart/form-data; boundary=XYZ' : 'image/png';
  const head = `POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: ${type}\r\n`;
  if (kind === 'headers') socket.write(head);
  else socket.write(`${head}Content-Length: 100000\r\n\r\n${kind === 'multipart' ? '--XYZ\r\n' : '0123456789'}`);
  return s;
}

test('64 stalled bodies, 32 multipart, 64 stalled headers take no place: a client is answered, they are cut in time', async () => {
  const s = await serve(['--request-timeout-ms', '2000']);
  try {
    const t0 = performance.now();
    const slow = [
      ...Array.from({ length: 64 }, () => slowClient(s.port, 'body')),
      ...Array.from({ length: 32 }, () => slowClient(s.port, 'multipart')),
      ...Array.from({ length: 64 }, () => slowClient(s.port, 'headers')),
    ];
    await new Promise((r) => setTimeout(r, 300));
    const t = performance.now();
    const p = await predict(s.port);
    assert.equal(p.status, 200, p.body);
    const form = multipart(image);
    const m = await request(s.port, { method: 'POST', path: '/v1/predict', headers: form.headers, body: form.body });
    assert.equal(m.status, 200, m.body);
    assert.deepEqual(JSON.parse(m.body).top, JSON.parse(p.body).top, 'the same image as a form');
    assert.ok(performance.now() - t < 2000, `answered in ${performance.now() - t} ms, over the receive timeout`);
    const ready = await request(s.port, { path: '/readyz' });
    assert.equal(ready.status, 200, 'no admission place is taken by a body that has not arrived');
    // Every slow client is cut at the receive timeout (2 s, checked by node every 200 ms), not a minute later.
    for (let i = 0; i < 80 && slow.some((c) => c.closedAt === undefined); i++)
      await new Promise((r) => setTimeout(r, 50));
    for (const c of slow) {
      assert.ok(c.closedAt !== undefined, 'a slow client is still connected after 4.3 s');
      const after = c.closedAt - t0;
      assert.ok(after > 1500 && after < 4300, `cut after ${after} ms`);
      assert.ok(c.received === '' || /^HTTP\/1\.1 408 /.test(c.received), c.received.slice(0, 40));
    }
    assert.ok(
      slow.some((c) => /^HTTP\/1\.1 408 /.test(c.received)),
      'at least the stalled bodies hear 408',
    );
    assert.equal((await predict(s.port)).status, 200);
  } finally {
    s.child.kill('SIGKILL');
  }
});

test('uploads still arriving are capped per address (2 × --max-inflight): 503 too_many_uploads, then served again', async () => {
  const s = await serve(['--request-timeout-ms', '2000', '--max-inflight', '2']);
  try {
    const slow = Array.from({ length: 4 }, (_, i) => slowClient(s.port, i % 2 ? 'multipart' : 'body'));
    await new Promise((r) => setTimeout(r, 300));
    const refused = await predict(s.port);
    assert.deepEqual([refused.status, codeOf(refused), refused.headers['retry-after']], [503, 'too_many_uploads', '1']);
    assert.equal((await request(s.port, { path: '/v1/models' })).status, 200, 'other routes are answered');
    for (let i = 0; i < 80 && slow.some((c) => c.closedAt === undefined); i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.ok(slow.every((c) => c.closedAt !== undefined));
    const p = await predict(s.port);
    assert.equal(p.status, 200, p.body);
  } finally {
    s.child.kill('SIGKILL');
  }
});

/** An 8×8 grayscale engine whose forward passes wait while `held` (10 classes, class 0 always). */
function heldEngine() {
  let gate: Promise<void> | undefined;
  let release = () => undefined as void;
  const geometry = { channels: 1, height: 8, width: 8 };
  const classes = Array.from({ length: 10 }, (_, i) => `c${i}`);
  const engine = {
    record: {
      model: 'held-net',
      modelOptions: {},
      classes,
      preprocess: { inputSize: [8, 8], resize: 'bilinear', mean: [], std: [] },
    },
    runtime: 'libtorch',
    geometry,
    card: {
      model: 'held-net',
      weights: 'held',
      classes,
      geometry,
      preprocessing: { mean: [], std: [] },
      runtime: 'libtorch',
      precision: 'fp32',
    },
    async logits(_pixels: Uint8Array, n: number) {
      if (gate) await gate;
      return new Float32Array(n * 10);
    },
    async close() {},
  } as unknown as Engine;
  return {
    engine,
    hold: () => (gate = new Promise<void>((r) => (release = r))),
    release: () => ((gate = undefined), release()),
  };
}

test('/readyz is 503 saturated while every admission place is taken, 200 again after', async () => {
  const held = heldEngine();
  const app = buildServer({
    engine: async () => held.engine,
    maxInflight: 2,
    maxBatch: 1,
    maxDelayMs: 0,
    log: () => {},
  });
  try {
    await app.serving.host.ready;
    assert.equal((await app.inject({ url: '/readyz' })).statusCode, 200);
    held.hold();
    const post = () =>
      app.inject({ method: 'POST', url: '/v1/predict', headers: { 'content-type': 'image/png' }, payload: image });
    const busy = [post(), post()];
    for (let i = 0; i < 200 && app.serving.inflight < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(app.serving.inflight, 2);
    const ready = await app.inject({ url: '/readyz' });
    assert.deepEqual([ready.statusCode, ready.json().status], [503, 'saturated']);
    assert.equal((await post()).json().code, 'overloaded');
    held.release();
    for (const r of await Promise.all(busy)) assert.equal(r.statusCode, 200, r.body);
    assert.equal((await app.inject({ url: '/readyz' })).statusCode, 200);
  } finally {
    await app.close();
  }
});
