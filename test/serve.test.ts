import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { buildServer, ServeApp, ServerOptions } from '../src/serve/app';
import { chooseEngine, openEngine } from '../src/serve/engine';
import { CODES } from '../src/serve/errors';
import { Engine } from '../src/serve/types';
import { parseCpu } from '../src/runtime/cpu';
import { writeEmbeddings } from '../src/persist/embeddings';
import { tensor } from '../src/tensor/tensor';
import { BIN, cli, TINY_TRAIN } from './helpers/cli';
import { lines } from './helpers/lines';

// ---- a fake engine whose logits depend on the input: one-hot at the image's mean pixel value ----------------------

const LEVELS = Array.from({ length: 256 }, (_, i) => `v${i}`);

interface Fake extends Engine {
  batches: number[];
  /** Makes the next forward passes wait until the returned function is called. */
  hold(): () => void;
}

function fakeEngine(name = 'fake', warmDelay = 0): Fake {
  let gate: Promise<void> | undefined;
  let first = true;
  const batches: number[] = [];
  const geometry = { channels: 1, height: 8, width: 8 };
  return {
    batches,
    record: {
      model: 'fake-net',
      modelOptions: {},
      classes: LEVELS,
      preprocess: { inputSize: [8, 8], resize: 'bilinear', mean: [], std: [] },
    },
    runtime: 'libtorch',
    geometry,
    card: {
      model: 'fake-net',
      weights: name,
      classes: LEVELS,
      geometry,
      preprocessing: { mean: [], std: [] },
      runtime: 'libtorch',
      precision: 'fp32',
    },
    hold() {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
    async logits(pixels: Uint8Array, n: number): Promise<Float32Array> {
      if (first && warmDelay) await new Promise((r) => setTimeout(r, warmDelay));
      first = false;
      batches.push(n);
      if (gate) await gate;
      const out = new Float32Array(n * 256);
      for (let i = 0; i < n; i++) {
        let sum = 0;
        for (let j = 0; j < 64; j++) sum += pixels[i * 64 + j];
        out[i * 256 + Math.round(sum / 64)] = 20;
      }
      return out;
    },
    async close() {},
  };
}

async function fakeServer(o: Partial<ServerOptions> = {}, engine = fakeEngine()): Promise<ServeApp> {
  const app = buildServer({ engine: async () => engine, log: () => undefined, ...o });
  await app.serving.host.ready;
  engine.batches.length = 0; // the warm-up's
  return app;
}

const gray = (level: number, format: 'png' | 'jpeg' | 'webp' | 'gif' | 'tiff' = 'png', size = 16) =>
  sharp({ create: { width: size, height: size, channels: 3, background: { r: level, g: level, b: level } } })
    .toFormat(format)
    .toBuffer();

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE((zlib as unknown as { crc32(b: Buffer): number }).crc32(body) >>> 0);
  return Buffer.concat([len, body, crc]);
}

/** A PNG whose header claims width × height but whose data holds a few rows only (an image bomb's shape). */
function pngClaiming(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 0, 0, 0, 0], 8);
  const rows = zlib.deflateSync(Buffer.alloc(4 * (width + 1)));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', rows),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const post = (app: ServeApp, body: Buffer | string, type = 'image/png', url = '/v1/predict') =>
  app.inject({ method: 'POST', url, payload: body, headers: { 'content-type': type } });

function multipart(field: string, data: Buffer): { payload: Buffer; headers: Record<string, string> } {
  const b = 'xxBOUNDARYxx';
  const payload = Buffer.concat([
    Buffer.from(`--${b}\r\nContent-Disposition: form-data; name="${field}"; filename="x.png"\r\n`),
    Buffer.from('Content-Type: image/png\r\n\r\n'),
    data,
    Buffer.from(`\r\n--${b}--\r\n`),
  ]);
  return { payload, headers: { 'content-type': `multipart/form-data; boundary=${b}` } };
}

// ---- HTTP without sockets ------------------------------------------------------------------------------------------

test('a raw or multipart PNG is classified, each format of the allow-list is accepted and k limits the answer', async () => {
  const app = await fakeServer();
  try {
    const r = await post(app, await gray(77), 'image/png', '/v1/predict?k=3');
    assert.equal(r.statusCode, 200, r.body);
    const j = r.json();
    assert.equal(j.model, 'fake-net');
    assert.equal(j.top.length, 3);
    assert.deepEqual({ index: j.top[0].index, label: j.top[0].label }, { index: 77, label: 'v77' });
    assert.ok(j.top[0].prob > 0.9 && j.top[0].prob <= 1);
    for (const k of ['decode', 'queue', 'inference', 'total']) assert.equal(typeof j.timing_ms[k], 'number');
    const m = multipart('image', await gray(140));
    const r2 = await app.inject({ method: 'POST', url: '/v1/predict', ...m });
    assert.equal(r2.statusCode, 200, r2.body);
    assert.equal(r2.json().top[0].index, 140);
    assert.equal(r2.json().top.length, 5);
    const wrongField = await app.inject({ method: 'POST', url: '/v1/predict', ...multipart('file', await gray(1)) });
    assert.equal(wrongField.statusCode, 400);
    assert.equal(wrongField.json().code, 'missing_image');
    // Lossless formats keep the level exactly; JPEG and WebP within a step or two.
    for (const f of ['gif', 'tiff', 'jpeg', 'webp'] as const) {
      const a = await post(app, await gray(200, f), `image/${f}`);
      assert.equal(a.statusCode, 200, `${f}: ${a.body}`);
      assert.ok(Math.abs(a.json().top[0].index - 200) <= 2, `${f}: ${a.json().top[0].index}`);
    }
    // 16-bit, CMYK and grayscale images are normalised as predict does (CMYK through its colour profile).
    const base = () =>
      sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 120, g: 120, b: 120 } } });
    for (const [what, b, tolerance] of [
      ['16-bit PNG', await base().toColourspace('rgb16').png().toBuffer(), 2],
      ['CMYK JPEG', await base().toColourspace('cmyk').jpeg().toBuffer(), 16],
      ['grayscale PNG', await base().toColourspace('b-w').png().toBuffer(), 0],
    ] as const) {
      const a = await post(app, b, 'application/octet-stream');
      assert.equal(a.statusCode, 200, `${what}: ${a.body}`);
      assert.ok(Math.abs(a.json().top[0].index - 120) <= tolerance, `${what}: ${a.json().top[0].index}`);
    }
    // Alpha is flattened on white as predict does: a fully transparent image reads as white.
    const clear = await sharp({
      create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } },
    })
      .png()
      .toBuffer();
    assert.equal((await post(app, clear, 'application/octet-stream')).json().top[0].index, 255);
    const badK = await post(app, await gray(1), 'image/png', '/v1/predict?k=zero');
    assert.deepEqual([badK.statusCode, badK.json().code], [400, 'bad_k']);
  } finally {
    await app.close();
  }
});

/** An embeddings file of `rows` rows of 2 numbers (row i at (i, 0)), for the neighbours routes. */
function embeddingsFile(file: string, rows: number): string {
  const features = tensor(
    Float32Array.from({ length: rows * 2 }, (_, i) => (i % 2 ? 0 : i / 2)),
    [rows, 2],
  );
  const labels = tensor(
    BigInt64Array.from({ length: rows }, () => 0n),
    [rows],
  );
  writeEmbeddings(file, {
    ...{ features, labels, files: Array.from({ length: rows }, (_, i) => `val:${i}`), classes: LEVELS },
    ...{ model: 'fake-net', layer: 'classifier.4', weights: 'fake', dataset: 'fashion-mnist', split: 'val' },
  });
  features.dispose();
  labels.dispose();
  return file;
}

test('one rule for k on every route: an integer from 1 to the maximum, else 400 bad_k worded the same', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-k-'));
  const queriesFile = embeddingsFile(path.join(dir, 'q.safetensors'), 1);
  const app = await fakeServer({ queriesFile, galleryFile: embeddingsFile(path.join(dir, 'g.safetensors'), 70) });
  const small = await fakeServer({ queriesFile, galleryFile: embeddingsFile(path.join(dir, 's.safetensors'), 3) });
  try {
    const img = await gray(40);
    const predict = (k: string) => post(app, img, 'image/png', `/v1/predict?k=${k}`);
    const classify = (k: unknown) =>
      app.inject({
        method: 'POST',
        url: '/v2/models/fake-net/infer',
        payload: {
          inputs: [{ name: 'image_bytes', shape: [1], datatype: 'BYTES', data: [img.toString('base64')] }],
          outputs: [{ name: 'probabilities', parameters: { classification: k } }],
        },
      });
    // The largest k is allowed everywhere, and answered in full.
    assert.equal((await predict('256')).json().top.length, 256);
    const all = await classify(256);
    assert.deepEqual(all.json().outputs?.[0].shape, [1, 256], all.body);
    assert.equal((await app.inject('/v1/neighbours?query=0&k=64')).json().neighbours.length, 64);
    assert.equal((await small.inject('/v1/neighbours?query=0&k=3')).json().neighbours.length, 3);
    const refusals: [string, Promise<{ statusCode: number; json(): { code: string; error: string } }>][] = [
      ["k must be an integer from 1 to 256, got '257': the model has 256 classes", predict('257')],
      ["k must be an integer from 1 to 256, got '0': the model has 256 classes", predict('0')],
      ["k must be an integer from 1 to 256, got '2.5': the model has 256 classes", predict('2.5')],
      ["k must be an integer from 1 to 256, got '1e1': the model has 256 classes", predict('1e1')],
      ["k must be an integer from 1 to 256, got '-1': the model has 256 classes", predict('-1')],
      ['classification must be an integer from 1 to 256, got 257: the model has 256 classes', classify(257)],
      ['classification must be an integer from 1 to 256, got 0: the model has 256 classes', classify(0)],
      ['classification must be an integer from 1 to 256, got 1.5: the model has 256 classes', classify(1.5)],
      [
        "k must be an integer from 1 to 64, got '65': at most 64 neighbours are answered per query",
        app.inject('/v1/neighbours?query=0&k=65'),
      ],
      [
        "k must be an integer from 1 to 64, got '0': at most 64 neighbours are answered per query",
        app.inject('/v1/neighbours?query=0&k=0'),
      ],
      [
        "k must be an integer from 1 to 3, got '4': the gallery has 3 images",
        small.inject('/v1/neighbours?query=0&k=4'),
      ],
    ];
    for (const [error, answer] of refusals) {
      const r = await answer;
      assert.deepEqual([r.statusCode, r.json().code, r.json().error], [400, 'bad_k', error]);
    }
  } finally {
    await app.close();
    await small.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('bad uploads get 400, 413 and 415 with a JSON code naming the limit, never a 5xx', async () => {
  const app = await fakeServer({ maxUploadMb: 0.05, maxPixels: 1_000_000 });
  try {
    const good = await gray(9, 'png', 64);
    const cases: [string, Buffer | string, string, number, string][] = [
      ['truncated PNG', good.subarray(0, good.length - 30), 'image/png', 400, 'corrupt_image'],
      [
        'garbage after a PNG signature',
        Buffer.concat([good.subarray(0, 8), Buffer.alloc(200, 7)]),
        'image/png',
        400,
        'corrupt_image',
      ],
      ['empty body', Buffer.alloc(0), 'image/png', 400, 'empty_body'],
      ['over --max-upload-mb', Buffer.concat([good, Buffer.alloc(60_000)]), 'image/png', 413, 'too_large'],
      ['a 20000×20000 header', pngClaiming(20_000, 20_000), 'image/png', 413, 'too_many_pixels'],
      [
        'SVG',
        '<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"/>',
        'image/svg+xml',
        415,
        'unsupported_format',
      ],
      ['text as image/png', 'hello, I am not a picture', 'image/png', 415, 'unsupported_format'],
      ['text/plain', 'hello', 'text/plain', 415, 'unsupported_media_type'],
      ['text/html', '<p>hi</p>', 'text/html', 415, 'unsupported_media_type'],
      ['BMP', Buffer.concat([Buffer.from('BM'), Buffer.alloc(100)]), 'image/bmp', 415, 'unsupported_format'],
    ];
    for (const [what, body, type, status, code] of cases) {
      const r = await post(app, body, type);
      assert.equal(r.statusCode, status, `${what}: ${r.body}`);
      assert.equal(r.json().code, code, what);
      assert.match(r.json().error, /\S/, what);
    }
    assert.match((await post(app, pngClaiming(20_000, 20_000))).json().error, /1,000,000 pixels.*20000×20000/);
    const big = await app.inject({
      method: 'POST',
      url: '/v1/predict',
      ...multipart('image', Buffer.concat([good, Buffer.alloc(60_000)])),
    });
    assert.deepEqual([big.statusCode, big.json().code], [413, 'too_large']);
  } finally {
    await app.close();
  }
});

test('an upload is bytes whatever its Content-Type says: a JPEG as text/plain is never mangled to UTF-8', async () => {
  const jpeg = await gray(90, 'jpeg');
  const insight = { featureMaps: async () => [], filters: async () => undefined, embedding: async () => undefined };
  const app = await fakeServer({}, Object.assign(fakeEngine(), { insight }) as unknown as Fake);
  try {
    const taken = 'send the image as the request body (Content-Type image/* or application/octet-stream)';
    // The server's own routes take the types they document and name them, with the type received.
    for (const [url, type, error] of [
      ['/v1/predict', 'text/plain', `${taken} or as the multipart form field 'image'; got 'text/plain'`],
      ['/v1/predict', 'text/plain; charset=utf-8', `${taken} or as the multipart form field 'image'; got 'text/plain'`],
      ['/v1/predict', 'text/html', `${taken} or as the multipart form field 'image'; got 'text/html'`],
      ['/v1/predict', 'Text/HTML; charset=utf-8', `${taken} or as the multipart form field 'image'; got 'text/html'`],
      ['/v1/feature-maps', 'text/plain', `${taken}; got 'text/plain'`],
      ['/v1/feature-maps', 'multipart/form-data; boundary=x', `${taken}; got 'multipart/form-data'`],
    ]) {
      const r = await post(app, jpeg, type, url);
      assert.deepEqual([r.statusCode, r.json().code, r.json().error], [415, 'unsupported_media_type', error], url);
    }
    // TorchServe's and the Open Inference Protocol's routes take any type and judge the bytes: the JPEG is read.
    for (const url of ['/predictions/fake-net', '/v2/models/fake-net/infer']) {
      const r = await post(app, jpeg, 'text/plain', url);
      assert.equal(r.statusCode, 200, `${url}: ${r.body}`);
      const j = r.json();
      // TorchServe's answer lists the top 5 best first; the protocol's, every class's probability in class order.
      const best = url.startsWith('/v2')
        ? j.outputs[0].data.indexOf(Math.max(...j.outputs[0].data))
        : Number(Object.keys(j)[0].slice(1));
      assert.ok(Math.abs(best - 90) <= 2, `${url}: ${r.body.slice(0, 200)}`);
    }
    // The image types and octet-stream are the upload, on both of the server's own routes.
    for (const url of ['/v1/predict', '/v1/feature-maps'])
      for (const type of ['image/jpeg', 'application/octet-stream'])
        assert.equal((await post(app, jpeg, type, url)).statusCode, 200, `${url} ${type}`);
  } finally {
    await app.close();
  }
});

test('unknown routes are 404 JSON, wrong methods 405, and the protocol extras answer', async () => {
  const app = await fakeServer();
  try {
    const nf = await app.inject({ method: 'GET', url: '/v1/nothing' });
    assert.deepEqual([nf.statusCode, nf.json().code], [404, 'not_found']);
    const na = await app.inject({ method: 'GET', url: '/v1/predict' });
    assert.deepEqual([na.statusCode, na.json().code, na.headers.allow], [405, 'method_not_allowed', 'POST']);
    const models = (await app.inject({ method: 'GET', url: '/v1/models' })).json();
    assert.equal(models.classes.length, 256);
    assert.deepEqual(models.input, { channels: 1, height: 8, width: 8 });
    assert.deepEqual(models.batching, { max_batch: 8, max_delay_ms: 5 });
    assert.equal(models.limits.max_upload_mb, 10);
    assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/ping' })).json().status, 'Healthy');
    assert.equal((await app.inject({ method: 'GET', url: '/v2/health/live' })).statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/v2/health/ready' })).statusCode, 200);
    assert.equal((await app.inject({ method: 'GET', url: '/v2/models/fake-net' })).json().name, 'fake-net');
    assert.equal((await app.inject({ method: 'GET', url: '/v2/models/other' })).statusCode, 404);
    const ts = await post(app, await gray(33), 'image/png', '/predictions/fake-net');
    assert.ok(ts.json().v33 > 0.9, ts.body);
    const v2 = (await post(app, await gray(44), 'application/octet-stream', '/v2/models/fake-net/infer')).json();
    assert.equal(v2.outputs[0].data.length, 256);
    assert.ok(v2.outputs[0].data[44] > 0.9);
  } finally {
    await app.close();
  }
});

test('every error code is in the README with its status, and 405s come from the routes registered', async () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const documented = Object.fromEntries(
    [...readme.matchAll(/^\| (\d{3}) \| `([a-z_]+)` \|/gm)].map((m) => [m[2], Number(m[1])]),
  );
  assert.deepEqual(documented, Object.fromEntries(Object.entries(CODES).map(([code, [status]]) => [code, status])));
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-405-'));
  const app = await fakeServer({ runsDir: runs });
  try {
    for (const [method, url, allow] of [
      ['PUT', '/v2/models/fake-net/infer', 'POST'],
      ['DELETE', '/predictions/anything', 'POST, PUT'],
      ['POST', '/v1/filters', 'GET, HEAD'],
      ['POST', '/v1/runs', 'GET, HEAD'],
      ['POST', '/v1/runs/some-run/events', 'GET, HEAD'],
      ['POST', '/readyz?x=1', 'GET, HEAD'],
      ['GET', '/v1/reload', 'POST'],
    ] as const) {
      const r = await app.inject({ method, url });
      assert.deepEqual([r.statusCode, r.json().code, r.headers.allow], [405, 'method_not_allowed', allow], url);
    }
    for (const url of ['/v2/models/fake-net/infer/more', '/predictions', '/v1/runs/a/b/events'])
      assert.deepEqual([(await app.inject({ method: 'GET', url })).statusCode], [404], url);
  } finally {
    await app.close();
    fs.rmSync(runs, { recursive: true, force: true });
  }
});

/** One request over a real socket: the status, the headers and the body as text. */
function httpRequest(
  port: number,
  o: { method: string; path: string; headers: Record<string, string | number>; body: Buffer | string },
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: o.method, path: o.path, headers: o.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

test('a malformed multipart body is a 400 on every upload route, over a real socket, never a 500', async () => {
  const logged: string[] = [];
  const app = await fakeServer({ log: (l) => logged.push(l) });
  try {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const b = 'xxBOUNDARYxx';
    const head = `--${b}\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n`;
    const png = await gray(61);
    const cases: [string, string, Buffer][] = [
      ['no boundary', 'multipart/form-data', Buffer.concat([Buffer.from(head), png, Buffer.from(`\r\n--${b}--\r\n`)])],
      ['the body cut short', `multipart/form-data; boundary=${b}`, Buffer.concat([Buffer.from(head), png])],
      ['no part at all', `multipart/form-data; boundary=${b}`, Buffer.from('not a multipart body')],
      ['a part header cut short', `multipart/form-data; boundary=${b}`, Buffer.from(head.slice(0, 50))],
    ];
    for (const url of ['/v1/predict', '/predictions/fake-net', '/v2/models/fake-net/infer'])
      for (const [what, type, body] of cases) {
        const r = await httpRequest(port, {
          method: 'POST',
          path: url,
          headers: { 'content-type': type, 'content-length': body.length },
          body,
        });
        assert.equal(r.status, 400, `${url}, ${what}: ${r.body}`);
        assert.equal(JSON.parse(r.body).code, 'bad_multipart', `${url}, ${what}`);
        assert.match(JSON.parse(r.body).error, /multipart body cannot be read/);
      }
    assert.deepEqual(logged, [], 'no internal error was logged');
    // The same form whole is answered.
    const good = multipart('image', png);
    const ok = await httpRequest(port, {
      method: 'POST',
      path: '/v1/predict',
      headers: good.headers,
      body: good.payload,
    });
    assert.equal(JSON.parse(ok.body).top[0].index, 61);
  } finally {
    await app.close();
  }
});

/**
 * Sends an upload over a raw socket as a client that writes its whole body (and, with `expect`, first waits up to
 * 1 s for an interim answer, as curl does); resolves with every byte received and the socket's error, if any.
 */
function rawUpload(port: number, body: Buffer, o: { expect?: boolean; limitBytes?: number } = {}) {
  return new Promise<{ received: string; error?: string }>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let received = '';
    let error: string | undefined;
    s.on('data', (d: Buffer) => (received += d.toString('latin1')));
    s.on('error', (e: NodeJS.ErrnoException) => (error = e.code));
    s.on('close', () => resolve({ received, error }));
    const expect = o.expect ? 'Expect: 100-continue\r\n' : '';
    s.write(
      `POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\nConnection: close\r\n` +
        `Content-Length: ${body.length}\r\n${expect}\r\n`,
    );
    let sent = 0;
    const pump = () => {
      while (sent < body.length && !s.destroyed) {
        const next = body.subarray(sent, sent + 65536);
        sent += next.length;
        if (!s.write(next)) return void s.once('drain', pump);
      }
    };
    if (!o.expect) return pump();
    const wait = setTimeout(pump, 1000);
    s.once('data', () => {
      clearTimeout(wait);
      if (received.startsWith('HTTP/1.1 100 ')) pump();
    });
  });
}

test('an upload over the limit is 413 before its body is read, no 100 Continue, and the client reads it: 20 of 20', async () => {
  const app = await fakeServer();
  try {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const big = Buffer.alloc(11_000_000, 0xff); // 11 MB against the default 10 MiB
    for (const expect of [false, true])
      for (let i = 0; i < 20; i++) {
        const r = await rawUpload(port, big, { expect });
        const what = `${expect ? 'with' : 'without'} Expect, try ${i + 1}`;
        assert.equal(r.error, undefined, `${what}: the connection was reset (${r.received.slice(0, 80)})`);
        assert.match(r.received, /^HTTP\/1\.1 413 /, what);
        assert.doesNotMatch(r.received, /100 Continue/, what);
        assert.match(r.received, /connection: close/i, what);
        const body = JSON.parse(r.received.slice(r.received.indexOf('\r\n\r\n') + 4));
        assert.deepEqual(body, { error: 'uploads are at most 10 MiB (--max-upload-mb)', code: 'too_large' }, what);
      }
    // An upload within the limit gets its 100 Continue, then its answer; no refused upload took an admission place.
    const ok = await rawUpload(port, await gray(90), { expect: true });
    assert.match(ok.received, /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
    assert.equal(app.serving.inflight, 0);
    assert.match(
      (await app.inject({ method: 'GET', url: '/metrics' })).body,
      /alexnet_rejections_total\{reason="too_large"\} 40/,
    );
  } finally {
    await app.close();
  }
});

test('N concurrent requests run in ⌈N/max-batch⌉ forward passes and each answer is its own image', async () => {
  const engine = fakeEngine();
  const app = await fakeServer({ maxBatch: 8, maxDelayMs: 400 }, engine);
  try {
    const levels = Array.from({ length: 20 }, (_, i) => 10 + i * 11);
    const images = await Promise.all(levels.map((l) => gray(l)));
    const answers = await Promise.all(images.map((b) => post(app, b)));
    assert.deepEqual(
      answers.map((a) => a.json().top[0].index),
      levels,
    );
    assert.deepEqual(engine.batches, [8, 8, 4]);
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(metrics, /alexnet_batch_size_count 3/);
    assert.match(metrics, /alexnet_http_requests_total\{route="\/v1\/predict",method="POST",status="200"\} 20/);
  } finally {
    await app.close();
  }
});

test('an engine error fails only its own batch; a dead engine fails readiness', async () => {
  const engine = fakeEngine();
  const app = await fakeServer({ maxDelayMs: 0 }, engine);
  try {
    const logits = engine.logits.bind(engine);
    engine.logits = async () => {
      throw new Error('the engine broke');
    };
    const r = await post(app, await gray(3));
    assert.deepEqual([r.statusCode, r.json().code], [500, 'internal']);
    engine.logits = logits;
    assert.equal((await post(app, await gray(3))).statusCode, 200);
    // An engine that can no longer run (its worker died) fails readiness.
    (engine as { failure?: Error }).failure = new Error('the engine worker stopped: exit code 1');
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    assert.deepEqual([ready.statusCode, ready.json().status], [503, 'failed']);
    assert.match(ready.json().error, /worker stopped/);
  } finally {
    await app.close();
  }
});

test('over --max-inflight the answer is 503 with Retry-After at once; metrics count it', async () => {
  const engine = fakeEngine();
  const app = await fakeServer({ maxInflight: 2, maxDelayMs: 0, maxBatch: 1 }, engine);
  try {
    const release = engine.hold();
    const img = await gray(5);
    const held = [post(app, img), post(app, img)];
    while (app.serving.inflight < 2) await new Promise((r) => setTimeout(r, 5));
    const t = performance.now();
    const r = await post(app, img);
    assert.ok(performance.now() - t < 500);
    assert.deepEqual([r.statusCode, r.json().code, r.headers['retry-after']], [503, 'overloaded', '1']);
    assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'health is not admitted');
    release();
    for (const h of await Promise.all(held)) assert.equal(h.statusCode, 200);
    assert.equal(app.serving.inflight, 0);
    const m = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.match(m, /alexnet_rejections_total\{reason="overloaded"\} 1/);
    assert.match(m, /alexnet_inflight_requests 0/);
    assert.match(m, /alexnet_request_duration_seconds_count\{route="\/v1\/predict"\} 3/);
  } finally {
    await app.close();
  }
});

test('an answer later than --request-timeout-ms is a 503 with Retry-After, and the server goes on', async () => {
  const engine = fakeEngine();
  const app = await fakeServer({ requestTimeoutMs: 150, maxDelayMs: 0 }, engine);
  try {
    const release = engine.hold();
    const r = await post(app, await gray(8));
    assert.deepEqual([r.statusCode, r.json().code, r.headers['retry-after']], [503, 'timeout', '1']);
    release();
    assert.equal((await post(app, await gray(8))).json().top[0].index, 8);
  } finally {
    await app.close();
  }
});

test('/readyz is 503 while loading and warming, 200 when warm, 503 again while draining', async () => {
  const engine = fakeEngine('slow', 300);
  const app = buildServer({ engine: async () => engine, log: () => undefined });
  try {
    const early = await app.inject({ method: 'GET', url: '/readyz' });
    assert.deepEqual([early.statusCode, early.json().status], [503, 'loading']);
    const p = await post(app, await gray(1));
    assert.deepEqual([p.statusCode, p.json().code], [503, 'not_ready']);
    await app.serving.host.ready;
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    assert.deepEqual([ready.statusCode, ready.json()], [200, { status: 'ready', model: 'fake-net' }]);
    app.serving.beginDrain();
    const late = await app.inject({ method: 'GET', url: '/readyz' });
    assert.deepEqual([late.statusCode, late.json().status], [503, 'draining']);
    assert.equal((await app.inject({ method: 'GET', url: '/v2/health/ready' })).statusCode, 503);
  } finally {
    await app.close();
  }
});

test('without weights the server shows runs only: ready, and prediction routes say there is no model', async () => {
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-runs-'));
  const app = buildServer({ runsDir: runs, log: () => undefined });
  try {
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 200);
    // As the README's API table says: ready at once, serving no model; so say the other protocols' probes.
    assert.deepEqual(ready.json(), { status: 'ready', model: 'none' });
    assert.deepEqual((await app.inject('/v2/health/ready')).json(), { ready: true });
    assert.deepEqual((await app.inject('/ping')).json(), { status: 'Healthy' });
    const r = await post(app, await gray(1));
    assert.deepEqual([r.statusCode, r.json().code], [404, 'no_model']);
    // The flag it names is serve's own (--eval).
    const e = await app.inject('/v1/evaluation');
    assert.deepEqual(
      [e.statusCode, e.json()],
      [404, { code: 'no_evaluation', error: 'no evaluation is configured (serve with --eval FILE)' }],
    );
    app.serving.beginDrain();
    const late = await app.inject({ method: 'GET', url: '/readyz' });
    assert.deepEqual([late.statusCode, late.json().status], [503, 'draining']);
  } finally {
    await app.close();
    fs.rmSync(runs, { recursive: true, force: true });
  }
});

test('POST /v1/reload swaps the engine; a failed reload keeps the old one and says why', async () => {
  let opens = 0;
  const app = buildServer({
    engine: async () => {
      opens++;
      if (opens === 2) throw new Error('weights.safetensors: damaged file');
      return fakeEngine(`weights-${opens}`);
    },
    log: () => undefined,
  });
  try {
    await app.serving.host.ready;
    const bad = await app.inject({ method: 'POST', url: '/v1/reload' });
    assert.deepEqual([bad.statusCode, bad.json().code], [500, 'reload_failed']);
    assert.match(bad.json().error, /damaged file/);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/models' })).json().weights, 'weights-1');
    assert.equal((await post(app, await gray(6))).json().top[0].index, 6);
    const good = await app.inject({ method: 'POST', url: '/v1/reload' });
    assert.equal(good.statusCode, 200, good.body);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/models' })).json().weights, 'weights-3');
    assert.match(
      (await app.inject({ method: 'GET', url: '/metrics' })).body,
      /alexnet_model_reloads_total\{result="failed"\} 1/,
    );
  } finally {
    await app.close();
  }
});

test('the auto rule: libtorch bf16 with native bf16, else onnxruntime fp32 falling back to libtorch fp32', () => {
  const zen5 = parseCpu(
    'vendor_id : AuthenticAMD\ncpu family : 26\nflags : avx2 avx512f avx512bw avx512vl avx512dq avx512_bf16\n',
  );
  const avx2 = parseCpu('flags : avx avx2\n');
  assert.deepEqual(
    [chooseEngine({ weights: 'w.safetensors' }, zen5, false)].map((c) => [c.runtime, c.precision]),
    [['libtorch', 'bf16']],
  );
  const c = chooseEngine({ weights: 'w.safetensors' }, avx2, false);
  assert.equal(chooseEngine({ weights: 'w.safetensors' }, avx2, true).precision, 'bf16');
  assert.deepEqual([c.runtime, c.precision, c.fallback?.runtime], ['onnxruntime', 'fp32', 'libtorch']);
  assert.equal(chooseEngine({ weights: 'w.onnx' }, zen5, false).runtime, 'onnxruntime');
  assert.equal(chooseEngine({ weights: 'w.pth', precision: 'fp32' }, zen5, false).runtime, 'onnxruntime');
  assert.throws(() => chooseEngine({ weights: 'w.onnx', runtime: 'libtorch' }, zen5, false), /ONNX file/);
  assert.throws(() => chooseEngine({ weights: 'w.pth', runtime: 'onnx', precision: 'bf16' }, zen5, false), /libtorch/);
});

// ---- the real model ------------------------------------------------------------------------------------------------

let dir = '';
let ckpt = '';

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-test-'));
  ckpt = path.join(dir, 'ckpt.safetensors');
  const r = cli([...TINY_TRAIN, '--save', ckpt]);
  assert.equal(r.code, 0, r.stderr);
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A light shirt-like shape on black, as Fashion-MNIST's images are. */
const garment = () =>
  sharp(
    Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28"/>' +
        '<path d="M8 4h12l5 6-4 2v14H7V12l-4-2z" fill="#ddd"/></svg>',
    ),
  )
    .png()
    .toBuffer();

test('the real model: libtorch and onnxruntime agree on a Fashion-MNIST-like PNG, bf16 nearly so', async () => {
  const img = await garment();
  const answers: { index: number; prob: number }[][] = [];
  const engines = [
    ['libtorch', 'fp32'],
    ['onnx', 'fp32'],
    ['libtorch', 'bf16'],
  ] as const;
  for (const [runtime, precision] of engines) {
    const eo = { weights: ckpt, runtime, precision, threads: 2 };
    const app = buildServer({ engine: () => openEngine(eo), log: () => undefined, maxBatch: 2 });
    try {
      await app.serving.host.ready;
      const r = await post(app, img, 'image/png', '/v1/predict?k=10');
      assert.equal(r.statusCode, 200, r.body);
      answers.push(r.json().top);
      const card = (await app.inject({ method: 'GET', url: '/v1/models' })).json();
      assert.deepEqual([card.runtime, card.precision], [runtime === 'onnx' ? 'onnxruntime' : 'libtorch', precision]);
      if (precision === 'bf16') await checkInsight(app);
    } finally {
      await app.close();
    }
  }
  const [torch, onnx, bf16] = answers.map((t) => [...t].sort((a, b) => a.index - b.index).map((x) => x.prob));
  torch.forEach((p, i) => assert.ok(Math.abs(p - onnx[i]) < 1e-5, `class ${i}: ${p} vs ${onnx[i]}`));
  torch.forEach((p, i) => assert.ok(Math.abs(p - bf16[i]) < 1e-2, `class ${i}: ${p} vs bf16 ${bf16[i]}`));
  // Top-1 agrees wherever the two best classes are further apart than the runtimes' rounding.
  if (answers[0][0].prob - answers[0][1].prob > 1e-5) assert.equal(answers[0][0].index, answers[1][0].index);
});

/** conv1's kernels, each convolution's maps after its ReLU, and the 4096-d embedding of alexnet-d2l. */
async function checkInsight(app: ServeApp): Promise<void> {
  const insight = app.serving.host.slot!.engine.insight!;
  const filters = await insight.filters();
  assert.deepEqual(filters.shape, [96, 1, 11, 11]);
  assert.ok(filters.data.some((v) => v !== 0));
  const px = new Uint8Array(28 * 28).map((_, i) => (i * 37) % 256);
  const maps = await insight.featureMaps(px);
  assert.deepEqual(
    maps.map((m) => m.layer),
    ['features.0', 'features.3', 'features.6', 'features.8', 'features.10'],
  );
  assert.deepEqual(maps[0].shape.slice(0, 1), [96]);
  for (const m of maps) {
    assert.equal(
      m.data.length,
      m.shape.reduce((a, b) => a * b),
    );
    assert.ok(m.data.every((v) => v >= 0) && m.data.some((v) => v > 0), m.layer);
  }
  const e = await insight.embedding(px);
  assert.equal(e.length, 4096);
  assert.ok(e.every((v) => v >= 0));
}

test('alexnet serve reloads on SIGHUP, and on SIGTERM finishes a queued request and exits 0', async () => {
  const child = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--weights',
      ckpt,
      '--port',
      '0',
      '--max-delay-ms',
      '1500',
      '--max-batch',
      '2',
      '--threads',
      '2',
      '--shutdown-timeout',
      '20',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const out = lines(child.stdout!, 45_000);
  const err = lines(child.stderr!, 45_000);
  try {
    const port = Number((await out.wait(/listening on http:\/\/127\.0\.0\.1:\d+ \(port (\d+)\): alexnet-d2l/))[1]);
    const url = `http://127.0.0.1:${port}`;
    child.kill('SIGHUP');
    await err.wait(/reloaded ckpt\.safetensors/).catch((e) => {
      throw new Error(`${e.message} (child exit ${child.exitCode}, signal ${child.signalCode})`);
    });
    const img = await garment();
    const slow = fetch(`${url}/v1/predict`, { method: 'POST', body: img, headers: { 'content-type': 'image/png' } });
    await new Promise((r) => setTimeout(r, 400));
    child.kill('SIGTERM');
    const answer = await slow;
    assert.equal(answer.status, 200);
    assert.equal(((await answer.json()) as { model: string }).model, 'alexnet-d2l');
    assert.equal(await exited, 0, err.text());
    assert.match(err.text(), /SIGTERM: draining \(1 request in flight/);
    assert.match(err.text(), /stopped/);
  } finally {
    child.kill('SIGKILL');
  }
});

test('alexnet predict and the server make one decision on the same SVG and truncated JPEG, in the same words', async () => {
  const svg = path.join(dir, 'drawing.svg');
  fs.writeFileSync(
    svg,
    '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32"><rect width="32" height="32"/></svg>',
  );
  const whole = await gray(120, 'jpeg', 64);
  const cut = path.join(dir, 'cut.jpg');
  fs.writeFileSync(cut, whole.subarray(0, Math.floor(whole.length / 2)));
  const ok = path.join(dir, 'whole.jpg');
  fs.writeFileSync(ok, whole);
  const r = cli(['predict', '--weights', ckpt, svg, cut, ok]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /whole\.jpg/, 'the good image is still classified');
  const said = (file: string) => {
    const line = r.stderr.split('\n').find((l) => l.includes(`${file}: `));
    assert.ok(line, `${file} in: ${r.stderr}`);
    return line.slice(line.indexOf(`${file}: `) + file.length + 2);
  };
  assert.equal(
    said(svg),
    'not an image that can be read (expected a JPEG, PNG, WebP, GIF or TIFF image, got an SVG image)',
  );
  assert.match(said(cut), /^damaged or truncated image \(.+\)$/);
  const app = await fakeServer();
  try {
    for (const [file, type, status, code] of [
      [svg, 'image/svg+xml', 415, 'unsupported_format'],
      [cut, 'image/jpeg', 400, 'corrupt_image'],
    ] as const) {
      const a = await post(app, fs.readFileSync(file), type);
      assert.deepEqual([a.statusCode, a.json().code, a.json().error], [status, code, said(file)], file);
    }
  } finally {
    await app.close();
  }
});

test('alexnet serve: usage mistakes are one line with exit code 2', () => {
  for (const [args, re] of [
    [['serve'], /--weights FILE .* or --runs DIR/],
    [['serve', '--weights', path.join(os.tmpdir(), 'no-such.safetensors'), '--port', '0'], /no-such/],
    [['serve', '--weights', 'x.onnx', '--runtime', 'libtorch'], /ONNX file/],
    [['serve', '--weights', 'x.pth', '--max-batch', '0'], /--max-batch must be/],
  ] as [string[], RegExp][]) {
    const r = cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.match(cli(['serve', '--help']).stdout, /POST \/v1\/predict/);
});

test('--cors: preflight answered with the routes methods, the origin on every answer (errors, early 413s), no other', async () => {
  const page = 'http://localhost:5173';
  const app = await fakeServer({ cors: [page, 'https://example.org'], maxUploadMb: 0.01 });
  const off = await fakeServer();
  try {
    const preflight = {
      method: 'OPTIONS' as const,
      url: '/v1/predict?k=2',
      headers: {
        origin: page,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    };
    const p = await app.inject(preflight);
    assert.equal(p.statusCode, 204, p.body);
    assert.equal(p.headers['access-control-allow-origin'], page);
    assert.equal(p.headers['access-control-allow-methods'], 'POST');
    assert.equal(p.headers['access-control-allow-headers'], 'content-type');
    assert.match(String(p.headers.vary), /Origin/);
    const ts = await app.inject({ ...preflight, url: '/predictions/fake-net' });
    assert.equal(ts.headers['access-control-allow-methods'], 'POST, PUT');
    // Every answer to a listed origin carries it: a prediction, a 404, a 405, a 415.
    for (const [method, url, status, body] of [
      ['POST', '/v1/predict', 200, await gray(40)],
      ['GET', '/no/such/route', 404, undefined],
      ['GET', '/v1/predict', 405, undefined],
      ['POST', '/v1/predict', 415, Buffer.from('<svg/>')],
    ] as const) {
      const r = await app.inject({
        method,
        url,
        payload: body,
        headers: { origin: page, 'content-type': 'image/png' },
      });
      assert.deepEqual([r.statusCode, r.headers['access-control-allow-origin']], [status, page], `${method} ${url}`);
      assert.match(String(r.headers.vary), /Origin/);
    }
    // An origin not listed, and a server without --cors: no CORS headers, and the preflight is not answered.
    for (const [server, origin] of [
      [app, 'http://evil.example'],
      [off, page],
    ] as const) {
      const r = await server.inject({ ...preflight, headers: { ...preflight.headers, origin } });
      assert.equal(r.statusCode, 405);
      assert.equal(r.headers['access-control-allow-origin'], undefined);
      const g = await server.inject({ method: 'GET', url: '/healthz', headers: { origin } });
      assert.equal(g.headers['access-control-allow-origin'], undefined);
    }
    // The 413 written on the socket before the body is read carries the origin too.
    await app.listen({ port: 0, host: '127.0.0.1' });
    const port = (app.server.address() as AddressInfo).port;
    const big = Buffer.alloc(64 * 1024, 1);
    const r = await httpRequest(port, {
      method: 'POST',
      path: '/v1/predict',
      headers: { origin: page, 'content-type': 'image/png', 'content-length': big.length },
      body: big,
    });
    assert.deepEqual([r.status, r.headers['access-control-allow-origin']], [413, page]);
  } finally {
    await app.close();
    await off.close();
  }
});

test('--cors takes origins only: anything else is a one-line usage mistake', () => {
  for (const bad of ['localhost:3000', 'http://a.example/path', 'ftp://a.example', 'http://a.example,']) {
    const r = cli(['serve', '--runs', os.tmpdir(), '--port', '0', '--cors', bad]);
    assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
    assert.match(r.stderr, /--cors takes origins such as/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});

test("/metrics passes Prometheus's own check (promtool check metrics), after answers and refusals", async (t) => {
  const promtool = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((f) => fs.existsSync(f));
  if (!promtool) {
    assert.notEqual(process.env.CI, 'true', 'promtool is missing (scripts/setup.sh --test installs prometheus)');
    return t.skip('promtool is not installed (scripts/setup.sh --test installs prometheus)');
  }
  const app = await fakeServer();
  try {
    assert.equal((await post(app, await gray(10), 'image/png')).statusCode, 200);
    assert.equal((await post(app, Buffer.from('<svg/>'), 'image/png')).statusCode, 415);
    const page = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    // The by-type gauges stay; their `*_total` sums (gauges with a counter's suffix) are gone.
    assert.match(page, /^# TYPE alexnet_nodejs_active_handles gauge$/m);
    assert.doesNotMatch(page, /^# TYPE \S+_total gauge$/m);
    const check = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn(promtool, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.stderr.on('data', (d) => (out += d));
      p.on('close', (code) => resolve({ code, out }));
      p.stdin.end(page);
    });
    assert.equal(check.code, 0, check.out);
    // The check can fail: the page as prom-client would have written it (a gauge named `*_total`) is refused.
    const bad = `# HELP x_active_total a gauge\n# TYPE x_active_total gauge\nx_active_total 1\n`;
    const refused = spawn(promtool, ['check', 'metrics'], { stdio: ['pipe', 'ignore', 'ignore'] });
    refused.stdin.end(bad);
    assert.notEqual(await new Promise((r) => refused.on('close', r)), 0);
  } finally {
    await app.close();
  }
});

test('under a supervisor: `exec node bin/alexnet.js serve` gets SIGTERM and exits 0; npx says it should not be used', async (t) => {
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'serve-supervised-'));
  const root = path.resolve(__dirname, '..', '..');
  /** Starts a command line in its own process group; resolves with its stderr once it listens. */
  const start = (line: string) => {
    // Not npm's environment, whatever ran these tests (npx sets its own for its child).
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('npm_')));
    const child = spawn('/bin/sh', ['-c', line], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out = lines(child.stdout!, 45_000);
    const err = lines(child.stderr!, 45_000);
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    return { child, out, err, exited, listening: out.wait(/listening on http:\/\/127\.0\.0\.1:\d+/) };
  };
  // The README's line: the shell is replaced by node, so the supervisor's SIGTERM reaches the server.
  const direct = start(`exec "${process.execPath}" bin/alexnet.js serve --runs ${runs} --port 0`);
  try {
    await direct.listening;
    direct.child.kill('SIGTERM');
    assert.equal(await direct.exited, 0, direct.err.text());
    assert.match(direct.err.text(), /stopped/);
    assert.doesNotMatch(direct.err.text(), /npx/);
  } finally {
    if (direct.child.exitCode === null) process.kill(-direct.child.pid!, 'SIGKILL');
  }
  // npx sets npm_command=exec for what it runs (checked here with npm's own npx): the server says, in one line.
  const npx = ['/usr/bin/npx', '/usr/local/bin/npx'].find((f) => fs.existsSync(f));
  if (!npx) return t.skip('npx is not installed');
  const viaNpx = start(`"${npx}" alexnet serve --runs ${runs} --port 0`);
  try {
    await viaNpx.listening;
    const said = viaNpx.err
      .text()
      .split('\n')
      .filter((l) => /npx/.test(l));
    assert.equal(said.length, 1, viaNpx.err.text());
    assert.match(said[0], /does not pass SIGTERM on: a supervisor .* must run the alexnet bin itself/);
  } finally {
    process.kill(-viaNpx.child.pid!, 'SIGKILL');
    fs.rmSync(runs, { recursive: true, force: true });
  }
});
