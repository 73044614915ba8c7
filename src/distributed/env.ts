// Who this process is in a distributed run, from torchrun's conventions: the launcher (`--nproc N`) starts the
// ranks of one machine and hands each its place in environment variables (MASTER_ADDR, MASTER_PORT, RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE); Slurm, Kubernetes or a torchrun-style script can set the same
// variables and start `alexnet train` directly. Flags (--master-addr, --master-port, --nnodes, --node-rank) win
// over the environment, as an explicit option does everywhere else.
import * as os from 'node:os';
import { UserError } from '../errors';

/** One rank's place in the run. */
export interface DistEnv {
  /** Global rank, 0 ≤ rank < worldSize; rank 0 prints progress, writes files and hosts the store. */
  rank: number;
  worldSize: number;
  /** Rank among this machine's ranks (picks its GPU, shares out its cores). */
  localRank: number;
  localWorldSize: number;
  /** This machine's index among the machines, and their number. */
  nodeRank: number;
  nnodes: number;
  /** Where rank 0's store listens. */
  masterAddr: string;
  masterPort: number;
}

/** The distributed flags of `alexnet train` (undefined: not given). */
export interface DistFlags {
  nproc?: number;
  nnodes?: number;
  nodeRank?: number;
  masterAddr?: string;
  masterPort?: number;
}

/** The launcher's own flags: a launcher removes them from the command line it gives its ranks. */
export const LAUNCHER_FLAGS = ['--nproc', '--nnodes', '--node-rank', '--master-addr', '--master-port'] as const;

/** The launcher's switches (flags without a value), removed the same way. */
export const LAUNCHER_SWITCHES = ['--oversubscribe'] as const;

/** The launcher's process id, in each rank's environment (see `watchLauncher`). */
export const LAUNCHER_PID_ENV = 'ALEXNET_LAUNCHER_PID';

/** torchrun's default store port, used when several machines are launched without a port. */
export const DEFAULT_MASTER_PORT = 29500;

/** What this process does: train alone, start this machine's ranks, or be one rank. */
export type DistRole =
  | { kind: 'single' }
  | { kind: 'launcher'; nproc: number; nnodes: number; nodeRank: number; masterAddr?: string; masterPort?: number }
  | { kind: 'rank'; env: DistEnv };

/**
 * The role from the flags and the environment: `--nproc` makes a launcher, RANK/WORLD_SIZE in the environment a
 * rank, neither a single process. Mistakes (both at once, flags that need one of them) are one-line UserErrors.
 */
export function distRole(flags: DistFlags = {}, env: NodeJS.ProcessEnv = process.env): DistRole {
  if (flags.nproc !== undefined) {
    if (env.RANK !== undefined)
      throw new UserError(
        `--nproc starts ranks itself, but this process already is one (RANK=${env.RANK} is set): drop --nproc or unset RANK`,
      );
    return { kind: 'launcher', ...launcherPlace(flags, env) };
  }
  const rank = readDistEnv(flags, env);
  if (rank) return { kind: 'rank', env: rank };
  const stray = (['nnodes', 'nodeRank', 'masterAddr', 'masterPort'] as const).find((k) => flags[k] !== undefined);
  if (stray)
    throw new UserError(
      `${flagName(stray)} is for distributed runs: add --nproc N to start N ranks here, or set RANK and WORLD_SIZE`,
    );
  return { kind: 'single' };
}

/** The launcher's node and store: --nnodes (1), --node-rank (0); several machines need node 0's address. */
function launcherPlace(flags: DistFlags, env: NodeJS.ProcessEnv) {
  const nproc = checkInt(flags.nproc!, '--nproc', 1);
  const nnodes = checkInt(flags.nnodes ?? 1, '--nnodes', 1);
  const nodeRank = checkInt(flags.nodeRank ?? 0, '--node-rank', 0);
  if (nodeRank >= nnodes) throw new UserError(`--node-rank must be less than --nnodes (${nnodes}), got ${nodeRank}`);
  const masterAddr = flags.masterAddr ?? env.MASTER_ADDR;
  if (masterAddr !== undefined) checkAddr(masterAddr, flags.masterAddr !== undefined ? '--master-addr' : 'MASTER_ADDR');
  if (masterAddr === undefined && nnodes > 1)
    throw new UserError(
      `--nnodes ${nnodes} needs --master-addr (or MASTER_ADDR): the address of node 0, where rank 0 listens`,
    );
  const masterPort = portOf(flags.masterPort, env.MASTER_PORT) ?? (nnodes > 1 ? DEFAULT_MASTER_PORT : undefined);
  return { nproc, nnodes, nodeRank, masterAddr: masterAddr && unbracket(masterAddr), masterPort };
}

/**
 * This rank's place from RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT (the flags
 * override the last two and --nnodes/--node-rank the derived node), or undefined when RANK and WORLD_SIZE are
 * both unset (a single-process run). A world of one is still a DistEnv. Without LOCAL_*, the ranks are taken to be
 * spread evenly over --nnodes machines (one machine by default), consecutive ranks on the same machine.
 */
export function readDistEnv(flags: DistFlags = {}, env: NodeJS.ProcessEnv = process.env): DistEnv | undefined {
  if (env.RANK === undefined && env.WORLD_SIZE === undefined) {
    const local =
      env.LOCAL_RANK !== undefined ? 'LOCAL_RANK' : env.LOCAL_WORLD_SIZE !== undefined ? 'LOCAL_WORLD_SIZE' : '';
    if (local) throw new UserError(`${local} is set but RANK and WORLD_SIZE are not: a rank needs all of them`);
    return undefined;
  }
  if (env.RANK === undefined || env.WORLD_SIZE === undefined) {
    const [set, unset] = env.RANK === undefined ? ['WORLD_SIZE', 'RANK'] : ['RANK', 'WORLD_SIZE'];
    throw new UserError(
      `${set} is set but ${unset} is not: a rank needs both (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT)`,
    );
  }
  const worldSize = envInt(env, 'WORLD_SIZE', 1);
  const rank = envInt(env, 'RANK', 0);
  if (rank >= worldSize) throw new UserError(`RANK must be less than WORLD_SIZE (${worldSize}), got ${rank}`);
  const node = nodePlace(rank, worldSize, flags, env);
  return { rank, worldSize, ...node, ...masterOf(flags, env) };
}

/** LOCAL_RANK, LOCAL_WORLD_SIZE and the node, given or derived, and checked against each other. */
function nodePlace(rank: number, worldSize: number, flags: DistFlags, env: NodeJS.ProcessEnv) {
  let localWorldSize: number;
  if (env.LOCAL_WORLD_SIZE !== undefined) localWorldSize = envInt(env, 'LOCAL_WORLD_SIZE', 1);
  else if (flags.nnodes !== undefined) {
    if (worldSize % flags.nnodes !== 0)
      throw new UserError(
        `WORLD_SIZE (${worldSize}) must be a multiple of --nnodes (${flags.nnodes}) when LOCAL_WORLD_SIZE is not set`,
      );
    localWorldSize = worldSize / flags.nnodes;
  } else localWorldSize = worldSize;
  if (localWorldSize > worldSize)
    throw new UserError(`LOCAL_WORLD_SIZE must be at most WORLD_SIZE (${worldSize}), got ${localWorldSize}`);
  const localRank = env.LOCAL_RANK !== undefined ? envInt(env, 'LOCAL_RANK', 0) : rank % localWorldSize;
  if (localRank >= localWorldSize)
    throw new UserError(`LOCAL_RANK must be less than LOCAL_WORLD_SIZE (${localWorldSize}), got ${localRank}`);
  const nnodes = flags.nnodes ?? Math.ceil(worldSize / localWorldSize);
  const nodeRank = flags.nodeRank ?? Math.floor(rank / localWorldSize);
  if (nodeRank >= nnodes)
    throw new UserError(`--node-rank must be less than the number of nodes (${nnodes}), got ${nodeRank}`);
  return { localRank, localWorldSize, nodeRank, nnodes };
}

/** MASTER_ADDR and MASTER_PORT (or the flags): every rank must know where rank 0's store listens. */
function masterOf(flags: DistFlags, env: NodeJS.ProcessEnv): { masterAddr: string; masterPort: number } {
  const masterAddr = flags.masterAddr ?? env.MASTER_ADDR;
  if (masterAddr === undefined)
    throw new UserError(
      'MASTER_ADDR is not set: every rank needs the address of rank 0 (MASTER_ADDR or --master-addr)',
    );
  checkAddr(masterAddr, flags.masterAddr !== undefined ? '--master-addr' : 'MASTER_ADDR');
  const masterPort = portOf(flags.masterPort, env.MASTER_PORT);
  if (masterPort === undefined)
    throw new UserError(
      'MASTER_PORT is not set: every rank needs the port rank 0 listens on (MASTER_PORT or --master-port)',
    );
  return { masterAddr: unbracket(masterAddr), masterPort };
}

/** The line each rank prints at start: who it is, where, and where the store is. */
export function rankBanner(d: DistEnv, o: { pid?: number; host?: string } = {}): string {
  return (
    `rank ${d.rank}/${d.worldSize} (local ${d.localRank}/${d.localWorldSize}, node ${d.nodeRank}/${d.nnodes}) ` +
    `pid ${o.pid ?? process.pid} on ${o.host ?? os.hostname()}, master ${hostPort(d.masterAddr, d.masterPort)}`
  );
}

/** host:port, with an IPv6 address in brackets. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * Calls `onGone` once when the launcher that started this rank (LAUNCHER_PID_ENV) is no longer its parent — it
 * was killed without passing the signal on — so the rank can stop instead of training on unseen; a launcher gone
 * before the rank got here counts too. The parent is watched from a worker thread, so a rank blocked in a native
 * call (a rendezvous, a collective) still stops: if `onGone` has not ended the process `killAfterMs` later
 * (default 3 s), the worker kills it. No-op for a rank started some other way. Returns the function that stops
 * watching (the thread ends when no one watches).
 */
export function watchLauncher(
  onGone: () => void,
  o: { env?: NodeJS.ProcessEnv; intervalMs?: number; killAfterMs?: number } = {},
): () => void {
  const pid = Number((o.env ?? process.env)[LAUNCHER_PID_ENV]);
  if (!Number.isInteger(pid) || pid <= 0) return () => {};
  if (!watcher) {
    const { Worker } = require('node:worker_threads') as typeof import('node:worker_threads');
    const worker = new Worker(WATCHER, {
      eval: true,
      workerData: { pid, intervalMs: o.intervalMs ?? 200, killAfterMs: o.killAfterMs ?? 3000 },
    });
    const w = { worker, listeners: new Set<() => void>() };
    worker.on('message', () => [...w.listeners].forEach((f) => f()));
    worker.on('error', () => {});
    // After the listener: adding one refs the worker again, and the watcher must never keep a rank alive.
    worker.unref();
    watcher = w;
  }
  const w = watcher;
  const listener = () => onGone();
  w.listeners.add(listener);
  return () => {
    w.listeners.delete(listener);
    if (w.listeners.size || watcher !== w) return;
    watcher = undefined;
    void w.worker.terminate();
  };
}

/** One watcher thread a process, however many parts of it watch (the first one's intervals). */
let watcher: { worker: import('node:worker_threads').Worker; listeners: Set<() => void> } | undefined;

/** The watcher's thread: polls the parent's pid (process.ppid asks the kernel each time). */
const WATCHER = `
const { parentPort, workerData: w } = require('node:worker_threads');
const timer = setInterval(() => {
  if (process.ppid === w.pid) return;
  clearInterval(timer);
  parentPort.postMessage('gone');
  setTimeout(() => {
    try {
      // stderr may be a pipe to the launcher, closed now (EPIPE).
      require('node:fs').writeSync(2, 'the launcher (pid ' + w.pid + ') is gone and this rank did not stop: killing it\\n');
    } finally {
      process.kill(process.pid, 'SIGKILL');
    }
  }, w.killAfterMs);
}, w.intervalMs);
`;

/**
 * The line a rank other than 0 prints when it was given outputs it will not write (only rank 0 writes the checkpoint
 * and the metrics), or undefined: nothing given, rank 0, or a rank of `--nproc`, whose ranks all get the command
 * line rank 0 got.
 */
export function ignoredOutputs(
  d: DistEnv,
  given: { save?: string; metrics?: string },
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (d.rank === 0 || env[LAUNCHER_PID_ENV] !== undefined) return undefined;
  const flags = (['save', 'metrics'] as const).filter((k) => given[k] !== undefined).map((k) => `--${k} ${given[k]}`);
  if (!flags.length) return undefined;
  const are = flags.length > 1 ? 'are' : 'is';
  return `rank ${d.rank}: ${flags.join(' and ')} ${are} ignored here: only rank 0 writes files (give them to rank 0)`;
}

/**
 * Why two ranks' settings differ, one line: each differing field (the innermost name, with its parent's where two
 * fields share a name) as "lr: 0.01 here, 0.5 on rank 1", under the top-level settings that hold them.
 */
export function settingsDifference(
  mine: Record<string, unknown>,
  theirs: Record<string, unknown>,
  rank: number,
  other: number,
  o: { most?: number } = {},
): string {
  const a = leaves(mine);
  const b = leaves(theirs);
  const all = [...new Set([...a.keys(), ...b.keys()])];
  const paths = all.filter((k) => a.get(k) !== b.get(k));
  const counts = new Map<string, number>();
  for (const k of all) counts.set(last(k), (counts.get(last(k)) ?? 0) + 1);
  // A name that two settings share is told apart by its parent's.
  const name = (k: string) =>
    k
      .split('\u0000')
      .slice(counts.get(last(k))! > 1 ? -2 : -1)
      .join('.');
  const groups = [...new Set(paths.map((k) => k.split('\u0000')[0]))];
  const most = o.most ?? 4;
  const shown = paths
    .slice(0, most)
    .map((k) => `${name(k)}: ${a.get(k) ?? 'not set'} here, ${b.get(k) ?? 'not set'} on rank ${other}`);
  const more = paths.length > most ? `; and ${paths.length - most} more` : '';
  return (
    `the ranks were started with different settings: rank ${rank} and rank ${other} differ in ` +
    `${groups.join(', ') || 'their configuration'}${shown.length ? ` — ${shown.join('; ')}${more}` : ''}` +
    ' (every rank must run the same command on the same data)'
  );
}

/** Every scalar (or array) of a settings object by its path (names joined by NUL), written as a user reads it. */
function leaves(v: unknown, prefix = '', out = new Map<string, string>()): Map<string, string> {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) leaves(x, prefix ? `${prefix}\u0000${k}` : k, out);
  } else if (v !== undefined && prefix) out.set(prefix, showValue(v));
  return out;
}

function showValue(v: unknown): string {
  if (typeof v === 'string') return v === '' || /^\s|\s$/.test(v) ? JSON.stringify(v) : v;
  if (!Array.isArray(v)) return String(v);
  const items = v.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
  const all = `[${items.join(', ')}]`;
  return all.length <= 60 ? all : `[${items.slice(0, 4).join(', ')}, … (${v.length} values)]`;
}

const last = (k: string): string => k.slice(k.lastIndexOf('\u0000') + 1);

const flagName = (k: keyof DistFlags): string => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

/** A whole number written plainly ("2", not "2.0", " 2" or "0x2"), at least `min`. */
function envInt(env: NodeJS.ProcessEnv, name: string, min: number): number {
  const raw = env[name]!;
  if (!/^\d+$/.test(raw) || Number(raw) < min || !Number.isSafeInteger(Number(raw)))
    throw new UserError(`${name} must be an integer ≥ ${min}, got '${raw}'`);
  return Number(raw);
}

function checkInt(n: number, name: string, min: number): number {
  if (!Number.isInteger(n) || n < min) throw new UserError(`${name} must be an integer ≥ ${min}, got ${n}`);
  return n;
}

/** The port from the flag or MASTER_PORT, checked to be 1–65535; undefined when neither is given. */
function portOf(flag: number | undefined, raw: string | undefined): number | undefined {
  if (flag !== undefined) {
    if (!Number.isInteger(flag) || flag < 1 || flag > 65535)
      throw new UserError(`--master-port must be a port number from 1 to 65535, got ${flag}`);
    return flag;
  }
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535)
    throw new UserError(`MASTER_PORT must be a port number from 1 to 65535, got '${raw}'`);
  return Number(raw);
}

/** A host name, an IPv4 address or an IPv6 address (bare or in brackets); resolving it is the store's job. */
function checkAddr(addr: string, name: string): void {
  if (!/^(\[[0-9A-Fa-f:.%\w-]+\]|[0-9A-Fa-f:.%\w-]+)$/.test(addr))
    throw new UserError(`${name} must be a host name or an IP address, got '${addr}'`);
}

const unbracket = (addr: string): string => (addr.startsWith('[') ? addr.slice(1, -1) : addr);
