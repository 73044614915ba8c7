// Liveness, readiness and Prometheus metrics: GET /healthz, /readyz, /metrics. Readiness (`readiness`) is what the
// other protocols' health routes answer too (TorchServe's /ping, the Open Inference Protocol's /v2/health/ready).
import type { FastifyPluginAsync } from 'fastify';
import { ServeContext } from '../context';

/** Ready, or why not: 'draining', 'failed', 'loading' (and what to tell the client). */
export function readiness(c: ServeContext): { ready: true } | { ready: false; status: string; error: string } {
  const { host } = c;
  const broken = host.slot?.engine.failure;
  if (c.draining()) return { ready: false, status: 'draining', error: 'the server is shutting down' };
  if (broken) return { ready: false, status: 'failed', error: `the model failed: ${broken.message}` };
  if (c.saturated?.())
    return {
      ready: false,
      status: 'saturated',
      error: 'every admission place is taken (--max-inflight); retry shortly',
    };
  if (host.state === 'ready' || host.state === 'runs-only') return { ready: true };
  if (host.state === 'failed')
    return { ready: false, status: 'failed', error: `the model failed: ${host.error?.message}` };
  return { ready: false, status: host.state, error: 'the model is loading and warming up' };
}

/** The 503 answer of a server that is not ready, as /readyz words it. */
export function notReadyBody(r: { status: string; error: string }) {
  return { status: r.status, error: r.error, code: 'not_ready' as const };
}

export const healthRoutes: FastifyPluginAsync<ServeContext> = async (app, c) => {
  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const r = readiness(c);
    // A runs-only server (no --weights) has nothing to load: it is ready at once, and says it serves no model.
    return r.ready
      ? { status: 'ready', model: c.host.slot?.engine.card.model ?? 'none' }
      : reply.code(503).send(notReadyBody(r));
  });
  app.get('/metrics', async (_req, reply) => {
    reply.type(c.metrics.registry.contentType);
    return c.metrics.registry.metrics();
  });
};
