import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cli } from './helpers/cli';
import { cliPeakRss } from './helpers/cli-rss';

test('alexnet summary works for all five variants with the published totals', () => {
  const totals: Record<string, string> = {
    'alexnet-2012': '60,965,224',
    'alexnet-torchvision': '61,100,840',
    'alexnet-d2l': '46,764,746',
    'alexnet-half': '',
    'alexnet-bn': '',
  };
  for (const [name, total] of Object.entries(totals)) {
    const r = cli(['summary', '--model', name]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /features\.0\s+Conv2d/);
    if (total) assert.match(r.stdout, new RegExp(`total: ${total} parameters`));
  }
});

test('alexnet summary --json gives the layer table', () => {
  const r = cli(['summary', '--model', 'alexnet-torchvision', '--json']);
  const j = JSON.parse(r.stdout);
  assert.equal(j.totalParams, 61100840);
  assert.equal(j.totalMacs, 714188480);
  assert.deepEqual(j.layers.find((l: { name: string }) => l.name === 'avgpool').outputShape, [256, 6, 6]);
  // --input rebuilds the classifier of fixed-size variants for the new size
  const d2l = JSON.parse(cli(['summary', '--model', 'alexnet-d2l', '--input', '1x67x67', '--json']).stdout);
  assert.deepEqual(d2l.layers.find((l: { name: string }) => l.name === 'flatten').outputShape, [256]);
});

test('user mistakes are one-line errors with exit code 2', () => {
  for (const args of [
    ['summary', '--model', 'nope'],
    ['summary', '--model', 'alexnet-torchvision', '--input', '3x40x40'],
    ['summary', '--input', 'abc'],
    ['summary', '--wat'],
    ['frobnicate'],
  ]) {
    const r = cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /    at /);
  }
  assert.match(
    cli(['summary', '--model', 'alexnet-torchvision', '--input', '3x40x40']).stderr,
    /smallest input that works is 3×63×63/,
  );
  assert.match(
    cli(['summary', '--model', 'nope']).stderr,
    /alexnet-2012, alexnet-torchvision, alexnet-d2l, alexnet-half, alexnet-bn/,
  );
});

test('a missing native engine says how to fix it', () => {
  // summary needs no engine (it allocates nothing); info is the command that reports on it.
  const r = cli(['info'], { env: { ALEXNET_NATIVE: '/nonexistent/alexnet_native.node' } });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /npm run build:addon/);
  assert.match(r.stderr, /libtorch-dev/);
});

test('--help explains each command', () => {
  assert.match(cli(['--help']).stdout, /summary/);
  assert.match(cli(['summary', '--help']).stdout, /--input CxHxW/);
});

test('alexnet summary describes a 2-billion-parameter model without allocating it', () => {
  const r = cliPeakRss(['summary', '--model', 'alexnet-2012', '--input', '1500']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /classifier\.1 +Linear\(518400, 4096\) +4096 +2,123,370,496/);
  assert.match(r.stdout, /total: 2,146,582,888 parameters/);
  // Building it allocated 8.6 GB (8.8 GB peak); the table alone needs Node and the JavaScript.
  assert.ok(r.peakMb < 500, `peak RSS ${r.peakMb.toFixed(0)} MB`);
  const tv = cliPeakRss(['summary', '--model', 'alexnet-torchvision', '--input', '1500', '--json']);
  assert.equal(tv.code, 0, tv.stderr);
  assert.equal(JSON.parse(tv.stdout).totalParams, 61_100_840);
  assert.ok(tv.peakMb < 500, `peak RSS ${tv.peakMb.toFixed(0)} MB`);
});
