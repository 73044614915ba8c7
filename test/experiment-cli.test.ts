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
