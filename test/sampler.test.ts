// The distributed sampler against PyTorch's DistributedSampler (Debian's python3-torch), its shuffled shards'
// properties, the evaluation form, and the sample position a run resumes at with another world size.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { UserError } from '../src/errors';
import { DistributedSampler, RandomSampler, resumePosition, samplesConsumed } from '../src/data/sampler';
import { oracleMissing, PYTHON } from './helpers/oracle';

const SIZES = [1, 2, 5, 10, 17, 64, 100];
const WORLDS = [1, 2, 3, 4, 7, 8];

/** PyTorch's shards for every (n, world, rank), shuffle=False and drop_last=False. */
function torchShards(cases: [number, number][]): number[][][] {
  const script = `
import json, sys
from torch.utils.data import DistributedSampler
out = []
for n, w in json.load(sys.stdin):
    out.append([list(DistributedSampler(range(n), num_replicas=w, rank=r, shuffle=False, drop_last=False))
                for r in range(w)])
json.dump(out, sys.stdout)
`;
  const r = spawnSync(PYTHON, ['-c', script], { input: JSON.stringify(cases), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`oracle failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout) as number[][][];
}

const shards = (n: number, w: number, o: { seed?: number; shuffle?: boolean; pad?: boolean }, epoch = 0) =>
  Array.from({ length: w }, (_, rank) =>
    Array.from(new DistributedSampler(n, { worldSize: w, rank, seed: o.seed ?? 0, ...o }).indices(epoch)),
  );

test("unshuffled shards are PyTorch DistributedSampler's, padding included", { skip: oracleMissing() }, () => {
  const cases = SIZES.flatMap((n) => WORLDS.map((w) => [n, w] as [number, number]));
  const expected = torchShards(cases);
  cases.forEach(([n, w], i) => {
    const ours = shards(n, w, { shuffle: false });
    assert.deepEqual(ours, expected[i], `n=${n} world=${w}`);
    const sizes = ours.map(
      (_, rank) => new DistributedSampler(n, { worldSize: w, rank, seed: 0, shuffle: false }).size,
    );
    assert.deepEqual(
      sizes,
      expected[i].map((s) => s.length),
    );
  });
});

test('shuffled shards: equal lengths, disjoint but for the padding, together every example', () => {
  for (const n of [10, 17, 100, 1000])
    for (const w of [1, 2, 3, 4, 8])
      for (const epoch of [0, 1, 2]) {
        const s = shards(n, w, { seed: 7 }, epoch);
        const size = Math.ceil(n / w);
        assert.deepEqual(new Set(s.map((x) => x.length)), new Set([size]), `n=${n} world=${w}`);
        const seen = new Map<number, number>();
        for (const i of s.flat()) seen.set(i, (seen.get(i) ?? 0) + 1);
        assert.equal(seen.size, n, 'every example is in some shard');
        const twice = [...seen.values()].filter((c) => c === 2).length;
        assert.ok([...seen.values()].every((c) => c <= 2));
        assert.equal(twice, size * w - n, 'only the padding repeats');
      }
});

test("every world size visits the same epoch order — the single process's — and each epoch reshuffles", () => {
  const n = 103;
  for (const epoch of [0, 1, 5]) {
    const single = Array.from(new RandomSampler(n, 42).indices(epoch));
    for (const w of [1, 2, 3, 4, 8]) {
      // Step through the padded order as the ranks do: position j·world + rank is shard `rank`'s element j.
      const s = shards(n, w, { seed: 42 }, epoch);
      const interleaved = Array.from({ length: s[0].length * w }, (_, p) => s[p % w][Math.floor(p / w)]);
      assert.deepEqual(interleaved.slice(0, n), single, `world ${w}, epoch ${epoch}`);
      assert.deepEqual(interleaved.slice(n), single.slice(0, interleaved.length - n), 'padding repeats the start');
    }
  }
  const [e0, e1] = [0, 1].map((e) => shards(n, 4, { seed: 42 }, e));
  for (let r = 0; r < 4; r++) assert.notDeepEqual(new Set(e0[r]), new Set(e1[r]), `rank ${r}'s shard changes`);
  assert.notDeepEqual(shards(n, 4, { seed: 1 }), shards(n, 4, { seed: 2 }), 'the seed matters');
});

test('the evaluation form (pad: false) visits each example exactly once over uneven shards', () => {
  for (const n of [1, 5, 10, 17, 100])
    for (const w of [1, 2, 3, 7, 8]) {
      for (const shuffle of [false, true]) {
        const s = shards(n, w, { seed: 3, shuffle, pad: false });
        assert.deepEqual(
          s.flat().sort((a, b) => a - b),
          Array.from({ length: n }, (_, i) => i),
          `n=${n} world=${w}`,
        );
        const lengths = s.map((x) => x.length);
        assert.ok(Math.max(...lengths) - Math.min(...lengths) <= 1);
        // The size each rank reports is what it yields (0 for the ranks beyond a tiny data set).
        s.forEach((x, rank) =>
          assert.equal(new DistributedSampler(n, { worldSize: w, rank, seed: 3, shuffle, pad: false }).size, x.length),
        );
      }
      assert.deepEqual(
        shards(n, w, { shuffle: false, pad: false })[w - 1],
        Array.from({ length: Math.max(0, Math.ceil((n - w + 1) / w)) }, (_, j) => j * w + w - 1),
        'rank r takes r, r + world, …',
      );
    }
});

test('a rank outside the world or an empty data set is a one-line error', () => {
  const cases: [number, number, number, RegExp][] = [
    [10, 2, 2, /^the rank must be an integer from 0 to 1 \(world size 2\), got 2$/],
    [10, 2, -1, /got -1$/],
    [10, 0, 0, /^the world size must be a positive integer, got 0$/],
    [0, 2, 0, /^a distributed sampler needs a non-empty data set, got 0 examples$/],
  ];
  for (const [n, worldSize, rank, re] of cases)
    assert.throws(
      () => new DistributedSampler(n, { worldSize, rank, seed: 0 }),
      (e: unknown) => e instanceof UserError && re.test(e.message),
    );
});

/**
 * Indices each run visits in one epoch when the old world stops after `batch` steps and the new one resumes at
 * `resumePosition`'s batch: simulated with the samplers' shards, independently of the position arithmetic.
 */
function visits(n: number, old: { w: number; b: number }, next: { w: number; b: number }, batch: number, seed = 9) {
  const before: number[] = [];
  for (const s of shards(n, old.w, { seed })) before.push(...s.slice(0, batch * old.b));
  const at = resumePosition(
    { epoch: 0, batch, perRankBatch: old.b, worldSize: old.w, total: n },
    {
      perRankBatch: next.b,
      worldSize: next.w,
    },
  );
  const after: number[] = [];
  if (at.epoch === 0) for (const s of shards(n, next.w, { seed })) after.push(...s.slice(at.batch * next.b));
  return { before, after, at };
}

test('resuming with another world size continues at the same sample: exact with an equal global batch', () => {
  const n = 1000;
  // 4 ranks × 8 → 2 ranks × 16 (global batch 32 both): exact; 2 × 8 → 3 × 8 (16 → 24): rounded down.
  for (const [old, next, batch] of [
    [{ w: 4, b: 8 }, { w: 2, b: 16 }, 10],
    [{ w: 2, b: 16 }, { w: 8, b: 4 }, 7],
    [{ w: 2, b: 8 }, { w: 3, b: 8 }, 5],
    [{ w: 3, b: 5 }, { w: 1, b: 7 }, 13],
    [{ w: 1, b: 64 }, { w: 4, b: 16 }, 3],
  ] as const) {
    const { before, after, at } = visits(n, old, next, batch);
    const consumed = samplesConsumed({ batch, perRankBatch: old.b, worldSize: old.w, total: n });
    assert.equal(consumed, before.length, 'samples consumed = what the old ranks visited');
    assert.equal(at.exact, old.w * old.b === next.w * next.b || consumed % (next.w * next.b) === 0);
    const counts = new Map<number, number>();
    for (const i of [...before, ...after]) counts.set(i, (counts.get(i) ?? 0) + 1);
    assert.equal(counts.size, n, 'no example of the epoch is skipped');
    // The new world's own padding repeats the start too: count repeats among the old run's visits only.
    const seenBefore = new Set(before);
    const repeatedNow = after.filter((i) => seenBefore.has(i)).length;
    const padding = Math.ceil(n / next.w) * next.w - n;
    assert.equal(repeatedNow, at.repeated + Math.min(padding, before.length), JSON.stringify({ old, next, at }));
    if (old.w * old.b === next.w * next.b) assert.equal(at.repeated, 0);
  }
  // By hand: 2 ranks × 8 after 5 steps consumed 80 samples; 3 ranks × 8 (24 a step) resume at step 3 (72), 8 again.
  assert.deepEqual(visits(n, { w: 2, b: 8 }, { w: 3, b: 8 }, 5).at, { epoch: 0, batch: 3, exact: false, repeated: 8 });
});

test('a finished epoch resumes at the next epoch, and the position is capped at the data set', () => {
  // 10 examples, 4 ranks × 1: shards of 3 (2 padding); after 3 steps all 10 were seen.
  assert.equal(samplesConsumed({ batch: 3, perRankBatch: 1, worldSize: 4, total: 10 }), 10);
  assert.deepEqual(
    resumePosition({ epoch: 2, batch: 3, perRankBatch: 1, worldSize: 4, total: 10 }, { perRankBatch: 2, worldSize: 2 }),
    {
      epoch: 3,
      batch: 0,
      exact: true,
      repeated: 0,
    },
  );
  assert.deepEqual(
    resumePosition({ epoch: 2, batch: 2, perRankBatch: 1, worldSize: 4, total: 10 }, { perRankBatch: 2, worldSize: 2 }),
    {
      epoch: 2,
      batch: 2,
      exact: true,
      repeated: 0,
    },
  );
});
