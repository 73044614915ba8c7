// Uploads on the prediction routes: the bodies the server parses (raw image bytes up to --max-upload-mb, multipart
// forms), an upload's bytes, and the path from bytes to logits (checks → decode → batch) within the handler timeout.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS_CODES } from 'node:http';
import { Socket } from 'node:net';
import multipart from '@fastify/multipart';
import { asServeError, errorBody, ErrorOptions, MEDIA, RAW_MEDIA, ServeError } from './errors';
import { ServeContext, slotOf } from './context';
import { checkUpload, decodeUpload } from './images';
import { ModelCard } from './types';

/**
 * Raw image bodies (image/*, application/octet-stream) up to --max-upload-mb, and multipart forms, on `app`.
 * text/plain is read as bytes too, never decoded as UTF-8 (fastify's own parser would): each upload route then
 * decides by the Content-Type whether it takes the body (`uploadOf`), and none ever sees an image mangled to text.
 */
export function parseUploads(app: FastifyInstance, maxUploadMb: number): void {
  const bodyLimit = Math.round(maxUploadMb * 1024 * 1024);
  app.removeContentTypeParser('text/plain');
  for (const type of ['application/octet-stream', /^image\/.*/, 'text/plain'])
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit }, (_r, b, done) => done(null, b));
  void app.register(multipart, { limits: { fileSize: bodyLimit, files: 1, fields: 16, parts: 32 } });
}

/**
 * On `app`'s scope (a route plugin): a body of any other Content-Type, or of none, is read as bytes up to
 * --max-upload-mb — text/plain (fastify's own parser would decode it as UTF-8), curl's --data-binary default
 * (application/x-www-form-urlencoded), `curl -T` (none): the image's magic bytes decide what it is.
 */
export function parseAnyBody(app: FastifyInstance, maxUploadMb: number): void {
  const bodyLimit = Math.round(maxUploadMb * 1024 * 1024);
  const asBytes = (_r: FastifyRequest, b: Buffer, done: (e: Error | null, body?: Buffer) => void) => done(null, b);
  app.removeContentTypeParser('text/plain');
  app.addContentTypeParser('text/plain', { parseAs: 'buffer', bodyLimit }, asBytes);
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, asBytes);
}

/** Bytes a multipart form may add to its file (boundaries, part headers, small fields) before it is refused unread. */
const MULTIPART_FRAMING = 64 * 1024;
/** After an early 413, how long the rest of a body is read and dropped while the client goes on sending. */
const LINGER_IDLE_MS = 2000;

/** A route's own size rule (`config.oversized`) in place of --max-upload-mb: the 413 for a declared length, or none. */
export type Oversized = (req: FastifyRequest, declared: number) => ServeError | undefined;

/**
 * An upload (a route with `config: { admit: true }`) whose Content-Length is over the limit is answered 413 before
 * its body is read, and the connection is closed gracefully — the answer and a FIN, then what the client still
 * sends is read and dropped until it closes (or is idle for LINGER_IDLE_MS, or the receive timeout ends) — so that
 * the client reads the answer instead of a reset. Installed before admission: a refused upload takes no place.
 */
export function refuseOversized(app: FastifyInstance, o: ErrorOptions & { requestTimeoutMs: number }): void {
  const limit = o.maxUploadBytes ?? 10 * 1024 * 1024;
  app.addHook('onRequest', async (req, reply) => {
    const declared = Number(req.headers['content-length']);
    const config = req.routeOptions.config as { admit?: boolean; oversized?: Oversized } | undefined;
    const framing = /^multipart\//i.test(req.headers['content-type'] ?? '') ? MULTIPART_FRAMING : 0;
    if (!config?.admit) return;
    const e = config.oversized
      ? config.oversized(req, declared)
      : declared > limit + framing
        ? asServeError({ statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' }, o)
        : undefined;
    if (!e) return;
    // An injected request (tests) has no socket to linger on: the error handler answers it.
    if (!(req.raw.socket instanceof Socket)) throw e;
    o.onRejection?.(e.code);
    answerAndLinger(req, reply, e, o.requestTimeoutMs);
    return reply;
  });
}

/**
 * `Expect: 100-continue` is answered 100 only once the request has passed the hooks installed before this one
 * (size, admission): node sends it unasked unless the server listens for checkContinue, as it does here.
 */
export function continueWhenAccepted(app: FastifyInstance): void {
  app.server.on('checkContinue', (req, res) => app.server.emit('request', req, res));
  app.addHook('onRequest', async (req, reply) => {
    if (/100-continue/i.test(String(req.headers.expect ?? '')) && !reply.raw.headersSent) reply.raw.writeContinue();
  });
}

/** Writes the answer on the socket, half-closes it, and drops what the client still sends until it closes. */
function answerAndLinger(req: FastifyRequest, reply: FastifyReply, e: ServeError, maxMs: number): void {
  reply.hijack();
  const socket = req.raw.socket;
  const body = JSON.stringify(errorBody(e));
  // Headers set before (CORS) go with it.
  const set = Object.entries(reply.raw.getHeaders()).map(([k, v]) => `${k}: ${[v].flat().join(', ')}\r\n`);
  socket.end(
    `HTTP/1.1 ${e.status} ${STATUS_CODES[e.status]}\r\n${set.join('')}content-type: application/json; ` +
      `charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
  req.raw.resume();
  socket.setTimeout(LINGER_IDLE_MS, () => socket.destroy());
  const cap = setTimeout(() => socket.destroy(), maxMs);
  cap.unref();
  socket.once('close', () => clearTimeout(cap));
}

/** Which bodies an upload route takes, and where it finds the image in a multipart form. */
export interface UploadForm {
  /** The first file under any field name (TorchServe's handlers read 'data' or 'body'), not only 'image'. */
  anyField?: boolean;
  /**
   * A raw body of any Content-Type, or none, is the image: its bytes decide (TorchServe's and the Open Inference
   * Protocol's routes, whose clients send `curl -T`, `--data-binary`). Otherwise only image/* and
   * application/octet-stream are, and any other type is 415 naming the types taken.
   */
  anyType?: boolean;
  /** Multipart forms are taken (default); false: raw bodies only (the route's scope has no multipart parser). */
  multipart?: boolean;
}

/** The media type of a request, lower case without parameters; '' for none. */
export const mediaType = (req: FastifyRequest) =>
  String(req.headers['content-type'] ?? '')
    .split(';')[0]
    .trim()
    .toLowerCase();

/**
 * The upload's bytes: a raw body, or the multipart field 'image' (any field with `anyField`). The body is bytes
 * whatever its Content-Type (never text); a route without `anyType` refuses a type it does not take, by its name.
 */
export async function uploadOf(req: FastifyRequest, form: UploadForm = {}): Promise<Buffer> {
  const takesForms = form.multipart ?? true;
  if (takesForms && req.isMultipart()) return multipartImage(req, form);
  const type = mediaType(req);
  const media = takesForms ? MEDIA : RAW_MEDIA;
  if (!form.anyType && !(type.startsWith('image/') || type === 'application/octet-stream'))
    throw new ServeError('unsupported_media_type', `${media}; got '${type || 'no Content-Type'}'`);
  const body = req.body as unknown;
  if (body === undefined || body === null) throw new ServeError('empty_body', `no image in the request: ${media}`);
  if (Buffer.isBuffer(body)) return body;
  throw new ServeError('unsupported_media_type', `${media}; got '${type || 'no Content-Type'}'`);
}

/**
 * The file field 'image' of a multipart form. The parser's own errors (no boundary, a body or part cut short) are
 * the client's: 400 bad_multipart; its limits keep their 413s.
 */
async function multipartImage(req: FastifyRequest, form: UploadForm): Promise<Buffer> {
  try {
    for await (const part of req.parts()) {
      if (part.type === 'file' && (form.anyField || part.fieldname === 'image')) return await part.toBuffer();
      if (part.type === 'file') await part.toBuffer();
    }
  } catch (e) {
    if (e instanceof ServeError || typeof (e as { statusCode?: unknown }).statusCode === 'number') throw e;
    const why = String((e as Error)?.message ?? e).split('\n')[0];
    throw new ServeError('bad_multipart', `the multipart body cannot be read (${why}); ${MEDIA}`);
  }
  if (form.anyField) throw new ServeError('missing_image', 'a multipart upload needs the image as a file field');
  throw new ServeError('missing_image', "a multipart upload needs the image in the form field 'image'");
}

export interface Classified {
  card: ModelCard;
  logits: Float32Array;
  timing: { decode: number; queue: number; inference: number; total: number };
}

/** Upload → checks → decode → batch → logits, within the handler timeout. */
export async function classify(req: FastifyRequest, c: ServeContext, form: UploadForm = {}): Promise<Classified> {
  const { limits: o, metrics } = c;
  const slot = slotOf(c.host);
  const start = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new ServeError('timeout', `no answer within ${o.requestTimeoutMs} ms (--request-timeout-ms)`, {
            headers: { 'retry-after': '1' },
          }),
        ),
      o.requestTimeoutMs,
    );
  });
  const work = async (): Promise<Classified> => {
    const bytes = await uploadOf(req, form);
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
