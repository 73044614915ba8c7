// The page and its model views: the endpoints through fastify.inject (a fake engine, hand-written embeddings and IDX
// files), then the page itself in real Chromium against the real server (buildServer) with a small trained model.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import Fastify, { FastifyInstance } from 'fastify';
import { Browser, chromium, Page } from 'playwright-core';
import sharp from 'sharp';
import { FASHION_MNIST_CLASSES } from '../src/data/fashion-mnist';
import { buildServer, ServeApp } from '../src/serve/app';
import { openEngine } from '../src/serve/engine';
import { pagePlugin, PageRoutesOptions, MAX_MAP_CHANNELS } from '../src/serve/page';
import { Engine, InsightEngine, LayerOutput, ModelCard } from '../src/serve/types';
import { readIdx } from '../src/data/idx';
import { BIN, TINY_TRAIN } from './helpers/cli';

const CHROMIUM = '/usr/bin/chromium';
const FASHION = '/usr/share/datasets/fashion-mnist';

// ---- fixtures written by hand ----

/** A safetensors file written here byte by byte (not with the library's writer): header length, JSON, data. */
function writeSafetensors(
  file: string,
  tensors: { name: string; dtype: 'F32' | 'I64'; shape: number[]; values: number[] }[],
  metadata: Record<string, string>,
): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const t of tensors) {
    const b = Buffer.alloc(t.values.length * (t.dtype === 'F32' ? 4 : 8));
    t.values.forEach((v, i) => (t.dtype === 'F32' ? b.writeFloatLE(v, i * 4) : b.writeBigInt64LE(BigInt(v), i * 8)));
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + b.length] };
    chunks.push(b);
    offset += b.length;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, ...chunks]));
}

/** An uncompressed IDX images file (magic 0x00000803, N × H × W unsigned bytes). */
function writeIdxImages(file: string, n: number, h: number, w: number, pixel: (i: number, p: number) => number): void {
  const head = Buffer.alloc(16);
  [0x803, n, h, w].forEach((v, i) => head.writeUInt32BE(v, i * 4));
  const data = Buffer.alloc(n * h * w);
  for (let i = 0; i < n; i++) for (let p = 0; p < h * w; p++) data[i * h * w + p] = pixel(i, p);
  fs.writeFileSync(file, Buffer.concat([head, data]));
}

const CLASSES = ['zero', 'one', 'two'];

function fakeCard(): ModelCard {
  return {
    model: 'fake-net',
    weights: 'fake.safetensors',
    classes: CLASSES,
    geometry: { channels: 1, height: 8, width: 8 },
    preprocessing: { mean: [0.5], std: [0.25] },
    runtime: 'libtorch',
    precision: 'fp32',
  };
}

/** An engine whose insight returns known numbers and remembers the pixels it was given. */
function fakeEngine(o: { insight?: boolean; layers?: LayerOutput[] } = {}): Engine & { seen: Uint8Array[] } {
  const seen: Uint8Array[] = [];
  const insight: InsightEngine = {
    filters: async () => ({ shape: [2, 1, 2, 2], data: Float32Array.from([1, 2, 3, 4, -1, 0, 0.5, 9]) }),
    featureMaps: async (pixels) => {
      seen.push(pixels);
      return o.layers ?? [];
    },
    embedding: async () => new Float32Array(3),
  };
  const card = fakeCard();
  return {
    record: {
      model: card.model,
      modelOptions: {},
      classes: card.classes,
      preprocess: { inputSize: [8, 8], resize: 'bilinear', ...card.preprocessing },
    },
    runtime: card.runtime,
    geometry: card.geometry,
    card,
    logits: async (_p, n) => new Float32Array(n * CLASSES.length),
    ...(o.insight !== false && { insight }),
    close: async () => undefined,
    seen,
  };
}

async function pageServer(o: PageRoutesOptions): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(pagePlugin, o);
  await app.ready();
  return app;
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-web-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Queries and gallery in 3-d, chosen so that the Euclidean distances are whole numbers worked out by hand.
const QUERIES = [
  [0, 0, 0],
  [1, 2, 2],
];
const GALLERY = [
  [3, 4, 0], // from query 0: 5;  from query 1: sqrt(4 + 4 + 4) = 3.4641
  [1, 2, 2], // 3;                0
  [0, 0, 1], // 1;                sqrt(1 + 4 + 1) = 2.4495
  [6, 8, 0], // 10;               sqrt(25 + 36 + 4) = 8.0623
];

function writeEmbeddings(): { queriesFile: string; galleryFile: string; dataDir: string } {
  const dataDir = path.join(tmp, 'idx');
  fs.mkdirSync(dataDir);
  writeIdxImages(path.join(dataDir, 't10k-images-idx3-ubyte'), 2, 4, 3, (i, p) => i * 100 + p * 7);
  writeIdxImages(path.join(dataDir, 'train-images-idx3-ubyte'), 6, 4, 3, (i, p) => 255 - i * 20 - p);
  const meta = (files: string[]) => ({
    format: 'alexnet-ts/features',
    model: 'fake-net',
    layer: 'classifier.4',
    dataset: 'fashion-mnist',
    classes: JSON.stringify(CLASSES),
    files: JSON.stringify(files),
  });
  const queriesFile = path.join(tmp, 'queries.safetensors');
  const galleryFile = path.join(tmp, 'gallery.safetensors');
  writeSafetensors(
    queriesFile,
    [
      { name: 'features', dtype: 'F32', shape: [2, 3], values: QUERIES.flat() },
      { name: 'labels', dtype: 'I64', shape: [2], values: [2, 0] },
    ],
    meta(['val:0', 'val:1']),
  );
  writeSafetensors(
    galleryFile,
    [
      { name: 'features', dtype: 'F32', shape: [4, 3], values: GALLERY.flat() },
      { name: 'labels', dtype: 'I64', shape: [4], values: [1, 0, 2, 2] },
    ],
    meta(['train:5', 'train:1', 'train:0', 'train:3']),
  );
  return { queriesFile, galleryFile, dataDir };
}

/** A 10-class evaluation with counts that differ per cell (rows: true class). */
function evaluationJson(classes: string[]) {
  const confusion = classes.map((_, i) => classes.map((_, j) => (i === j ? 20 + i : (i * 3 + j * 7) % 5)));
  return {
    weights: '/some/where/private/model.safetensors',
    model: 'alexnet-d2l',
    n: confusion.flat().reduce((a, b) => a + b, 0),
    loss: 0.5,
    top1: 0.8,
    top5: 0.99,
    perClass: classes.map((name, i) => ({
      name,
      count: confusion[i].reduce((a, b) => a + b, 0),
      accuracy: confusion[i][i] / confusion[i].reduce((a, b) => a + b, 0),
    })),
    confusion,
    seconds: 1,
  };
}

// ---- the endpoints ----

describe('the model-view endpoints', () => {
  const files = writeEmbeddings();
  const evaluationFile = path.join(tmp, 'eval.json');
  fs.writeFileSync(evaluationFile, JSON.stringify(evaluationJson(CLASSES)));

  test('GET /v1/filters gives conv1 kernels, and 404 JSON without a model or without insight', async () => {
    const engine = fakeEngine();
    const app = await pageServer({ engine: () => engine });
    const r = await app.inject('/v1/filters');
    assert.equal(r.statusCode, 200);
    const j = r.json();
    assert.deepEqual(j.shape, [2, 1, 2, 2]);
    assert.deepEqual(j.data, [1, 2, 3, 4, -1, 0, 0.5, 9]);
    await app.close();
    for (const [o, code] of [
      [{}, 'no_model'],
      [{ engine: () => undefined }, 'no_model'],
      [{ engine: () => fakeEngine({ insight: false }) }, 'no_insight'],
    ] as const) {
      const a = await pageServer(o);
      const n = await a.inject('/v1/filters');
      assert.equal(n.statusCode, 404);
      assert.equal(n.json().code, code);
      assert.match(n.json().error, code === 'no_model' ? /no model is loaded/ : /runtime cannot show/);
      await a.close();
    }
  });

  test('GET /v1/evaluation gives the evaluation without the private path of its weights, or 404', async () => {
    const app = await pageServer({ evaluationFile });
    const j = (await app.inject('/v1/evaluation')).json();
    assert.deepEqual(j.confusion, evaluationJson(CLASSES).confusion);
    assert.equal(j.weights, 'model.safetensors');
    await app.close();
    const none = await pageServer({});
    const r = await none.inject('/v1/evaluation');
    assert.equal(r.statusCode, 404);
    assert.equal(r.json().code, 'no_evaluation');
    await none.close();
  });

  test('GET /v1/neighbours ranks the gallery by Euclidean distance as worked out by hand', async () => {
    const app = await pageServer(files);
    const info = (await app.inject('/v1/neighbours')).json();
    assert.equal(info.metric, 'euclidean');
    assert.equal(info.queries, 2);
    assert.equal(info.gallery, 4);
    const q0 = (await app.inject('/v1/neighbours?query=0&k=3')).json();
    assert.deepEqual(q0.query, { index: 0, file: 'val:0', label: 2, class: 'two' });
    assert.deepEqual(
      q0.neighbours.map((n: { index: number; distance: number }) => [n.index, n.distance]),
      [
        [2, 1],
        [1, 3],
        [0, 5],
      ],
    );
    assert.deepEqual(q0.neighbours[0], { index: 2, file: 'train:0', label: 2, class: 'two', distance: 1 });
    const q1 = (await app.inject('/v1/neighbours?query=1')).json();
    const expected = [
      [1, 0],
      [2, Math.sqrt(6)],
      [0, Math.sqrt(12)],
      [3, Math.sqrt(65)],
    ];
    assert.equal(q1.neighbours.length, 4, 'k defaults to 8, at most the gallery');
    q1.neighbours.forEach((n: { index: number; distance: number }, i: number) => {
      assert.equal(n.index, expected[i][0]);
      assert.ok(Math.abs(n.distance - expected[i][1]) < 1e-6, `${n.distance} against ${expected[i][1]}`);
    });
    for (const bad of ['query=2', 'query=-1', 'query=abc', 'query=0&k=0', 'query=0&k=65', 'query=1.5']) {
      const r = await app.inject(`/v1/neighbours?${bad}`);
      assert.equal(r.statusCode, 400, bad);
      assert.match(r.json().error, /must be an integer from \d+ to \d+, got/);
    }
    await app.close();
    const none = await pageServer({});
    const r = await none.inject('/v1/neighbours?query=0');
    assert.equal(r.statusCode, 404);
    assert.equal(r.json().code, 'no_neighbours');
    await none.close();
  });

  test('GET /v1/images/:set/:i is the IDX image the embeddings name, and nothing else', async () => {
    const app = await pageServer(files);
    const r = await app.inject('/v1/images/gallery/0');
    assert.equal(r.statusCode, 200);
    assert.equal(r.headers['content-type'], 'image/png');
    const meta = await sharp(r.rawPayload).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['png', 3, 4, 1]);
    const gray = (png: Buffer) => sharp(png).extractChannel(0).raw().toBuffer();
    const data = await gray(r.rawPayload);
    // gallery row 0 is train:5: 255 - 5·20 - p
    assert.deepEqual(
      [...data],
      Array.from({ length: 12 }, (_, p) => 255 - 100 - p),
    );
    const q = await gray((await app.inject('/v1/images/queries/1')).rawPayload);
    assert.deepEqual(
      [...q],
      Array.from({ length: 12 }, (_, p) => 100 + p * 7),
    );
    for (const url of [
      '/v1/images/gallery/4',
      '/v1/images/gallery/-1',
      '/v1/images/gallery/1e0',
      '/v1/images/gallery/..%2F..%2Fetc%2Fpasswd',
      '/v1/images/..%2Fqueries/0',
      '/v1/images/%2Fetc%2Fpasswd/0',
      '/v1/images/constructor/0',
      '/v1/images/../../../etc/passwd',
    ]) {
      const bad = await app.inject(url);
      assert.equal(bad.statusCode, 404, url);
      assert.equal(bad.headers['content-type'], 'application/json; charset=utf-8', url);
    }
    await app.close();
  });

  test('photos are named inside their folder and shown fitted inside 160 pixels', async () => {
    const root = path.join(tmp, 'photos');
    fs.mkdirSync(path.join(root, 'cat'), { recursive: true });
    const photo = path.join(root, 'cat', 'a.png');
    await sharp({ create: { width: 320, height: 200, channels: 3, background: { r: 200, g: 30, b: 10 } } })
      .png()
      .toFile(photo);
    const file = path.join(tmp, 'photos.safetensors');
    writeSafetensors(
      file,
      [
        { name: 'features', dtype: 'F32', shape: [1, 2], values: [1, 2] },
        { name: 'labels', dtype: 'I64', shape: [1], values: [0] },
      ],
      { dataset: `folder:${root}`, classes: JSON.stringify(['cat']), files: JSON.stringify([photo]) },
    );
    const app = await pageServer({ queriesFile: file, galleryFile: file });
    const j = (await app.inject('/v1/neighbours?query=0&k=1')).json();
    assert.deepEqual(j.query, { index: 0, file: path.join('cat', 'a.png'), label: 0, class: 'cat' });
    assert.equal(j.neighbours[0].distance, 0);
    const png = await app.inject('/v1/images/gallery/0');
    const m = await sharp(png.rawPayload).metadata();
    assert.deepEqual([m.format, m.width, m.height], ['png', 160, 100]);
    await app.close();
  });

  test('POST /v1/feature-maps sends 32 channels per layer, each min-max normalised, and refuses bad uploads', async () => {
    const channels = 40;
    const ramp = Float32Array.from({ length: channels * 4 }, (_, i) => (i >> 2) * 10 + (i % 4) * ((i >> 2) + 1));
    const layers = [
      { layer: 'features.1', shape: [channels, 2, 2], data: ramp },
      { layer: 'features.4', shape: [1, 1, 3], data: Float32Array.from([7, 7, 7]) },
    ];
    const engine = fakeEngine({ layers });
    const app = await pageServer({ engine: () => engine, maxUploadBytes: 4096 });
    const gray = Buffer.from(Array.from({ length: 64 }, (_, i) => i * 4));
    const png = await sharp(gray, { raw: { width: 8, height: 8, channels: 1 } })
      .png()
      .toBuffer();
    const r = await app.inject({
      method: 'POST',
      url: '/v1/feature-maps',
      payload: png,
      headers: { 'content-type': 'image/png' },
    });
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual([...engine.seen[0]], [...gray], 'the engine got the decoded image');
    const [a, b] = r.json().layers;
    assert.equal(a.channels, MAX_MAP_CHANNELS);
    assert.deepEqual(a.shape, [channels, 2, 2]);
    const bytes = Buffer.from(a.data, 'base64');
    assert.equal(bytes.length, MAX_MAP_CHANNELS * 4);
    // every channel is c·10 + (0, 1, 2, 3)·(c + 1): normalised, always 0, 85, 170, 255
    for (let c = 0; c < MAX_MAP_CHANNELS; c++) {
      assert.deepEqual([...bytes.subarray(c * 4, c * 4 + 4)], [0, 85, 170, 255]);
      assert.equal(a.min[c], c * 10);
      assert.equal(a.max[c], c * 10 + 3 * (c + 1));
    }
    assert.deepEqual([...Buffer.from(b.data, 'base64')], [0, 0, 0], 'a flat map is all zeros');
    const post = (payload: Buffer | string, type: string) =>
      app.inject({ method: 'POST', url: '/v1/feature-maps', payload, headers: { 'content-type': type } });
    const svg = '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>';
    for (const [res, status] of [
      [await post(svg, 'image/svg+xml'), 415],
      [await post('hello', 'text/plain'), 415],
      [await post(png.subarray(0, 40), 'image/png'), 400],
      [await post(Buffer.alloc(5000, 1), 'image/png'), 413],
    ] as const) {
      assert.equal(res.statusCode, status, res.body);
      assert.equal(typeof res.json().error, 'string');
      assert.equal(typeof res.json().code, 'string');
    }
    await app.close();
    const none = await pageServer({});
    const n = await none.inject({
      method: 'POST',
      url: '/v1/feature-maps',
      payload: png,
      headers: { 'content-type': 'image/png' },
    });
    assert.equal(n.statusCode, 404);
    await none.close();
  });

  test('the page, its scripts and uPlot come from this server, nothing else under /vendor', async () => {
    const app = await pageServer({});
    const page = await app.inject('/');
    assert.equal(page.statusCode, 200);
    assert.match(page.headers['content-type'] as string, /text\/html/);
    const scripts = [...page.body.matchAll(/<(?:script src|link rel="stylesheet" href)="([^"]+)"/g)].map((m) => m[1]);
    assert.ok(
      scripts.every((s) => s.startsWith('/')),
      'no CDN',
    );
    for (const s of scripts.filter((x) => x !== '/curves.js')) assert.equal((await app.inject(s)).statusCode, 200, s);
    const uplot = await app.inject('/vendor/uplot/uPlot.iife.min.js');
    assert.match(uplot.headers['content-type'] as string, /javascript/);
    assert.match(uplot.body, /uPlot/);
    for (const url of ['/vendor/uplot/package.json', '/vendor/uplot/..%2Fpackage.json', '/vendor/uplot/uPlot.d.ts'])
      assert.equal((await app.inject(url)).statusCode, 404, url);
    await app.close();
  });
});

// ---- the page in a real browser ----

/**
 * The browser's objects as far as the checks below use them inside page.evaluate (the tests compile without
 * TypeScript's DOM library, which would change the types of every other file).
 */
interface Shown {
  width: number;
  height: number;
  naturalWidth: number;
  textContent: string | null;
  dataset: Record<string, string | undefined>;
  getAttribute(name: string): string | null;
  querySelector(selector: string): Shown | null;
  getBoundingClientRect(): Rect;
  dispatchEvent(event: unknown): boolean;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
}
declare const window: unknown;
declare const document: {
  createElement(tag: 'canvas'): Shown;
  createRange(): { selectNodeContents(node: unknown): void; getBoundingClientRect(): Rect };
  querySelector(selector: string): Shown | null;
  querySelectorAll(selector: string): ArrayLike<Shown> & Iterable<Shown>;
  getElementById(id: string): Shown | null;
};
declare const DataTransfer: new () => { items: { add(file: unknown): void } };
interface Rect {
  left: number;
  right: number;
  top: number;
  bottom: number;
  height: number;
}
interface Caption extends Shown {
  parentElement: Shown;
  getBoundingClientRect(): Rect;
}
declare function getComputedStyle(e: unknown): { overflowX: string; textOverflow: string; fontSize: string };
declare const DragEvent: new (type: string, init: object) => unknown;

const noBrowser =
  !fs.existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is missing (apt-get install chromium)` : false;

/** A Fashion-MNIST test image as a PNG file (real data, as a user would drop it). */
async function fashionPng(index: number): Promise<string> {
  const idx = readIdx(
    path.join(
      FASHION,
      fs.existsSync(path.join(FASHION, 't10k-images-idx3-ubyte'))
        ? 't10k-images-idx3-ubyte'
        : 't10k-images-idx3-ubyte.gz',
    ),
  );
  const [, h, w] = idx.dims;
  const file = path.join(tmp, `fashion-${index}.png`);
  await sharp(Buffer.from(idx.data.subarray(index * h * w, (index + 1) * h * w)), {
    raw: { width: w, height: h, channels: 1 },
  })
    .png()
    .toFile(file);
  return file;
}

function run(args: string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(process.execPath, [BIN, ...args], (e, _out, err) =>
      e ? reject(new Error(`${args[0]}: ${err}`)) : resolve(),
    ),
  );
}

/** Variance of a canvas's pixel values (0: blank). */
async function canvasVariance(page: Page, selector: string): Promise<number> {
  return page.$eval(selector, (c) => {
    const canvas = c as unknown as Shown;
    const d = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < d.length; i += 4) {
      const v = d[i] + d[i + 1] + d[i + 2];
      s += v;
      s2 += v * v;
    }
    const n = d.length / 4;
    return s2 / n - (s / n) ** 2;
  });
}

describe('the page in Chromium', { skip: noBrowser }, () => {
  const dir = path.join(tmp, 'browser');
  const runDir = path.join(dir, 'runs', 'run-a');
  const weights = path.join(dir, 'ckpt.safetensors');
  let app: ServeApp;
  let browser: Browser;
  let page: Page;
  let evaluation: ReturnType<typeof evaluationJson>;

  before(async () => {
    fs.mkdirSync(runDir, { recursive: true });
    const metrics = path.join(runDir, 'metrics.jsonl');
    await run([...TINY_TRAIN, '--save', weights, '--metrics', metrics]);
    const queriesFile = path.join(dir, 'queries.safetensors');
    const galleryFile = path.join(dir, 'gallery.safetensors');
    await Promise.all([
      run(['features', '--weights', weights, '--out', queriesFile, '--limit', '6']),
      run(['features', '--weights', weights, '--out', galleryFile, '--split', 'train', '--limit', '24']),
    ]);
    const evaluationFile = path.join(dir, 'eval.json');
    evaluation = evaluationJson([...FASHION_MNIST_CLASSES]);
    fs.writeFileSync(evaluationFile, JSON.stringify(evaluation));
    app = buildServer({
      engine: () => openEngine({ weights, runtime: 'libtorch', precision: 'fp32', threads: 1 }),
      maxBatch: 2,
      runsDir: path.join(dir, 'runs'),
      evaluationFile,
      galleryFile,
      queriesFile,
      log: () => undefined,
    });
    await app.serving.host.ready;
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage();
    await page.goto(url);
    await page.waitForSelector('body[data-ready="true"]');
  });

  after(async () => {
    await browser?.close();
    await app?.close();
  });

  /** What the server itself answers for an image: the page must show exactly this. */
  async function served(file: string) {
    const r = await app.inject({
      method: 'POST',
      url: '/v1/predict?k=5',
      payload: fs.readFileSync(file),
      headers: { 'content-type': 'image/png' },
    });
    return (r.json().top as { label: string; prob: number }[]).map((t) => [t.label, t.prob] as [string, number]);
  }

  async function shownTop5(): Promise<[string, number][]> {
    return page.$$eval('#top5 li', (lis) =>
      lis.map(
        (li) =>
          [li.querySelector('.bar-label')!.textContent!, Number((li as unknown as Shown).dataset.prob)] as [
            string,
            number,
          ],
      ),
    );
  }

  test('choosing and dropping a PNG shows its top-5 as the server computes it', async () => {
    const first = await fashionPng(0);
    await page.setInputFiles('#file', first);
    await page.waitForFunction(() => document.querySelectorAll('#top5 li').length === 5);
    const shown = await shownTop5();
    assert.deepEqual(shown, await served(first));
    const probs = shown.map(([, p]) => p);
    assert.ok(
      probs.every((p, i) => p > 0 && p <= 1 && (i === 0 || p <= probs[i - 1])),
      `${probs}`,
    );
    assert.ok(probs.reduce((a, b) => a + b, 0) <= 1 + 1e-6);
    assert.ok(shown.every(([label]) => FASHION_MNIST_CLASSES.includes(label)));
    assert.equal(new Set(shown.map(([l]) => l)).size, 5);
    assert.match((await page.textContent('#timings')) ?? '', /inference [\d.]+ ms/);

    const second = await fashionPng(1);
    const expected = await served(second);
    const bytes = fs.readFileSync(second).toString('base64');
    await page.evaluate((b64) => {
      const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const dt = new DataTransfer();
      dt.items.add(new File([data], 'dropped.png', { type: 'image/png' }));
      document
        .getElementById('drop')!
        .dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
    }, bytes);
    await page.waitForFunction(
      (p) => Number((document.querySelector('#top5 li') as unknown as Shown)?.dataset.prob) === p,
      expected[0][1],
    );
    assert.deepEqual(await shownTop5(), expected);
  });

  test('a refused upload hides the previous top-5 and shows why', async () => {
    await page.setInputFiles('#file', await fashionPng(3));
    await page.waitForFunction(() => document.querySelectorAll('#top5 li').length === 5);
    assert.equal(await page.isVisible('#top5'), true);
    assert.equal(await page.isVisible('#predict-error'), false);
    // Bytes that are no image, named and typed as a PNG: the server refuses them, and says so.
    const junk = Buffer.from('this is not an image, whatever its name says');
    const refused = await app.inject({
      method: 'POST',
      url: '/v1/predict?k=5',
      payload: junk,
      headers: { 'content-type': 'image/png' },
    });
    assert.equal(refused.statusCode, 415, refused.body);
    await page.setInputFiles('#file', { name: 'junk.png', mimeType: 'image/png', buffer: junk });
    await page.waitForSelector('#predict-error', { state: 'visible' });
    assert.equal(await page.textContent('#predict-error'), refused.json().error);
    // Not shown, however the style sheet lays the result box out (display: flex against the hidden attribute).
    assert.equal(await page.isVisible('#predict-result'), false);
    assert.equal(await page.isVisible('#top5'), false);
    assert.equal(await page.$$eval('#top5 li', (l) => l.length), 0, 'no earlier top-5 left to show');
    // A good upload after it: its top-5, and the error gone.
    const good = await fashionPng(0);
    await page.setInputFiles('#file', good);
    await page.waitForFunction(() => document.querySelectorAll('#top5 li').length === 5);
    assert.equal(await page.isVisible('#predict-error'), false);
    assert.equal(await page.isVisible('#top5'), true);
    assert.deepEqual(await shownTop5(), await served(good));
  });

  test('without --gallery: no failed request in the console, and no image box before an upload', async () => {
    const plain = buildServer({
      engine: () => openEngine({ weights, runtime: 'libtorch', precision: 'fp32', threads: 1 }),
      evaluationFile: path.join(dir, 'eval.json'),
      runsDir: path.join(dir, 'runs'),
      log: () => undefined,
    });
    const tab = await browser.newPage();
    try {
      await plain.serving.host.ready;
      const url = await plain.listen({ port: 0, host: '127.0.0.1' });
      const failed: string[] = [];
      tab.on('console', (m) => m.type() === 'error' && failed.push(m.text()));
      tab.on('response', (r) => r.status() >= 400 && failed.push(`${r.status()} ${r.url()}`));
      await tab.goto(url);
      await tab.waitForSelector('body[data-ready="true"]');
      assert.deepEqual(failed, []);
      assert.equal(await tab.isVisible('#tab-predict'), true);
      assert.equal(await tab.isVisible('#predict-result'), false, 'the result box waits for an upload');
      assert.equal(await tab.isVisible('#preview'), false, 'no broken image before an upload');
      await tab.setInputFiles('#file', await fashionPng(2));
      await tab.waitForFunction(() => document.querySelectorAll('#top5 li').length === 5);
      assert.equal(await tab.isVisible('#preview'), true);
    } finally {
      await tab.close();
      await plain.close();
    }
  });

  test('--cors: a page on a second origin calls the API it names; without --cors the browser blocks it', async () => {
    // A second origin: a tiny server on another port whose page calls the API with fetch.
    const other = http.createServer((_req, res) => res.end('<!doctype html><title>another origin</title>'));
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    const origin = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
    const open = buildServer({
      engine: () => openEngine({ weights, runtime: 'libtorch', precision: 'fp32', threads: 1 }),
      cors: [origin],
      log: () => undefined,
    });
    const tab = await browser.newPage();
    try {
      await open.serving.host.ready;
      const url = await open.listen({ port: 0, host: '127.0.0.1' });
      await tab.goto(origin);
      const png = fs.readFileSync(await fashionPng(2)).toString('base64');
      // A preflighted upload (Content-Type image/png) and a 404: both readable from the listed origin.
      const call = (base: string) =>
        tab.evaluate(
          async ([b, b64]) => {
            const data = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const out: string[] = [];
            for (const [u, init] of [
              ['/v1/predict?k=3', { method: 'POST', body: data, headers: { 'content-type': 'image/png' } }],
              ['/no/such/route', {}],
            ] as const)
              try {
                const r = await fetch(b + u, init);
                const j = (await r.json()) as { top?: unknown[]; code?: string };
                out.push(`${r.status} ${j.top ? `top ${j.top.length}` : j.code}`);
              } catch (e) {
                out.push(`blocked: ${(e as Error).name}`);
              }
            return out;
          },
          [base, png] as const,
        );
      assert.deepEqual(await call(url), ['200 top 3', '404 not_found']);
      // The suite's server has no --cors.
      assert.deepEqual(await call(`http://127.0.0.1:${(app.server.address() as AddressInfo).port}`), [
        'blocked: TypeError',
        'blocked: TypeError',
      ]);
    } finally {
      await tab.close();
      await open.close();
      other.close();
    }
  });

  test("the filter grid has the kernels' size and is not blank", async () => {
    await page.click('button[data-tab="filters"]');
    await page.waitForFunction(() => (document.getElementById('filters-canvas') as unknown as Shown).width > 300);
    const { shape } = (await app.inject('/v1/filters')).json();
    const [out, , kh, kw] = shape;
    assert.equal(out, 96, "alexnet-d2l's conv1 has 96 kernels");
    // 16 kernels a row, each enlarged to about 48 pixels, 2 pixels apart
    const scale = Math.floor(48 / kw);
    const size = await page.$eval('#filters-canvas', (c) => [
      (c as unknown as Shown).width,
      (c as unknown as Shown).height,
    ]);
    assert.deepEqual(size, [16 * (kw * scale + 2) + 2, Math.ceil(out / 16) * (kh * scale + 2) + 2]);
    assert.ok((await canvasVariance(page, '#filters-canvas')) > 0);
    // RGB kernels are drawn in colour, each normalised over its own three channels: kernel 0 is red where R is at
    // its maximum, kernel 1 (equal channels) gray. Kernels of 2 × 2 are enlarged 24 times, 2 pixels apart.
    const pixels = await page.evaluate(() => {
      const views = (window as unknown as { AlexnetViews: { drawFilters(c: unknown, f: object): void } }).AlexnetViews;
      const canvas = document.createElement('canvas');
      const data = [0, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 3, 1, 1, 1, 3, 1, 1, 1, 3];
      views.drawFilters(canvas, { shape: [2, 3, 2, 2], data });
      const at = (x: number, y: number) => [...canvas.getContext('2d').getImageData(x, y, 1, 1).data];
      return {
        size: [canvas.width, canvas.height],
        at: [at(3, 3), at(2 + 24 + 3, 3), at(52 + 3, 3), at(52 + 24 + 3, 2 + 24 + 3)],
      };
    });
    assert.deepEqual(pixels.size, [2 * (2 * 24 + 2) + 2, 2 * 24 + 2 + 2]);
    assert.deepEqual(pixels.at, [
      [0, 0, 0, 255],
      [255, 0, 0, 255],
      [0, 0, 0, 255],
      [255, 255, 255, 255],
    ]);
  });

  test('feature maps show every conv layer of the chosen image', async () => {
    await page.click('button[data-tab="maps"]');
    const r = await app.inject({
      method: 'POST',
      url: '/v1/feature-maps',
      payload: fs.readFileSync(await fashionPng(1)),
      headers: { 'content-type': 'image/png' },
    });
    const layers = r.json().layers as { layer: string; channels: number }[];
    assert.equal(layers.length, 5, 'five convolutions');
    await page.waitForFunction((n) => document.querySelectorAll('#maps canvas').length === n, layers.length);
    const shown = await page.$$eval('#maps canvas', (cs) => cs.map((c) => (c as unknown as Shown).dataset.layer));
    assert.deepEqual(
      shown,
      layers.map((l) => l.layer),
    );
    assert.ok((await canvasVariance(page, '#maps canvas')) > 0);
  });

  test('neighbours show each query with its k nearest training images', async () => {
    await page.click('button[data-tab="neighbours"]');
    await page.waitForSelector('.neighbour-row[data-query="0"] figure.neighbour');
    const expected = (await app.inject('/v1/neighbours?query=0&k=8')).json();
    const srcs = await page.$$eval('.neighbour-row[data-query="0"] img', (imgs) =>
      imgs.map((i) => (i as unknown as Shown).getAttribute('src')),
    );
    assert.deepEqual(srcs, [
      '/v1/images/queries/0',
      ...expected.neighbours.map((n: { index: number }) => `/v1/images/gallery/${n.index}`),
    ]);
    assert.equal(srcs.length, 1 + 8);
    await page.waitForFunction(() =>
      [...document.querySelectorAll('.neighbour-row[data-query="0"] img')].every(
        (i) => (i as unknown as Shown).naturalWidth === 28,
      ),
    );
  });

  test('a neighbour image the server cannot show is a placeholder saying why', async () => {
    const why = 'the gallery image shirt.png (row 3) is missing: it was moved or deleted after alexnet features ran';
    const fresh = await browser.newPage();
    try {
      await fresh.route('**/v1/images/queries/0', (r) =>
        r.fulfill({
          status: 404,
          contentType: 'application/json',
          body: JSON.stringify({ error: why, code: 'not_found' }),
        }),
      );
      await fresh.goto(new URL(page.url()).origin);
      await fresh.click('button[data-tab="neighbours"]');
      const box = '.neighbour-row[data-query="0"] figure.query .missing-image';
      await fresh.waitForSelector(box);
      assert.equal(await fresh.textContent(box), 'image unavailable');
      await fresh.waitForFunction((sel) => document.querySelector(sel)?.getAttribute('title') !== null, box);
      assert.equal(await fresh.getAttribute(box, 'title'), why);
      assert.equal(await fresh.$$eval('.neighbour-row[data-query="0"] figure.neighbour img', (i) => i.length), 8);
    } finally {
      await fresh.close();
    }
  });

  test('long class names in the neighbours captions end in an ellipsis within their thumbnail, whole in a tooltip', async () => {
    const fresh = await browser.newPage();
    // 60 characters, no space to wrap at; each class its own, so that the captions differ.
    const long = (name: string) => `${name}-`.padEnd(60, 'abcdefghij').slice(0, 60);
    try {
      await fresh.route('**/v1/neighbours?*', async (r) => {
        const body = (await (await r.fetch()).json()) as {
          query: { class: string };
          neighbours: { class: string }[];
        };
        body.query.class = long(body.query.class);
        for (const n of body.neighbours) n.class = long(n.class);
        await r.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(body) });
      });
      await fresh.goto(new URL(page.url()).origin);
      await fresh.click('button[data-tab="neighbours"]');
      await fresh.waitForSelector('.neighbour-row[data-query="0"] figure.neighbour');
      const captions = await fresh.$$eval('.neighbour-row[data-query="0"] figcaption', (cs) =>
        cs.map((c) => {
          const e = c as unknown as Caption;
          const style = getComputedStyle(e);
          const range = document.createRange();
          range.selectNodeContents(e);
          const box = (r: Rect) => ({ left: r.left, right: r.right, top: r.top, bottom: r.bottom });
          return {
            text: e.textContent,
            title: e.getAttribute('title'),
            box: box(e.getBoundingClientRect()),
            ink: box(range.getBoundingClientRect()),
            image: box(e.parentElement.querySelector('img')!.getBoundingClientRect()),
            clipped: style.overflowX === 'hidden' || style.overflowX === 'clip',
            ellipsis: style.textOverflow === 'ellipsis',
            fontSize: parseFloat(style.fontSize),
          };
        }),
      );
      assert.equal(captions.length, 1 + 8);
      for (const c of captions) {
        assert.equal(c.text!.split(' · ')[0].length, 60, 'the whole name in the text');
        assert.equal(c.title, c.text, 'and in the tooltip');
        assert.ok(c.ellipsis && c.clipped, `${c.text}: cut with an ellipsis`);
        assert.ok(c.box.left >= c.image.left - 0.5 && c.box.right <= c.image.right + 0.5, "within the image's width");
        assert.ok(c.box.bottom - c.box.top < 2 * c.fontSize, `${c.text}: on one line`);
      }
      // What shows of each caption: its box where it clips, else all of its text. No two overlap.
      const seen = captions.map((c) => (c.clipped ? c.box : c.ink));
      for (let i = 0; i < seen.length; i++)
        for (let j = i + 1; j < seen.length; j++) {
          const [a, b] = [seen[i], seen[j]];
          const apart =
            a.right <= b.left + 0.5 || b.right <= a.left + 0.5 || a.bottom <= b.top + 0.5 || b.bottom <= a.top + 0.5;
          assert.ok(apart, `captions ${i} and ${j} overlap: ${JSON.stringify([a, b])}`);
        }
    } finally {
      await fresh.close();
    }
  });

  test('the confusion matrix toggles to row-normalised fractions', async () => {
    await page.click('button[data-tab="evaluation"]');
    const cell = 'td[data-true="3"][data-pred="5"]';
    await page.waitForSelector(cell);
    const row = evaluation.confusion[3];
    assert.equal(await page.textContent(cell), String(row[5]));
    assert.match(
      (await page.getAttribute(cell, 'title')) ?? '',
      new RegExp(`: ${row[5]} of ${row.reduce((a, b) => a + b, 0)}`),
    );
    await page.click('#evaluation input.normalise');
    const fraction = (row[5] / row.reduce((a, b) => a + b, 0)).toFixed(2);
    await page.waitForFunction(([s, f]) => document.querySelector(s)?.textContent === f, [cell, fraction] as const);
    assert.equal(await page.$$eval('.per-class .bar-row', (r) => r.length), 10);
  });

  test('a server without a model shows the training tab only', async () => {
    const runsOnly = buildServer({ runsDir: path.join(dir, 'runs'), log: () => undefined });
    const other = await browser.newPage();
    try {
      await other.goto(await runsOnly.listen({ port: 0, host: '127.0.0.1' }));
      await other.waitForSelector('body[data-ready="true"]');
      const visible = await other.$$eval('#tabs button', (bs) =>
        bs.filter((b) => !(b as unknown as { hidden: boolean }).hidden).map((b) => b.textContent),
      );
      assert.deepEqual(visible, ['Training']);
      assert.match((await other.textContent('#model-info')) ?? '', /no model loaded/);
    } finally {
      await other.close();
      await runsOnly.close();
    }
  });

  test("a training run's chart grows as lines are appended to its metrics file", async (t) => {
    if (!fs.existsSync(path.resolve(__dirname, '../../web/curves.js')))
      return t.skip('web/curves.js (the training view) is not written yet');
    await page.click('button[data-tab="training"]');
    const records = () => page.$eval('#training-view', (e) => Number(e.getAttribute('data-records') ?? 0));
    await page.waitForFunction(
      () => Number(document.getElementById('training-view')!.getAttribute('data-records')) >= 1,
    );
    const before = await records();
    const metrics = path.join(runDir, 'metrics.jsonl');
    const last = JSON.parse(fs.readFileSync(metrics, 'utf8').trim().split('\n').pop()!);
    for (const epoch of [2, 3])
      fs.appendFileSync(metrics, JSON.stringify({ ...last, epoch, train_loss: 2 / epoch }) + '\n');
    await page.waitForFunction(
      (n) => Number(document.getElementById('training-view')!.getAttribute('data-records')) >= n,
      before + 2,
    );
    assert.ok((await page.$$('#training-view canvas')).length > 0, 'uPlot drew a chart');
  });
});
