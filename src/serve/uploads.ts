// Uploads on the prediction routes: the bodies the server parses (raw image bytes up to --max-upload-mb, multipart
// forms), an upload's bytes, and the path from bytes to logits (checks → decode → batch) within the handler timeout.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import multipart from '@fastify/multipart';
import { MEDIA, ServeError } from './errors';
import { ServeContext, slotOf } from './context';
import { checkUpload, decodeUpload } from './images';
import { ModelCard } from './types';

/** Raw image bodies (image/*, application/octet-stream) up to --max-upload-mb, and multipart forms, on `app`. */
export function parseUploads(app: FastifyInstance, maxUploadMb: number): void {
  const bodyLimit = Math.round(maxUploadMb * 1024 * 1024);
  for (const type of ['application/octet-stream', /^image\/.*/])
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit }, (_r, b, done) => done(null, b));
  void app.register(multipart, { limits: { fileSize: bodyLimit, files: 1, fields: 16, parts: 32 } });
}

/** The upload's bytes: a raw body, or the multipart field 'image'. */
export async function uploadOf(req: FastifyRequest): Promise<Buffer> {
  if (req.isMultipart()) return multipartImage(req);
  const body = req.body as unknown;
  if (body === undefined || body === null) throw new ServeError('empty_body', `no image in the request: ${MEDIA}`);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body);
  throw new ServeError('unsupported_media_type', `${MEDIA}; got ${req.headers['content-type']}`);
}

/**
 * The file field 'image' of a multipart form. The parser's own errors (no boundary, a body or part cut short) are
 * the client's: 400 bad_multipart; its limits keep their 413s.
 */
async function multipartImage(req: FastifyRequest): Promise<Buffer> {
  try {
    for await (const part of req.parts()) {
      if (part.type === 'file' && part.fieldname === 'image') return await part.toBuffer();
      if (part.type === 'file') await part.toBuffer();
    }
  } catch (e) {
    if (e instanceof ServeError || typeof (e as { statusCode?: unknown }).statusCode === 'number') throw e;
    const why = String((e as Error)?.message ?? e).split('\n')[0];
    throw new ServeError('bad_multipart', `the multipart body cannot be read (${why}); ${MEDIA}`);
  }
  throw new ServeError('missing_image', "a multipart upload needs the image in the form field 'image'");
}

export interface Classified {
  card: ModelCard;
  logits: Float32Array;
  timing: { decode: number; queue: number; inference: number; total: number };
}

/** Upload → checks → decode → batch → logits, within the handler timeout. */
export async function classify(req: FastifyRequest, c: ServeContext): Promise<Classified> {
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
