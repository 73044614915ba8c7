// src/util/outputs.ts against the real file system, as root: every output is checked before any work (read-only
// and full file systems, directories, FIFOs, devices, paths under a file, outputs that are inputs, existing
// checkpoints), and a run's lock refuses a second live run and is taken over from a dead one.
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { tempPath } from '../src/util/files';
import { estimateSafetensorsBytes } from '../src/io/safetensors';
import { acquireLock, lockPath, readLock } from '../src/util/locks';
import { newRunId, OutputSpec, planOutputs, sameFile } from '../src/util/outputs';
import { bindReadOnly, mountSkip, mountTmpfs, unmountAll } from './helpers/mounts';
import { userError } from './helpers/errors';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-outputs-'));
const OUTPUTS = path.resolve(__dirname, '..', 'src', 'util', 'outputs.js');
const children: ChildProcess[] = [];
after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  unmountAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

const save = (p: string, o: Partial<OutputSpec> = {}): OutputSpec => ({
  option: '--save',
  path: p,
  kind: 'checkpoint',
  ...o,
});
const metrics = (p: string, o: Partial<OutputSpec> = {}): OutputSpec => ({
  option: '--metrics',
  path: p,
  kind: 'metrics',
  ...o,
});
const sub = (name: string) => {
  const d = path.join(dir, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
};

/** A second node process that stays alive until killed (a run holding a lock, a writer of temporaries). */
function sleeper(code = 'setTimeout(() => {}, 1e5)'): ChildProcess {
  const c = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(c);
  return c;
}
const exited = (c: ChildProcess) =>
  new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.on('exit', r)));
const line = (c: ChildProcess) =>
  new Promise<string>((r) => c.stdout!.once('data', (b: Buffer) => r(b.toString().trim())));

test('a plan creates missing parent directories and reports targets, sizes and free space', () => {
  const p = planOutputs([
    save(path.join(dir, 'new', 'deep', 'x.safetensors'), { expectedBytes: 1000 }),
    metrics(path.join(dir, 'new', 'm.jsonl')),
  ]);
  try {
    assert.ok(fs.statSync(path.join(dir, 'new', 'deep')).isDirectory());
    assert.equal(p.outputs[0].target, path.join(fs.realpathSync(dir), 'new', 'deep', 'x.safetensors'));
    assert.equal(p.outputs[0].policy, 'refuse');
    assert.equal(p.outputs[1].policy, 'append');
    assert.ok(p.outputs[0].freeBytes! > 1000);
    assert.ok(fs.existsSync(lockPath(path.join(dir, 'new', 'deep', 'x.safetensors'))), 'the checkpoint is locked');
  } finally {
    p.release();
  }
  assert.ok(!fs.existsSync(lockPath(path.join(dir, 'new', 'deep', 'x.safetensors'))), 'released');
  assert.deepEqual(fs.readdirSync(path.join(dir, 'new', 'deep')), [], 'no probe or lock left');
});

test(
  'a read-only directory is refused before any work, naming the option, the path and the reason',
  { skip: mountSkip },
  () => {
    const bound = sub('ro-bind');
    fs.writeFileSync(path.join(bound, 'old.jsonl'), '{}\n');
    bindReadOnly(bound);
    assert.throws(
      () => planOutputs([metrics(path.join(bound, 'old.jsonl'))]),
      userError(/^--metrics .*old\.jsonl: cannot append to it: read-only file system$/),
    );
    assert.throws(
      () => planOutputs([save(path.join(bound, 'x.safetensors'))]),
      userError(/^--save .*ro-bind\/x\.safetensors: cannot write in .*ro-bind: read-only file system$/),
    );
    assert.throws(
      () => planOutputs([metrics(path.join(bound, 'runs', 'm.jsonl'))]),
      userError(/^--metrics: cannot create .*ro-bind\/runs: read-only file system$/),
    );
    const ro = path.join(dir, 'ro-tmpfs');
    mountTmpfs(ro, 'ro,size=1m');
    assert.throws(
      () => planOutputs([{ option: '--out', path: path.join(ro, 'stats.json'), kind: 'report' }]),
      userError(/^--out .*stats\.json: cannot write in .*: read-only file system$/),
    );
  },
);

test(
  'a directory the user may not write in is refused with "permission denied"',
  { skip: process.getuid?.() !== 0 ? 'needs root to switch to nobody' : false },
  () => {
    const d = sub('perm');
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(d, 0o755);
    const code = `const o = require(${JSON.stringify(OUTPUTS)});
    for (const spec of [{ option: '--save', path: ${JSON.stringify(path.join(d, 'x.safetensors'))}, kind: 'checkpoint' }, { option: '--metrics', path: '/dev/null', kind: 'metrics' }])
      try { o.planOutputs([spec]).release(); console.log('ok'); } catch (e) { console.log(e.message); }`;
    const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', uid: 65534, gid: 65534 });
    assert.equal(
      r.stdout,
      `--save ${path.join(d, 'x.safetensors')}: cannot write in ${fs.realpathSync(d)}: permission denied\nok\n`,
      r.stderr,
    );
  },
);

test(
  'a file system too small for the expected bytes is refused up front, summing outputs that share it',
  { skip: mountSkip },
  () => {
    const small = path.join(dir, 'small');
    mountTmpfs(small, 'size=64k');
    assert.throws(
      () => planOutputs([save(path.join(small, 'x.safetensors'), { expectedBytes: 1_000_000 })]),
      userError(
        /^--save .*x\.safetensors needs about 1\.1 MB but only \d+ kB is free in .*small: free some space or choose another --save$/,
      ),
    );
    assert.ok(!fs.existsSync(path.join(small, 'x.safetensors.lock')), 'no lock left behind by a refused plan');
    planOutputs([save(path.join(small, 'a'), { expectedBytes: 20_000, lock: false })], {
      marginBytes: 10_000,
    }).release();
    planOutputs([{ option: '--onnx', path: path.join(small, 'b'), kind: 'file', expectedBytes: 20_000 }], {
      marginBytes: 10_000,
    }).release();
    assert.throws(
      () =>
        planOutputs(
          [
            save(path.join(small, 'a'), { expectedBytes: 20_000, lock: false }),
            { option: '--onnx', path: path.join(small, 'b'), kind: 'file', expectedBytes: 20_000 },
          ],
          { marginBytes: 30_000 },
        ),
      userError(/^--onnx .*b needs about 70 kB \(with --save on the same file system\) but only \d+ kB is free/),
    );
    assert.deepEqual(fs.readdirSync(small), []);
  },
);

test('a directory, a FIFO or a device as the output is refused; a device is accepted for an append-only log', () => {
  const d = sub('types');
  fs.mkdirSync(path.join(d, 'adir'));
  assert.throws(
    () => planOutputs([save(path.join(d, 'adir'))]),
    userError(/^--save .*adir is a directory: expected a file name$/),
  );
  execFileSync('mkfifo', [path.join(d, 'fifo')]);
  assert.throws(
    () => planOutputs([metrics(path.join(d, 'fifo'))]),
    userError(/^--metrics .*fifo is a FIFO \(named pipe\): expected a regular file or a new file name$/),
  );
  assert.throws(
    () => planOutputs([save('/dev/null')]),
    userError(/^--save \/dev\/null is a character device: expected a regular file or a new file name$/),
  );
  planOutputs([metrics('/dev/null')]).release();
});

test('an output under a regular file is refused naming that file', () => {
  const d = sub('under');
  fs.writeFileSync(path.join(d, 'runs'), 'a file');
  assert.throws(
    () => planOutputs([save(path.join(d, 'runs', 'exp', 'x.safetensors'))]),
    userError(/^--save .*runs\/exp\/x\.safetensors: .*under\/runs is a file, not a directory$/),
  );
});

test('an output that is an input is refused, also through a symbolic link or a hard link', () => {
  const d = sub('same');
  const w = path.join(d, 'w.safetensors');
  fs.writeFileSync(w, 'weights');
  fs.symlinkSync(w, path.join(d, 'link.safetensors'));
  fs.linkSync(w, path.join(d, 'hard.safetensors'));
  const inputs = [{ option: '--weights', path: w }];
  for (const out of [
    w,
    path.join(d, 'link.safetensors'),
    path.join(d, 'hard.safetensors'),
    path.join(d, '.', '..', 'same', 'w.safetensors'),
  ]) {
    assert.throws(
      () => planOutputs([{ option: '--out', path: out, kind: 'file', inputs }]),
      userError(
        /^--out .* is the same file as --weights .*w\.safetensors: writing it would destroy the input; choose another --out$/,
      ),
    );
  }
  assert.ok(sameFile(w, path.join(d, 'hard.safetensors')));
  assert.ok(!sameFile(w, path.join(d, 'other')));
  planOutputs([{ option: '--out', path: path.join(d, 'other'), kind: 'file', inputs }]).release();
});

test('two outputs naming the same file are refused', () => {
  const d = sub('twice');
  assert.throws(
    () => planOutputs([save(path.join(d, 'x')), metrics(path.join(d, '.', 'x'))]),
    userError(/^--save .*x and --metrics .*x are the same file: give them different paths$/),
  );
});

test('an existing checkpoint is never replaced without --overwrite, unless it is the run being resumed', () => {
  const d = sub('existing');
  const ckpt = path.join(d, 'x.safetensors');
  fs.writeFileSync(ckpt, Buffer.alloc(1500));
  assert.throws(
    () => planOutputs([save(ckpt, { describeExisting: () => 'epoch 3 of 10, alexnet-d2l on fashion-mnist' })]),
    userError(
      /^--save .*x\.safetensors already holds a checkpoint \(epoch 3 of 10, alexnet-d2l on fashion-mnist\): continue it with --resume .*x\.safetensors, or pass --overwrite to replace it$/,
    ),
  );
  assert.throws(
    () => planOutputs([save(ckpt)]),
    userError(/already holds a checkpoint \(1\.5 kB, written \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\): continue it/),
  );
  assert.ok(!fs.existsSync(`${ckpt}.lock`), 'the refused plan released its lock');
  const p = planOutputs([save(ckpt, { overwrite: true })]);
  assert.equal(p.outputs[0].policy, 'replace');
  assert.equal(p.outputs[0].exists, true);
  p.release();
  planOutputs([save(ckpt, { resuming: ckpt, inputs: [{ option: '--resume', path: ckpt }] })]).release();
  assert.throws(
    () => planOutputs([{ option: '--out', path: ckpt, kind: 'file', policy: 'refuse' }]),
    userError(/^--out .* already exists: pass --overwrite to replace it, or choose another --out$/),
  );
});

test('a live lock from a real second process refuses the run; once that process is dead its lock is taken over', async () => {
  const d = sub('lock');
  const target = path.join(d, 'x.safetensors');
  const other = sleeper();
  const started = new Date(Date.now() - 5_000).toISOString();
  fs.writeFileSync(
    lockPath(target),
    JSON.stringify({
      pid: other.pid,
      host: os.hostname(),
      started,
      command: 'alexnet train --save x',
      token: 'theirs',
    }),
  );
  assert.throws(
    () => planOutputs([save(target)]),
    userError(
      new RegExp(
        `^another run \\(PID ${other.pid}, started ${started.slice(0, 19).replace('T', ' ')} UTC: alexnet train --save x\\) is writing .*x\\.safetensors: wait for it to finish, or choose another --save$`,
      ),
    ),
  );
  other.kill('SIGKILL');
  await exited(other);
  const warnings: string[] = [];
  const release = acquireLock(target, { warn: (m) => warnings.push(m), command: 'alexnet train --save x.safetensors' });
  assert.deepEqual(
    warnings.map((w) => w.replace(/\d{4}-\d\d-\d\d \d\d:\d\d:\d\d/, 'T')),
    [`removed the stale lock ${lockPath(target)} (PID ${other.pid}, started T UTC, is no longer running)`],
  );
  const mine = readLock(lockPath(target))!.info!;
  assert.equal(mine.pid, process.pid);
  assert.equal(mine.host, os.hostname());
  assert.equal(mine.command, 'alexnet train --save x.safetensors');
  assert.throws(
    () => acquireLock(target, { what: '--save' }),
    userError(/--save .* is already being written by this run/),
  );
  release();
  release();
  assert.ok(!fs.existsSync(lockPath(target)));
  assert.deepEqual(fs.readdirSync(d), []);
});

test('a lock whose PID now belongs to a program started after it is stale', async () => {
  const d = sub('reused');
  const target = path.join(d, 'x.safetensors');
  const other = sleeper();
  const hourAgo = new Date(Date.now() - 3_600_000).toISOString();
  fs.writeFileSync(
    lockPath(target),
    JSON.stringify({ pid: other.pid, host: os.hostname(), started: hourAgo, command: 'alexnet train', token: 't' }),
  );
  const warnings: string[] = [];
  acquireLock(target, { warn: (m) => warnings.push(m) })();
  assert.match(
    warnings[0],
    new RegExp(
      `removed the stale lock .* \\(PID ${other.pid}, started .* UTC, now belongs to a program started later\\)$`,
    ),
  );
  other.kill('SIGKILL');
  await exited(other);
});

test("another host's lock is respected until it has not been refreshed for the staleness period", () => {
  const d = sub('remote');
  const target = path.join(d, 'x.safetensors');
  const lock = lockPath(target);
  fs.writeFileSync(
    lock,
    JSON.stringify({ pid: 1, host: 'node-7', started: new Date().toISOString(), command: 'alexnet train', token: 't' }),
  );
  assert.throws(
    () => acquireLock(target, { what: '--save', staleMs: 60_000 }),
    userError(
      /^another run \(PID 1 on node-7, started .*\) is writing .*: wait for it to finish, or choose another --save \(if that run is gone, remove .*x\.safetensors\.lock\)$/,
    ),
  );
  const old = new Date(Date.now() - 120_000);
  fs.utimesSync(lock, old, old);
  const warnings: string[] = [];
  acquireLock(target, { staleMs: 60_000, warn: (m) => warnings.push(m) })();
  assert.match(warnings[0], /removed the stale lock .* \(host node-7 has not refreshed it for 2 minutes\)/);
  // An unreadable lock: a run creating it right now, or garbage once old.
  fs.writeFileSync(lock, '');
  assert.throws(() => acquireLock(target), userError(/^another run \(starting now\) is writing/));
  fs.utimesSync(lock, old, old);
  acquireLock(target, { warn: () => {} })();
});

test('two runs with the same output: the second is refused while the first is alive, then the lock is gone', async () => {
  const d = sub('two-runs');
  const target = path.join(d, 'x.safetensors');
  const hold = `const o = require(${JSON.stringify(OUTPUTS)}); o.planOutputs([{ option: '--save', path: ${JSON.stringify(target)}, kind: 'checkpoint' }], { command: 'first run' });
    console.log('locked'); setTimeout(() => {}, 1e5);`;
  // Killed by SIGTERM with no handler of its own: the lock is released and the process still dies of SIGTERM.
  const first = sleeper(hold);
  assert.equal(await line(first), 'locked');
  assert.throws(
    () => planOutputs([save(target)]),
    userError(new RegExp(`^another run \\(PID ${first.pid}, started .* UTC: first run\\) is writing`)),
  );
  first.kill('SIGTERM');
  await exited(first);
  assert.equal(first.signalCode, 'SIGTERM');
  assert.ok(!fs.existsSync(lockPath(target)), 'SIGTERM released the lock');
  // With its own SIGINT handler (train's Ctrl-C: save, then exit), the command decides; the lock goes at exit.
  const second = sleeper(
    `${hold} process.on('SIGINT', () => { console.log('saving'); setTimeout(() => process.exit(0), 200); });`,
  );
  assert.equal(await line(second), 'locked');
  second.kill('SIGINT');
  assert.equal(await line(second), 'saving');
  assert.ok(fs.existsSync(lockPath(target)), 'held while the command saves');
  await exited(second);
  assert.equal(second.exitCode, 0);
  assert.ok(!fs.existsSync(lockPath(target)), 'released at exit');
  // A run that ends normally leaves no lock either.
  const r = spawnSync(process.execPath, ['-e', hold.replace('setTimeout(() => {}, 1e5);', '')], { encoding: 'utf8' });
  assert.equal(r.stdout.trim(), 'locked');
  assert.deepEqual(fs.readdirSync(d), []);
});

test("planning removes a dead run's temporaries of the outputs and keeps a live one's", async () => {
  const d = sub('temps');
  const target = path.join(d, 'x.safetensors');
  const live = sleeper();
  const dead = spawnSync(process.execPath, ['-e', '0']).pid;
  const theirs = tempPath(target, live.pid!);
  const gone = tempPath(target, dead);
  fs.writeFileSync(theirs, 'partial');
  fs.writeFileSync(gone, 'partial');
  const p = planOutputs([save(target)]);
  p.release();
  assert.deepEqual(p.cleaned, [gone]);
  assert.deepEqual(fs.readdirSync(d), [path.basename(theirs)]);
  live.kill('SIGKILL');
  await exited(live);
});

test('run ids are short, unique and sort by start time; safetensors sizes are estimated from tensor bytes', () => {
  const a = newRunId(new Date('2025-01-14T10:15:30Z'));
  assert.match(a, /^20250114T101530Z-[0-9a-f]{16}$/);
  const ids = new Set(Array.from({ length: 1000 }, () => newRunId()));
  assert.equal(ids.size, 1000);
  assert.ok(newRunId(new Date('2025-01-14T10:15:31Z')) > a);
  // 100,000 runs started in one second: all distinct, in the order they were made.
  const second = new Date('2025-01-14T10:15:32Z');
  const burst = Array.from({ length: 100_000 }, () => newRunId(second));
  assert.equal(new Set(burst).size, burst.length);
  assert.ok(
    burst.every((id, i) => i === 0 || id > burst[i - 1]),
    'ids of one second sort in the order they were made',
  );
  assert.ok(burst[0] > newRunId(new Date('2025-01-14T10:15:31Z')));
  // Back in that second (as another process would be) the count starts afresh at random, away from the first one's.
  assert.ok(!new Set(burst).has(newRunId(second)));
  const est = estimateSafetensorsBytes(1_000_000, 16, 2000);
  assert.ok(est > 1_000_000 && est < 1_010_000, `${est}`);
});
