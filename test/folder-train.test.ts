// Training on image folders end to end, through the command line: alexnet-bn learns a generated data set of JPEG
// and PNG shapes; the paper's recipe runs with checkpoints, ten-crop evaluation and prediction; statistics and the
// pipeline benchmark; bad input gives one-line messages.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { writeShapesFolder } from '../src/data/synthetic';
import { loadCheckpoint } from '../src/persist/checkpoint';
import { RunConfig } from '../src/train/config';
import { cli } from './helpers/cli';
import { firstPassOnly } from './helpers/oracle';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-folder-train-'));
// Removed when the file's tests end (a run leaves nothing in the temporary folder; io's alone was 2.6 GB).
const shapes = path.join(dir, 'shapes');
const ready = writeShapesFolder(shapes, { perClass: 30, colourByClass: true, width: 112, height: 96, seed: 1 });
// After the folder is written: every test may be skipped (the AVX2 repeat, a name pattern) while it is.
after(async () => {
  await ready;
  fs.rmSync(dir, { recursive: true, force: true });
});

test('alexnet-bn learns a generated three-class photo folder within a few epochs; eval, ten-crop and predict use its classes', async () => {
  await ready;
  const labels = path.join(dir, 'labels.txt');
  fs.writeFileSync(labels, 'circle Round thing\nsquare Box\ntriangle Pointy\n');
  const ckpt = path.join(dir, 'bn.safetensors');
  const metrics = path.join(dir, 'bn.jsonl');
  const r = cli(
    [
      'train',
      '--dataset',
      `folder:${shapes}`,
      '--input-size',
      '96',
      '--epochs',
      '4',
      '--batch-size',
      '16',
      '--augment',
      'paper',
      '--lr',
      '0.0003',
      '--val-split',
      '0.2',
      '--labels',
      labels,
      '--save',
      ckpt,
      '--metrics',
      metrics,
      '--threads',
      String(os.cpus().length),
    ],
    { env: { CI: '1' } },
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /recipe: the BatchNorm cats-vs-dogs recipe for alexnet-bn, paper augmentation/);
  assert.match(
    r.stdout,
    /training alexnet-bn on folder:.*\(72 train \/ 18 test images, 3 classes, input 3×96×96\).*adam lr 0.0003/,
  );
  const history = fs
    .readFileSync(metrics, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(history.length, 4);
  const last = history[3];
  assert.ok(last.test_acc >= 0.9, `validation accuracy ${last.test_acc} after 4 epochs (chance 0.33)`);
  assert.ok(last.train_loss < history[0].train_loss, 'training loss falls');
  assert.equal(last.skipped, 0);

  const c = loadCheckpoint(ckpt);
  assert.deepEqual(c.record.classIds, ['circle', 'square', 'triangle']);
  assert.deepEqual(c.record.classes, ['Round thing', 'Box', 'Pointy']);
  assert.equal(c.record.transform?.augment, 'paper');
  assert.deepEqual(c.record.preprocess.mean, [0.485, 0.456, 0.406]);
  for (const t of c.tensors.values()) t.dispose();

  // eval: the same seeded validation split, centre crops and ten crops.
  const ev = cli(['eval', '--weights', ckpt, '--json'], { env: { CI: '1' } });
  assert.equal(ev.code, 0, ev.stderr);
  const e1 = JSON.parse(ev.stdout);
  assert.equal(e1.n, 18);
  assert.ok(Math.abs(e1.top1 - last.test_acc) < 1e-9, `eval ${e1.top1} = the run's last validation ${last.test_acc}`);
  assert.deepEqual(
    e1.perClass.map((p: { name: string }) => p.name),
    ['Round thing', 'Box', 'Pointy'],
  );
  const ten = JSON.parse(cli(['eval', '--weights', ckpt, '--ten-crop', '--json'], { env: { CI: '1' } }).stdout);
  assert.equal(ten.tenCrop, true);
  assert.equal(ten.n, 18);
  assert.ok(ten.top1 >= 0.85, `ten-crop accuracy ${ten.top1}`);

  // predict: a new triangle, drawn with another seed.
  const fresh = path.join(dir, 'fresh');
  const files = await writeShapesFolder(fresh, {
    perClass: 1,
    colourByClass: true,
    width: 112,
    height: 96,
    seed: 77,
    formats: ['png'],
  });
  const p = cli(['predict', '--weights', ckpt, '--json', '--top', '2', ...files]);
  assert.equal(p.code, 0, p.stderr);
  const preds = JSON.parse(p.stdout) as { top: { class: string }[] }[];
  assert.deepEqual(
    preds.map((x) => x.top[0].class),
    ['Round thing', 'Box', 'Pointy'],
  );
});

test(
  "alexnet-2012 with the paper's recipe trains on a folder end to end: checkpoint, resume, ten-crop eval, predict",
  { timeout: 600_000, skip: firstPassOnly("the paper recipe's run through the command line (no number is judged)") },
  async () => {
    await ready;
    const ckpt = path.join(dir, 'paper.safetensors');
    const r = cli(
      [
        'train',
        '--dataset',
        `folder:${shapes}`,
        '--model',
        'alexnet-2012',
        '--epochs',
        '1',
        '--batch-size',
        '8',
        '--train-limit',
        '16',
        '--test-limit',
        '6',
        '--save',
        ckpt,
      ],
      { env: { CI: '1' } },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /recipe: the paper's recipe for alexnet-2012, paper augmentation/);
    assert.match(r.stdout, /input 3×227×227.*sgd-paper lr 0.01, batch 8, 1 epochs/);
    const c = loadCheckpoint(ckpt);
    const o = (c.config as unknown as RunConfig).optimization;
    assert.equal(o.schedule, 'plateau');
    assert.equal(o.momentum, 0.9);
    assert.equal(o.weightDecay, 0.0005);
    assert.deepEqual(
      { ...c.record.transform, eigval: undefined, eigvec: undefined, mean: undefined, std: undefined },
      {
        augment: 'paper',
        size: 227,
        shortSide: 259,
        flip: true,
        pcaStd: 0.1,
        channels: 3,
        eigval: undefined,
        eigvec: undefined,
        mean: undefined,
        std: undefined,
      },
    );
    for (const t of c.tensors.values()) t.dispose();
    const more = cli(['train', '--resume', ckpt, '--epochs', '2'], { env: { CI: '1' } });
    assert.equal(more.code, 0, more.stderr);
    assert.match(more.stdout, /resuming .*1 epochs and 0 batches done, step 2/);
    assert.match(more.stdout, /epoch 2\/2/);
    const ev = cli(['eval', '--weights', ckpt, '--ten-crop', '--limit', '4', '--json']);
    assert.equal(ev.code, 0, ev.stderr);
    assert.equal(JSON.parse(ev.stdout).n, 4);
    const p = cli(['predict', '--weights', ckpt, path.join(shapes, 'circle', '0000.jpg')]);
    assert.equal(p.code, 0, p.stderr);
    assert.match(p.stdout, /%\s+(circle|square|triangle)/);
  },
);

test(
  'alexnet stats writes statistics that training uses; bench --pipeline reports the pipeline next to training',
  { skip: firstPassOnly('statistics handed from a file to training, and the benchmark report') },
  async () => {
    await ready;
    const out = path.join(dir, 'stats.json');
    const s = cli(['stats', '--dataset', `folder:${shapes}`, '--out', out, '--limit', '30']);
    assert.equal(s.code, 0, s.stderr);
    assert.match(s.stdout, /images: 30/);
    const stats = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(stats.mean.length, 3);
    const ckpt = path.join(dir, 'stats-run.safetensors');
    const r = cli([
      'train',
      '--dataset',
      `folder:${shapes}`,
      '--input-size',
      '72',
      '--epochs',
      '1',
      '--max-steps',
      '1',
      '--batch-size',
      '4',
      '--stats',
      out,
      '--save',
      ckpt,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const c = loadCheckpoint(ckpt);
    assert.deepEqual(c.record.preprocess.mean, stats.mean);
    assert.deepEqual(c.record.transform?.eigvec, stats.eigvec);
    for (const t of c.tensors.values()) t.dispose();

    const b = cli([
      'bench',
      '--pipeline',
      '--data',
      `folder:${shapes}`,
      '--model',
      'alexnet-bn',
      '--batch-size',
      '4',
      '--steps',
      '2',
      '--json',
    ]);
    assert.equal(b.code, 0, b.stderr);
    const j = JSON.parse(b.stdout);
    for (const k of [
      'train_images_per_sec',
      'infer_images_per_sec',
      'pipeline_images_per_sec',
      'train_pipeline_images_per_sec',
    ])
      assert.ok(j[k] > 0, `${k} ${j[k]}`);
  },
);

test(
  'folder mistakes are one-line errors: missing folder, one class, IDX-only options, --strict on a bad image',
  { skip: firstPassOnly('usage errors') },
  async () => {
    await ready;
    const oneLine = (r: { code: number | null; stderr: string }, re: RegExp) => {
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, re);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    };
    oneLine(cli(['train', '--dataset', `folder:${path.join(dir, 'nope')}`]), /data set folder .*nope does not exist/);
    const single = path.join(dir, 'single');
    fs.mkdirSync(path.join(single, 'only'), { recursive: true });
    oneLine(cli(['train', '--dataset', `folder:${single}`]), /a single class folder \('only'\)/);
    oneLine(
      cli(['train', '--dataset', `folder:${shapes}`, '--normalize', '0.5,0.5']),
      /--normalize is for IDX data sets/,
    );
    oneLine(cli(['train', '--augment', 'paper']), /--augment is for image-folder data sets/);
    oneLine(
      cli(['train', '--dataset', `folder:${shapes}`, '--augment', 'heavy']),
      /--augment must be paper, torchvision, none/,
    );
    const bad = path.join(dir, 'bad');
    // train/ and val/ folders, so the broken file is certainly a training image.
    for (const split of ['train', 'val'])
      await writeShapesFolder(path.join(bad, split), {
        perClass: 2,
        shapes: ['circle', 'square'],
        width: 64,
        height: 64,
      });
    fs.writeFileSync(path.join(bad, 'train', 'circle', 'broken.jpg'), 'not a jpeg');
    const strict = cli([
      'train',
      '--dataset',
      `folder:${bad}`,
      '--input-size',
      '72',
      '--epochs',
      '1',
      '--batch-size',
      '8',
      '--strict',
    ]);
    assert.equal(strict.code, 2, strict.stderr);
    assert.match(strict.stderr, /circle\/broken\.jpg: not an image that can be read .*--strict/);
    const lax = cli(
      ['train', '--dataset', `folder:${bad}`, '--input-size', '72', '--epochs', '1', '--batch-size', '8'],
      {
        env: { CI: '1' },
      },
    );
    assert.equal(lax.code, 0, lax.stderr);
    assert.match(lax.stdout, /warning: skipping .*circle\/broken\.jpg: not an image that can be read/);
    assert.match(lax.stdout, /epoch 1\/1: .*\| 1 unreadable image skipped/);
  },
);
