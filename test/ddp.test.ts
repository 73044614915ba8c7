// Data-parallel training end to end, through `alexnet train --nproc` and real rank processes: the same weights as
// one process with the global batch, evaluation reduced across shards, checkpoints by rank 0, resume with the same
// and another world size, and the faults (a killed rank, ranks started with different settings, a busy port).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { loadCheckpoint } from '../src/persist/checkpoint';
import { BIN } from './helpers/cli';
import { freePort } from '../src/distributed/launch';
import { compareWeights, DDP_TINY as TINY } from './helpers/ddp';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-ddp-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(args: string[], env: NodeJS.ProcessEnv = {}, timeout = 120_000) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, out: r.stdout + r.stderr };
}

function metrics(file: string): Record<string, number>[] {
  return fs
    .readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((r) => r.type === undefined || (r.type as unknown) === 'epoch');
}

test('2 ranks with batch 8 each train to the weights of 1 process with batch 16, and evaluate the same', () => {
  const one = path.join(dir, 'one.safetensors');
  const two = path.join(dir, 'two.safetensors');
  const m1 = path.join(dir, 'one.jsonl');
  const m2 = path.join(dir, 'two.jsonl');
  const a = run([...TINY, '--epochs', '1', '--batch-size', '16', '--threads', '2', '--save', one, '--metrics', m1]);
  assert.equal(a.code, 0, a.out);
  const b = run([...TINY, '--epochs', '1', '--nproc', '2', '--batch-size', '8', '--save', two, '--metrics', m2]);
  assert.equal(b.code, 0, b.out);
  // Every rank says who it is; only rank 0 reports the run (its lines are not prefixed).
  assert.match(b.stderr, /rank 0\/2 \(local 0\/2, node 0\/1\)/);
  assert.match(b.stderr, /\[rank 1\] rank 1\/2 \(local 1\/2, node 0\/1\)/);
  assert.match(b.stdout, /data-parallel: 2 processes × batch 8 = global batch 16/);
  assert.doesNotMatch(b.stdout, /\[rank 1\].*epoch 1\/1/);
  const w = compareWeights(one, two);
  assert.ok(w.keys >= 16, `${w.keys} tensors compared`);
  assert.ok(w.diff <= 2e-5 * Math.max(1, w.scale), `weights differ by ${w.diff} (largest weight ${w.scale})`);
  // Evaluation: each rank evaluates its shard of the 40 test images; the reduced sums are the whole set's.
  const [r1] = metrics(m1);
  const [r2] = metrics(m2);
  assert.ok(Math.abs(r1.test_loss - r2.test_loss) < 1e-4, `test loss ${r1.test_loss} vs ${r2.test_loss}`);
  assert.equal(r1.test_acc, r2.test_acc);
  assert.ok(Math.abs(r1.train_loss - r2.train_loss) < 1e-4, `train loss ${r1.train_loss} vs ${r2.train_loss}`);
  assert.equal(r1.train_acc, r2.train_acc);
});

test('a run stopped mid-epoch resumes exactly with the same world size and at the same sample with another', () => {
  const full = path.join(dir, 'full.safetensors');
  const part = path.join(dir, 'part.safetensors');
  const base = [...TINY, '--epochs', '2', '--batch-size', '8'];
  assert.equal(run([...base, '--nproc', '2', '--save', full]).code, 0);
  // 4 steps of 2 ranks × 8 per epoch: stop after 6 (inside epoch 2), resume with 2 ranks: the same weights.
  const first = run([...base, '--nproc', '2', '--max-steps', '6', '--save', part]);
  assert.equal(first.code, 0, first.out);
  const p1 = path.join(dir, 'part1.safetensors');
  fs.copyFileSync(part, p1);
  const again = run(['train', '--resume', part, '--nproc', '2']);
  assert.equal(again.code, 0, again.out);
  const w = compareWeights(full, part);
  assert.ok(w.diff <= 1e-6 * Math.max(1, w.scale), `resumed weights differ by ${w.diff}`);
  // The same stop resumed by one process: it continues at the same sample (step 5 of its 8, after 32 samples).
  const single = run(['train', '--resume', p1, '--threads', '2']);
  assert.equal(single.code, 0, single.out);
  assert.match(
    single.stdout,
    /written by 2 processes, this run has 1: epoch 2 continues after 32 of its samples \(the same position\)/,
  );
  const c = loadCheckpoint(p1);
  try {
    // 2 × 8 × 2 = 32 samples of epoch 2 done: one process with batch 8 takes steps 5–8 of its 8-step epoch.
    assert.deepEqual(c.progress, { epoch: 2, batch: 0, globalStep: 10 });
  } finally {
    for (const t of c.tensors.values()) t.dispose();
  }
});

test('ranks started with different settings stop at once with a line naming what differs', () => {
  return new Promise<void>((resolve, reject) => {
    void freePort().then((port) => {
      const env = (rank: number) => ({
        ...process.env,
        RANK: String(rank),
        WORLD_SIZE: '2',
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
      });
      const outs = ['', ''];
      const codes: (number | null)[] = [];
      for (const [rank, lr] of [
        [0, '0.05'],
        [1, '0.01'],
      ] as const) {
        const args = [BIN, ...TINY.slice(0, -2), '--epochs', '1', '--lr', lr, '--threads', '1'];
        const p = spawn(process.execPath, args, { env: env(rank) });
        p.stderr.on('data', (d: Buffer) => (outs[rank] += d.toString()));
        p.on('exit', (code) => {
          codes[rank] = code;
          if (codes.filter((c) => c !== undefined).length < 2) return;
          try {
            for (const r of [0, 1]) {
              assert.equal(codes[r], 2, outs[r]);
              assert.match(outs[r], /different settings: .*optimisation/);
              assert.equal(
                outs[r]
                  .trim()
                  .split('\n')
                  .filter((l) => l.startsWith('alexnet: error')).length,
                1,
              );
            }
            resolve();
          } catch (e) {
            reject(e as Error);
          }
        });
      }
    }, reject);
  });
});

test('a busy port is a one-line error', async () => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  try {
    const r = run([...TINY, '--epochs', '1', '--batch-size', '8', '--max-steps', '1'], {
      RANK: '0',
      WORLD_SIZE: '2',
      MASTER_ADDR: '127.0.0.1',
      MASTER_PORT: String(port),
    });
    assert.equal(r.code, 2, r.out);
    assert.match(r.stderr, new RegExp(`alexnet: error: port ${port} on 127\\.0\\.0\\.1 is already in use`));
    assert.equal(
      r.stderr
        .trim()
        .split('\n')
        .filter((l) => /error/i.test(l)).length,
      1,
      r.stderr,
    );
  } finally {
    s.close();
  }
});

test('a killed rank stops the others within the timeout, naming it, and the last checkpoint resumes', async () => {
  const ckpt = path.join(dir, 'killed.safetensors');
  const larger = TINY.map((a, i) => (TINY[i - 1] === '--train-limit' ? '512' : a));
  const args = [BIN, ...larger, '--epochs', '4', '--batch-size', '8'];
  const p = spawn(process.execPath, [...args, '--nproc', '2', '--dist-timeout', '10', '--save', ckpt], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  // Kill rank 1 once the first epoch's checkpoint exists.
  const started = Date.now();
  while (!fs.existsSync(ckpt)) {
    if (Date.now() - started > 90_000) throw new Error(`no epoch finished:\n${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const pid = Number(/\[rank 1\] rank 1\/2 .* pid (\d+)/.exec(out)?.[1]);
  assert.ok(pid > 0, out);
  process.kill(pid, 'SIGKILL');
  const killedAt = Date.now();
  const code = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
  const seconds = (Date.now() - killedAt) / 1000;
  assert.notEqual(code, 0);
  assert.ok(seconds < 25, `the launcher took ${seconds} s to stop`);
  assert.match(out, /rank 1 .*(SIGKILL|killed)/i);
  // Two more steps from the checkpoint the run left.
  const c = loadCheckpoint(ckpt);
  const done = c.progress.globalStep;
  for (const t of c.tensors.values()) t.dispose();
  const again = run(['train', '--resume', ckpt, '--nproc', '2', '--max-steps', String(done + 2)]);
  assert.equal(again.code, 0, again.out);
  assert.match(again.stdout, new RegExp(`stopped after step ${done + 2}`));
});

test('Ctrl-C on the launcher stops every rank at the same step and rank 0 saves a checkpoint at that step', async () => {
  const ckpt = path.join(dir, 'interrupted.safetensors');
  const larger = TINY.map((a, i) => (TINY[i - 1] === '--train-limit' ? '2048' : a));
  const p = spawn(
    process.execPath,
    [BIN, ...larger, '--epochs', '1', '--batch-size', '8', '--nproc', '2', '--save', ckpt],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const started = Date.now();
  while (!/estimated time/.test(out)) {
    if (Date.now() - started > 90_000) throw new Error(`no step ran:\n${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  p.kill('SIGINT');
  const code = await new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
  assert.equal(code, 130, out);
  const step = Number(/interrupted after step (\d+): checkpoint saved/.exec(out)?.[1]);
  assert.ok(step > 0 && step < 128, out);
  const c = loadCheckpoint(ckpt);
  try {
    assert.equal(c.progress.globalStep, step);
  } finally {
    for (const t of c.tensors.values()) t.dispose();
  }
  assert.doesNotMatch(out, /error/i);
});
