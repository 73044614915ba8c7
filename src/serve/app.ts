// The HTTP server: fastify with prediction routes (ours, TorchServe's and KServe v2's), health and readiness,
// Prometheus metrics, weight reloading, and the page's and training runs' plugins. buildServer makes the instance
// without listening (tests use inject); src/cli/serve.ts listens and installs the signal handlers.
import Fastify, { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { topK } from '../infer/predictor';
import { AUTO_RULE } from './engine';
import { checkUpload, DecodeGate, decodeUpload, UploadError } from './images';
import { ModelHost, Slot } from './lifecycle';
import { ServerMetrics } from './metrics';
import { registerPageRoutes } from './page';
import { registerRunRoutes } from './runs';
import { Engine, ModelCard, PageData } from './types';

export interface ServerOptions extends PageData {
  /** Opens the engine: called at start and on every reload. Absent: the server shows training runs only. */
  engine?: () => Promise<Engine>;
  /** Images per forward pass at most (default 8). */
  maxBatch?: number;
  /** How long the oldest queued image waits for a batch to fill (default 5 ms). */
  maxDelayMs?: number;
  /** Upload size limit in MiB (default 10): 413 above it. */
  maxUploadMb?: number;
  /** Width × height limit read from the header (default 40 MP): 413 above it. */
  maxPixels?: number;
  /** Prediction requests admitted at once, from accept to answer (default 64): 503 at once above it. */
  maxInflight?: number;
  /** Receiving a request and answering it each have this long (default 30 s). */
  requestTimeoutMs?: number;
  /** Images decoded at once (default: libuv's pool size, 4, where sharp runs them anyway). */
  decodeThreads?: number;
  /** Log lines (reloads, failures); default: stderr. */
  log?: (line: string) => void;
}

export const DEFAULTS = {
  maxBatch: 8,
  maxDelayMs: 5,
  maxUploadMb: 10,
  maxPixels: 40_000_000,
  maxInflight: 64,
  requestTimeoutMs: 30_000,
};

/** An answer other than 200, as JSON {error, code}. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** What the CLI and tests see of the server besides fastify. */
export interface Serving {
  host: ModelHost;
  metrics: ServerMetrics;
  readonly draining: boolean;
  readonly inflight: number;
  /** Readiness fails at once and live streams end (called by close() too). */
  beginDrain(): void;
  describeWork(): string;
}

export type ServeApp = FastifyInstance & { serving: Serving };

type Limits = typeof DEFAULTS & { decodeGate: DecodeGate };

/** Routes whose requests are admitted against --max-inflight (the ones that decode and infer). */
const ADMIT = { admit: true };

export function buildServer(options: ServerOptions): ServeApp {
  // Default: libuv's pool size (sharp decodes on it), i.e. no bound beyond what libuv already imposes.
  const decodeGate = new DecodeGate(options.decodeThreads ?? Number(process.env.UV_THREADPOOL_SIZE || 4));
  const o: Limits = { ...DEFAULTS, ...definedOnly(options), decodeGate };
  const log = options.log ?? ((l: string) => console.error(l));
  const metrics = new ServerMetrics(o.maxBatch);
  const host = new ModelHost(
    options.engine,
    {
      maxBatch: o.maxBatch,
      maxDelayMs: o.maxDelayMs,
      onBatch: (n, s) => {
        metrics.batchSize.observe(n);
        metrics.inferenceSeconds.observe(s);
      },
      onQueue: (n) => metrics.queued.set(n),
    },
    log,
    (ok) => metrics.reloads.inc({ result: ok ? 'ok' : 'failed' }),
  );
  const app = Fastify({
    logger: false,
    requestTimeout: o.requestTimeoutMs,
    return503OnClosing: true,
  }) as unknown as ServeApp;
  let draining = false;
  let inflight = 0;
  let endStreams: () => void = () => undefined;
  app.decorate('serving', {
    host,
    metrics,
    get draining() {
      return draining;
    },
    get inflight() {
      return inflight;
    },
    beginDrain() {
      if (draining) return;
      draining = true;
      endStreams();
    },
    describeWork: () =>
      `${inflight} request${inflight === 1 ? '' : 's'} in flight, ${host.slot?.batcher.queued ?? 0} queued`,
  } satisfies Serving);

  admission(app, o, metrics, {
    enter: () => metrics.inflight.set(++inflight),
    leave: () => metrics.inflight.set(--inflight),
  });
  errors(app, o, metrics, log);
  bodies(app, o);
  healthRoutes(app, host, () => draining);
  predictRoutes(app, o, host, metrics);
  reloadRoute(app, host);
  app.get('/metrics', async (_req, reply) => {
    reply.type(metrics.registry.contentType);
    return metrics.registry.metrics();
  });
  if (options.runsDir) endStreams = registerRunRoutes(app, { runsDir: options.runsDir });
  registerPageRoutes(app, {
    engine: () => host.slot?.engine,
    evaluationFile: options.evaluationFile,
    galleryFile: options.galleryFile,
    queriesFile: options.queriesFile,
    runsDir: options.runsDir,
    maxUploadBytes: Math.round(o.maxUploadMb * 1024 * 1024),
    maxPixels: o.maxPixels,
  });
  app.addHook('preClose', async () => app.serving.beginDrain());
  // While draining, every answer closes its connection: an idle keep-alive connection would hold close() open.
  app.addHook('onSend', async (_req, reply) => {
    if (draining) reply.header('connection', 'close');
  });
  app.addHook('onClose', async () => {
    // Injected requests are not connections fastify waits for: wait for every admitted one, then the batches.
    while (inflight > 0) await new Promise((r) => setTimeout(r, 10));
    await host.close();
  });
  return app;
}

function definedOnly(o: ServerOptions): Partial<Limits> {
  return Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined && k in DEFAULTS)) as Partial<Limits>;
}

/**
 * Bounds admitted prediction requests from accept to answer: over --max-inflight the answer is 503 with
 * Retry-After at once, before the body is read (decoding queued without bound is overload too).
 */
function admission(
  app: FastifyInstance,
  o: Limits,
  metrics: ServerMetrics,
  count: { enter: () => void; leave: () => void },
): void {
  const admitted = new WeakSet<FastifyRequest>();
  const release = (req: FastifyRequest) => {
    if (admitted.delete(req)) count.leave();
  };
  app.addHook('onRequest', async (req, reply) => {
    if (!(req.routeOptions.config as { admit?: boolean })?.admit) return;
    if ((app as ServeApp).serving.inflight >= o.maxInflight)
      throw new HttpError(
        503,
        'overloaded',
        `the server is at its limit of ${o.maxInflight} requests in flight (--max-inflight); retry shortly`,
        { 'retry-after': '1' },
      );
    admitted.add(req);
    count.enter();
    // A client that goes away mid-request gets no onResponse: the socket's close releases its place.
    reply.raw.once('close', () => release(req));
  });
  app.addHook('onResponse', async (req, reply) => {
    release(req);
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, method: req.method, status: String(reply.statusCode) });
    metrics.requestSeconds.observe({ route }, reply.elapsedTime / 1000);
  });
  app.addHook('onRequestAbort', async (req) => release(req));
}

/** fastify's and the plugins' own errors with a stable code each. */
const FASTIFY_CODES: Record<string, string> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'too_large',
  FST_REQ_FILE_TOO_LARGE: 'too_large',
  FST_FILES_LIMIT: 'too_many_files',
  FST_PARTS_LIMIT: 'too_many_parts',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'bad_request',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'unsupported_media_type',
};

/** Every error as JSON {error, code}; a client's mistake is never a 5xx; unknown routes 404, known ones 405. */
function errors(app: FastifyInstance, o: Limits, metrics: ServerMetrics, log: (l: string) => void): void {
  app.setErrorHandler(async (e: FastifyError | HttpError | UploadError, req, reply) => {
    let status = 500;
    let code = 'internal';
    let message = e.message;
    if (e instanceof HttpError || e instanceof UploadError) {
      status = e.status;
      code = e.code;
      if (e instanceof HttpError) reply.headers(e.headers);
    } else if (typeof e.statusCode === 'number' && e.statusCode < 500) {
      status = e.statusCode === 406 ? 415 : e.statusCode;
      code = FASTIFY_CODES[e.code] ?? 'bad_request';
      if (code === 'too_large') message = `uploads are at most ${o.maxUploadMb} MiB (--max-upload-mb)`;
      if (code === 'unsupported_media_type') message = MEDIA;
    } else {
      log(`alexnet: ${req.method} ${req.url}: ${e.message}`);
    }
    if (status !== 500) metrics.rejections.inc({ reason: code });
    return reply.code(status).send({ error: message, code });
  });
  app.setNotFoundHandler(async (req, reply) => {
    const allowed = KNOWN.find(([re]) => re.test(req.url.split('?')[0]))?.[1];
    if (allowed)
      return reply
        .code(405)
        .header('allow', allowed)
        .send({ error: `${req.method} is not allowed here; use ${allowed}`, code: 'method_not_allowed' });
    return reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}`, code: 'not_found' });
  });
}

const MEDIA =
  'send the image as the request body (Content-Type image/* or application/octet-stream) or as the multipart ' +
  "form field 'image'";

/** Paths of this file's routes with their methods, for 405 answers. */
const KNOWN: [RegExp, string][] = [
  [/^\/v1\/predict$/, 'POST'],
  [/^\/v1\/reload$/, 'POST'],
  [/^\/v1\/models$/, 'GET'],
  [/^\/(healthz|readyz|metrics|ping)$/, 'GET'],
  [/^\/predictions\/[^/]+$/, 'POST'],
  [/^\/v2\/health\/(live|ready)$/, 'GET'],
  [/^\/v2\/models\/[^/]+(\/ready)?$/, 'GET'],
  [/^\/v2\/models\/[^/]+\/infer$/, 'POST'],
];

/** Raw image bodies (image/*, application/octet-stream) up to --max-upload-mb, and multipart forms. */
function bodies(app: FastifyInstance, o: Limits): void {
  const bodyLimit = Math.round(o.maxUploadMb * 1024 * 1024);
  for (const type of ['application/octet-stream', /^image\/.*/])
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit }, (_r, b, done) => done(null, b));
  void app.register(multipart, { limits: { fileSize: bodyLimit, files: 1, fields: 16, parts: 32 } });
}

function healthRoutes(app: FastifyInstance, host: ModelHost, draining: () => boolean): void {
  const broken = () => host.slot?.engine.failure;
  const ready = () => !draining() && !broken() && (host.state === 'ready' || host.state === 'runs-only');
  const readiness = async (_req: FastifyRequest, reply: FastifyReply) => {
    if (ready()) return { status: 'ready' };
    const why = draining() ? 'draining' : broken() ? 'failed' : host.state;
    const error =
      why === 'draining'
        ? 'the server is shutting down'
        : why === 'failed'
          ? `the model failed: ${(broken() ?? host.error)?.message}`
          : 'the model is loading and warming up';
    return reply.code(503).send({ status: why, error, code: 'not_ready' });
  };
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', readiness);
  app.get('/v2/health/live', async () => ({ live: true }));
  app.get('/v2/health/ready', async (req, reply) => (ready() ? { ready: true } : readiness(req, reply)));
  app.get('/ping', async (_req, reply) =>
    ready()
      ? { status: 'Healthy' }
      : reply.code(503).send({ status: 'Unhealthy', error: 'not ready', code: 'not_ready' }),
  );
}

/** The served slot, or why there is none (runs only: 404; loading or failed: 503). */
function slotOf(host: ModelHost): Slot {
  if (host.slot) return host.slot;
  if (host.state === 'runs-only')
    throw new HttpError(
      404,
      'no_model',
      'this server shows training runs only: start it with --weights FILE to predict',
    );
  throw new HttpError(503, 'not_ready', 'the model is not loaded yet', { 'retry-after': '1' });
}

/** The upload's bytes: a raw body, or the multipart field 'image'. */
async function uploadOf(req: FastifyRequest): Promise<Buffer> {
  if (req.isMultipart()) {
    for await (const part of req.parts()) {
      if (part.type === 'file' && part.fieldname === 'image') return part.toBuffer();
      if (part.type === 'file') await part.toBuffer();
    }
    throw new HttpError(400, 'missing_image', "a multipart upload needs the image in the form field 'image'");
  }
  const body = req.body as unknown;
  if (body === undefined || body === null) throw new HttpError(400, 'empty_body', `no image in the request: ${MEDIA}`);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body);
  throw new HttpError(415, 'unsupported_media_type', `${MEDIA}; got ${req.headers['content-type']}`);
}

interface Classified {
  card: ModelCard;
  logits: Float32Array;
  timing: { decode: number; queue: number; inference: number; total: number };
}

/** Upload → checks → decode → batch → logits, within the handler timeout. */
async function classify(req: FastifyRequest, o: Limits, host: ModelHost, metrics: ServerMetrics): Promise<Classified> {
  const slot = slotOf(host);
  const start = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new HttpError(503, 'timeout', `no answer within ${o.requestTimeoutMs} ms (--request-timeout-ms)`, {
            'retry-after': '1',
          }),
        ),
      o.requestTimeoutMs,
    );
  });
  const work = async (): Promise<Classified> => {
    const bytes = await uploadOf(req);
    const pixels = await o.decodeGate.run(async () => {
      await checkUpload(bytes, o.maxPixels);
      return decodeUpload(bytes, slot.engine.card.geometry);
    });
    const decoded = performance.now();
    metrics.decodeSeconds.observe((decoded - start) / 1000);
    const r = await slot.batcher.submit(pixels);
    metrics.queueSeconds.observe(r.queueMs / 1000);
    const ms = (x: number) => Math.round(x * 100) / 100;
    const timing = {
      decode: ms(decoded - start),
      queue: ms(r.queueMs),
      inference: ms(r.inferenceMs),
      total: ms(performance.now() - start),
    };
    return { card: slot.engine.card, logits: r.logits, timing };
  };
  try {
    return await Promise.race([work(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function kOf(req: FastifyRequest, classes: number): number {
  const raw = (req.query as { k?: string }).k;
  if (raw === undefined) return Math.min(5, classes);
  const k = Number(raw);
  if (!Number.isInteger(k) || k < 1)
    throw new HttpError(400, 'bad_k', `k must be a whole number from 1 to ${classes}, got '${raw}'`);
  return Math.min(k, classes);
}

function predictRoutes(app: FastifyInstance, o: Limits, host: ModelHost, metrics: ServerMetrics): void {
  app.post('/v1/predict', { config: ADMIT }, async (req) => {
    const k = kOf(req, slotOf(host).engine.card.classes.length);
    const r = await classify(req, o, host, metrics);
    const top = topK(r.logits, r.card.classes, k)[0].map((t) => ({
      index: t.index,
      label: t.class,
      prob: t.probability,
    }));
    return { model: r.card.model, top, timing_ms: r.timing };
  });
  // TorchServe: the top 5 as {label: probability}.
  app.post('/predictions/:model', { config: ADMIT }, async (req) => {
    modelNamed(host, (req.params as { model: string }).model);
    const r = await classify(req, o, host, metrics);
    return Object.fromEntries(topK(r.logits, r.card.classes, 5)[0].map((t) => [t.class, t.probability]));
  });
  app.get('/v1/models', async () => describeModel(slotOf(host).engine.card, o));
  app.get('/v2/models/:model', async (req) => {
    const card = modelNamed(host, (req.params as { model: string }).model);
    return {
      name: card.model,
      versions: ['1'],
      platform: card.runtime,
      inputs: [{ name: 'image', datatype: 'BYTES', shape: [1] }],
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [1, card.classes.length] }],
    };
  });
  app.get('/v2/models/:model/ready', async (req) => ({
    name: modelNamed(host, (req.params as { model: string }).model).model,
    ready: true,
  }));
  // KServe v2: the image as the raw body (binary); the answer is the softmax of all classes as one FP32 output.
  app.post('/v2/models/:model/infer', { config: ADMIT }, async (req) => {
    const card = modelNamed(host, (req.params as { model: string }).model);
    const r = await classify(req, o, host, metrics);
    const probs = topK(r.logits, card.classes, card.classes.length)[0].sort((a, b) => a.index - b.index);
    return {
      model_name: card.model,
      model_version: '1',
      outputs: [
        {
          name: 'probabilities',
          datatype: 'FP32',
          shape: [1, card.classes.length],
          data: probs.map((p) => p.probability),
        },
      ],
    };
  });
}

/** The served card when `name` is its variant (or "alexnet"); else 404. */
function modelNamed(host: ModelHost, name: string): ModelCard {
  const card = slotOf(host).engine.card;
  if (name !== card.model && name !== 'alexnet')
    throw new HttpError(404, 'unknown_model', `this server serves '${card.model}', not '${name}'`);
  return card;
}

function describeModel(card: ModelCard, o: Limits) {
  const g = card.geometry;
  return {
    model: card.model,
    weights: card.weights,
    classes: card.classes,
    input: { channels: g.channels, height: g.height, width: g.width },
    preprocessing: {
      resize: g.shortSide
        ? `short side to ${g.shortSide}, centre crop ${g.height}×${g.width}`
        : `to ${g.height}×${g.width} (as the data set's images)`,
      color: g.channels === 1 ? 'grayscale' : 'sRGB',
      alpha: 'flattened on white',
      exif_orientation: 'applied',
      mean: card.preprocessing.mean,
      std: card.preprocessing.std,
    },
    runtime: card.runtime,
    precision: card.precision,
    selection: card.selection,
    auto_rule: AUTO_RULE,
    batching: { max_batch: o.maxBatch, max_delay_ms: o.maxDelayMs },
    limits: {
      max_upload_mb: o.maxUploadMb,
      max_pixels: o.maxPixels,
      max_inflight: o.maxInflight,
      request_timeout_ms: o.requestTimeoutMs,
      formats: ['jpeg', 'png', 'webp', 'gif', 'tiff'],
    },
  };
}

function reloadRoute(app: FastifyInstance, host: ModelHost): void {
  app.post('/v1/reload', async (_req, reply) => {
    slotOf(host);
    const r = await host.reload();
    if (!r.ok)
      return reply
        .code(500)
        .send({ error: `reload failed, the old model is still served: ${r.error}`, code: 'reload_failed' });
    const c = host.slot!.engine.card;
    return { reloaded: true, model: c.model, weights: c.weights, runtime: c.runtime, precision: c.precision, ms: r.ms };
  });
}
