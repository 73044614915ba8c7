// The server's decode scheduling (src/serve/images.ts DecodeGate, src/serve/batcher.ts): at most `limit` decodes at
// once, oldest waiter first; with yieldToEngine no decode starts while a forward pass runs (those running finish),
// and the batcher holds a batch short of maxBatch while images are still decoding, rather than run it small.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Batcher } from '../src/serve/batcher';
import { DecodeGate } from '../src/serve/images';
import { Engine } from '../src/serve/types';
import { serveThreading } from '../src/cli/serve';

/** A promise with its resolve function. */
function deferred<T = void>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

/** Decodes that end when told: which have started, in order. */
function decodes(gate: DecodeGate, n: number) {
  const started: number[] = [];
  const ends = Array.from({ length: n }, () => deferred());
  const done = ends.map((e, i) =>
    gate.run(async () => {
      started.push(i);
      await e.promise;
      return i;
    }),
  );
  return { started, ends, done };
}

test('DecodeGate: at most `limit` decodes at once, waiters in arrival order; pending counts both', async () => {
  const gate = new DecodeGate(2);
  const d = decodes(gate, 5);
  await turns();
  assert.deepEqual(d.started, [0, 1]);
  assert.equal(gate.pending, 5);
  d.ends[1].resolve();
  await turns();
  assert.deepEqual(d.started, [0, 1, 2]);
  // Without yieldToEngine a forward pass changes nothing.
  const forward = deferred();
  gate.engineRuns(forward.promise);
  d.ends[0].resolve();
  await turns();
  assert.deepEqual(d.started, [0, 1, 2, 3]);
  d.ends.forEach((e) => e.resolve());
  forward.resolve();
  assert.deepEqual(await Promise.all(d.done), [0, 1, 2, 3, 4]);
  assert.equal(gate.pending, 0);
});

test('DecodeGate yielding to the engine: no decode starts during a forward pass, all lanes start after it', async () => {
  const gate = new DecodeGate(2, true);
  const first = decodes(gate, 1);
  await turns();
  assert.deepEqual(first.started, [0]);
  const forward = deferred();
  gate.engineRuns(forward.promise);
  const d = decodes(gate, 3);
  first.ends[0].resolve(); // the running decode finishes; its lane stays free while the forward pass runs
  await turns();
  assert.deepEqual(d.started, []);
  assert.equal(gate.pending, 3);
  // A second forward pass (another engine, a reload) overlapping the first: both must end.
  const second = deferred();
  gate.engineRuns(second.promise);
  forward.resolve();
  await turns();
  assert.deepEqual(d.started, []);
  second.resolve();
  await turns();
  assert.deepEqual(d.started, [0, 1]);
  d.ends.forEach((e) => e.resolve());
  assert.deepEqual(await Promise.all(d.done), [0, 1, 2]);
  // A forward pass that fails releases the gate as one that succeeds.
  const failing = deferred();
  gate.engineRuns(failing.promise.then(() => Promise.reject(new Error('engine failed'))));
  const later = decodes(gate, 1);
  await turns();
  assert.deepEqual(later.started, []);
  failing.resolve();
  await turns();
  assert.deepEqual(later.started, [0]);
  later.ends[0].resolve();
  await later.done[0];
});

/** An engine of 1×1×1 images whose logits are the pixel values; it records batch sizes and can be held. */
function engine() {
  const batches: number[] = [];
  let hold: Promise<void> | undefined;
  const e = {
    record: { classes: ['a'], preprocess: { inputSize: [1, 1] } },
    geometry: { channels: 1, height: 1, width: 1 },
    card: { geometry: { channels: 1, height: 1, width: 1 } },
    runtime: 'fake',
    async logits(pixels: Uint8Array, n: number) {
      batches.push(n);
      if (hold) await hold;
      return Float32Array.from(pixels);
    },
    async close() {},
  };
  return {
    e: e as unknown as Engine,
    batches,
    holdWith: (p: Promise<void> | undefined) => (hold = p),
  };
}

test('Batcher: a batch short of maxBatch waits for images still decoding, then runs them all at once', async () => {
  const f = engine();
  let upcoming = 3;
  const forwards: Promise<unknown>[] = [];
  const b = new Batcher(f.e, {
    maxBatch: 4,
    maxDelayMs: 0,
    upcoming: () => upcoming,
    onForward: (done) => forwards.push(done),
  });
  const answers = [b.submit(Uint8Array.of(1))];
  await turns();
  assert.deepEqual(f.batches, [], 'three images are decoding: the batch of one waits');
  for (const v of [2, 3, 4]) {
    upcoming--;
    answers.push(b.submit(Uint8Array.of(v)));
  }
  const r = await Promise.all(answers);
  assert.deepEqual(f.batches, [4]);
  assert.deepEqual(
    r.map((x) => [x.logits[0], x.batchSize]),
    [
      [1, 4],
      [2, 4],
      [3, 4],
      [4, 4],
    ],
  );
  assert.equal(forwards.length, 1, 'onForward saw the forward pass');
  await forwards[0];
  // Nothing decoding: a lone image runs at once (maxDelayMs 0), as without `upcoming`.
  upcoming = 0;
  assert.equal((await b.submit(Uint8Array.of(7))).batchSize, 1);
  assert.deepEqual(f.batches, [4, 1]);
});

test('Batcher: images that never come (a failed decode) hold a batch for a bounded time only', async () => {
  const f = engine();
  const b = new Batcher(f.e, { maxBatch: 4, maxDelayMs: 0, upcoming: () => 2 });
  const r = await b.submit(Uint8Array.of(9));
  assert.equal(r.batchSize, 1);
  assert.deepEqual(f.batches, [1]);
});

test('Batcher: onForward is told of each forward pass with a promise that settles when it ends', async () => {
  const f = engine();
  const release = deferred();
  f.holdWith(release.promise);
  const forwards: Promise<unknown>[] = [];
  const b = new Batcher(f.e, { maxBatch: 2, maxDelayMs: 0, onForward: (done) => forwards.push(done) });
  const answer = b.submit(Uint8Array.of(5));
  await turns();
  assert.equal(forwards.length, 1);
  let ended = false;
  void forwards[0].then(() => (ended = true));
  await turns();
  assert.equal(ended, false, 'the forward pass is still running');
  release.resolve();
  assert.equal((await answer).logits[0], 5);
  await turns();
  assert.equal(ended, true);
});

test('how alexnet serve shares the cores: an engine on the CPU takes them all and decoding yields; a GPU or fewer threads leave cores to decoding', () => {
  const at = (o: Omit<Parameters<typeof serveThreading>[0], 'cores'>, cores = 8) => serveThreading({ ...o, cores });
  assert.deepEqual(at({ runtime: 'libtorch', gpu: false }), { threads: 8, decodeThreads: 8, decodeYields: true });
  assert.deepEqual(at({ runtime: 'libtorch', gpu: true }), { threads: 7, decodeThreads: 1, decodeYields: false });
  assert.deepEqual(at({ runtime: 'libtorch', gpu: false, threads: 6 }), {
    threads: 6,
    decodeThreads: 2,
    decodeYields: false,
  });
  assert.deepEqual(at({ runtime: 'libtorch', gpu: false, threads: 12, decodeThreads: 3 }), {
    threads: 12,
    decodeThreads: 3,
    decodeYields: true,
  });
  assert.deepEqual(at({ runtime: 'onnxruntime', gpu: false }), { threads: 8, decodeThreads: 8, decodeYields: true });
  assert.deepEqual(at({ runtime: 'onnxruntime', gpu: false, threads: 4 }), {
    threads: 4,
    decodeThreads: 4,
    decodeYields: false,
  });
  assert.deepEqual(at({ runtime: 'onnxruntime', gpu: false, threads: 8 }), {
    threads: 8,
    decodeThreads: 8,
    decodeYields: true,
  });
  assert.deepEqual(at({ runtime: 'libtorch', gpu: false }, 1), { threads: 1, decodeThreads: 1, decodeYields: true });
});
