// Admission: requests to the routes that decode and infer (those with `config: { admit: true }`) are counted from
// accept to answer, and over --max-inflight the answer is 503 with Retry-After at once, before the body is read
// (decoding queued without bound would be overload too).
import type { FastifyContextConfig, FastifyInstance, FastifyRequest } from 'fastify';
import { ServeError } from './errors';

/** The route config that puts a route under admission. */
export const ADMIT: FastifyContextConfig & { admit: boolean } = { admit: true };

export class Admission {
  private count = 0;
  private readonly admitted = new WeakSet<FastifyRequest>();

  constructor(
    readonly maxInflight: number,
    /** Told the number in flight whenever it changes (the metrics gauge). */
    private readonly onChange: (inflight: number) => void = () => undefined,
  ) {}

  /** Admitted requests not yet answered. */
  get inflight(): number {
    return this.count;
  }

  /** Installs the hooks on `app` (the root: they apply to every route registered on it and its plugins). */
  install(app: FastifyInstance): void {
    app.addHook('onRequest', async (req, reply) => {
      if (!(req.routeOptions.config as { admit?: boolean } | undefined)?.admit) return;
      if (this.count >= this.maxInflight)
        throw new ServeError(
          'overloaded',
          `the server is at its limit of ${this.maxInflight} requests in flight (--max-inflight); retry shortly`,
          { headers: { 'retry-after': '1' } },
        );
      this.admitted.add(req);
      this.onChange(++this.count);
      // A client that goes away mid-request gets no onResponse: the socket's close releases its place.
      reply.raw.once('close', () => this.release(req));
    });
    app.addHook('onResponse', async (req) => this.release(req));
    app.addHook('onRequestAbort', async (req) => this.release(req));
  }

  private release(req: FastifyRequest): void {
    if (this.admitted.delete(req)) this.onChange(--this.count);
  }
}
