// alexnet serve --weights FILE [--runs DIR]: the HTTP inference server and the page that shows the model and its
// training runs.
import * as fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import { buildServer, DEFAULTS, ServeApp } from '../serve/app';
import { parseOrigins } from '../serve/cors';
import { chooseEngine, EngineOptions, openEngine, wantsGpu } from '../serve/engine';
import { isLoopback } from '../serve/guard';
import { checkPageFiles, installSignals } from '../serve/lifecycle';
import { MAX_PIXELS } from '../data/image';
import { choice, COMMON, flag, int, num, optionHelp, parseCommand, text, withHelp } from './options';

const OPTIONS = {
  weights: withHelp(COMMON.weights, 'the model to serve: a checkpoint, weights file, PyTorch state dict or .onnx file'),
  model: withHelp(COMMON.model, 'the variant of a plain PyTorch state dict, when its keys do not tell'),
  runs: text('DIR', 'training runs to show live on the page (metrics.jsonl files, directly or one level down)'),
  eval: text('FILE', 'an evaluation to show (alexnet eval --json); default: eval.json next to --weights if there'),
  gallery: text('FILE', 'embeddings of training images (alexnet features) searched for nearest neighbours'),
  queries: text('FILE', 'embeddings of test images (alexnet features) whose neighbours the page shows'),
  port: int('N', 'TCP port (default 8080; 0: any free port, printed when listening)', { min: 0, max: 65535 }),
  host: text('ADDR', 'address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)'),
  cors: text(
    'ORIGINS',
    'origins whose pages may call the API, comma-separated (e.g. http://localhost:3000); default: none',
  ),
  token: text('TOKEN', 'bearer token that reload and other state-changing requests need (or ALEXNET_TOKEN)'),
  tokenAll: flag('every request needs the token, health probes aside (predictions too)'),
  allowedHosts: text('A,B', 'more names the Host header may carry (default: loopback names, IP addresses, --host)'),
  runtime: choice(
    'R',
    'libtorch, onnx (onnxruntime; weights that are not .onnx are exported to a temporary ONNX file)\n' +
      'or auto (default): libtorch bf16 where the CPU has native bf16 (AVX-512 BF16, AMX) or on a GPU,\n' +
      'else onnxruntime fp32, else libtorch fp32 (a model with no ONNX export). Measured on a Zen 5,\n' +
      'batch 32: libtorch bf16 441 img/s, onnxruntime fp32 311, libtorch fp32 186',
    ['auto', 'libtorch', 'onnx'] as const,
  ),
  precision: choice('P', 'auto (default: see --runtime), fp32 or bf16 (libtorch only)', [
    'auto',
    'fp32',
    'bf16',
  ] as const),
  maxBatch: int('N', `images per forward pass at most (default ${DEFAULTS.maxBatch}); each size is warmed at start`, {
    min: 1,
    max: 1024,
  }),
  maxDelayMs: num(
    'MS',
    `how long the oldest queued image waits for its batch to fill (default ${DEFAULTS.maxDelayMs})`,
    {
      min: 0,
      max: 60_000,
    },
  ),
  maxUploadMb: num('MB', `upload size limit in MiB (default ${DEFAULTS.maxUploadMb}): 413 above it`, {
    min: 0.001,
    max: 1024,
  }),
  maxPixels: int('N', `width × height limit read from the header (default ${DEFAULTS.maxPixels}): 413 above it`, {
    min: 1,
    max: MAX_PIXELS,
  }),
  maxInflight: int(
    'N',
    `prediction requests admitted at once (default ${DEFAULTS.maxInflight}): 503 at once above it`,
    {
      min: 1,
      max: 1_000_000,
    },
  ),
  requestTimeoutMs: int('MS', `time to receive a request, and to answer it (default ${DEFAULTS.requestTimeoutMs})`, {
    min: 1,
  }),
  shutdownTimeout: num(
    'S',
    'seconds to finish queued and in-flight requests on SIGTERM/SIGINT (default 30; 0: do not\nwait for them)',
    { min: 0 },
  ),
  device: withHelp(COMMON.device, `${COMMON.device.help}; libtorch only`),
  threads: withHelp(
    COMMON.threads,
    `the engine's CPU threads (default: all ${os.availableParallelism()} cores; libtorch on a GPU all but one, which\ndecodes uploads and answers HTTP); when the engine takes every core, uploads decode between its\nforward passes, never beside one; given fewer, beside the engine on the cores it leaves`,
  ),
  decodeThreads: int(
    'N',
    'uploads decoded at once (default: one per core when the engine takes them all, else the cores\n--threads leaves free, at least 1)',
    {
      min: 1,
      max: 64,
    },
  ),
};

export const HELP = `Usage: alexnet serve --weights FILE [--runs DIR] [--eval FILE] [--gallery F --queries F]
                     [--port 8080] [--host 127.0.0.1] [options]
       alexnet serve --runs DIR          (training runs only, no model)

Serves a trained model over HTTP, with a page that shows it (predictions, conv1's filters, feature maps,
nearest neighbours, the confusion matrix) and training runs' curves, live while they train.

Endpoints:
  POST /v1/predict?k=5         an image as the body (image/*, application/octet-stream) or the multipart field
                               'image' → {model, top: [{index, label, prob}], timing_ms: {decode, queue, inference,
                               total}}; k from 1 to the classes
  GET  /v1/models              the model: classes, input, preprocessing, runtime, precision, batching, limits
  POST /v1/reload              load the weights file anew and swap atomically (also on SIGHUP); a failed reload
                               keeps the old model (500, code reload_failed)
  GET  /healthz, /readyz       liveness; readiness (200 only when loaded, warmed and not shutting down;
                               runs only: 200 at once, {model: 'none'})
  GET  /metrics                Prometheus metrics
  TorchServe: POST or PUT /predictions/MODEL[/VERSION] (top 5 as {label: prob}): the image as the body of any
              Content-Type (its bytes decide) or a multipart file under any field name; GET /ping
  KServe v2:  GET /v2/health/live|ready, GET /v2/models/MODEL, POST /v2/models/MODEL/infer (the image as the
              raw body; answers the probabilities of all classes as one FP32 output)
Errors are JSON {error, code}: 413 too large or too many pixels, 415 not JPEG/PNG/WebP/GIF/TIFF (SVG refused),
400 damaged image, 503 over --max-inflight (with Retry-After) or not ready.

Dynamic batching (as Triton): a batch runs when --max-batch images wait or the oldest has waited --max-delay-ms;
one forward pass at a time while the next batch forms. Inference never blocks the server: libtorch runs in a
worker thread, onnxruntime on its own threads. SIGTERM/SIGINT: readiness fails at once, queued and in-flight
requests finish, live streams end at once, exit 0 (after --shutdown-timeout, exit 1 saying what was cut:
requests, queued images, uploads still arriving; --shutdown-timeout 0 waits for none of them).
Under a supervisor, run the bin itself (or exec node bin/alexnet.js serve), never npx: npm does not pass SIGTERM on.

Options:
${optionHelp(OPTIONS)}`;

/** The evaluation shown by default: eval.json beside the weights, when there is one. */
function defaultEval(weights: string | undefined): string | undefined {
  if (!weights) return undefined;
  const f = path.join(path.dirname(weights), 'eval.json');
  return fs.existsSync(f) ? f : undefined;
}

/**
 * One line for a server started through npx (npm exec, which sets npm_command=exec in its child's environment):
 * npm does not pass SIGTERM on, so a supervisor that stops npx leaves the server running. Else undefined.
 */
export function npxWarning(env: NodeJS.ProcessEnv): string | undefined {
  if (env.npm_command !== 'exec') return undefined;
  return (
    'alexnet: started through npx (npm exec), which does not pass SIGTERM on: a supervisor (systemd, a container, ' +
    'Kubernetes) must run the alexnet bin itself or `exec node …/bin/alexnet.js serve` (README: Running under a supervisor)'
  );
}

export async function serveCommand(argv: string[]): Promise<void> {
  const { values: v, help } = parseCommand('serve', argv, OPTIONS);
  if (help) return console.log(HELP);
  const npx = npxWarning(process.env);
  if (npx) console.error(npx);
  if (!v.weights && !v.runs)
    throw new UserError('--weights FILE (a model to serve) or --runs DIR (training runs to show) is required');
  if (v.runs && !fs.statSync(v.runs, { throwIfNoEntry: false })?.isDirectory())
    throw new UserError(`--runs must be a folder of training runs, got '${v.runs}'`);
  const { eo, engineChoice, decode } = engineSettings(v);
  const log = (l: string) => console.error(l);
  const app = buildServer({
    engine: eo ? () => openEngine(eo, engineChoice) : undefined,
    maxBatch: v.maxBatch,
    ...decode,
    maxDelayMs: v.maxDelayMs,
    maxUploadMb: v.maxUploadMb,
    maxPixels: v.maxPixels,
    maxInflight: v.maxInflight,
    requestTimeoutMs: v.requestTimeoutMs,
    ...exposure(v),
    runsDir: v.runs,
    evaluationFile: v.eval ?? defaultEval(v.weights),
    galleryFile: v.gallery,
    queriesFile: v.queries,
    cors: v.cors === undefined ? undefined : parseOrigins(v.cors),
    log,
  });
  try {
    await app.serving.host.ready;
    checkPageFiles(
      {
        eval: v.eval,
        defaultEval: v.eval ? undefined : defaultEval(v.weights),
        gallery: v.gallery,
        queries: v.queries,
      },
      app.serving.host.slot?.engine.card,
      log,
    );
  } catch (e) {
    await app.close().catch(() => undefined);
    throw e;
  }
  // The handlers go in before the listening line: a supervisor may signal as soon as it reads it.
  let stopped!: (code: number) => void;
  const done = new Promise<number>((resolve) => (stopped = resolve));
  const removeSignals = installSignals(
    {
      close: () => app.close(),
      beginDrain: () => app.serving.beginDrain(),
      describeWork: () => app.serving.describeWork(),
      busy: () => app.serving.busy(),
      reload: () => app.serving.host.reload(),
    },
    { timeoutMs: (v.shutdownTimeout ?? 30) * 1000, log, exit: stopped },
  );
  await listen(app, v.port ?? 8080, v.host ?? '127.0.0.1').catch((e) => {
    removeSignals();
    throw e;
  });
  const port = (app.server.address() as { port: number }).port;
  const c = app.serving.host.slot?.engine.card;
  const what = c ? `${c.model} (${c.weights}) on ${c.runtime} ${c.precision} [${c.selection}]` : `runs in ${v.runs}`;
  const bound = addressesOf(app).map((a) => urlOf(a.address, a.port));
  if (!isLoopback(v.host ?? '127.0.0.1')) warnExposed(app, v.host!, port, v.token ?? process.env.ALEXNET_TOKEN);
  console.log(`alexnet: listening on ${bound.join(', ')} (port ${port}): ${what}`);
  const code = await done;
  process.exitCode = code;
  // Worker threads and onnxruntime's pools must not keep a stopped server alive.
  setImmediate(() => process.exit(code));
}

/** The engine to open (none for a runs-only server), the runtime chosen, and how the cores are shared. */
function engineSettings(v: { weights?: string; decodeThreads?: number } & Omit<EngineOptions, 'weights'>) {
  const eo: EngineOptions | undefined = v.weights
    ? {
        weights: v.weights,
        model: v.model,
        runtime: v.runtime,
        precision: v.precision,
        device: v.device,
        threads: v.threads,
      }
    : undefined;
  const engineChoice = eo ? chooseEngine(eo) : undefined;
  const t = serveThreading({
    runtime: engineChoice?.runtime ?? 'libtorch',
    gpu: eo !== undefined && engineChoice?.runtime === 'libtorch' && wantsGpu(eo.device),
    threads: v.threads,
    decodeThreads: v.decodeThreads,
  });
  if (eo) eo.threads = t.threads;
  return { eo, engineChoice, decode: { decodeYields: t.decodeYields, decodeThreads: t.decodeThreads } };
}

/**
 * How `alexnet serve` shares the cores (npm run bench:serve asks the same): an engine on the CPU takes every core,
 * and uploads decode between its forward passes (see DecodeGate). Measured on 2 cores at 32 clients, against the
 * earlier defaults: libtorch fp32 114 against 87 img/s (it left a core to decoding, the default before uploads
 * decoded with libjpeg-turbo), onnxruntime 96 against 78 (its threads and libuv's 4 decoding beside them). libtorch
 * on a GPU leaves one core to the server (HTTP, decoding), which decodes beside the forward passes. --threads given
 * as every core or more makes decoding yield; fewer, and uploads decode beside the engine on the cores it leaves.
 */
export function serveThreading(o: {
  runtime: 'libtorch' | 'onnxruntime';
  gpu: boolean;
  threads?: number;
  decodeThreads?: number;
  cores?: number;
}): { threads: number; decodeThreads: number; decodeYields: boolean } {
  const cores = o.cores ?? os.availableParallelism();
  const threads = o.threads ?? (o.runtime === 'libtorch' && o.gpu ? Math.max(1, cores - 1) : cores);
  const decodeYields = threads >= cores;
  const lanes = decodeYields ? cores : Math.max(1, cores - threads);
  return { threads, decodeThreads: o.decodeThreads ?? lanes, decodeYields };
}

/** The guard's settings: the token from --token or ALEXNET_TOKEN, the bound address, more Host names. */
function exposure(v: { token?: string; tokenAll: boolean; allowedHosts?: string; host?: string }) {
  const token = v.token ?? (process.env.ALEXNET_TOKEN || undefined);
  if (token !== undefined && token.length < 8)
    throw new UserError(`--token (or ALEXNET_TOKEN) must be at least 8 characters, got ${token.length}`);
  if (v.tokenAll && token === undefined) throw new UserError('--token-all needs --token TOKEN (or ALEXNET_TOKEN)');
  const allowedHosts = v.allowedHosts
    ?.split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '');
  return { token, tokenAll: v.tokenAll, bindHost: v.host ?? '127.0.0.1', allowedHosts };
}

const addressesOf = (app: ServeApp) => app.addresses().filter((a): a is AddressInfo => typeof a !== 'string');
const urlOf = (address: string, port: number) => `http://${address.includes(':') ? `[${address}]` : address}:${port}`;

/** The loud line of a server other machines can reach: where, and what they may do. */
function warnExposed(app: ServeApp, host: string, port: number, token: string | undefined): void {
  const wildcard = addressesOf(app).some((a) => a.address === '0.0.0.0' || a.address === '::');
  const reach = wildcard
    ? Object.values(os.networkInterfaces())
        .flat()
        .filter((i) => i && !i.internal)
        .map((i) => urlOf(i!.address, port))
    : [];
  const who = token
    ? 'reload and other state-changing requests need the token'
    : 'anyone who reaches it can send predictions; reload is refused over HTTP without --token (SIGHUP still reloads)';
  console.error(
    `alexnet: WARNING: listening on ${host}, not only this machine${reach.length ? ` (${reach.join(', ')})` : ''}: ` +
      `${who}. See "Exposing the server" in the README.`,
  );
}

/** Listens, or says in one line why not (the port is taken, the address is not this machine's). */
async function listen(app: ServeApp, port: number, host: string): Promise<string> {
  try {
    return await app.listen({ port, host });
  } catch (e) {
    await app.close().catch(() => undefined);
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EADDRINUSE') throw new UserError(`--port ${port} is in use on ${host}`);
    if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND')
      throw new UserError(`--host ${host} is not an address of this machine`);
    throw e;
  }
}
