// c10d, typed: the store the ranks meet through, a Gloo process group with the collectives training needs, and
// the gradient reducer (c10d::Reducer, PyTorch DDP's engine) — all of it libtorch's own code, in
// native/distributed.cc. What a user can get wrong or run into (a busy port, an unreachable master, a rank that
// stopped, a timeout) becomes a one-line DistError naming host:port or the rank; anything else stays an
// EngineError.
import { EngineError, UserError } from '../errors';
import { c10dClasses, NativeC10dGroup, NativeC10dReducer, NativeC10dStore, ReducerTimings } from '../tensor/c10d';
import { Tensor, tensor } from '../tensor/tensor';

/** What went wrong between the ranks; `peer` is the rank that stopped, when it is known. */
export type DistFailure = 'port-in-use' | 'unreachable' | 'rendezvous' | 'peer-stopped' | 'timeout' | 'other';

export class DistError extends UserError {
  constructor(
    message: string,
    readonly kind: DistFailure,
    readonly peer?: number,
  ) {
    super(message);
  }
}

/** torch.distributed's default: 30 minutes is too long to notice a dead rank in a training run. */
export const DEFAULT_TIMEOUT_MS = 60_000;

function detailOf(e: unknown): string {
  if (e instanceof EngineError) return e.detail || e.message;
  return e instanceof Error ? e.message : String(e);
}

const seconds = (ms: number) => `${+(ms / 1000).toFixed(1)} s`;

export interface StoreOptions {
  /** The master's address (rank 0's machine); the master binds it. */
  host: string;
  /** 0 on the master: any free port (read it back from `port`). */
  port: number;
  worldSize: number;
  isMaster: boolean;
  timeoutMs?: number;
}

/** A c10d TCPStore: rank 0 serves it, every rank connects. set/get/add for small values shared between ranks. */
export class Store {
  readonly native: NativeC10dStore;
  readonly host: string;
  readonly port: number;
  readonly timeoutMs: number;

  /** Blocks until every rank has connected (the master) or the master was reached, at most the timeout. */
  constructor(opts: StoreOptions) {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const { C10dStore } = c10dClasses();
    const started = Date.now();
    try {
      this.native = new C10dStore({ ...opts, timeoutMs });
    } catch (e) {
      throw storeError(e, opts, timeoutMs);
    }
    // libtorch 1.13's master stops waiting for the ranks at the timeout without a word (later ones throw): a rank 0
    // whose peers never came would wait a second timeout in the process group, then fail as if a peer stopped.
    if (opts.isMaster && opts.worldSize > 1 && Date.now() - started >= timeoutMs)
      throw storeError(new Error('timed out waiting for the workers'), opts, timeoutMs);
    this.host = opts.host;
    this.port = this.native.port();
    this.timeoutMs = timeoutMs;
  }

  set(key: string, value: string | Uint8Array): void {
    this.call('set', key, () => this.native.set(key, value));
  }

  /** The key's value as UTF-8 text; waits (up to the timeout) until some rank has set it. */
  get(key: string): string {
    return this.getBytes(key).toString('utf8');
  }

  getBytes(key: string): Buffer {
    return this.call('get', key, () => this.native.get(key));
  }

  /** Adds `delta` to a counter shared by the ranks (a new key starts at 0); returns the new value. */
  add(key: string, delta = 1): number {
    return this.call('add', key, () => this.native.add(key, delta));
  }

  private call<T>(op: string, key: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      const d = detailOf(e);
      const where = `the store at ${this.host}:${this.port}`;
      if (/time(d)? ?out/i.test(d)) {
        throw new DistError(`${op} '${key}' on ${where} timed out after ${seconds(this.timeoutMs)}`, 'timeout');
      }
      throw new DistError(`${op} '${key}' on ${where} failed: ${d} (did rank 0 stop?)`, 'peer-stopped', 0);
    }
  }
}

/** torchrun's convention: rank 0 is the master and serves the store on host:port. */
export function createStore(opts: StoreOptions): Store {
  return new Store(opts);
}

function storeError(e: unknown, opts: StoreOptions, timeoutMs: number): Error {
  const d = detailOf(e);
  const at = `${opts.host}:${opts.port}`;
  if (opts.isMaster && /address already in use|errno: 98|failed to bind|failed to listen/i.test(d)) {
    return new DistError(
      `port ${opts.port} on ${opts.host} is already in use: choose another master port`,
      'port-in-use',
    );
  }
  if (opts.isMaster && /worker|timed out|timeout/i.test(d)) {
    return new DistError(
      `not every rank reached the master at ${at} within ${seconds(timeoutMs)} (world size ${opts.worldSize}): ` +
        `start all ${opts.worldSize} ranks with the same master address and port`,
      'rendezvous',
    );
  }
  if (!opts.isMaster && /timed out|timeout|refused|connect|resolve|unreachable|getaddrinfo/i.test(d)) {
    return new DistError(
      `cannot reach the master at ${at} within ${seconds(timeoutMs)}: is rank 0 running there, ` +
        `and are the master address and port right?`,
      'unreachable',
    );
  }
  if (e instanceof EngineError && /argument|field/.test(d)) return e;
  return new DistError(`cannot set up the store at ${at}: ${d}`, 'other');
}

export interface GroupOptions {
  rank: number;
  worldSize: number;
  timeoutMs?: number;
  /** 'gloo' (CPU tensors; CUDA tensors where libtorch has CUDA). NCCL is not built in. */
  backend?: 'gloo' | 'nccl';
  /** Gloo binds to this network interface (what GLOO_SOCKET_IFNAME says when it is set)… */
  iface?: string;
  /** …or to this address of the machine (needed inside a network namespace); neither: the hostname's address. */
  host?: string;
}

const handles = (ts: Tensor | Tensor[]) => (Array.isArray(ts) ? ts : [ts]).map((t) => t.handle);

/** A Gloo process group over a Store. Every collective waits at most the group's timeout. */
export class ProcessGroup {
  readonly rank: number;
  readonly size: number;
  readonly timeoutMs: number;
  #pg: NativeC10dGroup | undefined;

  /** Every rank must construct it (a rendezvous through the store: blocking, at most the timeout). */
  constructor(
    readonly store: Store,
    opts: GroupOptions,
  ) {
    this.rank = opts.rank;
    this.size = opts.worldSize;
    this.timeoutMs = opts.timeoutMs ?? store.timeoutMs;
    const iface = opts.iface ?? (opts.host ? undefined : process.env.GLOO_SOCKET_IFNAME || undefined);
    const { C10dProcessGroup } = c10dClasses();
    try {
      this.#pg = new C10dProcessGroup(store.native, { ...opts, iface, timeoutMs: this.timeoutMs });
    } catch (e) {
      throw this.failure('joining the process group', e);
    }
  }

  /** The native group, for GradientReducer. */
  get native(): NativeC10dGroup {
    if (!this.#pg) throw new UserError(`rank ${this.rank}: the process group was destroyed`);
    return this.#pg;
  }

  /** Sums the tensors over the ranks in place (the mean with `average`). One collective for the whole list. */
  allreduce(ts: Tensor | Tensor[], opts: { average?: boolean } = {}): void {
    this.run('allreduce', () => this.native.allreduce(handles(ts), opts.average ?? false));
  }

  /** allreduce whose wait runs off the JS thread: leave the tensors alone until the promise settles. */
  async allreduceAsync(ts: Tensor | Tensor[], opts: { average?: boolean } = {}): Promise<void> {
    try {
      await this.native.allreduceAsync(handles(ts), opts.average ?? false);
    } catch (e) {
      throw this.failure('allreduce', e);
    }
  }

  /** Every rank's tensors become `root`'s, in place. */
  broadcast(ts: Tensor | Tensor[], root = 0): void {
    this.run('broadcast', () => this.native.broadcast(handles(ts), root));
  }

  /** broadcast packed into few large messages: DDP's start-up copy of parameters and buffers. */
  broadcastCoalesced(ts: Tensor[], root = 0): void {
    this.run('broadcast', () => this.native.broadcastCoalesced(handles(ts), root));
  }

  /** Every rank's tensor, in rank order (new tensors: dispose them or use them inside tidy()). */
  allgather(t: Tensor): Tensor[] {
    return this.run('allgather', () => this.native.allgather(t.handle)).map((h) => new Tensor(h));
  }

  barrier(): void {
    this.run('barrier', () => this.native.barrier());
  }

  send(t: Tensor, dst: number, tag = 0): void {
    this.run('send', () => this.native.send(t.handle, dst, tag));
  }

  /** Receives into `t`, which must have the sent tensor's shape and dtype. */
  recv(t: Tensor, src: number, tag = 0): void {
    this.run('recv', () => this.native.recv(t.handle, src, tag));
  }

  /** Lets the group's threads and connections go (a GradientReducer made from it keeps them until disposed). */
  destroy(): void {
    this.#pg?.destroy();
    this.#pg = undefined;
  }

  private run<T>(op: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw this.failure(op, e);
    }
  }

  /** Turns a c10d/Gloo failure into a DistError naming this rank and, where it can be known, the one that stopped. */
  failure(op: string, e: unknown): Error {
    const d = detailOf(e);
    if (e instanceof EngineError && /^(argument|field|collectives need|root rank|peer rank|rank \d)/.test(d)) return e;
    if (e instanceof UserError) return e;
    const peer = this.size === 2 ? 1 - this.rank : undefined;
    const who = peer === undefined ? 'another rank' : `rank ${peer}`;
    if (/closed|reset|broken pipe|EOF|refused|ECONN|read error|write error|connection/i.test(d)) {
      return new DistError(
        `rank ${this.rank}: ${op} failed: ${who} stopped (${d.split('\n')[0]})`,
        'peer-stopped',
        peer,
      );
    }
    if (/time(d)? ?out/i.test(d)) {
      return new DistError(
        `rank ${this.rank}: ${op} timed out after ${seconds(this.timeoutMs)}: ${who} stopped or is stuck`,
        'timeout',
        peer,
      );
    }
    return new DistError(`rank ${this.rank}: ${op} failed: ${d.split('\n')[0]}`, 'other');
  }
}

export interface ReducerOptions {
  /** Bucket size cap in MB (DDP: 25). */
  bucketMB?: number;
  /** The first bucket's cap in MB (DDP: 1), so communication starts early in backward. */
  firstBucketMB?: number;
}

/**
 * DDP's gradient averaging (c10d::Reducer): after prepareForBackward(), the next backward() launches each
 * bucket's allreduce from the autograd hooks as its gradients become ready and leaves the mean over the ranks in
 * every parameter's .grad. Buckets follow the parameters in reverse at first, then the order of the first
 * backward. Every rank must pass the same parameters (count, shapes, dtypes: checked at construction).
 */
export class GradientReducer {
  #r: NativeC10dReducer | undefined;

  constructor(
    readonly pg: ProcessGroup,
    params: Tensor[],
    opts: ReducerOptions = {},
  ) {
    const { C10dReducer } = c10dClasses();
    checkSameParameters(pg, params);
    const options = { bucketCapMB: opts.bucketMB ?? 25, firstBucketMB: opts.firstBucketMB ?? 1 };
    try {
      this.#r = new C10dReducer(
        pg.native,
        params.map((p) => p.handle),
        options,
      );
    } catch (e) {
      throw this.pgFailure('setting up the gradient reducer', e);
    }
  }

  private get native(): NativeC10dReducer {
    if (!this.#r) throw new UserError('the gradient reducer was disposed');
    return this.#r;
  }

  /** Optional, before the forward pass: times the whole step (prepareForBackward does it otherwise). */
  prepareForForward(): void {
    this.call('prepareForForward', () => this.native.prepareForForward());
  }

  /** Before backward(): arms the hooks so that this backward averages the gradients. */
  prepareForBackward(): void {
    this.call('prepareForBackward', () => this.native.prepareForBackward());
  }

  /** The last step's backward compute and communication times (ms; -1 where not recorded). */
  timings(): ReducerTimings {
    return this.native.timings();
  }

  get bucketCount(): number {
    return this.native.bucketCount();
  }

  /** Removes the autograd hooks now (a later backward leaves the local gradients alone). */
  dispose(): void {
    this.#r?.dispose();
    this.#r = undefined;
  }

  private call(op: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      throw this.pgFailure(op, e);
    }
  }

  private pgFailure(op: string, e: unknown): Error {
    const d = detailOf(e);
    if (/DDP expects same model|inconsistent|params/i.test(d) && !/closed|timed out/i.test(d)) {
      return new DistError(`rank ${this.pg.rank}: the ranks' models differ: ${d.split('\n')[0]}`, 'other');
    }
    return this.pg.failure(op, e);
  }
}

/** FNV-1a of a string: 32 bits, exact in a float64. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * Every rank learns whether the ranks' parameters agree (count, values, shapes and dtypes), so that all of them
 * stop with the same message. c10d's own check (verify_params_across_processes, which the reducer runs too)
 * fails only on the ranks that differ from rank 0, leaving rank 0 to find out later that they left.
 */
function checkSameParameters(pg: ProcessGroup, params: Tensor[]): void {
  const shapes = params.map((p) => `${p.dtype}[${p.shape.join(',')}]`).join(' ');
  const numel = params.reduce((n, p) => n + p.numel, 0);
  const mine = tensor(Float64Array.from([params.length, numel, fnv1a(shapes)]));
  const all = pg.allgather(mine);
  try {
    const rows = all.map((t) => Array.from(t.toArray() as ArrayLike<number>));
    const differs = rows.findIndex((r) => r.some((v, i) => v !== rows[0][i]));
    if (differs < 0) return;
    const say = (r: number[], rank: number) => `rank ${rank} has ${r[0]} parameter tensors with ${r[1]} values`;
    const sameSize = rows[differs][0] === rows[0][0] && rows[differs][1] === rows[0][1];
    throw new DistError(
      `rank ${pg.rank}: the ranks' models differ: ${say(rows[0], 0)}, ${say(rows[differs], differs)}` +
        (sameSize ? ' of other shapes' : '') +
        ' (every rank must build the same model)',
      'other',
    );
  } finally {
    mine.dispose();
    all.forEach((t) => t.dispose());
  }
}

/** Copies `tensors` (parameters and buffers) from `root` to every rank, as DDP does at the start. */
export function broadcastParameters(pg: ProcessGroup, tensors: Tensor[], root = 0): void {
  pg.broadcastCoalesced(tensors, root);
}

export type { ReducerTimings };
