// Exposure: who may talk to the server. Three checks on every request, before anything else runs (admission,
// parsing): the Host header is one of the server's names (against DNS rebinding), a request that changes state
// (any method but GET/HEAD/OPTIONS on a route that does not predict: /v1/reload) comes from no other web page than
// the server's own or one allowed by --cors (a "simple" cross-site text/plain POST needs no preflight), and it
// carries the bearer token (--token, ALEXNET_TOKEN) — or every request does with --token-all, health probes aside.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ServeError } from './errors';

export interface GuardOptions {
  /** The bearer token mutating routes (or, with tokenAll, all but health) require. */
  token?: string;
  /** Every route but the health probes requires the token. */
  tokenAll?: boolean;
  /** The address the server binds (--host): one of its names; a non-loopback one without a token refuses mutations. */
  bindHost?: string;
  /** More names the Host header may carry (--allowed-hosts); '*' allows any. */
  allowedHosts?: string[];
  /** Origins whose pages may call the API (--cors); '*' allows any. */
  cors?: string[];
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const PROBES = new Set(['/healthz', '/readyz', '/ping', '/v2/health/live', '/v2/health/ready']);

/** True for an address only this machine reaches. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h.endsWith('.localhost') || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

/** The name of a Host header without its port ('[::1]:8080' → '::1', 'Example.com:80' → 'example.com'). */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) return h.slice(1, h.indexOf(']'));
  return h.replace(/:\d*$/, '');
}

/**
 * Names the Host header may carry: loopback names, IP literals (a rebinding page has a name of its own, never the
 * server's address), the bound address, and --allowed-hosts.
 */
export function hostAllowed(header: string | undefined, o: GuardOptions): boolean {
  if (header === undefined) return true; // HTTP/1.0 without Host: not a browser
  const name = hostName(header);
  const extra = (o.allowedHosts ?? []).map((h) => hostName(h));
  if (extra.includes('*')) return true;
  return isLoopback(name) || isIP(name) !== 0 || name === hostName(o.bindHost ?? '') || extra.includes(name);
}

/** The same digest length for any token: timingSafeEqual needs equal lengths, and the length is not leaked. */
const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

function tokenMatches(req: FastifyRequest, token: string): 'missing' | 'wrong' | 'ok' {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (!m) return 'missing';
  return timingSafeEqual(digest(m[1]), digest(token)) ? 'ok' : 'wrong';
}

function mutates(req: FastifyRequest): boolean {
  const admitted = (req.routeOptions.config as { admit?: boolean } | undefined)?.admit;
  return !SAFE_METHODS.has(req.method) && !admitted && !req.is404;
}

/** The Origin of a state-changing request: absent (not a browser), this server's own, or one of --cors. */
function originAllowed(req: FastifyRequest, o: GuardOptions): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const cors = o.cors ?? [];
  if (cors.includes('*') || cors.includes(origin)) return true;
  const host = req.headers.host?.toLowerCase();
  return host !== undefined && (origin === `http://${host}` || origin === `https://${host}`);
}

function unauthorized(req: FastifyRequest, why: 'missing' | 'wrong'): ServeError {
  const what = `${req.method} ${req.url.split('?')[0]}`;
  return new ServeError(
    'unauthorized',
    why === 'missing'
      ? `${what} needs the server's token: send 'Authorization: Bearer TOKEN' (--token or ALEXNET_TOKEN)`
      : `${what}: the bearer token is not the server's`,
    { headers: { 'www-authenticate': why === 'missing' ? 'Bearer' : 'Bearer error="invalid_token"' } },
  );
}

/** Installs the checks on `app` (the root: every route registered on it and its plugins). */
export function guard(app: FastifyInstance, o: GuardOptions): void {
  const exposed = o.bindHost !== undefined && !isLoopback(o.bindHost);
  app.addHook('onRequest', async (req) => {
    if (!hostAllowed(req.headers.host, o))
      throw new ServeError(
        'unknown_host',
        `Host '${req.headers.host}' is not a name of this server (loopback names, IP addresses, --host); ` +
          'add it with --allowed-hosts',
      );
    const changes = mutates(req);
    if (changes && !originAllowed(req, o))
      throw new ServeError(
        'cross_origin',
        `${req.method} from a page on ${req.headers.origin} is refused: that origin is not this server's nor in --cors`,
      );
    const path = req.url.split('?')[0];
    if (o.token !== undefined && (changes || (o.tokenAll && !PROBES.has(path)))) {
      const t = tokenMatches(req, o.token);
      if (t !== 'ok') throw unauthorized(req, t);
    } else if (o.token === undefined && changes && exposed)
      throw new ServeError(
        'token_required',
        `${req.method} ${path} is refused on a server listening on ${o.bindHost} without --token (or ALEXNET_TOKEN); ` +
          'SIGHUP reloads without one',
      );
  });
}
