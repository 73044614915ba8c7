// Prometheus metrics of the server, in a registry of its own (never prom-client's global one: two servers in one
// process, as in the tests, must not share counters).
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Latency buckets in seconds: 1 ms to 10 s. */
const SECONDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** prom-client's default gauges that also come as a `*_total` sum. */
const TOTAL_GAUGES = ['nodejs_active_handles', 'nodejs_active_requests', 'nodejs_active_resources'];

export class ServerMetrics {
  readonly registry = new Registry();
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly rejections: Counter<'reason'>;
  readonly requestSeconds: Histogram<'route'>;
  readonly decodeSeconds: Histogram;
  readonly queueSeconds: Histogram;
  readonly inferenceSeconds: Histogram;
  readonly batchSize: Histogram;
  readonly inflight: Gauge;
  readonly queued: Gauge;
  readonly reloads: Counter<'result'>;

  constructor(maxBatch: number) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'alexnet_http_requests_total',
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.rejections = new Counter({
      name: 'alexnet_rejections_total',
      help: 'Requests refused, by reason (too_large, too_many_pixels, unsupported_format, corrupt_image, overloaded, …)',
      labelNames: ['reason'],
      registers,
    });
    this.requestSeconds = new Histogram({
      name: 'alexnet_request_duration_seconds',
      help: 'Time from accepting a request to its answer',
      labelNames: ['route'],
      buckets: SECONDS,
      registers,
    });
    const h = (name: string, help: string) => new Histogram({ name, help, buckets: SECONDS, registers });
    this.decodeSeconds = h('alexnet_decode_duration_seconds', 'Time to check and decode an upload');
    this.queueSeconds = h('alexnet_queue_duration_seconds', 'Time a decoded image waited for its batch to start');
    this.inferenceSeconds = h('alexnet_inference_duration_seconds', 'Time of one batched forward pass');
    this.batchSize = new Histogram({
      name: 'alexnet_batch_size',
      help: 'Images per forward pass',
      buckets: Array.from({ length: maxBatch }, (_, i) => i + 1),
      registers,
    });
    this.inflight = new Gauge({
      name: 'alexnet_inflight_requests',
      help: 'Admitted requests not yet answered',
      registers,
    });
    this.queued = new Gauge({ name: 'alexnet_queue_depth', help: 'Images waiting for a batch', registers });
    this.reloads = new Counter({
      name: 'alexnet_model_reloads_total',
      help: 'Weight reloads, by result (ok, failed)',
      labelNames: ['result'],
      registers,
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'alexnet_' });
    // prom-client names three gauges `*_total`, a counter's suffix (`promtool check metrics` refuses them); each is
    // the sum of its by-type gauge (alexnet_nodejs_active_handles{type} …), which stays.
    for (const name of TOTAL_GAUGES) this.registry.removeSingleMetric(`alexnet_${name}_total`);
  }
}

/** Counts and times every answer by route (its pattern), method and status. */
export function countRequests(app: FastifyInstance, metrics: ServerMetrics): void {
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ route, method: req.method, status: String(reply.statusCode) });
    metrics.requestSeconds.observe({ route }, reply.elapsedTime / 1000);
  });
}
