// c10d through the addon (src/distributed/c10d.ts): real ranks in separate processes (test/helpers/dist-worker.ts)
// over a TCPStore on a free port and Gloo on 127.0.0.1. Collectives against hand-computed values; the Reducer
// (DDP's engine) against single-process gradients computed here; failures (a killed rank, a rank that never joins,
// a busy port, no master) as one-line errors within the timeout. Every spawn has a hard limit: nothing can hang.
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { DistError, Store } from '../src/distributed/c10d';
import { loadSafetensors } from '../src/io/safetensors';
import { manualSeed, Tensor, tidy } from '../src/tensor/tensor';
import { batchFor, clearGrads, lossOf, smallNet, WorkerArgs } from './helpers/dist-worker';
import { maxAbsDiff } from './helpers/oracle';
import { freePort } from '../src/distributed/launch';

const WORKER = path.join(__dirname, 'helpers', 'dist-worker.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-c10d-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

type Line = Record<string, unknown>;

interface Rank {
  proc: ChildProcess;
  lines: Line[];
  stderr: () => string;
  /** Resolves when the process prints a line that passes `pred`. */
  waitFor(pred: (l: Line) => boolean): Promise<Line>;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

function startRank(args: WorkerArgs, limitMs: number): Rank {
  const proc = spawn(process.execPath, [WORKER, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  const waiters: { pred: (l: Line) => boolean; resolve: (l: Line) => void }[] = [];
  let err = '';
  let buf = '';
  proc.stderr!.on('data', (d) => (err += d));
  proc.stdout!.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const l = JSON.parse(buf.slice(0, i)) as Line;
      buf = buf.slice(i + 1);
      lines.push(l);
      for (const w of waiters.filter((x) => x.pred(l))) w.resolve(l);
    }
  });
  const kill = setTimeout(() => proc.kill('SIGKILL'), limitMs); // the hard limit
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) =>
    proc.on('exit', (code, signal) => {
      clearTimeout(kill);
      resolve({ code, signal, at: Date.now() });
    }),
  );
  const waitFor = (pred: (l: Line) => boolean) =>
    new Promise<Line>((resolve, reject) => {
      const seen = lines.find(pred);
      if (seen) return resolve(seen);
      waiters.push({ pred, resolve });
      void done.then(() => reject(new Error(`rank ${args.rank} exited first: ${JSON.stringify(lines)} ${err}`)));
    });
  return { proc, lines, stderr: () => err, waitFor, done };
}

/** Both ranks of `mode`, to the end; returns each rank's last line. */
async function runTwo(
  mode: WorkerArgs['mode'],
  extra: (rank: number) => Partial<WorkerArgs> = () => ({}),
  limitMs = 40_000,
): Promise<Line[]> {
  const port = await freePort();
  const ranks = [0, 1].map((rank) =>
    startRank({ mode, rank, worldSize: 2, port, timeoutMs: 20_000, ...extra(rank) }, limitMs),
  );
  const ends = await Promise.all(ranks.map((r) => r.done));
  ranks.forEach((r, i) => assert.equal(ends[i].code, 0, `rank ${i}: ${JSON.stringify(r.lines)} ${r.stderr()}`));
  return ranks.map((r) => r.lines[r.lines.length - 1]);
}

test('allreduce, average, broadcast, allgather, barrier, send/recv and the store give hand-computed values on 2 ranks', async () => {
  const [r0, r1] = await runTwo('collectives');
  for (const [rank, r] of [r0, r1].entries()) {
    assert.deepEqual(r.allreduce, [1 + 2, 2 + 4], `rank ${rank}`);
    assert.deepEqual(r.average, [(1 + 2) / 2, (10 + 20) / 2]);
    assert.deepEqual(r.broadcast, [7, 8, 9]); // from root 1
    assert.deepEqual(r.allgather, [
      [0, 1],
      [10, 11],
    ]);
    assert.equal(r.otherValue, `from rank ${1 - rank}`);
    assert.equal(r.counterAfter, 1 + 2);
    assert.deepEqual(r.async, [0.5 + 1.5, 0 - 1]);
  }
  assert.deepEqual(r0.sendRecv, [84, 86]); // rank 1 doubled what rank 0 sent with tag 5
  assert.deepEqual(r1.sendRecv, [42, 43]);
  // The counter's two adds (1 by rank 0, 2 by rank 1) happened in some order: one saw its own value, one saw 3.
  assert.deepEqual([r0.counter, r1.counter].sort(), r0.counter === 1 ? [1, 3] : [2, 3]);
});

/** Mean over both ranks' batches of the single-process gradients of rank 0's initial network, per step. */
function referenceGrads(step: number): Map<string, Tensor> {
  manualSeed(7); // rank 0's initial weights; rank 1 starts elsewhere and receives them by broadcast
  const net = smallNet();
  const sums = new Map<string, Tensor>();
  for (const rank of [0, 1]) {
    const loss = tidy(() => lossOf(net, batchFor(rank, step)));
    loss.backward();
    for (const [n, p] of net.namedParameters()) {
      const g = p.grad!.mul(0.5);
      const prev = sums.get(n);
      sums.set(n, (prev ? prev.add(g) : g).keep());
    }
    clearGrads(net);
  }
  for (const [n, p] of net.namedParameters()) sums.set(`weights.${n}`, p);
  return sums;
}

test("the Reducer leaves in each rank's gradients the mean of the ranks' single-process gradients", async () => {
  const out = (r: number) => path.join(dir, `grads-${r}.safetensors`);
  // 4 KB buckets: the layers' gradients fill several, so bucketing and the rebuild after step 1 are exercised
  const ends = await runTwo('reducer', (r) => ({ bucketMB: 0.004, out: out(r) }), 60_000);
  for (const [rank, end] of ends.entries()) {
    assert.ok((end.buckets as number) > 1, `rank ${rank}: ${end.buckets} buckets`);
    for (const t of end.timings as { backwardCommMs: number; backwardComputeMs: number }[]) {
      assert.ok(t.backwardCommMs >= 0 && t.backwardComputeMs >= 0, JSON.stringify(t));
    }
  }
  const got = [0, 1].map((r) => loadSafetensors(out(r)).tensors);
  for (const step of [0, 1]) {
    const ref = referenceGrads(step);
    for (const [name, want] of ref) {
      const key = name.startsWith('weights.') ? name : `${step}.${name}`;
      const scale = tidy(() => want.abs().max().item());
      for (const rank of [0, 1]) {
        const diff = maxAbsDiff(got[rank].get(key)!, want);
        // float32: the same sums in another order (mean of two gradients, bucket copies); weights are copies
        assert.ok(diff <= 1e-6 + 1e-5 * scale, `rank ${rank} ${key}: differs by ${diff} (scale ${scale})`);
      }
    }
  }
});

test('a rank killed mid-allreduce makes the other stop within the timeout, naming it', async () => {
  const port = await freePort();
  const args = { mode: 'die' as const, worldSize: 2, port, timeoutMs: 5000 };
  const ranks = [0, 1].map((rank) => startRank({ ...args, rank }, 30_000));
  await Promise.all(ranks.map((r) => r.waitFor((l) => 'joined' in l)));
  await new Promise((resolve) => setTimeout(resolve, 300)); // rank 0 is now waiting inside the allreduce
  const killedAt = Date.now();
  ranks[1].proc.kill('SIGKILL');
  const end = await ranks[0].done;
  const last = ranks[0].lines[ranks[0].lines.length - 1];
  assert.equal(end.code, 3, JSON.stringify(ranks[0].lines) + ranks[0].stderr());
  assert.equal(last.name, 'DistError');
  assert.match(String(last.kind), /^(peer-stopped|timeout)$/);
  assert.match(String(last.error), /^rank 0: allreduce (failed|timed out).*rank 1 stopped/);
  assert.doesNotMatch(String(last.error), /\n/);
  assert.ok(end.at - killedAt < 5000 + 3000, `rank 0 stopped ${end.at - killedAt} ms after the kill`);
});

/** Both ranks of `mode`; returns rank 0's last line once it has ended (rank 1 ends by itself). */
async function rankZeroOf(mode: WorkerArgs['mode'], timeoutMs: number): Promise<Line> {
  const port = await freePort();
  const ranks = [0, 1].map((rank) => startRank({ mode, rank, worldSize: 2, port, timeoutMs }, 30_000));
  const [end] = await Promise.all(ranks.map((r) => r.done));
  assert.equal(end.code, 3, JSON.stringify(ranks[0].lines) + ranks[0].stderr());
  return ranks[0].lines[ranks[0].lines.length - 1];
}

test("a rank that stops before DDP's backward makes the other's backward fail, naming it", async () => {
  const last = await rankZeroOf('die-in-backward', 5000);
  assert.equal(last.name, 'DistError');
  assert.match(String(last.error), /^rank 0: backward (failed|timed out).*rank 1 stopped/);
});

test('ranks with different models all stop when setting up the reducer, saying how they differ', async () => {
  const port = await freePort();
  const ranks = [0, 1].map((rank) =>
    startRank({ mode: 'other-model', rank, worldSize: 2, port, timeoutMs: 5000 }, 30_000),
  );
  await Promise.all(ranks.map((r) => r.done));
  for (const [rank, r] of ranks.entries()) {
    const last = r.lines[r.lines.length - 1];
    assert.equal(last.name, 'DistError', JSON.stringify(r.lines) + r.stderr());
    // smallNet(32): 8·3·9+8 + 16·8·9+16 + 256·32+32 + 32·10+10 values; smallNet(48) on rank 1
    assert.equal(
      last.error,
      `rank ${rank}: the ranks' models differ: rank 0 has 8 parameter tensors with 9946 values, ` +
        'rank 1 has 8 parameter tensors with 14218 values (every rank must build the same model)',
    );
  }
});

test('a collective that the other rank never joins times out after the group timeout, off the JS thread', async () => {
  const port = await freePort();
  const args = { mode: 'stall' as const, worldSize: 2, port, timeoutMs: 2000 };
  const ranks = [0, 1].map((rank) => startRank({ ...args, rank }, 30_000));
  await ranks[0].waitFor((l) => 'joined' in l);
  const started = Date.now();
  const end = await ranks[0].done;
  ranks[1].proc.kill('SIGKILL');
  const last = ranks[0].lines[ranks[0].lines.length - 1];
  assert.equal(last.kind, 'timeout', JSON.stringify(ranks[0].lines) + ranks[0].stderr());
  assert.equal(last.error, 'rank 0: allreduce timed out after 2 s: rank 1 stopped or is stuck');
  const waited = end.at - started;
  assert.ok(waited >= 1500 && waited < 2000 + 4000, `rank 0 stopped after ${waited} ms`);
});

test('a master port already in use is a one-line error naming the port', async () => {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, resolve)); // every address, as the store's server binds
  const port = (srv.address() as net.AddressInfo).port;
  try {
    const started = Date.now();
    assert.throws(
      () => new Store({ host: '127.0.0.1', port, worldSize: 1, isMaster: true, timeoutMs: 3000 }),
      (e: unknown) =>
        e instanceof DistError &&
        e.kind === 'port-in-use' &&
        e.message === `port ${port} on 127.0.0.1 is already in use: choose another master port`,
    );
    assert.ok(Date.now() - started < 3000 + 2000);
  } finally {
    await new Promise((resolve) => srv.close(resolve));
  }
});

test('an unreachable master is a one-line error, at the latest shortly after the timeout', async () => {
  const port = await freePort(); // nobody listens there
  const started = Date.now();
  assert.throws(
    () => new Store({ host: '127.0.0.1', port, worldSize: 2, isMaster: false, timeoutMs: 3000 }),
    (e: unknown) =>
      e instanceof DistError &&
      e.kind === 'unreachable' &&
      e.message.startsWith(`cannot reach the master at 127.0.0.1:${port} within 3 s`) &&
      !e.message.includes('\n'),
  );
  // libtorch 1.13 retries once a second and gives up when less than a second of the timeout is left: no lower bound
  const waited = Date.now() - started;
  assert.ok(waited < 3000 + 3000, `gave up after ${waited} ms`);
});

test('a master on port 0 binds a free port and serves set, get and add', () => {
  const store = new Store({ host: '127.0.0.1', port: 0, worldSize: 1, isMaster: true, timeoutMs: 3000 });
  assert.ok(store.port > 0 && store.port < 65536, `port ${store.port}`);
  store.set('digest', 'abc');
  store.set('bytes', Uint8Array.from([0, 255, 7]));
  assert.equal(store.get('digest'), 'abc');
  assert.deepEqual([...store.getBytes('bytes')], [0, 255, 7]);
  assert.equal(store.add('n', 2), 2);
  assert.equal(store.add('n', 3), 5);
});
