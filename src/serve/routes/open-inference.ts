// The Open Inference Protocol (KServe v2, Triton) as KServe's required_api.md gives it: server metadata, liveness and
// readiness; model readiness and metadata, and inference, each also under /versions/{v}. The model's input `input` is
// the preprocessed tensor (FP32 [-1, C, H, W] at the model's size; the metadata's parameters say how to make it);
// `image_bytes` (BYTES [-1]) takes encoded images. Requests come as JSON or in Triton's binary tensor data form
// (oip-tensors.ts); every input row goes through the dynamic batcher. A raw image body (or a multipart field 'image')
// still works as before: all class probabilities as one FP32 output.
import * as fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import * as path from 'node:path';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { tensorShape, topK } from '../../infer/predictor';
import { ADMIT } from '../admission';
import { inferenceBodyLimits, InferenceBodyLimits, modelNamed, ServeContext, slotOf } from '../context';
import { ServeError } from '../errors';
import { checkUpload, decodeUpload } from '../images';
import { Slot } from '../lifecycle';
import { classBounds, kParam } from '../params';
import { Engine } from '../types';
import { classify, Oversized } from '../uploads';
import { notReadyBody, readiness } from './health';
import {
  bytesValues,
  encodeResponse,
  fp32Values,
  HEADER_LENGTH,
  OutputTensor,
  parseInferenceRequest,
  ParsedRequest,
  RequestInput,
  RequestOutput,
} from './oip-tensors';

/** The inputs and outputs the model's metadata lists. */
export const OIP_INPUT = 'input';
export const OIP_IMAGES = 'image_bytes';
const OUTPUTS = ['logits', 'probabilities'] as const;
const VERSION = '1';
/** The extensions claimed in the server metadata (Triton's names). */
export const OIP_EXTENSIONS = ['binary_tensor_data', 'classification'];

type Model = { Params: { model: string; version?: string } };

const MIB = 1024 * 1024;
const mib = (bytes: number) => `${Math.round((bytes / MIB) * 10) / 10} MiB`;

function serverVersion(): string {
  const file = path.join(__dirname, '..', '..', '..', '..', 'package.json');
  try {
    return String((JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: string }).version ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

/** The served model, when `model` names it and `version` (if any) is one its metadata lists. */
function modelOf(c: ServeContext, p: Model['Params']) {
  const card = modelNamed(c.host, p.model);
  if (p.version !== undefined && p.version !== VERSION)
    throw new ServeError('unknown_version', `model '${p.model}' has version ${VERSION} only, not '${p.version}'`);
  return { card, engine: slotOf(c.host).engine };
}

const limitsOf = (c: ServeContext, e: Engine) => inferenceBodyLimits(c.limits, tensorShape(e.record, e.geometry));

/** The model metadata: the two inputs, the two outputs, and the preprocessing in `parameters`. */
function metadata(c: ServeContext, p: Model['Params']) {
  const { card, engine } = modelOf(c, p);
  const [ch, h, w] = tensorShape(engine.record, engine.geometry);
  const g = card.geometry;
  const k = card.classes.length;
  const perChannel = (v: number[], none: number) => (v.length ? v : Array(ch).fill(none)).join(',');
  const decoded = g.shortSide
    ? `short side to ${g.shortSide}, centre crop ${g.height}×${g.width}`
    : `to ${g.height}×${g.width}`;
  return {
    name: card.model,
    versions: [VERSION],
    platform: card.runtime === 'onnxruntime' ? 'onnx_onnxv1' : 'pytorch_libtorch',
    inputs: [
      { name: OIP_INPUT, datatype: 'FP32', shape: [-1, ch, h, w] },
      { name: OIP_IMAGES, datatype: 'BYTES', shape: [-1] },
    ],
    outputs: OUTPUTS.map((name) => ({ name, datatype: 'FP32', shape: [-1, k] })),
    parameters: {
      layout: 'NCHW',
      color: ch === 1 ? 'grayscale' : 'RGB',
      resize: g.height === h && g.width === w ? decoded : `${decoded}, then bilinear to ${h}×${w}`,
      size: `${h},${w}`,
      scale: '1/255',
      mean: perChannel(card.preprocessing.mean, 0),
      std: perChannel(card.preprocessing.std, 1),
      normalization: '(x / 255 - mean) / std per channel',
      max_batch_size: c.limits.maxBatch,
      classes: k,
    },
  };
}

/** The 413 for a body over its limit (the binary form's, the JSON's, or an image upload's). */
function tooLarge(c: ServeContext, l: InferenceBodyLimits, form: 'json' | 'binary' | 'upload'): ServeError {
  if (form === 'upload')
    return new ServeError('too_large', `uploads are at most ${mib(c.limits.maxUploadMb * MIB)} (--max-upload-mb)`);
  const text = form === 'json' ? 'as JSON text, 24 bytes a value' : 'in the binary form, 4 bytes a value';
  const other =
    form === 'json'
      ? `; the binary form (Inference-Header-Content-Length) takes ${mib(l.binary)}`
      : '; or images of up to --max-upload-mb';
  return new ServeError(
    'request_too_large',
    `an inference request is at most ${mib(l[form])} = ${l[form].toLocaleString('en-US')} bytes ${text} ` +
      `(${l.sizedFrom}${other})`,
  );
}

/** What a body is taken as: the binary form, JSON, or image bytes (the types the root's parsers answer aside). */
function formOf(req: FastifyRequest): 'json' | 'binary' | 'upload' | 'sniff' {
  if (req.headers[HEADER_LENGTH] !== undefined) return 'binary';
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type === 'application/json') return 'json';
  if (type === 'application/octet-stream' || type.startsWith('image/') || type.startsWith('multipart/'))
    return 'upload';
  return 'sniff';
}

/** A route's 413 before the body is read, from its Content-Length (see refuseOversized). */
const oversized =
  (c: ServeContext): Oversized =>
  (req, declared) => {
    const engine = c.host.slot?.engine;
    if (!engine || !(declared > 0)) return undefined;
    const l = limitsOf(c, engine);
    const form = formOf(req);
    const upload =
      c.limits.maxUploadMb * MIB + (/^multipart\//i.test(req.headers['content-type'] ?? '') ? 64 * 1024 : 0);
    const limits = { json: l.json, sniff: Math.max(l.json, upload), binary: l.binary, upload };
    const limit = limits[form];
    if (declared <= limit) return undefined;
    return tooLarge(c, l, form === 'sniff' ? 'json' : form);
  };

/** A body's bytes up to `limit`; past it, the rest is drained and `error` thrown. */
function readBody(payload: IncomingMessage, limit: number, error: () => ServeError): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    payload.on('data', (b: Buffer) => {
      size += b.length;
      if (failed) return;
      if (size <= limit) return void chunks.push(b);
      failed = true;
      reject(error());
    });
    payload.on('end', () => failed || resolve(Buffer.concat(chunks, size)));
    payload.on('error', (e) => failed || ((failed = true), reject(e)));
  });
}

/** The plugin's body parsers: JSON and the binary form as inference requests, other bytes as an image upload. */
function parseBodies(app: FastifyInstance, c: ServeContext): void {
  app.removeContentTypeParser(['application/json', 'application/octet-stream']);
  const parse = async (req: FastifyRequest, payload: IncomingMessage) => {
    const l = limitsOf(c, slotOf(c.host).engine);
    const upload = c.limits.maxUploadMb * MIB;
    const form = formOf(req);
    if (form === 'upload') return readBody(payload, upload, () => tooLarge(c, l, 'upload'));
    const header = req.headers[HEADER_LENGTH] as string | undefined;
    if (form === 'binary')
      return { oip: parseInferenceRequest(await readBody(payload, l.binary, () => tooLarge(c, l, 'binary')), header) };
    const body = await readBody(payload, form === 'json' ? l.json : Math.max(l.json, upload), () =>
      tooLarge(c, l, 'json'),
    );
    const text = body.subarray(0, 64).toString('latin1').trimStart();
    if (form === 'json' || text.startsWith('{')) {
      if (body.length > l.json) throw tooLarge(c, l, 'json');
      return { oip: parseInferenceRequest(body) };
    }
    if (body.length > upload) throw tooLarge(c, l, 'upload');
    return body;
  };
  app.addContentTypeParser(['application/json', 'application/octet-stream'], parse);
  app.addContentTypeParser('*', parse);
}

export const openInferenceRoutes: FastifyPluginAsync<ServeContext> = async (app, c) => {
  parseBodies(app, c);
  const version = serverVersion();
  app.get('/v2', async () => ({ name: 'alexnet-ts', version, extensions: OIP_EXTENSIONS }));
  app.get('/v2/health/live', async () => ({ live: true }));
  app.get('/v2/health/ready', async (_req, reply) => {
    const r = readiness(c);
    return r.ready ? { ready: true } : reply.code(503).send(notReadyBody(r));
  });
  for (const base of ['/v2/models/:model', '/v2/models/:model/versions/:version']) {
    app.get<Model>(base, async (req) => metadata(c, req.params));
    app.get<Model>(`${base}/ready`, async (req, reply) => {
      const { card } = modelOf(c, req.params);
      const r = readiness(c);
      return r.ready ? { name: card.model, ready: true } : reply.code(503).send(notReadyBody(r));
    });
    // The model and version are checked before the body is read: an unknown one is 404 whatever the body.
    const known = async (req: FastifyRequest<Model>) => void modelOf(c, req.params);
    const config = { ...ADMIT, oversized: oversized(c) } as typeof ADMIT;
    app.post<Model>(`${base}/infer`, { config, onRequest: known }, (req, reply) => infer(c, req, reply));
  }
};

async function infer(c: ServeContext, req: FastifyRequest<Model>, reply: FastifyReply) {
  const { card } = modelOf(c, req.params);
  const body = req.body as { oip?: ParsedRequest } | undefined;
  if (!body?.oip) {
    // A raw image body (of any Content-Type: the parser read it as bytes) or a multipart upload: all class
    // probabilities of the one image.
    const r = await classify(req, c, { anyType: true });
    const probs = topK(r.logits, card.classes, card.classes.length)[0].sort((a, b) => a.index - b.index);
    const data = probs.map((p) => p.probability);
    const out = { name: 'probabilities', datatype: 'FP32', shape: [1, card.classes.length], data };
    return { model_name: card.model, model_version: VERSION, outputs: [out] };
  }
  const { request, binary } = body.oip;
  const outputs = wantedOutputs(request.outputs, request.parameters?.binary_data_output, card.classes.length);
  const logits = await withinTimeout(c, () => runInputs(c, request.inputs, binary));
  const head = { model_name: card.model, model_version: VERSION, ...(request.id !== undefined && { id: request.id }) };
  const r = encodeResponse(head, outputTensors(outputs, logits, card.classes));
  if ('json' in r) return r.json;
  return reply.header(HEADER_LENGTH, String(r.headerLength)).type('application/octet-stream').send(r.body);
}

interface Wanted {
  name: (typeof OUTPUTS)[number];
  binary: boolean;
  /** Triton's classification extension: the k best classes as "value:index:label". */
  classification?: number;
}

/** The outputs asked for (all of them, by default), checked against the metadata's. */
function wantedOutputs(asked: RequestOutput[] | undefined, allBinary: unknown, classes: number): Wanted[] {
  if (allBinary !== undefined && typeof allBinary !== 'boolean')
    throw new ServeError('bad_inference_request', 'binary_data_output must be true or false');
  return (asked ?? OUTPUTS.map((name) => ({ name }) as RequestOutput)).map((o) => {
    if (!(OUTPUTS as readonly string[]).includes(o.name))
      throw new ServeError('unknown_output', `the model's outputs are ${OUTPUTS.join(' and ')}, not '${o.name}'`);
    const binary = o.parameters?.binary_data ?? allBinary ?? false;
    if (typeof binary !== 'boolean')
      throw new ServeError('bad_inference_request', `outputs '${o.name}': binary_data must be true or false`);
    const raw = o.parameters?.classification;
    const k = raw === undefined ? undefined : kParam(raw, classBounds(classes, 'classification'));
    return { name: o.name as Wanted['name'], binary, classification: k };
  });
}

/** The input's rows through the batcher: logits of each, in order. */
async function runInputs(c: ServeContext, inputs: RequestInput[], binary: (Buffer | undefined)[]) {
  const slot = slotOf(c.host);
  const [ch, h, w] = tensorShape(slot.engine.record, slot.engine.geometry);
  const names = `'${OIP_INPUT}' (FP32 [-1, ${ch}, ${h}, ${w}]) or '${OIP_IMAGES}' (BYTES [-1])`;
  if (inputs.length !== 1)
    throw new ServeError('bad_inference_request', `send one input, ${names}; got ${inputs.length}`);
  const t = inputs[0];
  if (t.name !== OIP_INPUT && t.name !== OIP_IMAGES)
    throw new ServeError('unknown_input', `the model's inputs are ${names}, not '${t.name}'`);
  const images = t.name === OIP_IMAGES;
  const want = images ? 'BYTES' : 'FP32';
  if (t.datatype !== want)
    throw new ServeError('bad_datatype', `input '${t.name}' is ${want}, not ${JSON.stringify(t.datatype)}`);
  const n = t.shape[0];
  const shapeOk = images
    ? t.shape.length === 1 || (t.shape.length === 2 && t.shape[1] === 1)
    : t.shape.length === 4 && t.shape[1] === ch && t.shape[2] === h && t.shape[3] === w;
  const expected = images ? '[N] (or [N, 1])' : `[N, ${ch}, ${h}, ${w}]`;
  if (!shapeOk || !(n >= 1 && n <= c.limits.maxBatch))
    throw new ServeError(
      'bad_shape',
      `input '${t.name}' has shape ${expected} with N from 1 to ${c.limits.maxBatch} (--max-batch), got [${t.shape.join(', ')}]`,
    );
  const rows = images
    ? await imageRows(c, slot, bytesValues(t, binary[0]))
    : tensorRows(slot, fp32Values(t, binary[0]), n);
  const results = await Promise.all(rows);
  for (const r of results) c.metrics.queueSeconds.observe(r.queueMs / 1000);
  return results.map((r) => r.logits);
}

const tensorRows = (slot: Slot, values: Float32Array, n: number) => {
  const size = values.length / n;
  return Array.from({ length: n }, (_, i) => slot.batcher.submitTensor(values.slice(i * size, (i + 1) * size)));
};

async function imageRows(c: ServeContext, slot: Slot, images: Buffer[]) {
  const { limits: o } = c;
  const pixels = await Promise.all(
    images.map((b) => {
      if (b.length > o.maxUploadMb * MIB)
        throw new ServeError('too_large', `images are at most ${mib(o.maxUploadMb * MIB)} each (--max-upload-mb)`);
      return o.decodeGate.run(async () => {
        await checkUpload(b, o.maxPixels);
        return decodeUpload(b, slot.engine.card.geometry);
      });
    }),
  );
  return pixels.map((p) => slot.batcher.submit(p));
}

/** `work` within --request-timeout-ms, else 503 timeout. */
async function withinTimeout<T>(c: ServeContext, work: () => Promise<T>): Promise<T> {
  const ms = c.limits.requestTimeoutMs;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ServeError('timeout', `no answer within ${ms} ms (--request-timeout-ms)`, {
            headers: { 'retry-after': '1' },
          }),
        ),
      ms,
    );
  });
  try {
    return await Promise.race([work(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The outputs asked for, from each row's logits: FP32 [N, K], or BYTES [N, k] for a classification. */
function outputTensors(wanted: Wanted[], logits: Float32Array[], classes: string[]): OutputTensor[] {
  const k = classes.length;
  const n = logits.length;
  const all = new Float32Array(n * k);
  logits.forEach((l, i) => all.set(l, i * k));
  const probabilities = new Float32Array(n * k);
  topK(all, classes, k).forEach((row, i) => row.forEach((t) => (probabilities[i * k + t.index] = t.probability)));
  return wanted.map((w) => {
    const values = w.name === 'logits' ? all : probabilities;
    if (w.classification === undefined)
      return { name: w.name, datatype: 'FP32', shape: [n, k], data: values, binary: w.binary };
    const best = w.classification;
    const data = Array.from({ length: n }, (_, i) => {
      const row = values.subarray(i * k, (i + 1) * k);
      const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
      return order.slice(0, best).map((j) => `${row[j]}:${j}:${classes[j]}`);
    }).flat();
    return { name: w.name, datatype: 'BYTES', shape: [n, best], data, binary: w.binary };
  });
}
