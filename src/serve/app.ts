// The HTTP server, as a table of contents: fastify with the error catalogue (errors.ts), admission (admission.ts),
// the upload bodies (uploads.ts), a route plugin per protocol (routes/: this server's v1, TorchServe's, the Open
// Inference Protocol's, health and metrics), the page and the training runs' feed as plugins, and the drain at
// shutdown. buildServer makes the instance without listening (tests use inject); src/cli/serve.ts listens and
// installs the signal handlers.
import Fastify, { FastifyInstance } from 'fastify';
import { Admission } from './admission';
import { DEFAULTS, Limits, ServeContext } from './context';
import { allowOrigins } from './cors';
import { ErrorOptions, RouteTable, useErrorCatalogue } from './errors';
import { guard, GuardOptions } from './guard';
import { DecodeGate } from './images';
import { ModelHost } from './lifecycle';
import { countRequests, ServerMetrics } from './metrics';
import { pagePlugin } from './page';
import { healthRoutes } from './routes/health';
import { openInferenceRoutes } from './routes/open-inference';
import { torchServeRoutes } from './routes/torchserve';
import { v1Routes } from './routes/v1';
import { EventStreams, runsPlugin } from './runs';
import { Engine, PageData } from './types';
import { continueWhenAccepted, parseUploads, refuseOversized } from './uploads';

export { DEFAULTS } from './context';

export interface ServerOptions extends PageData, Omit<GuardOptions, 'cors'> {
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
  /** The engine has every core: no decode starts while a forward pass runs (DecodeGate). */
  decodeYields?: boolean;
  /** Origins whose pages may call the API (--cors); default: none. */
  cors?: string[];
  /** Log lines (reloads, failures); default: stderr. */
  log?: (line: string) => void;
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
  /** Admitted requests, queued images or uploads still arriving: what a shutdown that does not wait would cut. */
  busy(): boolean;
}

export type ServeApp = FastifyInstance & { serving: Serving };

export function buildServer(options: ServerOptions): ServeApp {
  const limits = limitsOf(options);
  const log = options.log ?? ((l: string) => console.error(l));
  const metrics = new ServerMetrics(limits.maxBatch);
  const host = modelHost(options.engine, limits, metrics, log);
  const app = Fastify({
    logger: false,
    // Receiving a request (headers, then body) is cut at --request-timeout-ms: node checks every second at most.
    requestTimeout: limits.requestTimeoutMs,
    http: { headersTimeout: limits.requestTimeoutMs, connectionsCheckingInterval: checkEvery(limits.requestTimeoutMs) },
    return503OnClosing: true,
  }) as unknown as ServeApp;
  const maxBody = Math.round(limits.maxUploadMb * 1024 * 1024) + 64 * 1024;
  const admission = new Admission(limits.maxInflight, (n) => metrics.inflight.set(n), maxBody);
  const streams = new EventStreams();
  const serving = drainable(host, metrics, admission, streams);
  app.decorate('serving', serving);
  const context: ServeContext = {
    limits,
    host,
    metrics,
    draining: () => serving.draining,
    saturated: () => admission.saturated,
  };
  const errors: ErrorOptions = {
    maxUploadBytes: Math.round(limits.maxUploadMb * 1024 * 1024),
    onRejection: (code) => metrics.rejections.inc({ reason: code }),
    log,
  };

  // Every route registered from here on is in the route table (the 405 answers), admitted and counted.
  const routes = RouteTable.collect(app);
  useErrorCatalogue(app, errors, routes);
  allowOrigins(app, options.cors ?? [], routes);
  guard(app, options);
  refuseOversized(app, { ...errors, requestTimeoutMs: limits.requestTimeoutMs });
  admission.install(app);
  continueWhenAccepted(app);
  countRequests(app, metrics);
  parseUploads(app, limits.maxUploadMb);

  void app.register(healthRoutes, context);
  void app.register(v1Routes, context);
  void app.register(torchServeRoutes, context);
  void app.register(openInferenceRoutes, context);
  if (options.runsDir) void app.register(runsPlugin, { runsDir: options.runsDir, streams, errors });
  void app.register(pagePlugin, {
    engine: () => host.slot?.engine,
    evaluationFile: options.evaluationFile,
    galleryFile: options.galleryFile,
    queriesFile: options.queriesFile,
    runsDir: options.runsDir,
    maxUploadBytes: errors.maxUploadBytes,
    maxPixels: limits.maxPixels,
    errors,
  });

  drainOnClose(app, admission, host);
  return app;
}

/** How often node looks for requests past their receive timeout: a tenth of it, 50 ms to 1 s. */
const checkEvery = (timeoutMs: number) => Math.min(1000, Math.max(50, Math.round(timeoutMs / 10)));

function limitsOf(o: ServerOptions): Limits {
  const given = Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined && k in DEFAULTS));
  // Default: libuv's pool size (sharp decodes on it), i.e. no bound beyond what libuv already imposes.
  const decodeGate = new DecodeGate(
    o.decodeThreads ?? Number(process.env.UV_THREADPOOL_SIZE || 4),
    o.decodeYields ?? false,
  );
  return { ...DEFAULTS, ...(given as Partial<Limits>), decodeGate };
}

function modelHost(
  engine: (() => Promise<Engine>) | undefined,
  o: Limits,
  metrics: ServerMetrics,
  log: (line: string) => void,
): ModelHost {
  const batching = {
    maxBatch: o.maxBatch,
    maxDelayMs: o.maxDelayMs,
    onBatch: (n: number, s: number) => {
      metrics.batchSize.observe(n);
      metrics.inferenceSeconds.observe(s);
    },
    onQueue: (n: number) => metrics.queued.set(n),
    onForward: (done: Promise<unknown>) => o.decodeGate.engineRuns(done),
    upcoming: o.decodeGate.yieldToEngine ? () => o.decodeGate.pending : undefined,
  };
  return new ModelHost(engine, batching, log, (ok) => metrics.reloads.inc({ result: ok ? 'ok' : 'failed' }));
}

/** The server's state for the CLI's signal handlers and the tests. */
function drainable(host: ModelHost, metrics: ServerMetrics, admission: Admission, streams: EventStreams): Serving {
  let draining = false;
  return {
    host,
    metrics,
    get draining() {
      return draining;
    },
    get inflight() {
      return admission.inflight;
    },
    beginDrain() {
      if (draining) return;
      draining = true;
      streams.endAll();
    },
    describeWork: () => {
      const n = admission.inflight;
      const u = admission.uploading;
      const arriving = u ? `, ${u} upload${u === 1 ? '' : 's'} still arriving` : '';
      return `${n} request${n === 1 ? '' : 's'} in flight, ${host.slot?.batcher.queued ?? 0} queued${arriving}`;
    },
    busy: () => admission.inflight + admission.uploading + (host.slot?.batcher.queued ?? 0) > 0,
  };
}

/** close(): readiness fails, answers close their connections, every admitted request and batch finishes. */
function drainOnClose(app: ServeApp, admission: Admission, host: ModelHost): void {
  app.addHook('preClose', async () => app.serving.beginDrain());
  // While draining, every answer closes its connection: an idle keep-alive connection would hold close() open.
  app.addHook('onSend', async (_req, reply) => {
    if (app.serving.draining) reply.header('connection', 'close');
  });
  app.addHook('onClose', async () => {
    // Injected requests are not connections fastify waits for: wait for every admitted one, then the batches.
    while (admission.inflight > 0) await new Promise((r) => setTimeout(r, 10));
    await host.close();
  });
}
