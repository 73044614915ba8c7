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
 * was killed without passing the signal on — so the rank can stop instead of training on unseen. No-op for a rank
 * started some other way. Returns the function that stops watching.
 */
export function watchLauncher(
  onGone: () => void,
  o: { env?: NodeJS.ProcessEnv; intervalMs?: number } = {},
): () => void {
  const pid = Number((o.env ?? process.env)[LAUNCHER_PID_ENV]);
  if (!Number.isInteger(pid) || pid <= 0 || process.ppid !== pid) return () => {};
  const timer = setInterval(() => {
    if (process.ppid === pid) return;
    clearInterval(timer);
    onGone();
  }, o.intervalMs ?? 1000);
  timer.unref();
  return () => clearInterval(timer);
}

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
