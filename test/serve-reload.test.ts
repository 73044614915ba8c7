// Reloads under load, and files that do not belong to the served model, with real `alexnet serve` processes and
// sockets: every request the server admitted is answered 200 across POST /v1/reload and SIGHUP (libtorch and
// onnxruntime), and the process survives the engines it replaces.
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { ModelHost } from '../src/serve/lifecycle';
import { Engine } from '../src/serve/types';
import { BIN, cli, TINY_TRAIN } from './helpers/cli';

let dir = '';
let ckpt = '';

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-reload-test-'));
  ckpt = path.join(dir, 'ckpt.safetensors');
  const r = cli([...TINY_TRAIN, '--save', ckpt]);
  assert.equal(r.code, 0, r.stderr);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A child's stream as text, with a wait for a line that matches. */
function lines(stream: NodeJS.ReadableStream) {
  let text = '';
  const waiters: [RegExp, (m: RegExpMatchArray) => void][] = [];
  stream.on('data', (d) => {
    text += d;
    for (const [re, f] of waiters.splice(0)) {
      const m = text.match(re);
      if (m) f(m);
      else waiters.push([re, f]);
    }
  });
  return {
    text: () => text,
    wait: (re: RegExp, ms = 60_000) =>
      new Promise<RegExpMatchArray>((resolve, reject) => {
        const m = text.match(re);
        if (m) return resolve(m);
        const t = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms in: ${text}`)), ms);
        waiters.push([re, (x) => (clearTimeout(t), resolve(x))]);
      }),
  };
}

interface Served {
  child: ChildProcess;
  url: string;
  err: ReturnType<typeof lines>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function serve(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.on('exit', (code, signal) => r({ code, signal })),
  );
  const out = lines(child.stdout!);
  const err = lines(child.stderr!);
  const port = await Promise.race([
    out.wait(/listening on http:\/\/127\.0\.0\.1:\d+ \(port (\d+)\)/).then((m) => Number(m[1])),
    exited.then((e) => {
      throw new Error(`serve exited ${e.code}/${e.signal}: ${err.text()}`);
    }),
  ]);
  return { child, url: `http://127.0.0.1:${port}`, err, exited };
}

/** A large photo-like PNG: its decoding takes long enough that requests are mid-way when a reload swaps engines. */
const garment = () =>
  sharp(Buffer.from(Array.from({ length: 640 * 640 * 3 }, (_, i) => (i * 7919) % 251)), {
    raw: { width: 640, height: 640, channels: 3 },
  })
    .png({ compressionLevel: 1 })
    .toBuffer();

/** Answers by status; `refused` counts the 503s of admission (never admitted), `other` everything not 200. */
interface Tally {
  ok: number;
  refused: number;
  other: string[];
}

/**
 * `clients` loops posting an image for `ms` milliseconds while `disturb` runs (reloads, signals). Each loop is
 * bounded by the deadline; a 503 `overloaded` was refused at admission and is counted apart.
 */
async function underLoad(url: string, ms: number, clients: number, disturb: () => Promise<void>): Promise<Tally> {
  const img = await garment();
  const t: Tally = { ok: 0, refused: 0, other: [] };
  const end = Date.now() + ms;
  const client = async () => {
    while (Date.now() < end) {
      const r = await fetch(`${url}/v1/predict`, {
        method: 'POST',
        body: img,
        headers: { 'content-type': 'image/png' },
      });
      const body = await r.text();
      if (r.status === 200) t.ok++;
      else if (r.status === 503 && /overloaded/.test(body)) t.refused++;
      else t.other.push(`${r.status} ${body.slice(0, 200)}`);
    }
  };
  await Promise.all([...Array.from({ length: clients }, client), disturb()]);
  return t;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const runtime of ['libtorch', 'onnx'] as const) {
  test(`${runtime}: 8 clients across two POST reloads and a SIGHUP: every admitted request is answered 200`, async () => {
    const s = await serve(['--weights', ckpt, '--runtime', runtime, '--precision', 'fp32', '--threads', '1']);
    try {
      let reloads = 0;
      const tally = await underLoad(s.url, 6000, 8, async () => {
        for (const how of ['post', 'hup', 'post'] as const) {
          await sleep(1200);
          if (how === 'hup') {
            const before = (s.err.text().match(/reloaded ckpt/g) ?? []).length;
            s.child.kill('SIGHUP');
            const deadline = Date.now() + 30_000;
            while ((s.err.text().match(/reloaded ckpt/g) ?? []).length === before && Date.now() < deadline)
              await sleep(50);
          } else {
            const r = await fetch(`${s.url}/v1/reload`, { method: 'POST' });
            assert.equal(r.status, 200, await r.text());
          }
          reloads++;
        }
      });
      assert.equal(reloads, 3);
      assert.equal((s.err.text().match(/reloaded ckpt\.safetensors/g) ?? []).length, 3, s.err.text());
      assert.deepEqual(tally.other, [], `answers other than 200 and admission's 503: ${tally.other.join('; ')}`);
      assert.ok(tally.ok > 20, `only ${tally.ok} answers (${tally.refused} refused at admission)`);
      assert.equal(s.child.exitCode, null, `the server died: ${s.err.text()}`);
      assert.doesNotMatch(s.err.text(), /terminate called|Napi::Error|closing the replaced engine/);
      s.child.kill('SIGTERM');
      const e = await s.exited;
      assert.equal(e.code, 0, s.err.text());
    } finally {
      s.child.kill('SIGKILL');
    }
  });
}

/** A fake engine whose logits are [id] per image and which fails every call once closed, as a disposed session does. */
function fake(id: number, side = 4): Engine & { closed: boolean; calls: number } {
  const geometry = { channels: 1, height: side, width: side };
  const e = {
    closed: false,
    calls: 0,
    runtime: 'onnxruntime',
    geometry,
    record: { model: 'fake', modelOptions: {}, classes: ['a'], preprocess: {} },
    card: { model: 'fake', weights: `w${id}`, classes: ['a'], geometry, preprocessing: { mean: [], std: [] } },
    async logits(_pixels: Uint8Array, n: number) {
      e.calls++;
      if (e.closed) throw new Error('Session already disposed.');
      await sleep(5);
      return new Float32Array(n).fill(id);
    },
    async close() {
      e.closed = true;
    },
  };
  return e as unknown as Engine & { closed: boolean; calls: number };
}

test('a request that took the slot before a reload and submits after the old engine closed is answered', async () => {
  const engines = [fake(1), fake(2)];
  let opened = 0;
  const host = new ModelHost(
    async () => engines[opened++],
    { maxBatch: 2, maxDelayMs: 1 },
    () => undefined,
  );
  await host.ready;
  const old = host.slot!;
  const queued = old.batcher.submit(new Uint8Array(16)); // admitted before the reload: runs on the old engine
  assert.deepEqual(await host.reload().then((r) => r.ok), true);
  assert.equal((await queued).logits[0], 1);
  for (let i = 0; i < 200 && !engines[0].closed; i++) await sleep(5);
  assert.equal(engines[0].closed, true);
  // decoding finished after the swap and the old engine's close: the old batcher hands the image on
  const late = await old.batcher.submit(new Uint8Array(16));
  assert.equal(late.logits[0], 2);
  await host.close();
  assert.equal(engines[1].closed, true);
});

test('the old engine closes only after the batches it admitted are answered', async () => {
  const engines = [fake(1), fake(2)];
  let opened = 0;
  const host = new ModelHost(
    async () => engines[opened++],
    { maxBatch: 4, maxDelayMs: 20 },
    () => undefined,
  );
  await host.ready;
  const before = Array.from({ length: 6 }, () => host.slot!.batcher.submit(new Uint8Array(16)));
  const r = await host.reload();
  assert.equal(r.ok, true);
  const after = Array.from({ length: 3 }, () => host.slot!.batcher.submit(new Uint8Array(16)));
  assert.deepEqual(
    (await Promise.all(before)).map((x) => x.logits[0]),
    [1, 1, 1, 1, 1, 1],
  );
  assert.deepEqual(
    (await Promise.all(after)).map((x) => x.logits[0]),
    [2, 2, 2],
  );
  await host.close();
  assert.deepEqual([engines[0].closed, engines[1].closed], [true, true]);
});
