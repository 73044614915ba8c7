// No run loses work, end to end through the command: outputs checked before any training, an existing
// checkpoint never replaced by another run, one run per checkpoint, honest exit codes for signals, predict with
// flat memory and bad files reported beside good answers, hostile model metadata refused, special files refused.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { loadSafetensors, saveSafetensors } from '../src/io/safetensors';
import { loadCheckpoint } from '../src/persist/checkpoint';
import { BIN, cli } from './helpers/cli';
import { bindReadOnly, mountSkip, mountTmpfs, unmountAll } from './helpers/mounts';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-safety-'));
after(() => {
  unmountAll();
  fs.rmSync(dir, { recursive: true, force: true });
});
const TINY = [
  'train',
  '--input-size',
  '67',
  '--train-limit',
  '64',
  '--test-limit',
  '32',
  '--batch-size',
  '32',
  '--threads',
  '2',
];
/** The line a run prints once it has started training: none of the refusals below may get that far. */
const STARTED = /training alexnet-d2l on/;

function refused(args: string[], pattern: RegExp): void {
  const r = cli(args);
  assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stdout, STARTED, 'refused before training');
}

let checkpoint = '';
/** A checkpoint whose run is complete (1 of 1 epochs). */
let finished = '';
test('a finished run leaves a checkpoint that a second run may not replace without --overwrite', () => {
  checkpoint = path.join(dir, 'first.safetensors');
  const r = cli([...TINY, '--epochs', '1', '--save', checkpoint]);
  assert.equal(r.code, 0, r.stderr);
  const before = fs.readFileSync(checkpoint);
  refused(
    [...TINY, '--epochs', '1', '--save', checkpoint],
    /--save .*first\.safetensors already holds a checkpoint \(alexnet-d2l, epoch 1 of 1.*--resume/,
  );
  assert.ok(fs.readFileSync(checkpoint).equals(before), 'the checkpoint is untouched');
  finished = path.join(dir, 'finished.safetensors');
  fs.copyFileSync(checkpoint, finished);
  const again = cli([...TINY, '--epochs', '1', '--max-steps', '1', '--save', checkpoint, '--overwrite']);
  assert.equal(again.code, 0, again.stderr);
});

test('outputs that cannot be written are refused before training: a directory, under a regular file, the same file twice', () => {
  refused([...TINY, '--save', dir], /--save .* is a directory/);
  const file = path.join(dir, 'plain.txt');
  fs.writeFileSync(file, 'x');
  refused([...TINY, '--save', path.join(file, 'x.safetensors')], /--save .*plain\.txt is a file, not a directory/);
  const same = path.join(dir, 'same.out');
  refused([...TINY, '--save', same, '--metrics', same], /are the same file/);
  refused(
    ['export', '--weights', checkpoint, '--out', checkpoint, '--format', 'safetensors'],
    /--out .* is the same file as --weights/,
  );
});

test(
  'a read-only directory and a full file system are refused before training, naming the option',
  { skip: mountSkip },
  () => {
    const ro = path.join(dir, 'ro');
    fs.mkdirSync(ro);
    bindReadOnly(ro);
    refused([...TINY, '--save', path.join(ro, 'x.safetensors')], /--save .*read-only file system/);
    refused(
      [...TINY, '--save', path.join(dir, 'x.safetensors'), '--metrics', path.join(ro, 'm.jsonl')],
      /--metrics .*read-only file system/,
    );
    const small = path.join(dir, 'small');
    mountTmpfs(small, 'size=1m');
    refused(
      [...TINY, '--save', path.join(small, 'x.safetensors')],
      /--save .* needs about \d+(\.\d+)? MB but only .* is free/,
    );
    assert.deepEqual(fs.readdirSync(small), [], 'nothing left behind');
  },
);

test('a second run on the same checkpoint is refused while the first runs; SIGTERM stops the first with 130 and a saved checkpoint', async () => {
  const file = path.join(dir, 'shared.safetensors');
  const first = spawn(process.execPath, [BIN, ...TINY, '--epochs', '50', '--save', file], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  first.stdout.on('data', (d) => (out += d));
  const deadline = Date.now() + 120_000;
  while (!STARTED.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.match(out, STARTED);
  refused([...TINY, '--save', file], new RegExp(`another run \\(PID ${first.pid},.* is writing`));
  first.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => first.on('exit', r));
  assert.equal(code, 130, 'interrupted, not done');
  assert.match(out, /interrupted after step \d+: checkpoint saved to/);
  const c = loadCheckpoint(file);
  for (const t of c.tensors.values()) t.dispose();
  assert.ok(!fs.existsSync(`${file}.lock`), 'the lock is released');
  refused(
    ['train', '--resume', file, '--epochs', '50', '--max-steps', String(c.progress.globalStep)],
    /--max-steps .* is not above the \d+ steps/,
  );
});

test('resuming with nothing left to do, MNIST without its files and a mistyped device are usage errors', () => {
  refused(
    ['train', '--resume', finished, '--epochs', '1'],
    /has done 1 epochs and the run asks for 1: give --epochs above 1/,
  );
  refused([...TINY, '--dataset', 'mnist'], /--dataset mnist needs --data DIR/);
  refused([...TINY, '--device', 'gpu'], /--device must be auto, cpu, cuda or cuda:N, got 'gpu'/);
  const info = cli(['info'], { env: { OMP_NUM_THREADS: '0' } });
  assert.equal(info.code, 2, info.stderr);
  assert.match(info.stderr, /^alexnet: error: OMP_NUM_THREADS must be a positive integer, got '0'/);
});

test('special files are refused before they are read: a directory, a FIFO and a device as weights', () => {
  const fifo = path.join(dir, 'fifo');
  spawnSync('mkfifo', [fifo]);
  for (const [f, what] of [
    [dir, 'a directory'],
    [fifo, 'a FIFO'],
    ['/dev/zero', 'a character device'],
  ]) {
    const r = spawnSync(process.execPath, [BIN, 'eval', '--weights', f], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 2, `${f}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`${f} is ${what}`));
  }
  const r = spawnSync(process.execPath, [BIN, 'train', '--resume', '/dev/zero'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2, r.stderr);
});

test('hostile metadata in a weights file is refused with the field named, before anything is allocated from it', () => {
  const { tensors, metadata } = loadSafetensors(checkpoint);
  const cases: [Record<string, string>, RegExp][] = [
    [{ source_shape: '[1, 100000, 100000]' }, /metadata 'source_shape' must be an integer in \[1, 2048\]/],
    [
      { preprocess: JSON.stringify({ inputSize: [67, 67], resize: 'bilinear', mean: [0.2], std: [0] }) },
      /'preprocess\.std' must be a number in \(0, 1000\]/,
    ],
    [{ classes: '[]' }, /'classes' must be a list of 1 to 100000 items/],
    [{ model: 'alexnet-9000' }, /'model' must be one of alexnet-2012/],
  ];
  for (const [change, pattern] of cases) {
    const file = path.join(dir, 'hostile.safetensors');
    saveSafetensors(file, tensors, { ...metadata, ...change });
    const r = cli(['predict', '--weights', file, '/nonexistent.png']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, pattern);
  }
  for (const t of tensors.values()) t.dispose();
});

test('predict answers the good images when one is bad (exit 1) and its memory stays flat from 10 to 300 files', () => {
  const imgs = path.join(dir, 'imgs');
  fs.mkdirSync(imgs);
  const png = Buffer.from(
    '89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b550000000a49444154789c63600000000200017d2b3ae40000000049454e44ae426082',
    'hex',
  );
  const files = Array.from({ length: 300 }, (_, i) => path.join(imgs, `${i}.png`));
  files.forEach((f) => fs.writeFileSync(f, png));
  const bad = path.join(imgs, 'bad.png');
  fs.writeFileSync(bad, 'not an image');
  const mixed = cli(['predict', '--weights', checkpoint, '--json', files[0], bad, files[1]]);
  assert.equal(mixed.code, 1, mixed.stderr);
  assert.match(mixed.stderr, /bad\.png: not an image/);
  const answers = JSON.parse(mixed.stdout);
  assert.equal(answers.length, 3);
  assert.ok(answers[0].top.length && answers[2].top.length && answers[1].error);
  // Peak resident memory of the whole process (kB), reported by a preloaded hook at exit.
  const hook = path.join(dir, 'maxrss.js');
  fs.writeFileSync(
    hook,
    "process.on('exit', () => require('fs').writeSync(2, `maxrss ${process.resourceUsage().maxRSS}\\n`));",
  );
  const peak = (n: number) => {
    const r = spawnSync(process.execPath, ['-r', hook, BIN, 'predict', '--weights', checkpoint, ...files.slice(0, n)], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.split('\n').filter((l) => l.endsWith('.png')).length, n);
    return Number(/maxrss (\d+)/.exec(r.stderr)![1]);
  };
  const small = peak(10);
  const large = peak(300);
  assert.ok(large < small * 1.25 + 20_000, `peak RSS ${large} kB for 300 files vs ${small} kB for 10`);
});

test('signals that arrive mid-step, a handled one every few milliseconds, leave the run intact', async () => {
  // A Ctrl-C reaches each rank of a data-parallel run in the middle of a step; the run must survive being
  // interrupted there. Here a signal that only a no-op listener takes is sent until the run ends: before the
  // addon routed such signals off the computing thread, the C heap was corrupted within a few hundred.
  const listener = path.join(dir, 'listen-usr2.js');
  fs.writeFileSync(listener, "process.on('SIGUSR2', () => {});\n");
  const args = ['train', '--model', 'alexnet-d2l', '--widths', '16-32-32-32-32', '--input-size', '65'];
  args.push(
    '--train-limit',
    '1024',
    '--test-limit',
    '32',
    '--batch-size',
    '16',
    '--threads',
    '1',
    '--max-steps',
    '80',
    '--precision',
    'fp32',
  );
  const p = spawn(process.execPath, ['-r', listener, BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
  let running = true;
  void exited.then(() => (running = false));
  const deadline = Date.now() + 120_000;
  while (running && !STARTED.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  let sent = 0;
  // Through the training steps, up to the evaluation: once the listener's handle is closed at exit, the signal's
  // default action would kill the process.
  while (running && !/evaluating|stopped after step/.test(out)) {
    if (p.kill('SIGUSR2')) sent++;
    await new Promise((r) => setTimeout(r, 1));
  }
  const code = await exited;
  assert.equal(code, 0, `after ${sent} signals:\n${out}`);
  assert.match(out, /stopped after step 80/);
  assert.ok(sent >= 100, `only ${sent} signals were sent`);
});
