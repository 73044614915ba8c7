// Image-folder data sets: scanning (against torchvision's ImageFolder), splits, transforms (crop geometry against
// torchvision's crops, PCA noise statistics), the worker pipeline (determinism, bad files), statistics.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { readLabels, scanImageFolder, splitPerClass } from '../src/data/image-folder';
import { DecodePool, finishBatch, FolderSource, FolderSourceOptions } from '../src/data/pipeline';
import { computeStats, symmetricEigen } from '../src/data/stats';
import { writeShapesFolder } from '../src/data/synthetic';
import {
  IMAGENET_EIGVAL,
  IMAGENET_EIGVEC,
  imageSeed,
  pcaAlphas,
  pcaShift,
  planCenter,
  planTenCrop,
  planTrain,
  presetTransform,
  randomResizedCrop,
  roundHalfEven,
  trainFlip,
} from '../src/data/transforms';
import { tensor, Tensor } from '../src/tensor/tensor';
import { oracleMissing, runOracle } from './helpers/oracle';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-folder-'));
// Removed when the file's tests end (a run leaves nothing in the temporary folder; io's alone was 2.6 GB).
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Random RGB pixels as a PNG (lossless, so every decoder gives the same values). */
async function noisePng(file: string, w: number, h: number, seed: number): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  let s = seed;
  for (let i = 0; i < px.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    px[i] = s >>> 24;
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toFile(file);
  return px;
}

async function collect(src: FolderSource, epoch = 0): Promise<{ x: number[]; y: number[]; index: number[] }> {
  const out = { x: [] as number[], y: [] as number[], index: [] as number[] };
  for await (const b of src.batches(epoch)) {
    for (const v of b.x.toArray()) out.x.push(v);
    out.y.push(...b.y.toArray());
    out.index.push(b.index);
    b.x.dispose();
    b.y.dispose();
  }
  return out;
}

test(
  'the folder scan lists classes and images in the order torchvision.datasets.ImageFolder does',
  { skip: oracleMissing() },
  async () => {
    const root = path.join(dir, 'order');
    // Nested folders, upper-case extensions, files that are not images, a class with a subfolder only.
    const files = [
      'b/x.png',
      'b/A.PNG',
      'b/sub/c.jpg',
      'b/sub2/a.webp',
      'b/z.txt',
      'a/1.jpg',
      'a/10.jpg',
      'a/2.jpeg',
      'a_b/y.tiff',
      'c/deep/er/q.png',
    ];
    for (const f of files) {
      fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
      fs.writeFileSync(path.join(root, f), 'x');
    }
    const ours = scanImageFolder(root, { valSplit: 0 });
    const ref = runOracle([{ id: 'f', op: 'image_folder', args: { root }, tensors: {} }]).get('f.json')!;
    const theirs = JSON.parse(Buffer.from(ref.data() as Uint8Array).toString()) as {
      classes: string[];
      samples: [string, number][];
    };
    assert.deepEqual(ours.classIds, theirs.classes);
    assert.deepEqual(
      ours.train.map((s) => [path.relative(root, s.file), s.label]),
      theirs.samples,
    );
  },
);

test('the validation split is per class, seeded, disjoint, and follows the share', () => {
  const samples = Array.from({ length: 100 }, (_, i) => ({ file: `f${i}`, label: i < 70 ? 0 : 1 }));
  const a = splitPerClass(samples, 0.2, 5);
  const b = splitPerClass(samples, 0.2, 5);
  const c = splitPerClass(samples, 0.2, 6);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.val, c.val);
  assert.equal(a.val.filter((s) => s.label === 0).length, 14);
  assert.equal(a.val.filter((s) => s.label === 1).length, 6);
  assert.equal(a.train.length + a.val.length, 100);
  assert.equal(new Set([...a.train, ...a.val].map((s) => s.file)).size, 100);
  // A class of two keeps one image for validation even at a small share.
  assert.equal(
    splitPerClass(
      [
        { file: 'p', label: 0 },
        { file: 'q', label: 0 },
      ],
      0.1,
      0,
    ).val.length,
    1,
  );
});

test('labels files name class folders (synset lines or JSON); a missing name is an error', () => {
  const txt = path.join(dir, 'synsets.txt');
  fs.writeFileSync(txt, 'n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n');
  assert.deepEqual(readLabels(txt, ['n01443537', 'n01440764']), ['goldfish, Carassius auratus', 'tench, Tinca tinca']);
  const json = path.join(dir, 'labels.json');
  fs.writeFileSync(json, JSON.stringify({ cat: 'Cat', dog: 'Dog' }));
  assert.deepEqual(readLabels(json, ['cat', 'dog']), ['Cat', 'Dog']);
  assert.throws(() => readLabels(json, ['cat', 'dog', 'fox']), /no name for 1 class folder\(s\): fox/);
  assert.throws(() => readLabels(txt, ['cat']), /names none of the class folders/);
});

test(
  'crop geometry: centre crop and ten-crop match torchvision pixel for pixel; paper crops stay in the centre square',
  { skip: oracleMissing() },
  async () => {
    // Short side already 96, so the resize is the identity in both libraries and only the crops are compared.
    const file = path.join(dir, 'geom', 'noise.png');
    await noisePng(file, 131, 96, 7);
    const pool = new DecodePool(2);
    try {
      for (const augment of ['torchvision', 'paper'] as const) {
        const t = presetTransform(augment, 83, { shortSide: 96, mean: [], std: [] });
        const ref = runOracle([
          {
            id: 'c',
            op: 'crops',
            args: { path: file, size: 83, short_side: 96, paper: augment === 'paper' },
            tensors: {},
          },
        ]);
        const opts = { batchSize: 1, shuffle: false, seed: 0, transform: t, device: 'cpu' as const, pool };
        const center = await collect(new FolderSource([{ file, label: 0 }], ['a'], { ...opts, mode: 'center' }));
        const ten = await collect(new FolderSource([{ file, label: 0 }], ['a'], { ...opts, mode: 'ten-crop' }));
        // Ours are NCHW floats in [0, 1]; torchvision's HWC uint8.
        const toHwc = (flat: number[], n: number) => {
          const s = 83 * 83;
          const out: number[] = [];
          for (let i = 0; i < n; i++)
            for (let p = 0; p < s; p++)
              for (let ch = 0; ch < 3; ch++) out.push(Math.round(flat[i * 3 * s + ch * s + p] * 255));
          return out;
        };
        assert.deepEqual(
          toHwc(center.x, 1),
          Array.from(ref.get('c.center')!.data() as Uint8Array),
          `${augment}: centre crop`,
        );
        assert.deepEqual(
          toHwc(ten.x, 10),
          Array.from(ref.get('c.ten')!.data() as Uint8Array),
          `${augment}: ten crops in TenCrop's order`,
        );
      }
    } finally {
      await pool.close();
    }
    // The plans by hand: 131×96 resized to short side 96 is itself; centre crop 83 at round(24) = 24, round(6.5) = 6.
    assert.deepEqual(planCenter(131, 96, { size: 83, shortSide: 96 }).crops[0], {
      left: 24,
      top: 6,
      width: 83,
      height: 83,
    });
    assert.equal(roundHalfEven(6.5), 6);
    assert.equal(roundHalfEven(7.5), 8);
    // 500×375 to short side 256: torchvision gives 341×256 (int(256·500/375)).
    const p = planTenCrop(500, 375, { size: 224, shortSide: 256, augment: 'torchvision' });
    assert.deepEqual([p.resizeW, p.resizeH], [341, 256]);
    assert.deepEqual(
      p.crops.map((c) => [c.left, c.top]),
      [
        [0, 0],
        [117, 0],
        [0, 32],
        [117, 32],
        [58, 16],
        [59, 16],
      ],
    );
  },
);

test('paper crops cover every offset of the centre square evenly; flips are fair coins', () => {
  const t = presetTransform('paper', 227);
  assert.equal(t.shortSide, 259);
  const lefts = new Map<number, number>();
  let flips = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const seed = imageSeed(1, 0, i);
    const p = planTrain(500, 375, t, seed);
    // 500×375 -> 345×259; the centre square starts at round(43) = 43.
    assert.deepEqual([p.resizeW, p.resizeH], [345, 259]);
    const c = p.crops[0];
    assert.ok(c.left >= 43 && c.left <= 43 + 32 && c.top >= 0 && c.top <= 32, `crop at ${c.left},${c.top}`);
    assert.equal(c.width, 227);
    lefts.set(c.left, (lefts.get(c.left) ?? 0) + 1);
    if (trainFlip(seed, t)) flips++;
  }
  assert.equal(lefts.size, 33, 'all 33 horizontal offsets occur');
  const expect = n / 33;
  for (const [, k] of lefts)
    assert.ok(Math.abs(k - expect) < 5 * Math.sqrt(expect), `offset count ${k} vs ${expect.toFixed(0)}`);
  assert.ok(Math.abs(flips / n - 0.5) < 0.015, `flip rate ${flips / n}`);
  assert.equal(trainFlip(imageSeed(1, 0, 3), presetTransform('none', 227)), false);
});

test(
  "random resized crops follow torchvision's rules, and their sizes are distributed as torchvision's",
  { skip: oracleMissing() },
  () => {
    let rand = 12345;
    const next = () => (rand = (Math.imul(rand, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const n = 20000;
    const ours = Array.from({ length: n }, () => {
      const c = randomResizedCrop(400, 300, next);
      assert.ok(c.left >= 0 && c.top >= 0 && c.left + c.width <= 400 && c.top + c.height <= 300);
      return [c.top, c.left, c.height, c.width];
    });
    const ref = runOracle([{ id: 'r', op: 'rrc_params', args: { w: 400, h: 300, n }, tensors: {} }])
      .get('r.params')!
      .toArray();
    const theirs = Array.from({ length: n }, (_, i) => ref.slice(4 * i, 4 * i + 4));
    // Same summary statistics within sampling error: area share, aspect ratio, horizontal centre.
    const stat = (rows: number[][], f: (r: number[]) => number) => {
      const v = rows.map(f);
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      const sd = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
      return { mean, sd };
    };
    const checks: [string, (r: number[]) => number][] = [
      ['area share', (r) => (r[2] * r[3]) / (400 * 300)],
      ['aspect ratio', (r) => r[3] / r[2]],
      ['centre x', (r) => r[1] + r[3] / 2],
      ['full-image crops', (r) => (r[2] === 300 && r[3] === 400 ? 1 : 0)],
    ];
    for (const [name, f] of checks) {
      const a = stat(ours, f);
      const b = stat(theirs, f);
      assert.ok(
        Math.abs(a.mean - b.mean) < (5 * Math.max(a.sd, b.sd, 1e-3)) / Math.sqrt(n),
        `${name}: ours ${a.mean} vs torchvision ${b.mean}`,
      );
      assert.ok(
        Math.abs(a.sd - b.sd) < 0.05 * Math.max(b.sd, 1e-3),
        `${name} spread: ours ${a.sd} vs torchvision ${b.sd}`,
      );
    }
    // When no try fits (a 1000×10 strip), the fallback is the centre crop clamped to the widest ratio: 13×10 at (1000 − 13) // 2.
    assert.deepEqual(
      randomResizedCrop(1000, 10, () => 0.99),
      { top: 0, left: 493, width: 13, height: 10 },
    );
  },
);

test('PCA colour noise has mean 0 and covariance V·diag((σλ)²)·Vᵀ over many draws, and the engine adds it', () => {
  const n = 40000;
  const sums = [0, 0, 0];
  const outer = [
    [0, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
  ];
  for (let i = 0; i < n; i++) {
    const s = pcaShift(pcaAlphas(imageSeed(9, 1, i), 0.1), IMAGENET_EIGVAL, IMAGENET_EIGVEC);
    for (let a = 0; a < 3; a++) {
      sums[a] += s[a];
      for (let b = 0; b < 3; b++) outer[a][b] += s[a] * s[b];
    }
  }
  for (let a = 0; a < 3; a++) {
    assert.ok(Math.abs(sums[a] / n) < (4 * 0.1 * 0.2175) / Math.sqrt(n), `mean ${sums[a] / n}`);
    for (let b = 0; b < 3; b++) {
      let expected = 0;
      for (let k = 0; k < 3; k++)
        expected += IMAGENET_EIGVEC[a][k] * IMAGENET_EIGVEC[b][k] * (0.1 * IMAGENET_EIGVAL[k]) ** 2;
      const got = outer[a][b] / n;
      assert.ok(
        Math.abs(got - expected) < 0.03 * 0.0005 + 0.03 * Math.abs(expected),
        `cov[${a}][${b}] ${got} vs ${expected}`,
      );
    }
  }
  // In the engine: pixels 0..255 -> /255, + shift per image, mirrored where asked, then normalised.
  const u8 = tensor([10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120], [1, 2, 2, 3], 'uint8');
  const x = finishBatch(u8, {
    flips: [true],
    shifts: [[0.1, -0.2, 0.3]],
    mean: [0.5, 0.5, 0.5],
    std: [0.25, 0.5, 1],
    device: 'cpu',
  });
  assert.deepEqual(x.shape, [1, 3, 2, 2]);
  const got = x.toArray();
  // Channel 0, row 0 mirrored: pixels (0,1)=40 then (0,0)=10.
  const want = [40, 10, 100, 70].map((v) => (v / 255 + 0.1 - 0.5) / 0.25);
  got.slice(0, 4).forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 1e-5, `${g} vs ${want[i]}`));
  assert.ok(x.isContiguous('channelsLast'), 'the batch is channels-last for the model');
  for (const t of [u8, x] as Tensor[]) t.dispose();
});

test('the same seed gives the same batches with any number of workers; another epoch gives others', async () => {
  const root = path.join(dir, 'seeded');
  await writeShapesFolder(root, { perClass: 6, width: 64, height: 48 });
  const f = scanImageFolder(root, { valSplit: 0 });
  const t = presetTransform('paper', 40, { shortSide: 48 });
  const run = async (workers: number, epoch: number) => {
    const pool = new DecodePool(workers);
    try {
      const o: FolderSourceOptions = {
        batchSize: 5,
        shuffle: true,
        seed: 4,
        mode: 'train',
        transform: t,
        device: 'cpu',
        pool,
        prefetch: 2,
      };
      return await collect(new FolderSource(f.train, f.classes, o), epoch);
    } finally {
      await pool.close();
    }
  };
  const a = await run(1, 0);
  const b = await run(3, 0);
  const c = await run(2, 1);
  assert.equal(a.y.length, 18);
  assert.deepEqual(a.y, b.y);
  assert.deepEqual(a.x, b.x);
  assert.notDeepEqual(a.x, c.x);
});

test('batches finished by the decode workers equal those finished by the engine, over epochs of recycled buffers', async () => {
  const root = path.join(dir, 'finish');
  // JPEGs (TurboJPEG's float output) and PNGs (sharp's pixels, converted by the worker).
  await writeShapesFolder(root, { perClass: 5, width: 70, height: 52 });
  const f = scanImageFolder(root, { valSplit: 0 });
  const pool = new DecodePool(2);
  try {
    for (const [augment, mode] of [
      ['paper', 'train'],
      ['torchvision', 'train'],
      ['torchvision', 'center'],
    ] as const) {
      const t = presetTransform(augment, 40, { shortSide: 48 });
      const o = (finish: 'workers' | 'engine'): FolderSourceOptions => ({
        batchSize: 4,
        shuffle: true,
        seed: 11,
        mode,
        transform: t,
        device: 'cpu',
        pool,
        finish,
      });
      for (const epoch of [0, 1, 2]) {
        const a = await collect(new FolderSource(f.train, f.classes, o('workers')), epoch);
        const b = await collect(new FolderSource(f.train, f.classes, o('engine')), epoch);
        assert.equal(a.x.length, 15 * 3 * 40 * 40);
        assert.deepEqual(a.y, b.y);
        // Bit for bit: the same multiply and add on the same pixels (PCA shifts included on 'paper').
        assert.deepEqual(a.x, b.x, `${augment} ${mode}, epoch ${epoch}`);
      }
    }
  } finally {
    await pool.close();
  }
});

test(
  'bad files are skipped with a warning and counted, or refused with --strict; none crashes or hangs',
  { timeout: 120_000 },
  async () => {
    const root = path.join(dir, 'bad');
    await writeShapesFolder(root, { perClass: 3, shapes: ['circle', 'square'], width: 48, height: 48 });
    const good = fs.readFileSync(path.join(root, 'circle', '0000.jpg'));
    const cases: Record<string, string> = {
      'circle/corrupt.jpg': 'damaged or truncated',
      'circle/truncated.jpg': 'damaged or truncated',
      'circle/empty.jpg': 'empty (0 bytes)',
      'square/text.jpg': 'not an image',
      'square/bomb.png': 'too many pixels',
    };
    fs.writeFileSync(
      path.join(root, 'circle/corrupt.jpg'),
      Buffer.concat([good.subarray(0, 200), Buffer.alloc(good.length - 200, 0x55)]),
    );
    fs.writeFileSync(path.join(root, 'circle/truncated.jpg'), good.subarray(0, Math.floor(good.length / 2)));
    fs.writeFileSync(path.join(root, 'circle/empty.jpg'), '');
    fs.writeFileSync(path.join(root, 'square/text.jpg'), 'this is a text file, not a JPEG\n');
    // An image bomb: a valid PNG header claiming 30000×30000 pixels (900 MP), with a tiny body.
    fs.writeFileSync(path.join(root, 'square/bomb.png'), pngHeaderOnly(30000, 30000));
    fs.mkdirSync(path.join(root, 'empty-class'));
    fs.symlinkSync('..', path.join(root, 'square', 'loop'));
    fs.symlinkSync('self', path.join(root, 'square', 'self'));
    const outside = path.join(dir, 'outside.jpg');
    fs.writeFileSync(outside, good);
    fs.symlinkSync(outside, path.join(root, 'circle', 'link-out.jpg'));

    const f = scanImageFolder(root, { valSplit: 0 });
    assert.deepEqual(f.classIds, ['circle', 'empty-class', 'square']);
    const reasons = f.problems.map((p) => `${path.relative(root, p.file)}: ${p.reason}`).join('\n');
    assert.match(reasons, /square\/loop: a symbolic link loop/);
    assert.match(reasons, /square\/self: a symbolic link loop/);
    assert.match(reasons, /circle\/link-out.jpg: a link leading outside the data set/);
    assert.match(reasons, /empty-class: class folder 'empty-class' has no images/);
    assert.equal(f.train.length, 6 + 5, 'the good images and the five bad files (found bad when decoded)');

    const pool = new DecodePool(2);
    try {
      const problems: string[] = [];
      const o: FolderSourceOptions = {
        batchSize: 4,
        shuffle: true,
        seed: 0,
        mode: 'train',
        transform: presetTransform('torchvision', 40),
        device: 'cpu',
        pool,
        onProblem: (p) => problems.push(`${path.relative(root, p.file)}: ${p.reason}`),
      };
      const src = new FolderSource(f.train, f.classes, o);
      const first = await collect(src, 0);
      assert.equal(first.y.length, 6, 'the six good images');
      assert.equal(src.skipped, 5);
      for (const [file, why] of Object.entries(cases))
        assert.ok(
          problems.some((p) => p.startsWith(file) && p.includes(why)),
          `${file}: ${why} in\n${problems.join('\n')}`,
        );
      // Known bad files are not decoded again, but still counted.
      await collect(src, 1);
      assert.equal(src.skipped, 5);
      assert.equal(problems.length, 5, 'each file is reported once');
      // --strict: the scan refuses the first structural problem, decoding the first unreadable image.
      assert.throws(() => scanImageFolder(root, { strict: true }), /--strict/);
      const strict = new FolderSource(f.train, f.classes, { ...o, strict: true, shuffle: false });
      await assert.rejects(collect(strict), (e: Error) =>
        /circle\/(corrupt|empty|truncated)\.jpg: .*--strict/.test(e.message),
      );
    } finally {
      await pool.close();
    }
  },
);

/** A PNG of w×h (8-bit grey) whose compressed body holds one row only: the header is valid, the size is a lie. */
function pngHeaderOnly(w: number, h: number): Buffer {
  const zlib = require('node:zlib') as typeof import('node:zlib');
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.alloc(w + 1))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

test(
  'data set statistics match PyTorch on the same pixels; the eigen-decomposition is exact',
  { skip: oracleMissing() },
  async () => {
    const files = [path.join(dir, 'stats', 'a.png'), path.join(dir, 'stats', 'b.png')];
    await noisePng(files[0], 40, 30, 1);
    // A second image with correlated channels, so the covariance has structure.
    const px = Buffer.alloc(50 * 20 * 3);
    for (let i = 0; i < 1000; i++) {
      const v = (i * 37) % 256;
      px[3 * i] = v;
      px[3 * i + 1] = (v * 3) % 256;
      px[3 * i + 2] = 255 - v;
    }
    await sharp(px, { raw: { width: 50, height: 20, channels: 3 } })
      .png()
      .toFile(files[1]);
    const s = await computeStats(files);
    const ref = runOracle([{ id: 's', op: 'image_stats', args: { paths: files }, tensors: {} }]);
    const close = (a: number[], b: number[], tol: number, what: string) =>
      a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < tol, `${what}[${i}] ${v} vs ${b[i]}`));
    close(s.mean, ref.get('s.mean')!.toArray(), 1e-9, 'mean');
    close(s.std, ref.get('s.std')!.toArray(), 1e-9, 'std');
    close(s.covariance.flat(), ref.get('s.cov')!.toArray(), 1e-9, 'cov');
    close(s.eigval, ref.get('s.eigval')!.toArray(), 1e-9, 'eigval');
    // Eigenvectors up to sign.
    const v = ref.get('s.eigvec')!.toArray();
    for (let k = 0; k < 3; k++) {
      const sign = Math.sign(s.eigvec[0][k] * v[k]) || 1;
      for (let r = 0; r < 3; r++)
        assert.ok(Math.abs(s.eigvec[r][k] - sign * v[r * 3 + k]) < 1e-6, `eigvec[${r}][${k}]`);
    }
    // Jacobi on a symmetric matrix: M v = λ v for each pair, eigenvalues descending.
    const m = [
      [4, 1, -1],
      [1, 4, -1],
      [-1, -1, 2],
    ];
    const e = symmetricEigen(m);
    for (let k = 0; k < 3; k++) {
      for (let r = 0; r < 3; r++) {
        const mv = m[r][0] * e.vectors[0][k] + m[r][1] * e.vectors[1][k] + m[r][2] * e.vectors[2][k];
        assert.ok(Math.abs(mv - e.values[k] * e.vectors[r][k]) < 1e-12, 'M v = λ v');
      }
    }
    assert.ok(e.values[0] >= e.values[1] && e.values[1] >= e.values[2], 'descending');
  },
);
