// Reloads under load, and files that do not belong to the served model, with real `alexnet serve` processes and
// sockets: every request the server admitted is answered 200 across POST /v1/reload and SIGHUP (libtorch and
// onnxruntime), and the process survives the engines it replaces.
import assert from 'node:assert/strict';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { loadModel } from '../src/persist/load';
import { ModelHost } from '../src/serve/lifecycle';
import { Engine } from '../src/serve/types';
import { BIN, cli, TINY_TRAIN } from './helpers/cli';
import { lines } from './helpers/lines';

let dir = '';
let ckpt = '';

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-reload-test-'));
  ckpt = path.join(dir, 'ckpt.safetensors');
  const r = cli([...TINY_TRAIN, '--save', ckpt]);
  assert.equal(r.code, 0, r.stderr);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

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
  const out = lines(child.stdout!, 60_000);
  const err = lines(child.stderr!, 60_000);
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
async function underLoad(
  url: string,
  ms: number,
  clients: number,
  disturb: () => Promise<void>,
  routes = ['/v1/predict'],
): Promise<Tally> {
  const img = await garment();
  const t: Tally = { ok: 0, refused: 0, other: [] };
  const end = Date.now() + ms;
  const client = async (_: unknown, k: number) => {
    while (Date.now() < end) {
      const r = await fetch(`${url}${routes[k % routes.length]}`, {
        method: 'POST',
        body: img,
        headers: { 'content-type': 'image/png' },
      });
      const body = await r.text();
      if (r.status === 200) t.ok++;
      else if (r.status === 503 && /overloaded/.test(body)) t.refused++;
      else t.other.push(`${routes[k % routes.length]} ${r.status} ${body.slice(0, 200)}`);
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
      // libtorch: one of the clients asks for feature maps (the page's route that calls the engine directly)
      const routes =
        runtime === 'libtorch' ? ['/v1/predict', '/v1/predict', '/v1/predict', '/v1/feature-maps'] : undefined;
      const tally = await underLoad(
        s.url,
        6000,
        8,
        async () => {
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
        },
        routes,
      );
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

// ---- files of another model, and gallery images moved after `alexnet features` ran ----------------------------

/** A safetensors embeddings file as `alexnet features` writes it: features N × D float32, labels int64. */
function embeddingsFile(file: string, rows: number[][], meta: Record<string, string>, files: string[]): void {
  const n = rows.length;
  const d = rows[0].length;
  const features = Buffer.from(new Float32Array(rows.flat()).buffer);
  const labels = Buffer.from(new BigInt64Array(n).buffer);
  const header = {
    __metadata__: {
      format: 'alexnet-ts/features',
      classes: JSON.stringify(['a', 'b']),
      files: JSON.stringify(files),
      ...meta,
    },
    features: { dtype: 'F32', shape: [n, d], data_offsets: [0, features.length] },
    labels: { dtype: 'I64', shape: [n], data_offsets: [features.length, features.length + labels.length] },
  };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), features, labels]));
}

const D2L = { model: 'alexnet-d2l', layer: 'classifier.4', weights: 'ckpt.safetensors' };

/** An evaluation as `alexnet eval --json` writes it, of `model` with `classes`. */
function evaluation(file: string, model: string, classes: string[]): void {
  const confusion = classes.map((_, i) => classes.map((__, j) => (i === j ? 1 : 0)));
  const perClass = classes.map((name) => ({ name, accuracy: 1, count: 1 }));
  fs.writeFileSync(file, JSON.stringify({ model, weights: `/elsewhere/${model}.safetensors`, confusion, perClass }));
}

test('serve refuses unreadable page files and another embedding space (exit 2), and warns about another model', async () => {
  const g = path.join(dir, 'gallery.safetensors');
  const q = path.join(dir, 'queries.safetensors');
  const other = path.join(dir, 'other-layer.safetensors');
  embeddingsFile(g, [[0, 1, 2]], { ...D2L, dataset: 'fashion-mnist' }, ['train:0']);
  embeddingsFile(q, [[1, 1, 1]], { ...D2L, dataset: 'fashion-mnist' }, ['val:0']);
  embeddingsFile(other, [[1, 1, 1, 1]], { ...D2L, layer: 'features.12', dataset: 'fashion-mnist' }, ['val:0']);
  const png = path.join(dir, 'some.png');
  fs.writeFileSync(png, await garment());
  const foreignEval = path.join(dir, 'foreign-eval.json');
  evaluation(
    foreignEval,
    'alexnet-2012',
    Array.from({ length: 1000 }, (_, i) => `c${i}`),
  );
  const w = ['serve', '--weights', ckpt, '--port', '0', '--threads', '1'];
  for (const [args, re] of [
    [['--eval', path.join(dir, 'missing.json')], /--eval must be an evaluation .*missing\.json/],
    [['--eval', png], /--eval must be an evaluation/],
    [['--gallery', png, '--queries', q], /--gallery must be an embeddings file .*some\.png/],
    [['--gallery', g], /--gallery and --queries go together .*only --gallery/],
    [['--queries', q], /only --queries/],
    [['--gallery', g, '--queries', other], /one embedding space, got alexnet-d2l classifier\.4, 3 .* features\.12, 4/],
    [
      ['--eval', foreignEval],
      /--eval must be an evaluation of the served model, got foreign-eval\.json of alexnet-2012/,
    ],
  ] as const) {
    const r = cli([...w, ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  // another model's gallery and an eval.json found beside the weights: served, with a loud warning each
  const beside = fs.mkdtempSync(path.join(dir, 'beside-'));
  fs.copyFileSync(ckpt, path.join(beside, 'ckpt.safetensors'));
  evaluation(path.join(beside, 'eval.json'), 'alexnet-2012', ['x', 'y']);
  const g2012 = path.join(dir, 'gallery-2012.safetensors');
  const q2012 = path.join(dir, 'queries-2012.safetensors');
  const m2012 = { model: 'alexnet-2012', layer: 'classifier.4', weights: 'paper.safetensors', dataset: 'mnist' };
  embeddingsFile(g2012, [[0, 1]], m2012, ['train:0']);
  embeddingsFile(q2012, [[0, 1]], m2012, ['val:0']);
  const s = await serve([
    '--weights',
    path.join(beside, 'ckpt.safetensors'),
    '--threads',
    '1',
    '--gallery',
    g2012,
    '--queries',
    q2012,
  ]);
  try {
    assert.match(s.err.text(), /WARNING: eval\.json is an evaluation of alexnet-2012, not alexnet-d2l/);
    assert.match(s.err.text(), /WARNING: the gallery's embeddings are of alexnet-2012, not alexnet-d2l/);
    assert.equal((await fetch(`${s.url}/v1/evaluation`)).status, 200);
  } finally {
    s.child.kill('SIGKILL');
  }
});

test('a gallery image moved or damaged after features ran is a 404 naming it; nothing outside the data set is read', async () => {
  const root = fs.mkdtempSync(path.join(dir, 'photos-'));
  fs.mkdirSync(path.join(root, 'a'));
  const img = await sharp({ create: { width: 20, height: 10, channels: 3, background: '#f80' } })
    .png()
    .toBuffer();
  const names = ['a/one.png', 'a/two.png', 'a/three.png'].map((n) => path.join(root, n));
  names.forEach((n) => fs.writeFileSync(n, img));
  const outside = path.join(dir, 'outside.png');
  fs.writeFileSync(outside, img);
  fs.symlinkSync(outside, path.join(root, 'a', 'link.png'));
  const files = [...names, path.join(root, 'a', 'link.png'), '../outside.png', outside, 'train:0'];
  const meta = { ...D2L, dataset: `folder:${root}` };
  const rows = files.map((_, i) => [i, 0, 0]);
  const g = path.join(dir, 'photos-gallery.safetensors');
  embeddingsFile(g, rows, meta, files);
  const s = await serve(['--weights', ckpt, '--threads', '1', '--gallery', g, '--queries', g]);
  try {
    const get = async (i: number) => {
      const r = await fetch(`${s.url}/v1/images/gallery/${i}`);
      return { status: r.status, type: r.headers.get('content-type') ?? '', body: Buffer.from(await r.arrayBuffer()) };
    };
    const first = await get(0);
    assert.equal(first.status, 200);
    assert.equal((await sharp(first.body).metadata()).width, 20);
    fs.rmSync(names[1]);
    fs.writeFileSync(names[2], img.subarray(0, 40));
    for (const [i, re] of [
      [1, /the gallery image two\.png \(row 1\) is missing: it was moved or deleted after alexnet features ran/],
      [2, /the gallery image three\.png \(row 2\) cannot be decoded/],
      [3, /link\.png \(row 3\) is outside the data set's folder: refused/],
      [4, /outside\.png \(row 4\) is outside the data set's folder: refused/],
      [5, /outside\.png \(row 5\) is outside the data set's folder: refused/],
      [6, /train:0 \(row 6\) is missing/],
    ] as const) {
      const r = await get(i);
      assert.equal(r.status, 404, `row ${i}: ${r.body}`);
      const e = JSON.parse(r.body.toString());
      assert.equal(e.code, 'not_found');
      assert.match(e.error, re);
      assert.ok(!e.error.includes(dir), `row ${i} leaks a path: ${e.error}`);
    }
    assert.equal(s.child.exitCode, null);
  } finally {
    s.child.kill('SIGKILL');
  }
});

test('report leaves out an eval.json of another model, saying so', () => {
  const run = fs.mkdtempSync(path.join(dir, 'run-'));
  fs.copyFileSync(ckpt, path.join(run, 'checkpoint.safetensors'));
  fs.writeFileSync(path.join(run, 'metrics.jsonl'), JSON.stringify({ epoch: 1, split: 'train', loss: 2.3 }) + '\n');
  evaluation(
    path.join(run, 'eval.json'),
    'alexnet-2012',
    Array.from({ length: 1000 }, (_, i) => `c${i}`),
  );
  const r = cli(['report', run]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stderr,
    /warning: eval\.json: an evaluation of alexnet-2012, but this run's model is alexnet-d2l; left out/,
  );
  assert.doesNotMatch(r.stdout, /eval\.json/);
  // the run's own evaluation (its classes) is shown
  const loaded = loadModel(ckpt);
  const classes = [...loaded.record.classes];
  loaded.model.dispose();
  evaluation(path.join(run, 'eval.json'), 'alexnet-d2l', classes);
  const ok = cli(['report', run, '--overwrite']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /eval\.json/);
});

test('worker threads terminated in the middle of tensor work never abort the process (the addon never throws out)', () => {
  // Each worker loads the addon and multiplies matrices without end, keeping some results alive so that their
  // finalizers run while its environment is torn down; terminate() lands at varying points of that work. Before
  // the addon swallowed exceptions it could not throw, this aborted: terminate called after throwing 'Napi::Error'.
  const tensorModule = path.resolve(__dirname, '..', 'src', 'tensor', 'tensor.js');
  const script = `
const { Worker } = require('node:worker_threads');
const code = \`
const { parentPort } = require('node:worker_threads');
const t = require(${JSON.stringify(tensorModule)});
parentPort.postMessage('go');
const keep = [];
for (;;) {
  keep.push(t.randn([64, 64]).matmul(t.randn([64, 64])));
  if (keep.length > 200) keep.splice(0, 100);
}\`;
(async () => {
  for (let i = 0; i < 30; i++) {
    const w = new Worker(code, { eval: true });
    await new Promise((r) => w.once('message', r));
    await new Promise((r) => setTimeout(r, 5 + ((i * 37) % 60)));
    await w.terminate();
  }
  console.log('survived 30');
})();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 120_000 });
  assert.doesNotMatch(r.stderr, /terminate called/);
  assert.equal(r.signal, null, r.stderr);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /survived 30/);
});

test('a failed reload names files by their base names to clients, in full in the log', async () => {
  let opened = 0;
  const logged: string[] = [];
  const host = new ModelHost(
    async () => {
      if (opened++ === 0) return fake(1);
      throw new Error(`/srv/models/secret/w.safetensors: is not a valid safetensors file (read '/srv/x.bin')`);
    },
    { maxBatch: 1, maxDelayMs: 1 },
    (l) => logged.push(l),
  );
  await host.ready;
  const r = await host.reload();
  assert.equal(r.ok, false);
  assert.equal(r.error, `w.safetensors: is not a valid safetensors file (read 'x.bin')`);
  assert.match(logged.join('\n'), /\/srv\/models\/secret\/w\.safetensors/);
  await host.close();
});
