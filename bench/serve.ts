// npm run bench:serve: the HTTP server under load, against the engine's own batch throughput, in one run.
// For each runtime it starts `alexnet serve` (a real process, loopback), drives it with autocannon at 1, 8 and 32
// concurrent clients posting a 500×375 JPEG (decoding, resizing and the forward pass all count), then mixes 1,000
// bad requests into the load (memory must stay flat and good requests keep their answers), then overloads a server
// whose admission bound is small (the rejections must be fast 503s). The engine's own batch throughput is measured
// in this process on the same weights, runtime and precision, so "server ÷ engine" is a ratio from one run.
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { saveSafetensors } from '../src/io/safetensors';
import { getModel } from '../src/models/registry';
import { cpuInfo, describeCpu } from '../src/runtime/cpu';
import { openEngine } from '../src/serve/engine';
import { checkUpload, DecodeGate, decodeUpload } from '../src/serve/images';
import { Engine } from '../src/serve/types';
import { InputGeometry } from '../src/infer/predictor';
import { serveThreading } from '../src/cli/serve';
import { manualSeed } from '../src/tensor/tensor';

const ROOT = path.resolve(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'alexnet.js');

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number; average: number };
  statusCodeStats: Record<string, { count: number }>;
  errors: number;
  timeouts: number;
}
type AutocannonOptions = Record<string, unknown>;
const autocannon = require('autocannon') as (o: AutocannonOptions) => Promise<AutocannonResult>;

interface Arm {
  runtime: 'libtorch' | 'onnx';
  precision: 'fp32' | 'bf16';
}

interface Server {
  url: string;
  child: ChildProcess;
  stop: () => Promise<number | null>;
}

/** Starts `alexnet serve` on a free port and waits for its listening line (which names the URL). */
function startServer(args: string[]): Promise<Server> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const stopped = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const stop = () => {
    child.kill('SIGTERM');
    return stopped;
  };
  return new Promise((resolve, reject) => {
    const look = (chunk: Buffer) => {
      out += chunk.toString();
      const m = out.match(/http:\/\/[\w.[\]:-]+:(\d+)/);
      if (m) resolve({ url: m[0], child, stop });
    };
    child.stdout!.on('data', look);
    child.stderr!.on('data', look);
    void stopped.then((code) => reject(new Error(`alexnet serve exited (${code}) before listening:\n${out}`)));
  });
}

async function waitReady(url: string, seconds = 600): Promise<void> {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    const ok = await fetch(`${url}/readyz`).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${url} did not become ready in ${seconds} s`);
}

function rssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 1024;
}

/** The server's own engine alone (same worker, runtime, precision): images/s on batches of `batch`, best of `rounds`. */
async function engineThroughput(e: Engine, batch: number, rounds: number): Promise<number> {
  const g = e.card.geometry;
  const size = batch * g.channels * g.height * g.width;
  const pixels = () => new Uint8Array(size).map((_, i) => (i * 2654435761) >>> 24);
  for (let w = 0; w < 3; w++) await e.logits(pixels(), batch);
  let best = 0;
  for (let r = 0; r < rounds; r++) {
    const input = pixels(); // the engine may take the buffer (transferred to its worker)
    const t0 = performance.now();
    await e.logits(input, batch);
    best = Math.max(best, batch / ((performance.now() - t0) / 1000));
  }
  return best;
}

/**
 * Decoding alone as the server does it (header checks, then decoding; sharp on libuv's pool) with `lanes` decodes
 * at once (a DecodeGate, fed by more waiting uploads than lanes): images/s over `seconds`.
 */
async function decodeThroughput(body: Buffer, g: InputGeometry, lanes: number, seconds: number): Promise<number> {
  const gate = new DecodeGate(lanes);
  const one = () =>
    gate.run(async () => {
      await checkUpload(body, 100_000_000);
      return decodeUpload(body, g);
    });
  for (let i = 0; i < 2 * lanes; i++) await one();
  let n = 0;
  const t0 = performance.now();
  const until = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: Math.max(4, 2 * lanes) }, async () => {
      while (performance.now() < until) {
        await one();
        n++;
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

const flag = (serveArgs: string[], name: string) => {
  const i = serveArgs.indexOf(name);
  return i >= 0 ? Number(serveArgs[i + 1]) : undefined;
};

/** The server's engine threads and decode lanes for this arm, as `alexnet serve` chooses them (on this CPU). */
function serverThreading(arm: Arm, serveArgs: string[]) {
  const t = serveThreading({
    runtime: arm.runtime === 'libtorch' ? 'libtorch' : 'onnxruntime',
    gpu: false,
    threads: flag(serveArgs, '--threads'),
    decodeThreads: flag(serveArgs, '--decode-threads'),
  });
  return { threads: t.threads, lanes: t.decodeThreads };
}

/**
 * `alexnet predict` (a real process) on `n` copies of the JPEG in batches of `batch`: images/s from its first batch's
 * answers to its last (the model's loading left out), and over its whole run.
 */
async function predictThroughput(weights: string, body: Buffer, n: number, batch: number, extra: string[] = []) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-predict-bench-'));
  const files = Array.from({ length: n }, (_, i) => path.join(dir, `${String(i).padStart(4, '0')}.jpg`));
  for (const f of files) fs.writeFileSync(f, body);
  const t0 = performance.now();
  const args = ['predict', '--weights', weights, '--json', '--batch-size', String(batch), ...extra, ...files];
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let seen = 0;
  let first: { t: number; n: number } | undefined;
  let last = 0;
  child.stdout!.on('data', (d: Buffer) => {
    const k = (d.toString().match(/"file":/g) ?? []).length;
    if (!k) return;
    seen += k;
    last = performance.now();
    // The first batch's answers (they may come in several chunks): the rate is counted from there.
    if (!first && seen >= Math.min(batch, n)) first = { t: last, n: seen };
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  const wall = (performance.now() - t0) / 1000;
  fs.rmSync(dir, { recursive: true, force: true });
  if (code !== 0 || seen !== n || !first)
    throw new Error(`alexnet predict exited ${code} after ${seen} of ${n} answers`);
  return { ips: (n - first.n) / ((last - first.t) / 1000), wallIps: n / wall, images: n };
}

async function load(url: string, body: Buffer, connections: number, seconds: number): Promise<AutocannonResult> {
  return autocannon({
    url: `${url}/v1/predict`,
    method: 'POST',
    headers: { 'content-type': 'image/jpeg' },
    body,
    connections,
    duration: seconds,
  });
}

/** 1,000 bad requests (corrupt JPEG, SVG, text, empty) beside good load: RSS before and after, and a good answer. */
async function badMix(s: Server, good: Buffer, seconds: number) {
  const bad = [
    { headers: { 'content-type': 'image/jpeg' }, body: good.subarray(0, good.length >> 1) },
    { headers: { 'content-type': 'image/svg+xml' }, body: '<svg xmlns="http://www.w3.org/2000/svg"/>' },
    { headers: { 'content-type': 'text/plain' }, body: 'not an image' },
    { headers: { 'content-type': 'image/png' }, body: Buffer.from('\x89PNG\r\n\x1a\nbroken') },
  ];
  const before = rssMb(s.child.pid!);
  const [goodRun, badRun] = await Promise.all([
    load(s.url, good, 8, seconds),
    autocannon({
      url: `${s.url}/v1/predict`,
      method: 'POST',
      connections: 4,
      amount: 1000,
      requests: bad.map((b) => ({ method: 'POST', ...b })),
    }),
  ]);
  const after = rssMb(s.child.pid!);
  const still = await fetch(`${s.url}/v1/predict`, {
    method: 'POST',
    body: good,
    headers: { 'content-type': 'image/jpeg' },
  });
  const codes = Object.fromEntries(Object.entries(badRun.statusCodeStats).map(([k, v]) => [k, v.count]));
  return {
    rssBeforeMb: before,
    rssAfterMb: after,
    goodRps: goodRun.requests.average,
    badCodes: codes,
    after: still.status,
  };
}

/** Many clients against a server admitting few: how many got 503, and how fast. */
async function overload(url: string, good: Buffer, clients: number, each: number) {
  const times: number[] = [];
  const codes: Record<number, number> = {};
  const one = () =>
    new Promise<void>((resolve) => {
      const t0 = performance.now();
      const req = http.request(`${url}/v1/predict`, { method: 'POST', headers: { 'content-type': 'image/jpeg' } });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => {
          codes[res.statusCode!] = (codes[res.statusCode!] ?? 0) + 1;
          if (res.statusCode === 503) times.push(performance.now() - t0);
          resolve();
        });
      });
      req.on('error', () => resolve());
      req.end(good);
    });
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = 0; i < each; i++) await one();
    }),
  );
  times.sort((a, b) => a - b);
  const q = (p: number) => (times.length ? times[Math.min(times.length - 1, Math.floor(p * times.length))] : NaN);
  return { codes, rejectP50Ms: q(0.5), rejectP99Ms: q(0.99) };
}

/** A generated w×h JPEG (the same bytes every run). */
async function photo(w: number, h: number): Promise<Buffer> {
  const sharp = require('sharp');
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (((i % (w * 3)) * 7) ^ (Math.floor(i / (w * 3)) * 5)) & 255;
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 90 })
    .toBuffer();
}

function fmt(x: number, d = 1): string {
  return Number.isFinite(x) ? x.toFixed(d) : '—';
}

/** The server's own sums and counts (/metrics) of batch sizes, forward passes and decodes. */
async function serverSums(url: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const names = ['alexnet_batch_size', 'alexnet_inference_duration_seconds', 'alexnet_decode_duration_seconds'];
  const out: Record<string, number> = {};
  for (const n of names)
    for (const k of ['sum', 'count'])
      out[`${n}_${k}`] = Number(new RegExp(`^${n}_${k} ([\\d.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
  return out;
}

/** Where the server's time went between two snapshots: mean batch, ms per forward pass, ms per decode (wall). */
function breakdownOf(before: Record<string, number>, after: Record<string, number>) {
  const mean = (n: string) => (after[`${n}_sum`] - before[`${n}_sum`]) / (after[`${n}_count`] - before[`${n}_count`]);
  return {
    meanBatch: mean('alexnet_batch_size'),
    inferenceMsPerBatch: 1000 * mean('alexnet_inference_duration_seconds'),
    decodeMsPerImage: 1000 * mean('alexnet_decode_duration_seconds'),
  };
}

/**
 * The two stages alone, one after the other, on this machine: the engine on batches of the server's size (all cores),
 * and decoding with one lane per core (the machine's decoding rate) and with the server's lanes. The ideal pipelined
 * rate spends each image's engine and decoding time back to back on the whole machine: 1 / (1/engine + 1/decode).
 */
async function stagesAlone(arm: Arm, weights: string, good: Buffer, o: BenchOptions) {
  const engineAt = async (threads?: number) => {
    const e = await openEngine({ weights, runtime: arm.runtime, precision: arm.precision, threads });
    return { geometry: e.card.geometry, ips: await engineThroughput(e, o.maxBatch, 5).finally(() => e.close()) };
  };
  const { geometry, ips: engineIps } = await engineAt();
  const cores = os.availableParallelism();
  // The server's own engine threads, where fewer than the cores (its libtorch default): that engine alone too.
  const { threads, lanes } = serverThreading(arm, o.serveArgs);
  const engineServerIps = threads !== undefined && threads < cores ? (await engineAt(threads)).ips : engineIps;
  const decodeIps = await decodeThroughput(good, geometry, cores, o.seconds / 2);
  const decodeServerIps = lanes === cores ? decodeIps : await decodeThroughput(good, geometry, lanes, o.seconds / 2);
  const idealIps = 1 / (1 / engineIps + 1 / decodeIps);
  console.log(
    `  ${arm.runtime} ${arm.precision} alone: engine ${fmt(engineIps)} img/s (${fmt(engineServerIps)} with the server's ` +
      `threads), decoding ${fmt(decodeIps)} img/s ` +
      `(${cores} lanes; ${fmt(decodeServerIps)} with the server's ${lanes}), ideal ${fmt(idealIps)} img/s`,
  );
  return { engineIps, engineServerIps, threads, decodeIps, decodeServerIps, lanes, idealIps };
}

async function runArm(arm: Arm, files: { weights: string }, images: { good: Buffer; small: Buffer }, o: BenchOptions) {
  const { good, small } = images;
  const weights = files.weights;
  const stages = await stagesAlone(arm, weights, good, o);
  const common = ['--weights', weights, '--runtime', arm.runtime, '--max-batch', String(o.maxBatch)];
  const precision = arm.runtime === 'libtorch' ? ['--precision', arm.precision] : [];
  const s = await startServer([...common, ...precision, ...o.serveArgs]);
  const rows: { clients: number; rps: number; p50: number; p99: number; errors: number }[] = [];
  let mix, breakdown, small224;
  try {
    await waitReady(s.url);
    for (const c of o.clients) {
      const before = await serverSums(s.url);
      const r = await load(s.url, good, c, o.seconds);
      breakdown = breakdownOf(before, await serverSums(s.url));
      const non200 = Object.entries(r.statusCodeStats).reduce((a, [k, v]) => a + (k === '200' ? 0 : v.count), 0);
      rows.push({
        clients: c,
        rps: r.requests.average,
        p50: r.latency.p50,
        p99: r.latency.p99,
        errors: non200 + r.errors,
      });
      console.log(
        `  ${arm.runtime} ${arm.precision} ${c} clients: ${fmt(r.requests.average)} req/s, p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms`,
      );
    }
    const r = await load(s.url, small, o.clients[o.clients.length - 1], o.seconds);
    small224 = { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99 };
    mix = await badMix(s, good, o.seconds);
  } finally {
    await s.stop();
  }
  // alexnet predict (libtorch fp32: it has no --precision) on the same JPEG, after the server has stopped.
  const predict =
    o.predictImages && arm.runtime === 'libtorch' && arm.precision === 'fp32'
      ? await predictThroughput(weights, good, o.predictImages, o.maxBatch)
      : undefined;
  if (predict)
    console.log(
      `  alexnet predict, ${o.predictImages} copies: ${fmt(predict.ips)} img/s (${fmt(predict.wallIps)} whole run)`,
    );
  return { ...arm, ...stages, rows, small224, breakdown, mix, predict };
}

interface BenchOptions {
  clients: number[];
  seconds: number;
  maxBatch: number;
  model: string;
  serveArgs: string[];
  /** Copies of the JPEG given to `alexnet predict` (0: not run). */
  predictImages: number;
}

const OPTIONS = {
  seconds: { type: 'string', default: '10' },
  'max-batch': { type: 'string', default: '16' },
  model: { type: 'string', default: 'alexnet-torchvision' },
  runtimes: { type: 'string', default: 'libtorch-fp32,libtorch-bf16,onnx-fp32' },
  // Extra options for every server started, e.g. '--threads 1' (one core for the engine, one for decoding).
  'serve-args': { type: 'string', default: '' },
  clients: { type: 'string', default: '1,8,32' },
  // alexnet predict on this many copies of the JPEG (libtorch fp32 arm), beside the server; 0 skips it.
  'predict-images': { type: 'string', default: '320' },
  help: { type: 'boolean', short: 'h' },
} as const;

const USAGE =
  'Usage: npm run bench:serve -- [--runtimes libtorch-fp32,libtorch-bf16,onnx-fp32] [--clients 1,8,32] [--seconds 10]\n' +
  "                              [--max-batch 16] [--model alexnet-torchvision] [--serve-args '--threads 1']\n" +
  '                              [--predict-images 320]   (0: no alexnet predict row)\n' +
  'Starts `alexnet serve` for each runtime and drives it with autocannon (a 500×375 JPEG per request) beside the\n' +
  "engine's own batch rate and decoding alone, measured in this process: the server against 1/(1/engine + 1/decode).";

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({ options: OPTIONS });
  } catch (e) {
    console.error(`bench:serve: ${(e as Error).message.split('\n')[0]}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  const { values } = parsed;
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const o: BenchOptions = {
    clients: values.clients!.split(',').map(Number),
    seconds: Number(values.seconds),
    maxBatch: Number(values['max-batch']),
    model: values.model!,
    serveArgs: values['serve-args']!.split(' ').filter(Boolean),
    predictImages: Number(values['predict-images']),
  };
  const cpu = cpuInfo();
  const arms = values
    .runtimes!.split(',')
    .map((s) => s.split('-') as [Arm['runtime'], Arm['precision']])
    .filter(([, p]) => p === 'fp32' || cpu.nativeBf16)
    .map(([runtime, precision]) => ({ runtime, precision }));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-serve-bench-'));
  const files = { weights: path.join(dir, 'model.safetensors') };
  manualSeed(0);
  const model = getModel(o.model);
  saveSafetensors(files.weights, model.stateDict());
  model.dispose();
  const good = await photo(500, 375);
  const small = await photo(224, 224);
  console.log(
    `serve bench: ${o.model}, ${describeCpu(cpu)}, ${os.cpus().length} cores, max batch ${o.maxBatch}` +
      (o.serveArgs.length ? `, serve ${o.serveArgs.join(' ')}` : ''),
  );
  const results = [];
  for (const arm of arms) results.push(await runArm(arm, files, { good, small }, o));
  const s = await startServer(['--weights', files.weights, '--runtime', 'onnx', '--max-inflight', '4']);
  let over;
  try {
    await waitReady(s.url);
    over = await overload(s.url, good, 64, 8);
  } finally {
    await s.stop();
  }
  fs.rmSync(dir, { recursive: true, force: true });
  report(o, results, over, describeCpu(cpu));
}

/** The server against its ideal pipelined rate, and alexnet predict against the server, one row per arm. */
function idealTable(o: BenchOptions, results: Awaited<ReturnType<typeof runArm>>[]): string[] {
  const at = o.clients[o.clients.length - 1];
  const lines = [
    `| runtime | engine alone (img/s), all cores (server's threads) | decoding alone, ${os.availableParallelism()} lanes (server's lanes) | ideal 1/(1/engine + 1/decode) | server at ${at} clients | ÷ ideal | alexnet predict, ${o.predictImages} copies, batch ${o.maxBatch} (÷ server) |`,
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const server = r.rows[r.rows.length - 1].rps;
    const p = r.predict ? `${fmt(r.predict.ips)} (${fmt(r.predict.ips / server, 2)}×)` : '—';
    lines.push(
      `| ${r.runtime} ${r.precision} | ${fmt(r.engineIps)} (${r.threads ?? 'all'}: ${fmt(r.engineServerIps)}) | ${fmt(r.decodeIps)} (${r.lanes}: ${fmt(r.decodeServerIps)}) | ${fmt(r.idealIps)} | ${fmt(server)} | ${fmt(server / r.idealIps, 2)}× | ${p} |`,
    );
  }
  return lines;
}

function report(o: BenchOptions, results: Awaited<ReturnType<typeof runArm>>[], over: unknown, cpu: string): void {
  const lines = [
    `| runtime | engine alone, batch ${o.maxBatch} (img/s) | ${o.clients.map((c) => `${c} clients: req/s, p50/p99 ms`).join(' | ')} | at ${o.clients[o.clients.length - 1]} ÷ engine | ${o.clients[o.clients.length - 1]} clients, 224×224 JPEG: req/s (÷ engine) | in the server at ${o.clients[o.clients.length - 1]}: batch, ms per forward, ms per decode |`,
    `|---|---|${o.clients.map(() => '---').join('|')}|---|---|---|`,
  ];
  for (const r of results) {
    const last = r.rows[r.rows.length - 1];
    lines.push(
      `| ${r.runtime} ${r.precision} | ${fmt(r.engineIps)} | ${r.rows.map((x) => `${fmt(x.rps)}, ${x.p50}/${x.p99}${x.errors ? ` (${x.errors} errors)` : ''}`).join(' | ')} | ${fmt(last.rps / r.engineIps, 2)}× | ${fmt(r.small224!.rps)} (${fmt(r.small224!.rps / r.engineIps, 2)}×) | ${fmt(r.breakdown!.meanBatch)}, ${fmt(r.breakdown!.inferenceMsPerBatch, 0)}, ${fmt(r.breakdown!.decodeMsPerImage)} |`,
    );
  }
  lines.push('', ...idealTable(o, results));
  console.log(`\n${cpu}\n${lines.join('\n')}\n`);
  for (const r of results) console.log(`bad-request mix, ${r.runtime} ${r.precision}: ${JSON.stringify(r.mix)}`);
  console.log(`overload (64 clients, --max-inflight 4): ${JSON.stringify(over)}`);
  const out = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(out, { recursive: true });
  fs.writeFileSync(path.join(out, 'serve.json'), JSON.stringify({ cpu, options: o, results, overload: over }, null, 2));
  fs.writeFileSync(path.join(out, 'serve.md'), lines.join('\n') + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
