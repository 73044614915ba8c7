// Data-parallel training against PyTorch's own DistributedDataParallel (Debian's python3-torch, Gloo, 2 ranks):
// both start from the same files — rank 0's initial weights, a different start on rank 1 (which both must replace
// with rank 0's by broadcast), each rank's batches — take a few SGD steps, and every final tensor of every rank is
// compared: weights, BatchNorm's running statistics (DDP broadcasts rank 0's buffers before each forward) and
// num_batches_tracked. A run of rank 0's batches alone without DDP shows the comparison would catch gradients
// that were not averaged.
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { loadSafetensors, saveSafetensors } from '../src/io/safetensors';
import { getModel } from '../src/models/registry';
import { manualSeed, rand, randint, randn, Tensor, tidy } from '../src/tensor/tensor';
import { DdpOracleConfig } from './helpers/ddp-worker';
import { maxAbs, maxAbsDiff, oracleMissing, PYTHON } from './helpers/oracle';
import { freePort } from '../src/distributed/launch';

const WORKER = path.resolve(__dirname, 'helpers', 'ddp-worker.js');
const ORACLE = path.resolve(__dirname, '..', '..', 'test', 'golden', 'ddp_oracle.py');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-ddp-oracle-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

const WORLD = 2;
const BATCH = 4;
/**
 * Float32 summation order differs between the implementations (oneDNN channels-last here, PyTorch's NCHW there)
 * and between bucketed sums: relative to each tensor's largest magnitude, after 3 steps (measured: ~1e-7).
 */
const TOLERANCE = 1e-4;

/**
 * Writes config.json, init0/init1.safetensors and batches.safetensors for `cfg` into a new folder. Rank 1 starts
 * from other weights (and, with BatchNorm, other running statistics): DDP's first broadcast must replace them.
 */
function prepare(name: string, cfg: DdpOracleConfig, size: number): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
  manualSeed(13);
  for (let r = 0; r < WORLD; r++) {
    const model = getModel(cfg.model, cfg.options);
    if (r > 0) perturbBuffers(model.namedBuffers());
    saveSafetensors(path.join(dir, `init${r}.safetensors`), model.stateDict());
    model.dispose();
  }
  const batches: [string, Tensor][] = [];
  for (let r = 0; r < WORLD; r++)
    for (let s = 0; s < cfg.steps; s++) {
      batches.push([`r${r}.s${s}.x`, randn([BATCH, cfg.in_channels, size, size])]);
      batches.push([`r${r}.s${s}.y`, randint(0, cfg.num_classes, [BATCH])]);
    }
  saveSafetensors(path.join(dir, 'batches.safetensors'), batches);
  for (const [, t] of batches) t.dispose();
  return dir;
}

function perturbBuffers(buffers: [string, Tensor][]): void {
  tidy(() => {
    for (const [k, b] of buffers) {
      if (k.endsWith('running_mean')) b.copy_(randn(b.shape));
      else if (k.endsWith('running_var')) b.copy_(rand(b.shape).add(0.5));
      else if (k.endsWith('num_batches_tracked')) b.fill_(7);
    }
  });
}

/** A process's exit and everything it printed. */
function exited(p: ChildProcess): Promise<{ code: number | null; signal: string | null; out: string }> {
  let out = '';
  p.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => p.on('exit', (code, signal) => resolve({ code, signal, out })));
}

// A hang guard, not a speed limit: the test takes ~30 s on 2 idle cores, the shared machines can be 3× slower.
const TIMEOUT_MS = 180_000;

/** Our two ranks as separate processes with torchrun's environment; resolves when both have exited 0. */
async function runOurs(dir: string): Promise<void> {
  const port = await freePort();
  const ranks = Array.from({ length: WORLD }, (_, rank) =>
    exited(
      spawn(process.execPath, [WORKER, dir], {
        env: {
          ...process.env,
          RANK: String(rank),
          WORLD_SIZE: String(WORLD),
          MASTER_ADDR: '127.0.0.1',
          MASTER_PORT: String(port),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: TIMEOUT_MS,
      }),
    ),
  );
  const results = await Promise.all(ranks);
  results.forEach((r, rank) => assert.equal(r.code, 0, `our rank ${rank} failed (${r.signal ?? r.code}):\n${r.out}`));
}

const JEMALLOC = '/usr/lib/x86_64-linux-gnu/libjemalloc.so.2';

/**
 * PyTorch's DDP run and its rank 0 alone (test/golden/ddp_oracle.py). With Debian's jemalloc where installed (as
 * npm run bench's tuned peer): glibc maps and zeroes the 64 MB fully connected layer's temporaries afresh every
 * step, which made the oracle's three processes take 25 s instead of 15 s. The numbers do not depend on it.
 */
async function runTorch(dir: string): Promise<void> {
  const env = fs.existsSync(JEMALLOC)
    ? {
        ...process.env,
        LD_PRELOAD: JEMALLOC,
        MALLOC_CONF:
          'oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1',
      }
    : process.env;
  const p = spawn(PYTHON, ['-B', ORACLE, dir], { env, stdio: ['ignore', 'pipe', 'pipe'], timeout: TIMEOUT_MS });
  const r = await exited(p);
  assert.equal(r.code, 0, `the PyTorch DDP run failed (${r.signal ?? r.code}):\n${r.out}`);
}

interface Comparison {
  /** The largest difference of a floating-point tensor relative to its reference's largest magnitude, and where. */
  worst: number;
  worstKey: string;
  /** Integer tensors (num_batches_tracked) that are not exactly equal. */
  unequal: string[];
  keys: number;
}

/** Every tensor of `ours` against `ref` (a key missing from either side fails). */
function compare(oursFile: string, refFile: string): Comparison {
  const ours = loadSafetensors(oursFile).tensors;
  const ref = loadSafetensors(refFile).tensors;
  try {
    assert.deepEqual([...ours.keys()].sort(), [...ref.keys()].sort(), `${oursFile} and ${refFile} hold other keys`);
    const c: Comparison = { worst: 0, worstKey: '', unequal: [], keys: 0 };
    for (const [k, a] of ours) {
      const b = ref.get(k)!;
      assert.equal(a.dtype, b.dtype, `${k}: dtype ${a.dtype} vs ${b.dtype}`);
      c.keys++;
      if (a.dtype === 'int64') {
        if (String(a.toArray()) !== String(b.toArray())) c.unequal.push(`${k} ${a.toArray()} vs ${b.toArray()}`);
        continue;
      }
      const rel = maxAbsDiff(a, b) / Math.max(1e-12, maxAbs(b));
      if (rel > c.worst) [c.worst, c.worstKey] = [rel, k];
    }
    return c;
  } finally {
    for (const t of [...ours.values(), ...ref.values()]) t.dispose();
  }
}

/** The number in a one-element int64 tensor of a state-dict file. */
function scalarOf(file: string, key: string): number {
  const { tensors } = loadSafetensors(file);
  try {
    const t = tensors.get(key);
    assert.ok(t, `${file} has no ${key}`);
    return Number(t.toArray()[0]);
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

async function checkAgainstDdp(name: string, cfg: DdpOracleConfig, size: number): Promise<Comparison[]> {
  const dir = prepare(name, cfg, size);
  // Both at once: each run's ranks spend much of their time waiting for each other.
  await Promise.all([runOurs(dir), runTorch(dir)]);
  const file = (who: string, r: number) => path.join(dir, `${who}-rank${r}.safetensors`);
  const results: Comparison[] = [];
  for (let r = 0; r < WORLD; r++) {
    const c = compare(file('ours', r), file('torch-ddp', r));
    assert.ok(c.keys >= 16, `${c.keys} tensors compared`);
    assert.ok(c.worst <= TOLERANCE, `rank ${r}: ${c.worstKey} differs from PyTorch DDP's by ${c.worst} (relative)`);
    assert.deepEqual(c.unequal, [], `rank ${r}: integer buffers differ from PyTorch DDP's`);
    results.push(c);
  }
  // Rank 0 alone on its own batches (gradients never averaged) ends far from both: the check above can fail.
  const alone = compare(file('ours', 0), file('torch-local', 0));
  assert.ok(alone.worst > 100 * TOLERANCE, `without averaging the weights differ by only ${alone.worst}`);
  return results;
}

const SGD_SETTING = { steps: 3, lr: 0.01, momentum: 0.9, weight_decay: 5e-4 };

test(
  'alexnet-d2l: 2 ranks end with the weights of PyTorch DDP (Gloo, 2 ranks) from the same start and batches',
  { skip: oracleMissing() },
  async () => {
    await checkAgainstDdp(
      'd2l',
      {
        model: 'alexnet-d2l',
        options: { inputSize: 65, widths: [16, 32, 32, 32, 32], dropout: 0 },
        in_channels: 1,
        num_classes: 10,
        world_size: WORLD,
        ...SGD_SETTING,
      },
      65,
    );
  },
);

test(
  "alexnet-bn: 2 ranks end with PyTorch DDP's weights and, on each rank, its BatchNorm running statistics",
  { skip: oracleMissing() },
  async () => {
    const size = 67; // the smallest input alexnet-bn takes
    const cfg: DdpOracleConfig = {
      model: 'alexnet-bn',
      options: { inputSize: size, widths: [16, 32, 32, 32, 32], dropout: 0 },
      in_channels: 3,
      num_classes: 2,
      world_size: WORLD,
      ...SGD_SETTING,
    };
    await checkAgainstDdp('bn', cfg, size);
    const dir = path.join(root, 'bn');
    // Every forward counts on rank 0's counter (broadcast before it): the steps, not rank 1's perturbed 7 + steps.
    for (let r = 0; r < WORLD; r++)
      assert.equal(scalarOf(path.join(dir, `ours-rank${r}.safetensors`), 'features.1.num_batches_tracked'), cfg.steps);
    // Rank 1's statistics are rank 0's updated by rank 1's last batch: different from rank 0's, so the rank-1
    // comparison above checked the broadcast before each forward and not just a copy of rank 0.
    const ranks = compare(path.join(dir, 'torch-ddp-rank0.safetensors'), path.join(dir, 'torch-ddp-rank1.safetensors'));
    assert.ok(ranks.worst > 100 * TOLERANCE, `PyTorch's ranks end with the same buffers (${ranks.worstKey})`);
    assert.match(ranks.worstKey, /running_(mean|var)/);
  },
);
