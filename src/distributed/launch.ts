// The launcher (`alexnet train --nproc N`), torchrun's conventions: N child processes of the same command, each
// told its place through RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT, with this
// machine's cores shared out between them. It starts no more ranks than the machine's cores and memory hold
// (unless told --oversubscribe), relays their output (rank 0's unchanged, the others' prefixed), passes Ctrl-C and
// SIGTERM on, and when a rank fails it names it and stops the rest; ranks still running a grace period (the
// --dist-timeout) after a failure or a signal are killed: never a silent hang, never a rank left behind. Ranks
// watch their launcher and stop when it is killed outright (env.ts, watchLauncher).
import { ChildProcess, spawn } from 'node:child_process';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { UserError } from '../errors';
import { EXIT_INTERRUPTED } from '../train/signals';
import { LAUNCHER_FLAGS, LAUNCHER_PID_ENV, LAUNCHER_SWITCHES } from './env';

export interface LaunchOptions {
  /** Ranks on this machine. */
  nproc: number;
  nnodes?: number;
  nodeRank?: number;
  /** Rank 0's address (default 127.0.0.1: one machine). */
  masterAddr?: string;
  /** Rank 0's store port (default on one machine: a free port found now). */
  masterPort?: number;
  /** The command line after `alexnet` (e.g. ['train', '--nproc', '2', …]); the launcher's flags are removed. */
  argv: string[];
  /** CPU threads per rank (the user's --threads); default max(1, floor(cores / nproc)). */
  threads?: number;
  /** The ranks' base environment (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** The script each rank runs with this Node (default bin/alexnet.js). */
  bin?: string;
  /**
   * How long the ranks get to stop by themselves after one fails or a signal asked them to, before they are
   * killed (default 60 s, the default --dist-timeout: a rank waits that long for a peer before it gives up).
   */
  graceMs?: number;
  /** This machine's cores (default os.availableParallelism()). */
  cores?: number;
  /** Memory one rank needs, estimated (default DEFAULT_RANK_BYTES; see rankBytes()). */
  rankBytes?: number;
  /** Memory free for the ranks (default os.freemem(): Linux's MemAvailable). */
  freeBytes?: number;
  /** Start --nproc ranks even where they exceed the cores or the memory (--oversubscribe). */
  oversubscribe?: boolean;
  /** The launcher's own messages (default: stderr). */
  log?: (line: string) => void;
}

export interface RankSpec {
  rank: number;
  localRank: number;
  /** Arguments after the Node binary: the script, then the command line. */
  args: string[];
  env: NodeJS.ProcessEnv;
}

export interface LaunchPlan {
  worldSize: number;
  masterAddr: string;
  masterPort: number;
  /** CPU threads each rank uses (its --threads and OMP_NUM_THREADS). */
  threads: number;
  ranks: RankSpec[];
}

export const DEFAULT_GRACE_MS = 60_000;

/** After the ranks are killed, how long their output may take to drain before the launcher exits anyway. */
const DRAIN_MS = 3000;

/** A rank's memory without its model: Node, libtorch, the data set and the batches (measured: 250–400 MB). */
export const DEFAULT_RANK_BYTES = 400 * 2 ** 20;

/** A rank's memory for a model of `params` float32 parameters: weights, gradients and two optimiser states. */
export function rankBytes(params: number): number {
  return DEFAULT_RANK_BYTES + 16 * params;
}

const gb = (bytes: number): string => `${+(bytes / 2 ** 30).toFixed(1)} GB`;

/**
 * Refuses more ranks than the machine runs side by side — more than its cores, or more than its free memory holds
 * at `rankBytes` each — with a one-line UserError naming the limit and the override (--oversubscribe).
 */
export function checkCapacity(o: {
  nproc: number;
  cores: number;
  freeBytes: number;
  rankBytes: number;
  oversubscribe?: boolean;
}): void {
  const byMemory = Math.floor(o.freeBytes / o.rankBytes);
  const limit = Math.max(1, Math.min(o.cores, byMemory));
  if (o.nproc <= limit || o.oversubscribe) return;
  throw new UserError(
    `--nproc ${o.nproc} is more ranks than this machine runs side by side: its ${o.cores} core${o.cores === 1 ? '' : 's'} ` +
      `and ${gb(o.freeBytes)} of free memory (about ${gb(o.rankBytes)} a rank) allow at most ${limit}; give ` +
      `--nproc ${limit} or fewer, or add --oversubscribe to start them anyway`,
  );
}

/**
 * The launcher's exit code for a rank that ended with `code` or `signal`: 2 (a usage or setup error) and 130
 * (interrupted) as the rank said; any other failure, a death by signal included, is 1.
 */
export function launcherExitCode(code: number | null, signal: NodeJS.Signals | null): number {
  if (signal) return 1;
  return code === 0 || code === 2 || code === EXIT_INTERRUPTED ? code : 1;
}

const BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'alexnet.js');

/** The command line without the launcher's flags (`--nproc 2` and `--nproc=2` alike) and switches, up to a `--`. */
export function stripLauncherFlags(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return out.concat(argv.slice(i));
    const name = a.split('=', 1)[0];
    if ((LAUNCHER_SWITCHES as readonly string[]).includes(name)) continue;
    if (!(LAUNCHER_FLAGS as readonly string[]).includes(name)) out.push(a);
    else if (!a.includes('=')) i++;
  }
  return out;
}

/** The value of `--threads` in a command line, if given. */
export function threadsIn(argv: string[]): number | undefined {
  for (let i = 0; i < argv.length && argv[i] !== '--'; i++) {
    if (argv[i] === '--threads') return Number(argv[i + 1]);
    if (argv[i].startsWith('--threads=')) return Number(argv[i].slice('--threads='.length));
  }
  return undefined;
}

/** Threads per rank when the user gives none: the machine's cores shared evenly, at least one each. */
export function threadsPerRank(cores: number, nproc: number): number {
  return Math.max(1, Math.floor(cores / nproc));
}

/** A TCP port free on every interface right now (the OS picks it; rank 0's store binds it moments later). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Every rank's command line and environment, before anything starts. */
export async function planLaunch(o: LaunchOptions): Promise<LaunchPlan> {
  const nnodes = o.nnodes ?? 1;
  const nodeRank = o.nodeRank ?? 0;
  if (!Number.isInteger(o.nproc) || o.nproc < 1) throw new UserError(`--nproc must be an integer ≥ 1, got ${o.nproc}`);
  if (!Number.isInteger(nnodes) || nnodes < 1) throw new UserError(`--nnodes must be an integer ≥ 1, got ${nnodes}`);
  if (!Number.isInteger(nodeRank) || nodeRank < 0 || nodeRank >= nnodes)
    throw new UserError(`--node-rank must be an integer from 0 to ${nnodes - 1}, got ${nodeRank}`);
  if (nnodes > 1 && (o.masterAddr === undefined || o.masterPort === undefined))
    throw new UserError(`--nnodes ${nnodes} needs --master-addr and --master-port: node 0's address and port`);
  const cores = o.cores ?? os.availableParallelism();
  checkCapacity({
    nproc: o.nproc,
    cores,
    freeBytes: o.freeBytes ?? os.freemem(),
    rankBytes: o.rankBytes ?? DEFAULT_RANK_BYTES,
    oversubscribe: o.oversubscribe,
  });
  const masterAddr = o.masterAddr ?? '127.0.0.1';
  const masterPort = o.masterPort ?? (await freePort());
  let args = stripLauncherFlags(o.argv);
  const given = o.threads ?? threadsIn(args);
  const threads = given ?? threadsPerRank(cores, o.nproc);
  if (threadsIn(args) === undefined) args = withOption(args, '--threads', String(threads));
  const base = o.env ?? process.env;
  const worldSize = nnodes * o.nproc;
  const ranks = Array.from({ length: o.nproc }, (_, localRank) => {
    const rank = nodeRank * o.nproc + localRank;
    const env: NodeJS.ProcessEnv = {
      ...base,
      RANK: String(rank),
      WORLD_SIZE: String(worldSize),
      LOCAL_RANK: String(localRank),
      LOCAL_WORLD_SIZE: String(o.nproc),
      GROUP_RANK: String(nodeRank),
      MASTER_ADDR: masterAddr,
      MASTER_PORT: String(masterPort),
      OMP_NUM_THREADS: String(threads),
      // sharp's decodes run on libuv's pool, which bin/alexnet.js would otherwise size to every core in every rank.
      UV_THREADPOOL_SIZE: base.UV_THREADPOOL_SIZE ?? String(Math.max(4, threads)),
      [LAUNCHER_PID_ENV]: String(process.pid),
    };
    return { rank, localRank, args: [o.bin ?? BIN, ...args], env };
  });
  return { worldSize, masterAddr, masterPort, threads, ranks };
}

/** `args` with `--name value` added before any `--`. */
function withOption(args: string[], name: string, value: string): string[] {
  const end = args.indexOf('--');
  return end < 0 ? [...args, name, value] : [...args.slice(0, end), name, value, ...args.slice(end)];
}

/**
 * Starts this machine's ranks and resolves, once every one has exited, to the launcher's exit code, one of the
 * documented four: 0 when all finished; for the first failed rank launcherExitCode's (1, or its 2 or 130); 130
 * (EXIT_INTERRUPTED, as `alexnet train` alone) after Ctrl-C or SIGTERM, whose first arrival every rank receives
 * (they stop after their step and rank 0 saves) and whose second kills them. Ranks still running `graceMs` after
 * a failure or a signal are killed; the launcher then exits within a few seconds.
 */
export async function launch(o: LaunchOptions): Promise<number> {
  const plan = await planLaunch(o);
  return new RankGroup(plan, {
    graceMs: o.graceMs ?? DEFAULT_GRACE_MS,
    log: o.log ?? ((line) => process.stderr.write(`${line}\n`)),
  }).run();
}

interface Running {
  rank: number;
  child: ChildProcess;
  done: boolean;
}

/** The running ranks of one launch: output relay, signal forwarding, failure handling. */
class RankGroup {
  readonly #procs: Running[] = [];
  #interrupts = 0;
  #failure: { rank: number; code: number } | undefined;
  #grace: NodeJS.Timeout | undefined;
  #drain: NodeJS.Timeout | undefined;
  #finished: (code: number) => void = () => {};

  constructor(
    readonly plan: LaunchPlan,
    readonly o: { graceMs: number; log: (line: string) => void },
  ) {}

  run(): Promise<number> {
    const done = new Promise<number>((resolve) => (this.#finished = resolve));
    const onSignal = (s: NodeJS.Signals) => this.#interrupt(s);
    const killAll = () => this.#signalAll('SIGKILL');
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);
    // A launcher that dies of an error takes its ranks with it.
    process.on('exit', killAll);
    for (const spec of this.plan.ranks) this.#start(spec);
    return done.finally(() => {
      for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(s, onSignal);
      process.off('exit', killAll);
    });
  }

  #start(spec: RankSpec): void {
    const passThrough = spec.rank === 0;
    // Detached: a terminal's Ctrl-C reaches the launcher alone, which passes it on once (the ranks would
    // otherwise get it twice, and a second Ctrl-C means "quit without saving").
    const child = spawn(process.execPath, spec.args, {
      env: spec.env,
      stdio: passThrough ? ['ignore', 'inherit', 'inherit'] : ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const p: Running = { rank: spec.rank, child, done: false };
    this.#procs.push(p);
    if (!passThrough) {
      relayLines(child.stdout!, process.stdout, `[rank ${spec.rank}] `);
      relayLines(child.stderr!, process.stderr, `[rank ${spec.rank}] `);
    }
    child.on('error', (e) => {
      this.o.log(`[launcher] rank ${spec.rank} could not start: ${e.message}`);
      this.#exited(p, 1, null);
    });
    child.on('close', (code, signal) => this.#exited(p, code, signal));
  }

  #exited(p: Running, code: number | null, signal: NodeJS.Signals | null): void {
    if (p.done) return;
    p.done = true;
    // After Ctrl-C, a rank that saved and exited 130 (or 0, or died of the forwarded signal) stopped as asked.
    const asked =
      this.#interrupts > 0 &&
      (code === 0 || code === EXIT_INTERRUPTED || signal === 'SIGINT' || signal === 'SIGTERM' || signal === 'SIGKILL');
    if ((code !== 0 || signal) && !asked && !this.#failure) this.#failed(p.rank, code, signal);
    if (this.#procs.length === this.plan.ranks.length && this.#procs.every((q) => q.done)) this.#finish();
  }

  #failed(rank: number, code: number | null, signal: NodeJS.Signals | null): void {
    this.#failure = { rank, code: launcherExitCode(code, signal) };
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    const alive = this.#procs.filter((q) => !q.done).length;
    if (!alive) return this.o.log(`[launcher] rank ${rank} ${how}`);
    const s = Math.round(this.o.graceMs / 100) / 10;
    this.o.log(`[launcher] rank ${rank} ${how}; the other ranks get ${s} s to stop, then they are killed`);
    this.#killAfterGrace();
  }

  /** Kills the ranks still running when the grace period ends (one timer, for a failure or a signal). */
  #killAfterGrace(): void {
    this.#grace ??= setTimeout(() => {
      const left = this.#procs.filter((q) => !q.done).map((q) => q.rank);
      if (left.length) this.o.log(`[launcher] killing rank${left.length > 1 ? 's' : ''} ${left.join(', ')}`);
      this.#kill();
    }, this.o.graceMs);
  }

  /** SIGKILL to every rank; their ends are awaited for a few seconds at most (a pipe held open must not hang us). */
  #kill(): void {
    this.#signalAll('SIGKILL');
    this.#drain ??= setTimeout(() => {
      this.o.log('[launcher] the killed ranks did not close their output: exiting without it');
      for (const p of this.#procs.filter((q) => !q.done)) {
        p.child.stdout?.destroy();
        p.child.stderr?.destroy();
        p.child.unref();
      }
      this.#finish();
    }, DRAIN_MS);
  }

  #interrupt(signal: NodeJS.Signals): void {
    this.#interrupts++;
    if (this.#interrupts > 1) {
      this.o.log('[launcher] killing every rank');
      return this.#kill();
    }
    // SIGHUP (the terminal went away) asks the ranks to save and stop, as SIGTERM does.
    const forward = signal === 'SIGINT' ? 'SIGINT' : 'SIGTERM';
    const s = Math.round(this.o.graceMs / 100) / 10;
    this.o.log(
      `[launcher] ${signal}: every rank stops after its current step (again to kill them; any still running in ${s} s get SIGKILL)`,
    );
    this.#signalAll(forward);
    this.#killAfterGrace();
  }

  #signalAll(signal: NodeJS.Signals): void {
    for (const p of this.#procs)
      if (!p.done && p.child.exitCode === null && p.child.signalCode === null) kill(p.child, signal);
  }

  #finish(): void {
    clearTimeout(this.#grace);
    clearTimeout(this.#drain);
    this.#finished(this.#failure?.code ?? (this.#interrupts > 0 ? EXIT_INTERRUPTED : 0));
  }
}

function kill(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    child.kill(signal);
  } catch {
    // Already gone: its 'close' is on the way.
  }
}

/** Copies a stream to `out` line by line with `prefix` (a last line without a newline is copied at the end). */
function relayLines(from: NodeJS.ReadableStream, out: NodeJS.WritableStream, prefix: string): void {
  const lines = readline.createInterface({ input: from, crlfDelay: Infinity });
  lines.on('line', (line) => out.write(`${prefix}${line}\n`));
}
