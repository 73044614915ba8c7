// The server's one error catalogue: every answer other than 2xx is JSON `{error, code}`, and every code is defined
// here once with its status (the README's serving section lists them). Routes throw a ServeError; fastify's and its
// plugins' own errors are given a code of the catalogue by the one error handler; a client's mistake is never a 5xx.
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { UserError } from '../errors';

/** Every error code the server answers with: its HTTP status and what it means. */
export const CODES = {
  bad_request: [400, 'a malformed request or parameter (fastify keeps its own 4xx status for the rest of its errors)'],
  bad_k: [
    400,
    '`k` (`classification` on /v2) is not an integer from 1 to the classes (neighbours: to 64 or the gallery size)',
  ],
  empty_body: [400, 'no image in the request'],
  missing_image: [
    400,
    "a multipart upload without its image file (the field 'image'; any field on TorchServe's routes)",
  ],
  bad_multipart: [400, 'a multipart body that cannot be read (no boundary, the body or a part cut short)'],
  corrupt_image: [400, 'the image is damaged or truncated'],
  bad_run_id: [400, 'a run id that is a path rather than a folder name'],
  bad_inference_request: [400, 'not an Open Inference Protocol request: its JSON, its fields or its binary framing'],
  unknown_input: [400, "an input name the model's metadata does not list"],
  bad_datatype: [400, "an input's datatype is not the one the model's metadata gives"],
  bad_shape: [400, "an input's shape is not the model's, or its data do not fill the shape"],
  unknown_output: [400, "an output name the model's metadata does not list"],
  not_found: [404, 'no such route, file or index'],
  no_model: [404, 'the server shows training runs only (no --weights)'],
  unknown_model: [404, 'the model named in the URL is not the one served'],
  unknown_version: [404, "a model version the model's metadata does not list"],
  no_insight: [404, "the runtime cannot show the model's insides (onnxruntime)"],
  no_neighbours: [404, 'no --gallery/--queries embeddings configured'],
  no_evaluation: [404, 'no evaluation file configured'],
  unknown_run: [404, 'no run with that id under --runs'],
  method_not_allowed: [405, 'the route exists for other methods (listed in Allow)'],
  mismatch: [409, 'the query and gallery embeddings have different sizes'],
  too_large: [413, 'the upload is over --max-upload-mb'],
  request_too_large: [413, "an inference request over its limit, sized from the model's input and --max-batch"],
  too_many_pixels: [413, "the image header's width × height is over --max-pixels"],
  too_many_files: [413, 'more than one file in a multipart upload'],
  too_many_parts: [413, 'too many parts or fields in a multipart upload'],
  unsupported_media_type: [415, 'a Content-Type the route does not take'],
  unsupported_format: [415, 'bytes that are not JPEG, PNG, WebP, GIF or TIFF (SVG is refused)'],
  internal: [500, "the server's own failure (logged)"],
  reload_failed: [500, 'the weights could not be loaded again; the old model is still served'],
  bad_evaluation: [500, 'the configured evaluation file cannot be read'],
  overloaded: [503, 'over --max-inflight requests in flight (Retry-After)'],
  timeout: [503, 'no answer within --request-timeout-ms (Retry-After)'],
  not_ready: [503, 'the model is loading, warming up, failed or the server is draining'],
  shutting_down: [503, 'the server is shutting down'],
  unauthorized: [401, "no bearer token or not the server's (--token; WWW-Authenticate: Bearer)"],
  token_required: [403, 'a state-changing request to a server on a non-loopback address started without --token'],
  cross_origin: [403, "a state-changing request from a web page of another origin than the server's or --cors"],
  unknown_host: [421, 'a Host header that is not a name of the server (--allowed-hosts)'],
  too_many_uploads: [503, 'too many uploads still being received, from this address or in all (Retry-After)'],
} as const satisfies Record<string, readonly [number, string]>;

export type ErrorCode = keyof typeof CODES;

/** An answer other than 2xx: the code's status, a one-line message, and headers (Retry-After, Allow). */
export class ServeError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;

  constructor(
    readonly code: ErrorCode,
    message: string,
    o: { headers?: Record<string, string>; status?: number } = {},
  ) {
    super(message);
    this.status = o.status ?? CODES[code][0];
    this.headers = o.headers ?? {};
  }
}

/** What the body of an error answer is. */
export const errorBody = (e: ServeError) => ({ error: e.message, code: e.code });

/** The bodies an upload route takes, for the 415's message. */
export const RAW_MEDIA = 'send the image as the request body (Content-Type image/* or application/octet-stream)';
export const MEDIA = `${RAW_MEDIA} or as the multipart form field 'image'`;

/** fastify's and its plugins' own errors with a code of the catalogue each. */
const FRAMEWORK_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'too_large',
  FST_REQ_FILE_TOO_LARGE: 'too_large',
  FST_FILES_LIMIT: 'too_many_files',
  FST_PARTS_LIMIT: 'too_many_parts',
  FST_FIELDS_LIMIT: 'too_many_parts',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'bad_request',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'bad_request',
};

export interface ErrorOptions {
  /** The upload limit the 413's message names, in bytes (default 10 MiB). */
  maxUploadBytes?: number;
  /** Told the code of every refusal (not of 5xx): the rejections metric. */
  onRejection?: (code: ErrorCode) => void;
  /** Where a 5xx's cause is logged (default: stderr). */
  log?: (line: string) => void;
}

const MIB = 1024 * 1024;

/** "10 MiB (--max-upload-mb)", or bytes for a limit under 1 MiB. */
function uploadLimit(bytes: number): string {
  return bytes >= MIB ? `${Math.round((bytes / MIB) * 1000) / 1000} MiB` : `${bytes} bytes`;
}

/** Any thrown value as a ServeError: ours as they are, fastify's by the table, a UserError as 400, else 500. */
export function asServeError(e: unknown, o: ErrorOptions & { contentType?: string }): ServeError {
  if (e instanceof ServeError) return e;
  if (e instanceof UserError) return new ServeError('bad_request', e.message);
  const f = e as Partial<FastifyError>;
  if (typeof f.statusCode === 'number' && f.statusCode < 500) {
    const code = FRAMEWORK_CODES[f.code ?? ''] ?? 'bad_request';
    if (code === 'too_large')
      return new ServeError(code, `uploads are at most ${uploadLimit(o.maxUploadBytes ?? 10 * MIB)} (--max-upload-mb)`);
    if (code === 'unsupported_media_type')
      return new ServeError(code, `${MEDIA}; got '${o.contentType || 'no Content-Type'}'`);
    // A client error fastify answers with another 4xx than the code's keeps its status (bad_request only).
    return new ServeError(code, f.message ?? 'bad request', code === 'bad_request' ? { status: f.statusCode } : {});
  }
  return new ServeError('internal', String((e as Error)?.message ?? e));
}

/** The one error handler: every error as `{error, code}` with its status and headers. */
export function errorHandler(o: ErrorOptions) {
  const log = o.log ?? ((l: string) => console.error(l));
  return async (e: unknown, req: FastifyRequest, reply: FastifyReply) => {
    const type = String(req.headers['content-type'] ?? '')
      .split(';')[0]
      .trim()
      .toLowerCase();
    const s = asServeError(e, { ...o, contentType: type });
    if (s.code === 'internal') log(`alexnet: ${req.method} ${req.url}: ${s.message}`);
    if (s.status !== 500) o.onRejection?.(s.code);
    return reply.code(s.status).headers(s.headers).send(errorBody(s));
  };
}

/**
 * Installs the handler on a scope (each encapsulated plugin that may run alone installs it on its own), and with
 * `routes` the not-found handler: a path of a registered route asked with another method is 405 with Allow.
 */
export function useErrorCatalogue(app: FastifyInstance, o: ErrorOptions, routes?: RouteTable): void {
  app.setErrorHandler(errorHandler(o));
  if (!routes) return;
  app.setNotFoundHandler(async (req, reply) => {
    const url = req.url.split('?')[0];
    const allowed = routes.methodsOf(url).join(', ');
    const e = allowed
      ? new ServeError('method_not_allowed', `${req.method} is not allowed here; use ${allowed}`, {
          headers: { allow: allowed },
        })
      : new ServeError('not_found', `no route ${req.method} ${url}`);
    return reply.code(e.status).headers(e.headers).send(errorBody(e));
  });
}

/** The registered routes (method and URL pattern), collected by an onRoute hook: what the 405 answers derive from. */
export class RouteTable {
  private readonly routes: { pattern: RegExp; method: string }[] = [];

  /** Collects every route registered on `app` and its plugins from now on. */
  static collect(app: FastifyInstance): RouteTable {
    const t = new RouteTable();
    app.addHook('onRoute', (r) => {
      for (const m of [r.method].flat()) t.add(m, r.url);
    });
    return t;
  }

  add(method: string, url: string): void {
    this.routes.push({ pattern: patternOf(url), method: method.toUpperCase() });
  }

  /** The methods registered for the paths `url` matches, sorted; [] for none. */
  methodsOf(url: string): string[] {
    const found = new Set(this.routes.filter((r) => r.pattern.test(url)).map((r) => r.method));
    return [...found].sort();
  }
}

/** A fastify URL pattern as a regular expression: `:param` one segment, `*` the rest. */
function patternOf(url: string): RegExp {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const parts = url.split('/').map((seg) => {
    if (seg === '*') return '.*';
    if (seg.startsWith(':')) return '[^/]+';
    return esc(seg);
  });
  return new RegExp(`^${parts.join('/')}$`);
}
