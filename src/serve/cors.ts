// Cross-origin requests (--cors ORIGIN[,ORIGIN]; off by default): a page on a listed origin may call the API. Its
// preflight (OPTIONS with Access-Control-Request-Method) is answered 204 with the path's registered methods and the
// headers asked for; every answer to a listed origin — errors, early 413s and event streams included — carries
// Access-Control-Allow-Origin with that origin, and every answer `Vary: Origin`. Other origins get no CORS headers,
// so their browsers withhold the answers. A plugin of our own rather than @fastify/cors: twenty lines, and the
// methods come from the same route table as the 405s.
import type { FastifyInstance } from 'fastify';
import { UserError } from '../errors';
import { RouteTable } from './errors';

/** How long a browser may cache a preflight's answer, in seconds. */
const PREFLIGHT_MAX_AGE = 600;

/** `--cors` as a list of origins (scheme://host[:port], no path); throws a one-line UserError otherwise. */
export function parseOrigins(value: string): string[] {
  return value.split(',').map((raw) => {
    const o = raw.trim();
    let url: URL | undefined;
    try {
      url = new URL(o);
    } catch {
      url = undefined;
    }
    if (!url || !/^https?:$/.test(url.protocol) || url.origin !== o.replace(/\/$/, ''))
      throw new UserError(`--cors takes origins such as http://localhost:3000 (scheme, host, port), got '${raw}'`);
    return url.origin;
  });
}

/** Installs the headers and the preflight answer on `app` (the root, before every other onRequest hook). */
export function allowOrigins(app: FastifyInstance, origins: readonly string[], routes: RouteTable): void {
  if (!origins.length) return;
  const allowed = new Set(origins);
  app.addHook('onRequest', async (req, reply) => {
    // Set on the raw response: answers written past fastify (event streams, early 413s) carry them too.
    reply.raw.setHeader('vary', 'Origin');
    const origin = req.headers.origin;
    if (!origin || !allowed.has(origin)) return;
    reply.raw.setHeader('access-control-allow-origin', origin);
    reply.raw.setHeader('access-control-expose-headers', 'Retry-After, Allow');
    const asked = req.headers['access-control-request-method'];
    if (req.method !== 'OPTIONS' || !asked) return;
    const methods = routes.methodsOf(req.url.split('?')[0]);
    if (!methods.length) return; // no such path: the 404 answers (with the origin, so the page can read it)
    const headers = req.headers['access-control-request-headers'];
    return reply
      .code(204)
      .headers({
        'access-control-allow-methods': methods.join(', '),
        ...(headers && { 'access-control-allow-headers': headers }),
        'access-control-max-age': String(PREFLIGHT_MAX_AGE),
      })
      .send();
  });
}
