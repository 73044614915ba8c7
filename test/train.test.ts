import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { loadCheckpoint } from '../src/persist/checkpoint';
import { loadModel } from '../src/persist/load';
import { buildRunConfig, RunConfig, TrainOptions } from '../src/train/config';
import { NonFiniteLossError } from '../src/train/epoch';
import { resume, train } from '../src/train/run';
import { firstPassOnly, maxAbsDiff } from './helpers/oracle';
import { stopDuringWrite } from './helpers/mid-write';
import { cleanStaleTemps } from '../src/util/files';
import { BIN, cli } from './helpers/cli';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-train-'));
// Removed when the file's tests end (a run leaves nothing in the temporary folder; io's alone was 2.6 GB).
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function cfg(o: TrainOptions): RunConfig {
  return buildRunConfig({
    model: 'alexnet-d2l',
    inputSize: 67,
    dataset: 'fashion-mnist',
    trainLimit: 128,
    testLimit: 64,
    epochs: 2,
    batchSize: 32,
    evalBatchSize: 64,
    optimizer: 'sgd',
    lr: 0.01,
    momentum: 0.9,
    weightDecay: 0.0005,
    schedule: 'constant',
    normalize: { mean: 0.286, std: 0.353 },
    seed: 3,
    device: 'cpu',
    threads: os.cpus().length,
    ...o,
  });
}
const quiet = { log: () => {}, progressStream: fs.createWriteStream('/dev/null') as unknown as NodeJS.WriteStream };

test('a few hundred steps on a subset lower the loss and beat chance clearly', async () => {
  const r = await train(
    cfg({ trainLimit: 6400, testLimit: 1000, epochs: 1, batchSize: 32, optimizer: 'adam', lr: 1e-4, momentum: 0 }),
    quiet,
  );
  const h = r.history[0];
  assert.equal(r.globalStep, 200);
  assert.ok(h.test_acc > 0.5, `test accuracy ${h.test_acc} after 200 steps (chance is 0.1)`);
  assert.ok(h.test_loss < Math.log(10) * 0.7, `test loss ${h.test_loss} vs ${Math.log(10)} at chance`);
  r.model.dispose();
});

test('save then resume gives the same weights as an uninterrupted run', async () => {
  const full = await train(cfg({}), quiet);
  const ckpt = path.join(dir, 'resume.safetensors');
  const first = await train(cfg({ maxSteps: 5, save: ckpt }), quiet); // stops inside epoch 2 (4 steps per epoch)
  assert.equal(first.stopped, 'max-steps');
  assert.deepEqual(loadCheckpoint(ckpt).progress, { epoch: 1, batch: 1, globalStep: 5 });
  first.model.dispose();
  const resumed = await resume(ckpt, {}, quiet);
  assert.equal(resumed.globalStep, 8);
  const a = full.model.stateDict();
  for (const [k, t] of resumed.model.stateDict())
    assert.equal(maxAbsDiff(t, a.get(k)!), 0, `${k} differs after resuming`);
  assert.equal(resumed.history.length, 2);
  assert.equal(resumed.history[1].test_acc, full.history[1].test_acc);
  full.model.dispose();
  resumed.model.dispose();
});

test(
  'a non-finite loss stops the run with a clear message and keeps the last good checkpoint',
  { skip: firstPassOnly('a loss overflowed by a learning rate of 1e12') },
  async () => {
    const ckpt = path.join(dir, 'nan.safetensors');
    (await train(cfg({ epochs: 1, save: ckpt }), quiet)).model.dispose();
    const before = fs.readFileSync(ckpt);
    await assert.rejects(resume(ckpt, { epochs: 2, lr: 1e12 }, quiet), (e: unknown) => {
      assert.ok(e instanceof NonFiniteLossError);
      assert.match(e.message, /loss became (NaN|Infinity|-Infinity)/);
      assert.match(e.message, /last good checkpoint is .*nan\.safetensors/);
      return true;
    });
    assert.ok(fs.readFileSync(ckpt).equals(before), 'the checkpoint was not touched');
    assert.equal(loadCheckpoint(ckpt).progress.epoch, 1);
  },
);

test(
  'SIGKILL while a checkpoint is being written leaves the previous one loadable, and the partial file is cleaned',
  { skip: firstPassOnly('a checkpoint write interrupted by SIGKILL') },
  async () => {
    const ckpt = path.join(dir, 'kill.safetensors');
    const args = [
      'train',
      '--input-size',
      '67',
      '--train-limit',
      '64',
      '--test-limit',
      '32',
      '--batch-size',
      '32',
      '--epochs',
      '5',
      '--save',
      ckpt,
    ];
    const child = spawn(process.execPath, [BIN, ...args], { stdio: 'ignore' });
    // The child is stopped the moment its second checkpoint's temporary file appears, then killed.
    const tmp = await stopDuringWrite(child, dir, 'kill.safetensors', { when: () => fs.existsSync(ckpt) });
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    assert.equal(loadCheckpoint(ckpt).progress.epoch, 1);
    loadModel(ckpt).model.dispose();
    assert.deepEqual(cleanStaleTemps(dir, 'kill.safetensors'), [tmp]);
  },
);

test(
  'eval and predict work from a checkpoint (an architecture knob included); predict rejects non-images',
  { skip: firstPassOnly('the commands reading a checkpoint, their counts and their messages') },
  async () => {
    const ckpt = path.join(dir, 'cli.safetensors');
    const r = cli([
      'train',
      '--lrn',
      'pytorch',
      '--pool',
      '2/2',
      '--input-size',
      '67',
      '--train-limit',
      '64',
      '--test-limit',
      '64',
      '--batch-size',
      '32',
      '--epochs',
      '1',
      '--save',
      ckpt,
      '--metrics',
      path.join(dir, 'm.jsonl'),
    ]);
    assert.equal(r.code, 0, r.stderr);
    // The start line names the CPU's instruction set and the precision auto chose, and why.
    assert.match(r.stdout, /cpu with \d+ threads \(.*(avx|sse|unknown).*\), (fp32|bf16) \(auto: /);
    const layers = loadModel(ckpt)
      .model.layerTable()
      .map((row) => row.layer);
    assert.equal(layers.filter((l) => l.startsWith('LocalResponseNorm(pytorch')).length, 2, 'the knobs were saved');
    assert.equal(layers.filter((l) => l === 'MaxPool2d(kernel=2×2, stride=2×2)').length, 3);
    const rec = JSON.parse(fs.readFileSync(path.join(dir, 'm.jsonl'), 'utf8').trim());
    assert.equal(rec.epoch, 1);
    for (const k of [
      'train_loss',
      'train_acc',
      'test_loss',
      'test_acc',
      'test_top5',
      'images_per_sec',
      'elapsed_seconds',
    ])
      assert.equal(typeof rec[k], 'number', k);
    const ev = JSON.parse(cli(['eval', '--weights', ckpt, '--limit', '100', '--json']).stdout);
    assert.equal(ev.n, 100);
    assert.equal(
      ev.confusion.flat().reduce((a: number, b: number) => a + b, 0),
      100,
    );
    assert.ok(ev.top5 >= ev.top1);
    const text = path.join(dir, 'not-an-image.jpg');
    fs.writeFileSync(text, 'hello, I am text\n');
    const empty = path.join(dir, 'empty.png');
    fs.writeFileSync(empty, '');
    for (const f of [text, empty, path.join(dir, 'missing.png')]) {
      const p = cli(['predict', '--weights', ckpt, f]);
      assert.equal(p.code, 1, p.stderr);
      assert.equal(p.stderr.trim().split('\n').length, 1, p.stderr);
      assert.ok(p.stderr.includes(f), p.stderr);
    }
    const bad = cli(['train', '--epochs', 'ten']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--epochs must be an integer/);
    const resumeBad = cli(['train', '--resume', ckpt, '--model', 'alexnet-2012']);
    assert.match(resumeBad.stderr, /--model cannot be changed when resuming/);
  },
);

test(
  'every variant trains on Fashion-MNIST: its input channels follow the data (1), whatever its default',
  { skip: firstPassOnly("the variants' input channels (one step, no number judged but finiteness)") },
  async () => {
    for (const model of ['alexnet-2012', 'alexnet-torchvision', 'alexnet-half', 'alexnet-bn']) {
      const r = await train(
        cfg({ model, inputSize: 67, trainLimit: 16, testLimit: 16, batchSize: 8, evalBatchSize: 16, maxSteps: 1 }),
        quiet,
      );
      assert.equal(r.globalStep, 1, model);
      assert.equal(r.model.inputShape[0], 1, `${model} takes the data's one channel`);
      assert.equal(r.record.modelOptions.inChannels, 1);
      assert.ok(Number.isFinite(r.lastEval!.loss), `${model}: ${r.lastEval!.loss}`);
      r.model.dispose();
    }
  },
);
