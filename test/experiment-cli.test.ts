// alexnet experiment's outputs, refused before any training: --out naming a file, an earlier report kept unless
// --overwrite.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { cli } from './helpers/cli';

test('experiment --out FILE is one line, exit 2; an earlier report is kept without --overwrite', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-exp-out-'));
  try {
    const file = path.join(dir, 'file');
    fs.writeFileSync(file, 'x');
    const r = cli(['experiment', 'lrn', '--out', file]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(
      r.stderr,
      /--out: expected a folder for report\.md, curves\.svg and results\.json, got an existing file/,
    );
    const earlier = path.join(dir, 'earlier');
    fs.mkdirSync(earlier);
    fs.writeFileSync(path.join(earlier, 'report.md'), 'an earlier report');
    const again = cli(['experiment', 'lrn', '--out', earlier]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /report\.md already exists: pass --overwrite to replace it/);
    assert.equal(fs.readFileSync(path.join(earlier, 'report.md'), 'utf8'), 'an earlier report');
    assert.doesNotMatch(again.stdout, /seed 0/, 'refused before training');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Six batch files of 30 records each, pixels from a fixed pattern, labels 0–9 in turn; the folder. */
function writeCifar(dir: string): string {
  const data = path.join(dir, 'cifar');
  fs.mkdirSync(data);
  const rec = (r: number) => Buffer.from([r % 10, ...Array.from({ length: 3072 }, (_, i) => (i * 7 + r * 13) % 256)]);
  for (const f of ['data_batch_1', 'data_batch_2', 'data_batch_3', 'data_batch_4', 'data_batch_5', 'test_batch'])
    fs.writeFileSync(path.join(data, `${f}.bin`), Buffer.concat(Array.from({ length: 30 }, (_, r) => rec(r))));
  return data;
}

test('relu-vs-tanh --net cifar says plainly that it needs CIFAR-10, and runs on CIFAR-10 files at a tiny size', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-exp-cifar-'));
  try {
    const missing = cli(['experiment', 'relu-vs-tanh', '--net', 'cifar', '--out', path.join(dir, 'a')]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /relu-vs-tanh --net cifar needs CIFAR-10: --dataset cifar10:DIR, .*data_batch_1\.bin/);
    assert.equal(missing.stderr.trim().split('\n').length, 1);
    const other = cli(['experiment', 'dropout', '--dataset', 'cifar10:/x', '--out', path.join(dir, 'b')]);
    assert.equal(other.code, 2);
    assert.match(other.stderr, /--net and --dataset are for relu-vs-tanh and lrn/);
    const data = writeCifar(dir);
    const out = path.join(dir, 'c');
    const args = ['--dataset', `cifar10:${data}`, '--steps', '3', '--seeds', '2', '--train-limit', '64', '--out', out];
    const r = cli(['experiment', 'relu-vs-tanh', ...args]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /learning-rate search, tanh lr 0\.01: training error \d\.\d+ after 1 step \(seed 1000, not measured\)/,
    );
    assert.match(r.stdout, /chosen: relu lr [\d.]+, tanh lr [\d.]+/);
    // The quick budget runs tanh first, then ReLU until the lowest error its seed's tanh run reached.
    assert.ok(r.stdout.indexOf('tanh, seed 0:') < r.stdout.indexOf('relu, seed 0:'), r.stdout);
    assert.match(r.stdout, /relu, seed 0: [\d.]+ epochs in \d+ s \(stopped at tanh's lowest error, 0\.\d+\)/);
    const report = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    assert.match(report, /^# ReLU against tanh[^\n]*\n\n\*\*What this setting can show:\*\* Figure 1's own setting/);
    assert.match(report, /convnet-cifar \(cuda-convnet's layers-18pct\.cfg .* on 64 CIFAR-10 training images/);
    assert.match(report, /\| arm \| epochs to the threshold/);
    const j = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
    assert.equal(j.paper, 6);
    assert.ok(['held', 'not held', 'inconclusive'].includes(j.verdict));
    assert.match(fs.readFileSync(path.join(out, 'curves.svg'), 'utf8'), />epoch</);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('lrn on CIFAR-10: --net cifar needs the data; with it, both arms train to the settling rule and report the difference', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-exp-lrn-'));
  try {
    const missing = cli(['experiment', 'lrn', '--net', 'cifar', '--out', path.join(dir, 'a')]);
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr.trim().split('\n').length, 1);
    assert.match(missing.stderr, /lrn --net cifar needs CIFAR-10: --dataset cifar10:DIR/);
    const alex = cli([
      'experiment',
      'lrn',
      '--net',
      'alexnet',
      '--dataset',
      'cifar10:/x',
      '--out',
      path.join(dir, 'b'),
    ]);
    assert.equal(alex.code, 2);
    assert.match(alex.stderr, /lrn --net alexnet runs on Fashion-MNIST: leave out --dataset/);
    const data = writeCifar(dir);
    const out = path.join(dir, 'c');
    // 64 training images are one step of 128 an epoch: --steps 3 caps each run at 3 epochs.
    const args = ['--dataset', `cifar10:${data}`, '--steps', '3', '--seeds', '2', '--train-limit', '64', '--out', out];
    const r = cli(['experiment', 'lrn', ...args]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /rnorm \(layers-18pct\), seed 0: test error \d\.\d{3} after [1-3] epochs \((settled|not settled)/,
    );
    assert.match(r.stdout, /no rnorm, seed 1: test error/);
    const report = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    assert.match(
      report,
      /^# Response normalisation on CIFAR-10[^\n]*\n\n\*\*What this setting can show:\*\* Section 3\.3's own setting/,
    );
    assert.match(
      report,
      /on 64 CIFAR-10 training images, .* top-1 error on 30 test images \(test_batch\.bin\) after every epoch/,
    );
    assert.match(
      report,
      /\*\*Settling rule:\*\* a run stops once the test error of its last 3 epochs spans less than 0\.5 points/,
    );
    assert.match(report, /\| rnorm \(layers-18pct\) \| [\d.]+% ± [\d.]+ \| [\d.]+ \| \d of 2 \|/);
    assert.match(report, /the paper: 2 \(13% − 11%\)/);
    const j = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
    assert.equal(j.paper, 2);
    assert.equal(j.n, 2);
    assert.ok(['held', 'not held', 'inconclusive'].includes(j.verdict));
    assert.match(fs.readFileSync(path.join(out, 'curves.svg'), 'utf8'), />epoch</);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('an ablation at --budget medium (smoke-run with tiny --steps) measures training error and says whether it fell below test error', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-exp-medium-'));
  try {
    const out = path.join(dir, 'm');
    const args = ['--budget', 'medium', '--steps', '2', '--seeds', '2', '--train-limit', '64', '--test-limit', '20'];
    const r = cli(['experiment', 'overlapping-pooling', ...args, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /2×2\/2 pooling, seed 1: test error \d\.\d{3}, training error \d\.\d{3}/);
    const report = fs.readFileSync(path.join(out, 'report.md'), 'utf8');
    assert.match(
      report,
      /on 64 Fashion-MNIST images at 67×67 for 2 steps \(the medium budget\): sized to train past the point/,
    );
    assert.match(report, /\| arm \| test error \(mean ± sd\) \| training error \|\n\|---\|---\|---\|/);
    const j = JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8'));
    // Two steps train nothing: never held, and never "did not hold" against the paper.
    assert.equal(j.verdict, 'inconclusive');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
