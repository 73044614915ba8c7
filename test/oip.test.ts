// A conformance client for the Open Inference Protocol, written from the specification's text (KServe's
// docs/predict-api/v2/required_api.md and Triton's docs/protocol/extension_binary_data.md), against a real
// `alexnet serve` process: every required endpoint (also under /versions/{v}), the JSON $inference_request (flat and
// nested data, id, outputs, parameters), the binary tensor data extension for inputs and outputs, a batch of 2
// batched with other requests, and the error form {"error": …}. The model's tensor input is made from an image the
// way the model's metadata says (size, mean, std); its numbers must be /v1/predict's for the same image.
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { decodeInput } from '../src/infer/predictor';
import { preprocessPixels } from '../src/infer/onnx';
import { buildServer } from '../src/serve/app';
import { openEngine } from '../src/serve/engine';
import { BIN, cli, TINY_TRAIN } from './helpers/cli';

const MAX_BATCH = 4;
let dir = '';
let weights = '';
let server: ChildProcess | undefined;
let base = '';
let stderr = '';

/** A light shirt-like shape on black, as Fashion-MNIST's images are; `shade` varies it. */
const garment = (shade = 0xdd) =>
  sharp(
    Buffer.from(
      '<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28"/>' +
        `<path d="M8 4h12l5 6-4 2v14H7V12l-4-2z" fill="rgb(${shade},${shade},${shade})"/></svg>`,
    ),
  )
    .png()
    .toBuffer();

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'oip-test-'));
  weights = path.join(dir, 'w.safetensors');
  const r = cli([...TINY_TRAIN, '--save', weights]);
  assert.equal(r.code, 0, r.stderr);
  server = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--weights',
      weights,
      '--port',
      '0',
      '--max-batch',
      String(MAX_BATCH),
      '--max-delay-ms',
      '300',
      '--max-upload-mb',
      '0.1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  server.stderr!.on('data', (d) => (stderr += d));
  let out = '';
  const port = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the server did not start: ${out} ${stderr}`)), 60_000);
    server!.stdout!.on('data', (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/127\.0\.0\.1:\d+ \(port (\d+)\)/);
      if (!m) return;
      clearTimeout(t);
      resolve(m[1]);
    });
  });
  base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200 && (await fetch(`${base}/v2/health/ready`)).status !== 200; i++)
    await new Promise((r) => setTimeout(r, 100));
});

after(() => {
  server?.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A response tensor as the specification gives it. */
interface Tensor {
  name: string;
  datatype: string;
  shape: number[];
  data: number[] & string[];
  parameters?: { binary_data_size?: number };
}

/** A JSON answer: an $inference_response, metadata, or {error}. */
type Answer = Record<string, unknown> & { error?: string; id?: string; outputs: Tensor[] };

const getJson = async (url: string) => {
  const r = await fetch(base + url);
  return { status: r.status, body: (await r.json()) as Answer };
};

/** One request over a socket with the headers given as they are; the body comes back as bytes. */
function request(
  method: string,
  url: string,
  body: Buffer | string,
  headers: Record<string, string | number> = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const u = new URL(base + url);
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const postJson = async (url: string, payload: unknown) => {
  const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
  const r = await request('POST', url, text, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  return { status: r.status, body: JSON.parse(r.body.toString()) as Answer };
};

/** The binary form: the JSON header, then each tensor's bytes, with Inference-Header-Content-Length. */
async function postBinary(url: string, header: unknown, data: Buffer[], o: { contentType?: string } = {}) {
  const json = Buffer.from(JSON.stringify(header));
  const body = Buffer.concat([json, ...data]);
  const headers: Record<string, string | number> = {
    'inference-header-content-length': json.length,
    'content-length': body.length,
  };
  if (o.contentType) headers['content-type'] = o.contentType;
  return request('POST', url, body, headers);
}

/** A binary-form response: its JSON header and the binary data of each output, by name. */
function readBinaryResponse(r: { headers: http.IncomingHttpHeaders; body: Buffer }) {
  const h = Number(r.headers['inference-header-content-length']);
  assert.ok(h > 0, 'Inference-Header-Content-Length on a response with binary outputs');
  const head = JSON.parse(r.body.subarray(0, h).toString()) as Answer;
  let at = h;
  const data: Record<string, Buffer> = {};
  for (const o of head.outputs) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    data[o.name] = r.body.subarray(at, at + size);
    at += size;
  }
  assert.equal(at, r.body.length, 'the binary outputs fill the rest of the body');
  return { head, data };
}

const fp32 = (b: Buffer) => Array.from({ length: b.length / 4 }, (_, i) => b.readFloatLE(i * 4));
const le = (values: ArrayLike<number>) => {
  const b = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) b.writeFloatLE(values[i], i * 4);
  return b;
};

interface Meta {
  name: string;
  inputs: { name: string; datatype: string; shape: number[] }[];
  outputs: { name: string; datatype: string; shape: number[] }[];
  parameters: Record<string, string | number>;
}

async function modelMeta(): Promise<Meta> {
  return (await getJson('/v2/models/alexnet-d2l')).body as unknown as Meta;
}

/** The image as the model's tensor input, made as the metadata's parameters say (size, mean, std). */
async function tensorOf(img: Buffer, meta: Meta): Promise<Float32Array> {
  const [, c, h, w] = meta.inputs.find((i) => i.datatype === 'FP32')!.shape;
  const numbers = (s: string | number) => String(s).split(',').map(Number);
  assert.deepEqual(numbers(meta.parameters.size), [h, w]);
  // Fashion-MNIST-trained: decoded as a data-set example (28×28 gray), then bilinear to the model's size.
  const px = await decodeInput({ name: 'x', data: img }, { channels: c, height: 28, width: 28 });
  const mean = numbers(meta.parameters.mean);
  const std = numbers(meta.parameters.std);
  return preprocessPixels(px, c, 28, 28, { inputSize: [h, w], resize: 'bilinear', mean, std });
}

/** /v1/predict's probabilities for the image, in class order. */
async function v1Probabilities(img: Buffer): Promise<number[]> {
  const r = await request('POST', '/v1/predict?k=10', img, { 'content-type': 'image/png' });
  const top = JSON.parse(r.body.toString()).top as { index: number; prob: number }[];
  return top.sort((a, b) => a.index - b.index).map((t) => t.prob);
}

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) => {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

/** Nested row-major arrays of `shape` from flat values. */
function nest(values: ArrayLike<number>, shape: number[]): unknown {
  if (shape.length === 1) return Array.from(values);
  const step = values.length / shape[0];
  return Array.from({ length: shape[0] }, (_, i) =>
    nest(Array.prototype.slice.call(values, i * step, (i + 1) * step), shape.slice(1)),
  );
}

test('server: GET /v2 is the server metadata (name, version, extensions with binary_tensor_data); live and ready 200', async () => {
  const m = await getJson('/v2');
  assert.equal(m.status, 200);
  assert.equal(typeof m.body.name, 'string');
  assert.equal(typeof m.body.version, 'string');
  assert.ok(
    Array.isArray(m.body.extensions) && m.body.extensions.includes('binary_tensor_data'),
    JSON.stringify(m.body),
  );
  assert.equal((await fetch(`${base}/v2/health/live`)).status, 200);
  assert.equal((await fetch(`${base}/v2/health/ready`)).status, 200);
});

test('model: ready and metadata, also under every version the metadata lists; unknown ones 404 with {error}', async () => {
  const meta = await getJson('/v2/models/alexnet-d2l');
  assert.equal(meta.status, 200);
  const m = meta.body as unknown as Meta & { versions: string[]; platform: string };
  assert.equal(m.name, 'alexnet-d2l');
  assert.equal(typeof m.platform, 'string');
  assert.ok(m.versions.length >= 1);
  // The tensor input: FP32 [-1, C, H, W] at the model's size (TINY_TRAIN: 1 channel, 65×65).
  assert.deepEqual(
    m.inputs.find((i) => i.datatype === 'FP32'),
    { name: 'input', datatype: 'FP32', shape: [-1, 1, 65, 65] },
  );
  assert.deepEqual(m.inputs.find((i) => i.datatype === 'BYTES')?.shape, [-1]);
  for (const o of m.outputs) assert.deepEqual([o.datatype, o.shape], ['FP32', [-1, 10]]);
  for (const k of ['mean', 'std', 'size']) assert.ok(m.parameters[k] !== undefined, `parameters.${k}`);
  for (const p of Object.values(m.parameters)) assert.ok(['string', 'number', 'boolean'].includes(typeof p));
  assert.equal((await fetch(`${base}/v2/models/alexnet-d2l/ready`)).status, 200);
  for (const v of m.versions) {
    assert.equal((await fetch(`${base}/v2/models/alexnet-d2l/versions/${v}/ready`)).status, 200, v);
    assert.deepEqual((await getJson(`/v2/models/alexnet-d2l/versions/${v}`)).body, m, v);
  }
  for (const url of [
    '/v2/models/alexnet-d2l/versions/7',
    '/v2/models/alexnet-d2l/versions/7/ready',
    '/v2/models/no-such-model',
    '/v2/models/no-such-model/ready',
  ]) {
    const r = await getJson(url);
    assert.equal(r.status, 404, url);
    assert.equal(typeof r.body.error, 'string', url);
  }
  const r = await postJson('/v2/models/alexnet-d2l/versions/7/infer', { inputs: [] });
  assert.deepEqual([r.status, typeof r.body.error], [404, 'string']);
});

test("inference, JSON: flat and nested data, id echoed, outputs chosen; the numbers are /v1/predict's", async () => {
  const meta = await modelMeta();
  const img = await garment();
  const x = await tensorOf(img, meta);
  const expected = await v1Probabilities(img);
  const shape = [1, 1, 65, 65];
  for (const [form, data] of [
    ['flat', Array.from(x)],
    ['nested', nest(x, shape)],
  ] as const)
    for (const url of ['/v2/models/alexnet-d2l/infer', '/v2/models/alexnet-d2l/versions/1/infer']) {
      const r = await postJson(url, {
        id: `req-${form}`,
        parameters: { note: 'ignored' },
        inputs: [{ name: 'input', shape, datatype: 'FP32', data }],
        outputs: [{ name: 'probabilities' }],
      });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.id, `req-${form}`);
      assert.equal(r.body.model_name, 'alexnet-d2l');
      assert.deepEqual(
        r.body.outputs.map((o) => [o.name, o.datatype, o.shape]),
        [['probabilities', 'FP32', [1, 10]]],
      );
      close(r.body.outputs[0].data, expected, 1e-5, `${form} ${url}`);
    }
  // No `outputs`: every output the metadata lists; logits' softmax is the probabilities.
  const all = await postJson('/v2/models/alexnet-d2l/infer', {
    inputs: [{ name: 'input', shape, datatype: 'FP32', data: Array.from(x) }],
  });
  assert.equal(all.status, 200);
  assert.deepEqual(all.body.outputs.map((o) => o.name).sort(), meta.outputs.map((o) => o.name).sort());
  assert.equal(all.body.id, undefined);
  const logits = all.body.outputs.find((o) => o.name === 'logits')!.data as number[];
  const z = logits.map((l) => Math.exp(l - Math.max(...logits)));
  close(
    z.map((v) => v / z.reduce((a, b) => a + b)),
    expected,
    1e-5,
    'softmax(logits)',
  );
});

test('inference, binary tensor data: inputs and outputs in binary give the same numbers as JSON and /v1/predict', async () => {
  const meta = await modelMeta();
  const img = await garment();
  const x = await tensorOf(img, meta);
  const expected = await v1Probabilities(img);
  const input = le(x);
  const header = {
    inputs: [
      { name: 'input', shape: [1, 1, 65, 65], datatype: 'FP32', parameters: { binary_data_size: input.length } },
    ],
    outputs: [{ name: 'probabilities', parameters: { binary_data: true } }, { name: 'logits' }],
  };
  for (const contentType of ['application/octet-stream', undefined]) {
    const r = await postBinary('/v2/models/alexnet-d2l/infer', header, [input], { contentType });
    assert.equal(r.status, 200, r.body.toString());
    assert.match(String(r.headers['content-type']), /application\/octet-stream/);
    const { head, data } = readBinaryResponse(r);
    const probs = head.outputs.find((o) => o.name === 'probabilities')!;
    assert.deepEqual([probs.datatype, probs.shape, probs.parameters?.binary_data_size], ['FP32', [1, 10], 40]);
    close(fp32(data.probabilities), expected, 1e-5, 'binary probabilities');
    // logits asked without binary_data: JSON data in the same response.
    assert.equal(head.outputs.find((o) => o.name === 'logits')!.data.length, 10);
  }
  // binary_data_output: every output binary unless one says otherwise; JSON input with binary outputs.
  const json = Buffer.from(
    JSON.stringify({
      parameters: { binary_data_output: true },
      inputs: [{ name: 'input', shape: [1, 1, 65, 65], datatype: 'FP32', data: Array.from(x) }],
    }),
  );
  const r = await request('POST', '/v2/models/alexnet-d2l/infer', json, {
    'content-type': 'application/json',
    'content-length': json.length,
  });
  assert.equal(r.status, 200);
  const { data } = readBinaryResponse(r);
  assert.deepEqual(Object.keys(data).sort(), ['logits', 'probabilities']);
  close(fp32(data.probabilities), expected, 1e-5, 'binary_data_output');
});

/** The Prometheus histogram alexnet_batch_size's count and sum. */
async function batchSizes(): Promise<[number, number]> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const v = (k: string) => Number(text.match(new RegExp(`^alexnet_batch_size_${k} (\\S+)$`, 'm'))![1]);
  return [v('count'), v('sum')];
}

test('a batch of 2 is answered row by row, and batched with another request in one forward pass', async () => {
  const meta = await modelMeta();
  const imgs = [await garment(0xdd), await garment(0x60), await garment(0xa0)];
  const [a, b, c] = await Promise.all(imgs.map((i) => tensorOf(i, meta)));
  const expected = await Promise.all(imgs.map(v1Probabilities));
  const pair = new Float32Array([...a, ...b]);
  const before = await batchSizes();
  // Within --max-delay-ms (300) of each other: the 2 rows and the 1 row make one batch of 3.
  const [two, one] = await Promise.all([
    postJson('/v2/models/alexnet-d2l/infer', {
      inputs: [{ name: 'input', shape: [2, 1, 65, 65], datatype: 'FP32', data: nest(pair, [2, 1, 65, 65]) }],
      outputs: [{ name: 'probabilities' }],
    }),
    postBinary(
      '/v2/models/alexnet-d2l/infer',
      {
        inputs: [
          { name: 'input', shape: [1, 1, 65, 65], datatype: 'FP32', parameters: { binary_data_size: 4 * c.length } },
        ],
        outputs: [{ name: 'probabilities' }],
      },
      [le(c)],
    ),
  ]);
  assert.equal(two.status, 200);
  assert.deepEqual(two.body.outputs[0].shape, [2, 10]);
  close(two.body.outputs[0].data.slice(0, 10), expected[0], 1e-5, 'row 0');
  close(two.body.outputs[0].data.slice(10), expected[1], 1e-5, 'row 1');
  assert.equal(one.status, 200);
  close(JSON.parse(one.body.toString()).outputs[0].data, expected[2], 1e-5, 'the other request');
  const after = await batchSizes();
  assert.deepEqual([after[0] - before[0], after[1] - before[1]], [1, 3], 'one forward pass of 3 rows');
});

test('encoded images: the BYTES input, base64 in JSON and length-prefixed in binary, answers as /v1/predict', async () => {
  const imgs = [await garment(0xdd), await garment(0x60)];
  const expected = await Promise.all(imgs.map(v1Probabilities));
  const r = await postJson('/v2/models/alexnet-d2l/infer', {
    inputs: [{ name: 'image_bytes', shape: [2], datatype: 'BYTES', data: imgs.map((i) => i.toString('base64')) }],
    outputs: [{ name: 'probabilities' }],
  });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  close(r.body.outputs[0].data, [...expected[0], ...expected[1]], 1e-5, 'base64');
  // Triton's BYTES serialisation: each element a 4-byte little-endian length and its bytes.
  const bytes = Buffer.concat(
    imgs.flatMap((i) => {
      const n = Buffer.alloc(4);
      n.writeUInt32LE(i.length);
      return [n, i];
    }),
  );
  const b = await postBinary(
    '/v2/models/alexnet-d2l/infer',
    {
      inputs: [{ name: 'image_bytes', shape: [2], datatype: 'BYTES', parameters: { binary_data_size: bytes.length } }],
      outputs: [{ name: 'probabilities', parameters: { binary_data: true } }],
    },
    [bytes],
  );
  assert.equal(b.status, 200, b.body.toString());
  close(fp32(readBinaryResponse(b).data.probabilities), [...expected[0], ...expected[1]], 1e-5, 'binary BYTES');
});

test('classification: the k best classes as "value:index:label" strings (Triton\'s classification extension)', async () => {
  const img = await garment();
  const x = await tensorOf(img, await modelMeta());
  const expected = await v1Probabilities(img);
  const r = await postJson('/v2/models/alexnet-d2l/infer', {
    inputs: [{ name: 'input', shape: [1, 1, 65, 65], datatype: 'FP32', data: Array.from(x) }],
    outputs: [{ name: 'probabilities', parameters: { classification: 3 } }],
  });
  assert.equal(r.status, 200);
  const o = r.body.outputs[0];
  assert.deepEqual([o.datatype, o.shape], ['BYTES', [1, 3]]);
  const best = [...expected.keys()].sort((i, j) => expected[j] - expected[i]).slice(0, 3);
  assert.deepEqual(
    o.data.map((s: string) => Number(s.split(':')[1])),
    best,
  );
  o.data.forEach((s: string, i: number) => assert.ok(Math.abs(Number(s.split(':')[0]) - expected[best[i]]) < 1e-5));
});

test('errors: a wrong name, datatype or shape is 400 {error}; so are malformed requests; never a 5xx', async () => {
  const good = { name: 'input', shape: [1, 1, 65, 65], datatype: 'FP32', data: new Array(65 * 65).fill(0) };
  const cases: [string, unknown, number][] = [
    ['unknown input name', { inputs: [{ ...good, name: 'pixels' }] }, 400],
    ['datatype FP64', { inputs: [{ ...good, datatype: 'FP64' }] }, 400],
    ['datatype INT8', { inputs: [{ ...good, datatype: 'INT8' }] }, 400],
    ['shape of another size', { inputs: [{ ...good, shape: [1, 3, 65, 65] }] }, 400],
    ['shape without the batch', { inputs: [{ ...good, shape: [1, 65, 65] }] }, 400],
    ['data that do not fill the shape', { inputs: [{ ...good, data: [1, 2, 3] }] }, 400],
    ['a batch over --max-batch', { inputs: [{ ...good, shape: [MAX_BATCH + 1, 1, 65, 65] }] }, 400],
    ['a string in FP32 data', { inputs: [{ ...good, data: ['x', ...good.data.slice(1)] }] }, 400],
    ['an unknown output', { inputs: [good], outputs: [{ name: 'features' }] }, 400],
    ['no inputs', { inputs: [] }, 400],
    ['not an object', [1, 2, 3], 400],
    ['not JSON', '{"inputs": [', 400],
  ];
  for (const [what, body, status] of cases) {
    const r = await postJson('/v2/models/alexnet-d2l/infer', body);
    assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
    assert.equal(typeof r.body.error, 'string', what);
  }
  // Binary framing that does not add up.
  const x = le(new Float32Array(65 * 65));
  const head = (size: number) => ({
    inputs: [{ name: 'input', shape: [1, 1, 65, 65], datatype: 'FP32', parameters: { binary_data_size: size } }],
  });
  for (const [what, h, data] of [
    ['binary_data_size short of the shape', head(x.length - 4), [x.subarray(4)]],
    ['binary_data_size past the end', head(x.length + 4), [x]],
    ['bytes left over', head(x.length), [x, Buffer.alloc(8)]],
  ] as const) {
    const r = await postBinary('/v2/models/alexnet-d2l/infer', h, [...data]);
    assert.equal(r.status, 400, `${what}: ${r.body}`);
    assert.equal(typeof JSON.parse(r.body.toString()).error, 'string');
  }
  assert.doesNotMatch(stderr, /alexnet: (POST|GET) \//, 'no internal error logged');
});

test('oversized: a 413 names the limit in bytes, and a request of exactly that many bytes is taken', async () => {
  // --max-upload-mb 0.1: the JSON limit is the tensor's (--max-batch 4 inputs of 1×65×65 values), not an image's.
  const rows = new Array(MAX_BATCH * 65 * 65).fill(-0.48235294222831726);
  const request4 = { inputs: [{ name: 'input', shape: [MAX_BATCH, 1, 65, 65], datatype: 'FP32', data: rows }] };
  const text = JSON.stringify(request4);
  const first = await postJson('/v2/models/alexnet-d2l/infer', text);
  assert.equal(first.status, 200, 'a --max-batch request as JSON text is taken');
  // Over the limit: the limit is in the message; padded with JSON whitespace to exactly it, the request is taken.
  const over = await request('POST', '/v2/models/alexnet-d2l/infer', `${text}${' '.repeat(1 << 20)}`, {
    'content-type': 'application/json',
    'content-length': text.length + (1 << 20),
  });
  assert.equal(over.status, 413);
  const message = JSON.parse(over.body.toString()).error as string;
  const limit = Number(message.match(/([\d,]+) bytes/)![1].replace(/,/g, ''));
  assert.ok(limit > text.length, message);
  const at = await postJson('/v2/models/alexnet-d2l/infer', text + ' '.repeat(limit - text.length));
  assert.equal(at.status, 200, `${limit} bytes: ${JSON.stringify(at.body)}`);
  const above = await postJson('/v2/models/alexnet-d2l/infer', text + ' '.repeat(limit - text.length + 1));
  assert.equal(above.status, 413);
  assert.equal(above.body.error, message);
  // Without a Content-Length (chunked): the same 413 once the body passes the limit.
  const chunked = await request('POST', '/v2/models/alexnet-d2l/infer', text + ' '.repeat(limit - text.length + 1), {
    'content-type': 'application/json',
    'transfer-encoding': 'chunked',
  });
  assert.equal(chunked.status, 413);
  assert.equal(JSON.parse(chunked.body.toString()).error, message);
  // The binary form: its own limit, named likewise.
  const bin = le(new Float32Array(65 * 65));
  const pad = (n: number) => ({
    inputs: [{ name: 'input', shape: [1, 1, 65, 65], datatype: 'FP32', parameters: { binary_data_size: bin.length } }],
    pad: ' '.repeat(n),
  });
  const big = await postBinary('/v2/models/alexnet-d2l/infer', pad(1 << 20), [bin]);
  assert.equal(big.status, 413);
  const binMessage = JSON.parse(big.body.toString()).error as string;
  const binLimit = Number(binMessage.match(/([\d,]+) bytes/)![1].replace(/,/g, ''));
  const base = JSON.stringify(pad(0)).length + bin.length;
  assert.equal((await postBinary('/v2/models/alexnet-d2l/infer', pad(binLimit - base), [bin])).status, 200);
  assert.equal((await postBinary('/v2/models/alexnet-d2l/infer', pad(binLimit - base + 1), [bin])).status, 413);
});

test('the libtorch engine takes the tensor input too (through its worker), in fp32 and bf16', async () => {
  const meta = await modelMeta();
  const img = await garment();
  const x = await tensorOf(img, meta);
  for (const [precision, tol] of [
    ['fp32', 1e-5],
    ['bf16', 2e-2],
  ] as const) {
    const eo = { weights, runtime: 'libtorch', precision, threads: 2 } as const;
    const app = buildServer({ engine: () => openEngine(eo), log: () => undefined, maxBatch: 2 });
    try {
      await app.serving.host.ready;
      const v1 = await app.inject({
        method: 'POST',
        url: '/v1/predict?k=10',
        payload: img,
        headers: { 'content-type': 'image/png' },
      });
      const top = v1.json().top as { index: number; prob: number }[];
      const expected = top.sort((a, b) => a.index - b.index).map((t) => t.prob);
      const r = await app.inject({
        method: 'POST',
        url: '/v2/models/alexnet-d2l/infer',
        payload: { inputs: [{ name: 'input', shape: [1, 1, 65, 65], datatype: 'FP32', data: Array.from(x) }] },
      });
      assert.equal(r.statusCode, 200, r.body);
      const probs = (r.json() as Answer).outputs.find((o) => o.name === 'probabilities')!;
      close(probs.data, expected, tol, `libtorch ${precision}`);
    } finally {
      await app.close();
    }
  }
});
