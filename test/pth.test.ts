// torch.save files as people have them: the legacy format (before PyTorch 1.6, or _use_new_zipfile_serialization=False)
// and the zip format of whichever PyTorch the oracle is (1.13 here, 2.6 in the libtorch-2 root), written by the live
// oracle (test/golden/pth_oracle.py) and compared with what torch.load and torchvision make of them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { FormatError } from '../src/errors';
import { FASHION_MNIST_CLASSES, loadIdxDataset } from '../src/data/fashion-mnist';
import { loadPth } from '../src/io/pth';
import { loadSafetensors, saveSafetensors } from '../src/io/safetensors';
import { readEmbeddings } from '../src/persist/embeddings';
import { loadModel } from '../src/persist/load';
import { manualSeed, noGrad, randn, Tensor } from '../src/tensor/tensor';
import { cli } from './helpers/cli';
import { firstPassOnly, maxAbsDiff, oracleMissing, PYTHON } from './helpers/oracle';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-pth-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const SCRIPT = path.resolve(__dirname, '..', '..', 'test', 'golden', 'pth_oracle.py');

interface Case {
  id: string;
  op: string;
  args: Record<string, unknown>;
  tensors?: Record<string, Tensor>;
}

/** Runs pth_oracle.py on the cases; its outputs by "ID.NAME". */
function pthOracle(cases: Case[]): Map<string, Tensor> {
  const input = path.join(dir, 'in.safetensors');
  const output = path.join(dir, 'out.safetensors');
  const entries: [string, Tensor][] = [];
  for (const c of cases) for (const [k, t] of Object.entries(c.tensors ?? {})) entries.push([`${c.id}.${k}`, t]);
  saveSafetensors(input, entries, { cases: JSON.stringify(cases.map(({ id, op, args }) => ({ id, op, args }))) });
  const r = spawnSync(PYTHON, ['-B', SCRIPT, input, output], { encoding: 'utf8', env: process.env });
  if (r.status !== 0) throw new Error(`pth_oracle.py failed (${r.status}): ${r.stderr}`);
  return loadSafetensors(output).tensors;
}

/** Every tensor torch.load gave ("ID.k.NAME") equals ours: same keys, dtype, shape and values. */
function assertSameTensors(ours: Map<string, Tensor>, ref: Map<string, Tensor>, id: string): void {
  const prefix = `${id}.k.`;
  const want = [...ref.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  assert.deepEqual([...ours.keys()].sort(), want.sort());
  for (const k of want) {
    const r = ref.get(prefix + k)!;
    const t = ours.get(k)!;
    assert.equal(t.dtype, r.dtype, k);
    assert.deepEqual(t.shape, r.shape, k);
    assert.deepEqual(t.toArray(), r.toArray(), k);
  }
}

test(
  "torchvision's AlexNet saved by torch.save in the legacy and the zip format loads and gives torchvision's logits",
  { skip: oracleMissing() },
  () => {
    manualSeed(5);
    const x = randn([2, 3, 224, 224]);
    const legacy = path.join(dir, 'tv-legacy.pth');
    const zip = path.join(dir, 'tv-zip.pth');
    const ref = pthOracle([
      { id: 'l', op: 'save_tv', args: { path: legacy, seed: 2, legacy: true }, tensors: { x } },
      { id: 'z', op: 'save_tv', args: { path: zip, seed: 2, legacy: false } },
    ]);
    assert.equal(fs.readFileSync(legacy).subarray(0, 4).toString('latin1'), '\x80\x02\x8a\x0a', 'a legacy file');
    assert.equal(fs.readFileSync(zip).readUInt32LE(0), 0x04034b50, 'a zip file');
    for (const file of [legacy, zip]) {
      const { model, record, stateDict } = loadModel(file);
      assert.equal(record.model, 'alexnet-torchvision');
      assert.deepEqual(stateDict, { head: 'classifier.6' });
      const d = maxAbsDiff(
        noGrad(() => model.forward(x)),
        ref.get('l.y')!,
      );
      assert.ok(d <= 1e-4, `${path.basename(file)}: logits differ by ${d}`);
      model.dispose();
    }
    fs.rmSync(zip);
  },
);

test(
  'legacy files: shared storages, views, mixed dtypes and pre-1.0 storage views load as torch.load loads them',
  { skip: oracleMissing() ?? firstPassOnly('the file format') },
  () => {
    const mixed = path.join(dir, 'mixed.pth');
    const views = path.join(dir, 'views.pth');
    const ref = pthOracle([
      { id: 'm', op: 'save_mixed', args: { path: mixed } },
      { id: 'v', op: 'write_views', args: { path: views } },
    ]);
    for (const [id, file] of [
      ['m', mixed],
      ['v', views],
    ] as const) {
      const ours = loadPth(file);
      assertSameTensors(ours, ref, id);
      for (const t of ours.values()) t.dispose();
    }
    // the views really are offsets into their storages (not the storage's start)
    assert.deepEqual(ref.get('v.k.view')!.toArray(), [3, 4, 5, 6]);
  },
);

test(
  'hostile legacy files are refused with one line naming the file, and nothing in them runs',
  { skip: oracleMissing() ?? firstPassOnly('refusing hostile files') },
  () => {
    const d = fs.mkdtempSync(path.join(dir, 'hostile-'));
    const marker = path.join(d, 'pwned');
    pthOracle([{ id: 'h', op: 'hostile', args: { dir: d, marker } }]);
    const f = (name: string) => path.join(d, name);
    assert.deepEqual(loadPth(f('good.pth')).get('w')!.toArray(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    const good = fs.readFileSync(f('good.pth'));
    fs.writeFileSync(f('cut-data.pth'), good.subarray(0, good.length - 10));
    fs.writeFileSync(f('cut-pickle.pth'), good.subarray(0, 60));
    const cases: [string, RegExp][] = [
      ['magic.pth', /not a torch\.save file \(no torch\.save magic number\)/],
      ['count.pth', /storage 7 holds 1099511627776 elements by its own count, 12 by the pickle's/],
      ['size.pth', /claims size \[1048576\], larger than the file/],
      ['stride.pth', /a tensor reaches past the end of storage 7/],
      ['view.pth', /storage view 8 reaches past the end of storage 7/],
      ['numel.pth', /truncated: storage 9 needs 4503599627370496 bytes/],
      ['evil.pth', /global (posix|os|nt)\.system, which is not allowed/],
      ['complex.pth', /storage 5 is a torch\.ComplexFloatStorage; only FloatStorage, .* are supported/],
      [
        'whole.pth',
        /holds a pickled Python object \(torch\.nn\.modules\.linear\.Linear\).*save model\.state_dict\(\) instead/,
      ],
      ['cut-data.pth', /is truncated: storage 7 needs 48 bytes, 38 are left/],
      ['cut-pickle.pth', /the pickle is truncated/],
    ];
    for (const [name, re] of cases) {
      assert.throws(
        () => loadPth(f(name)),
        (e: unknown) => e instanceof FormatError && e.message.includes(f(name)) && re.test(e.message),
        name,
      );
    }
    assert.equal(fs.existsSync(marker), false, 'the pickle did not run');
    for (const name of ['evil.pth', 'count.pth']) {
      const r = cli(['predict', '--weights', f(name), f('good.pth')]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.ok(r.stderr.includes(f(name)), r.stderr);
    }
    assert.equal(fs.existsSync(marker), false, 'the pickle did not run');
  },
);

test(
  'alexnet eval of a torchvision state dict: Fashion-MNIST as torchvision computes it, an ImageNet head on class folders named by ImageNet, and mismatches in one line',
  { skip: oracleMissing() ?? firstPassOnly('the data path') },
  async () => {
    const tv10 = path.join(dir, 'tv10.pth');
    const tv = path.join(dir, 'tv-legacy.pth');
    const ds = loadIdxDataset({ split: 'test', limit: 24 });
    const ref = pthOracle([
      { id: 's', op: 'save_tv', args: { path: tv10, seed: 3, legacy: true, num_classes: 10 } },
      {
        id: 'e',
        op: 'eval_idx',
        args: { path: tv10, num_classes: 10 },
        tensors: { images: ds.images, labels: ds.labels },
      },
    ]);
    const r = cli(['eval', '--weights', tv10, '--limit', '24', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stderr,
      /is a PyTorch state dict .* 10 classes \(counted from classifier\.6\); using ImageNet's mean and std, the grey images repeated in 3 channels; fashion-mnist's class names/,
    );
    const got = JSON.parse(r.stdout) as { n: number; loss: number; top1: number };
    assert.equal(got.n, 24);
    assert.ok(
      Math.abs(got.loss - ref.get('e.loss')!.item()) < 1e-4,
      `loss ${got.loss} vs ${ref.get('e.loss')!.item()}`,
    );
    assert.equal(got.top1, ref.get('e.top1')!.item());

    // features of the same state dict need no class match and no preprocessing in the file: torchvision's last
    // hidden layer on the same images, labelled with Fashion-MNIST's classes
    const emb = path.join(dir, 'tv10-features.safetensors');
    const fe = cli(['features', '--weights', tv10, '--limit', '24', '--out', emb]);
    assert.equal(fe.code, 0, fe.stderr);
    const set = readEmbeddings(emb);
    const want = ref.get('e.features')!;
    assert.deepEqual([set.rows, set.dim], want.shape);
    const wanted = want.data() as Float32Array;
    const scale = wanted.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
    const err = set.features.reduce((m, x, i) => Math.max(m, Math.abs(x - wanted[i])), 0);
    assert.ok(scale > 0 && err <= 1e-4 * scale, `features differ from torchvision's by ${err} (largest ${scale})`);
    assert.deepEqual(set.labels, Array.from(ds.labels.data() as Uint8Array, Number));
    assert.deepEqual(set.classes, [...FASHION_MNIST_CLASSES]);

    // ImageNet's 1000 classes on folders named by ImageNet class names: they are matched by name
    const photos = path.join(dir, 'photos');
    for (const [cls, colour] of [
      ['tabby', [200, 120, 40]],
      ['goldfish', [240, 90, 10]],
    ] as const) {
      fs.mkdirSync(path.join(photos, cls), { recursive: true });
      for (let i = 0; i < 2; i++) {
        const px = Buffer.alloc(40 * 30 * 3);
        for (let p = 0; p < px.length; p++) px[p] = (colour[p % 3] + 37 * i + p) % 256;
        await sharp(px, { raw: { width: 40, height: 30, channels: 3 } })
          .png()
          .toFile(path.join(photos, cls, `${i}.png`));
      }
    }
    if (!fs.existsSync(tv)) pthOracle([{ id: 's', op: 'save_tv', args: { path: tv, seed: 2, legacy: true } }]);
    const f = cli(['eval', '--weights', tv, '--dataset', `folder:${photos}`, '--split', 'all']);
    assert.equal(f.code, 0, f.stderr);
    assert.match(
      f.stderr,
      /1000 classes .*ImageNet's mean and std, short side 256, centre crop 224; ImageNet's class names/,
    );
    assert.match(f.stdout, /^images: 4 /);
    // the text keeps to the classes involved: the two folders' and those predicted (at most 4 more), not all 1000
    const rows = f.stdout.split('\n').filter((l) => /^ {2}\d+ /.test(l));
    assert.ok(rows.length >= 2 && rows.length <= 6, f.stdout);
    assert.match(f.stdout, /^ {2}tabby +\d+\.\d%  of 2$/m);

    // what does not fit: one line each, saying what was expected and what was found
    fs.mkdirSync(path.join(photos, 'my cat'));
    fs.copyFileSync(path.join(photos, 'tabby', '0.png'), path.join(photos, 'my cat', '0.png'));
    // features take any folder: its own class names label the rows, though ImageNet's head does not know 'my cat'
    const femb = path.join(dir, 'photos-features.safetensors');
    const ff = cli(['features', '--weights', tv, '--dataset', `folder:${photos}`, '--split', 'all', '--out', femb]);
    assert.equal(ff.code, 0, ff.stderr);
    const fset = readEmbeddings(femb);
    assert.deepEqual([fset.rows, fset.dim], [5, 4096]);
    assert.deepEqual(fset.classes, ['goldfish', 'my cat', 'tabby']);
    for (const [args, re] of [
      [['eval', '--weights', tv], /1000 classes \(counted from classifier\.6\) but fashion-mnist has 10/],
      [['eval', '--weights', tv, '--dataset', `folder:${photos}`], /folders named otherwise: my cat/],
      [['eval', '--weights', tv10, '--dataset', `folder:${photos}`], /10 classes .* but .*photos has 3/],
    ] as const) {
      const e = cli([...args]);
      assert.equal(e.code, 2, e.stderr);
      assert.equal(e.stderr.trim().split('\n').length, 1, e.stderr);
      assert.match(e.stderr, re);
    }
  },
);
