// One rank of a data-parallel run: join the rendezvous at the master's store, form the Gloo process group, train,
// and turn what goes wrong between processes into one line that says which rank and what to do.
import { AlexnetError, UserError } from '../errors';
import { createStore, DistError, ProcessGroup } from './c10d';
import { DdpGroup } from './data-parallel';
import { DistEnv, rankBanner, watchLauncher } from './env';

/** A failure between ranks (a peer stopped, the network failed, a wait timed out): exit 1, one line, no trace. */
export class RankError extends AlexnetError {}

export interface RankOptions {
  /** Seconds to wait for the other ranks (rendezvous and every collective); default 60. */
  timeoutSeconds?: number;
  /** Where the banner goes (default: stderr). */
  log?: (line: string) => void;
}

export const DEFAULT_TIMEOUT_SECONDS = 60;

/** Joins the run as `env.rank`: the store (rank 0 hosts it) and the process group. */
export function joinDataParallel(env: DistEnv, o: RankOptions = {}): DdpGroup {
  const timeoutMs = Math.round((o.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000);
  const store = createStore({
    host: env.masterAddr,
    port: env.masterPort,
    worldSize: env.worldSize,
    isMaster: env.rank === 0,
    timeoutMs,
  });
  const pg = new ProcessGroup(store, { rank: env.rank, worldSize: env.worldSize, timeoutMs });
  return new DdpGroup(pg, store);
}

/**
 * Runs `body` as one rank: prints who it is, joins the group, and stops with a RankError naming the cause when the
 * others go away. The group is released at the end, whatever happens.
 */
export function asRank<T>(env: DistEnv, o: RankOptions, body: (group: DdpGroup) => Promise<T>): Promise<T> {
  return asLateRank(env, o, (join) => body(join()));
}

/**
 * As asRank, but `body` joins the group itself when it is ready to meet the others (`join`, at most once): what it
 * refuses before that needs no peer.
 */
export async function asLateRank<T>(
  env: DistEnv,
  o: RankOptions,
  body: (join: () => DdpGroup) => Promise<T>,
): Promise<T> {
  (o.log ?? ((l: string) => process.stderr.write(`${l}\n`)))(rankBanner(env));
  const unwatch = watchLauncher(() => {
    process.stderr.write(`rank ${env.rank}: the launcher is gone; stopping\n`);
    process.exit(1);
  });
  let group: DdpGroup | undefined;
  try {
    return await body(() => (group ??= joinDataParallel(env, o)));
  } catch (e) {
    throw explain(e, env, o.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS);
  } finally {
    unwatch();
    try {
      group?.close();
    } catch {
      /* the peers may be gone already */
    }
  }
}

/** A c10d/Gloo failure as one line: which rank noticed what, and what it means. */
function explain(e: unknown, env: DistEnv, timeout: number): unknown {
  // A busy port, an unreachable master, ranks that never met: the user's to fix (exit 2). A peer that stopped
  // mid-run is not a usage error: exit 1.
  if (e instanceof DistError && (e.kind === 'peer-stopped' || e.kind === 'timeout'))
    return new RankError(e.message + loopbackHint(e.message, env));
  if (e instanceof UserError || !(e instanceof Error)) return e;
  const m = e.message;
  const lost = /Connection closed by peer|Connection reset|Broken pipe|ECONNRESET|EPIPE|Socket closed|read: /i.test(m);
  const timedOut = /timed? ?out|Timeout/i.test(m);
  if (!lost && !timedOut) return e;
  const first = m.split('\n')[0].slice(0, 160);
  const why = lost
    ? 'another rank stopped (see its message; the launcher names it)'
    : `the other ranks did not answer within --dist-timeout ${timeout} s`;
  return new RankError(`rank ${env.rank}: ${why} [${first}]`);
}

/**
 * Gloo offers the address the host name resolves to; where that is a loopback address (hosts files often map the
 * name to 127.0.1.1) ranks on other machines cannot connect, and the failure looks like a peer that stopped.
 */
function loopbackHint(message: string, env: DistEnv): string {
  const loopback = (a: string) => /^127\.|^::1$|^localhost$/.test(a);
  if (!/\[127\.\d+\.\d+\.\d+\]/.test(message) || loopback(env.masterAddr)) return '';
  return (
    '; Gloo offered a loopback address to ranks on other machines: set GLOO_SOCKET_IFNAME to the network interface ' +
    'the machines share (e.g. eth0) on every rank'
  );
}
