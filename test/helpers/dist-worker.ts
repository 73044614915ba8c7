// One rank of test/distributed-c10d.test.ts, run as its own process: `node dist-worker.js '<json>'` with
// {mode, rank, worldSize, port, timeoutMs, out?}. It prints progress lines ("joined") and ends with one JSON line:
// the results of its mode, or {error, kind, name} when a c10d call failed.
import { DistError, GradientReducer, ProcessGroup, Store, broadcastParameters } from '../../src/distributed/c10d';
import { saveSafetensors } from '../../src/io/safetensors';
import { native } from '../../src/tensor/binding';
import { Conv2d, F, Flatten, Linear, MaxPool2d, ReLU, Sequential } from '../../src/nn';
import { manualSeed, randint, randn, setNumThreads, Tensor, tensor, tidy } from '../../src/tensor/tensor';

export interface WorkerArgs {
  mode: 'collectives' | 'reducer' | 'die' | 'stall' | 'die-in-backward' | 'other-model';
  rank: number;
  worldSize: number;
  port: number;
  timeoutMs: number;
  /** reducer: where to write the gradients of each step (safetensors). */
  out?: string;
  /** reducer: bucket cap in MB (small values make several buckets). */
  bucketMB?: number;
}

/** The small conv + linear network both the ranks and the test's single-process reference build. */
export function smallNet(hidden = 32): Sequential {
  return new Sequential(
    new Conv2d(3, 8, 3, { padding: 1 }),
    new ReLU(),
    new MaxPool2d(2),
    new Conv2d(8, 16, 3, { padding: 1 }),
    new ReLU(),
    new MaxPool2d(2),
    new Flatten(),
    new Linear(16 * 4 * 4, hidden),
    new ReLU(),
    new Linear(hidden, 10),
  );
}

/** Rank r's batch at step s: the same tensors in every process that asks (seeded). */
export function batchFor(rank: number, step: number): { x: Tensor; y: Tensor } {
  manualSeed(1000 + 10 * step + rank);
  return { x: randn([4, 3, 16, 16]).keep(), y: randint(0, 10, [4]).keep() };
}

/** Drops the gradients (set-to-none, as the optimisers' zeroGrad). */
export function clearGrads(net: Sequential): void {
  native().zeroGrad(net.parameters().map((p) => p.handle));
}

export function lossOf(net: Sequential, b: { x: Tensor; y: Tensor }): Tensor {
  return F.crossEntropy(net.forward(b.x), b.y);
}

const vals = (t: Tensor) => Array.from(t.toArray() as ArrayLike<number | bigint>, Number);

function collectives(pg: ProcessGroup, store: Store): Record<string, unknown> {
  const r = pg.rank;
  return tidy(() => {
    const out: Record<string, unknown> = {};
    const a = tensor([r + 1, 2 * (r + 1)]);
    pg.allreduce(a);
    out.allreduce = vals(a);
    const m = tensor(Float64Array.from([r + 1, 10 * (r + 1)]));
    pg.allreduce(m, { average: true });
    out.average = vals(m);
    const b = r === 1 ? tensor([7, 8, 9]) : tensor([0, 0, 0]);
    pg.broadcast(b, 1);
    out.broadcast = vals(b);
    out.allgather = pg.allgather(tensor([10 * r, 10 * r + 1])).map(vals);
    pg.barrier();
    const buf = tensor([0, 0]);
    if (r === 0) {
      pg.send(tensor([42, 43]), 1, 5);
      pg.recv(buf, 1, 6);
    } else {
      pg.recv(buf, 0, 5);
      pg.send(buf.mul(2), 0, 6);
    }
    out.sendRecv = vals(buf);
    store.set(`value/${r}`, `from rank ${r}`);
    out.otherValue = store.get(`value/${1 - r}`);
    out.counter = store.add('counter', r + 1);
    pg.barrier();
    out.counterAfter = store.add('counter', 0);
    return out;
  });
}

async function asyncAllreduce(pg: ProcessGroup): Promise<number[]> {
  const t = tensor([pg.rank + 0.5, -pg.rank]).keep();
  const pending = pg.allreduceAsync(t);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1); // the event loop runs while the collective is waited for
  await pending;
  clearInterval(timer);
  return vals(t);
}

// Two steps of DDP on the small network, parameters broadcast from rank 0 first (rank 1 starts from other weights).
function reducer(pg: ProcessGroup, a: WorkerArgs): Record<string, unknown> {
  manualSeed(pg.rank === 0 ? 7 : 99);
  const net = smallNet();
  const params = net.parameters();
  broadcastParameters(pg, params, 0);
  const red = new GradientReducer(pg, params, { bucketMB: a.bucketMB ?? 25, firstBucketMB: a.bucketMB ?? 1 });
  const grads: [string, Tensor][] = [];
  const timings = [];
  for (let step = 0; step < 2; step++) {
    const b = batchFor(pg.rank, step);
    red.prepareForForward();
    const loss = tidy(() => lossOf(net, b));
    red.prepareForBackward();
    loss.backward();
    timings.push(red.timings());
    net.namedParameters().forEach(([n, p]) => grads.push([`${step}.${n}`, p.grad!.keep()]));
    clearGrads(net);
  }
  net.namedParameters().forEach(([n, p]) => grads.push([`weights.${n}`, p]));
  saveSafetensors(a.out!, grads);
  const buckets = red.bucketCount;
  red.dispose();
  return { timings, buckets };
}

// 'die-in-backward': rank 1 leaves once the reducer is set up; rank 0's backward (the reducer's allreduce) must
// fail naming it. 'other-model': rank 1's network has a wider hidden layer; setting up the reducer must fail.
function faultyReducer(pg: ProcessGroup, a: WorkerArgs): Record<string, unknown> {
  manualSeed(7);
  const net = a.mode === 'other-model' && pg.rank === 1 ? smallNet(48) : smallNet();
  const red = new GradientReducer(pg, net.parameters());
  if (pg.rank === 1) process.exit(0);
  red.prepareForBackward();
  try {
    tidy(() => lossOf(net, batchFor(0, 0))).backward();
  } catch (e) {
    throw pg.failure('backward', e); // what a training step does with the EngineError backward() throws
  }
  return { unexpected: 'backward finished' };
}

/** What must outlive main(): a group that is collected closes its connections, which a peer sees as a stop. */
const held: unknown[] = [];

function emit(o: unknown): void {
  process.stdout.write(JSON.stringify(o) + '\n');
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]) as WorkerArgs;
  setNumThreads(1);
  try {
    const store = new Store({
      host: '127.0.0.1',
      port: a.port,
      worldSize: a.worldSize,
      isMaster: a.rank === 0,
      timeoutMs: a.timeoutMs,
    });
    const pg = new ProcessGroup(store, { rank: a.rank, worldSize: a.worldSize, host: '127.0.0.1' });
    held.push(store, pg);
    emit({ joined: a.rank });
    if (a.mode === 'collectives') emit({ ...collectives(pg, store), async: await asyncAllreduce(pg) });
    else if (a.mode === 'reducer') emit(reducer(pg, a));
    else if (a.mode === 'die-in-backward' || a.mode === 'other-model') emit(faultyReducer(pg, a));
    else if (a.rank === 1)
      setInterval(() => undefined, 1000); // 'die' (killed by the test) or 'stall': never joins
    else {
      // rank 0 waits in a collective: blocking (the training step's form) or off the JS thread
      const t = tensor([1, 2, 3]);
      if (a.mode === 'die') pg.allreduce(t);
      else await pg.allreduceAsync(t);
      emit({ unexpected: 'the collective finished' });
    }
    if (a.rank === 0 || (a.mode !== 'die' && a.mode !== 'stall')) pg.destroy();
  } catch (e) {
    const err = e as Error;
    emit({ error: err.message, name: err.name, kind: e instanceof DistError ? e.kind : undefined });
    process.exitCode = 3;
  }
}

if (require.main === module) void main();
