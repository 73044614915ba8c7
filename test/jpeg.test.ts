// JPEG photos decoded by TurboJPEG in the addon (src/data/jpeg.ts): pixels against torchvision's decode_jpeg and
// resized_crop(antialias=True) — the full decode, a fixed crop and resize, the paper's resize-then-crop, and the
// DCT-scaled decode — and what happens to files it does not take or cannot read.
//
// Tolerances, and why:
// - Full decode: both are libjpeg-turbo with its default (accurate) IDCT and fancy upsampling: identical (max 0).
// - Crop + resize: the same triangle-filter weights, both in float32, both rounding half to even; only the order of
//   float additions and the weights' own rounding differ, so a value within float error of .5 may round the other
//   way: max |Δ| ≤ 1 (of 255), mean |Δ| ≤ 0.02.
// - DCT-scaled decode (1/2, 1/4, 1/8 in the decoder, then the resize over the smaller image) against full decode +
//   resize: two different low-pass filters (the IDCT's truncation vs the triangle filter's support), so pixels
//   differ near sharp edges. Measured here on the photo-like 1600×1200 image: at 1/4 max |Δ| 6, mean 0.62; at 1/2
//   max 21, mean 0.96 (of 255; the test prints them). Bounded at max ≤ 32, mean ≤ 1.5.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import sharp from 'sharp';
import { decodeOne } from '../src/data/decode-worker';
import { decodeJpeg, decodeJpegAsync, jpegDecoderFromEnv, jpegSize, turboAvailable } from '../src/data/jpeg';
import { checkUpload } from '../src/serve/images';
import { loadImageAs, renderPlan } from '../src/data/image';
import { finishBatch } from '../src/data/pipeline';
import {
  pixelAffine,
  Plan,
  planCenter,
  planTenCrop,
  planTrain,
  presetTransform,
  trainFlip,
} from '../src/data/transforms';
import { tensor } from '../src/tensor/tensor';
import { JpegDecodeOptions, jpegDecode, jpegHeader } from '../src/tensor/jpeg';
import { oracleMissing, PYTHON } from './helpers/oracle';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-jpeg-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

const noTurbo = turboAvailable() ? undefined : 'the addon was built without TurboJPEG (libturbojpeg0-dev)';
const skip = noTurbo ?? oracleMissing();

/** A photo-like w×h image (smooth gradients, discs with sharp edges, fine texture) as a JPEG. */
async function photo(file: string, w: number, h: number, o: sharp.JpegOptions = {}): Promise<Buffer> {
  const px = Buffer.alloc(w * h * 3);
  let s = 12345;
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      const disc = (x - w / 3) ** 2 + (y - h / 2) ** 2 < (h / 4) ** 2;
      const ring = Math.abs(Math.hypot(x - (2 * w) / 3, y - h / 3) - h / 6) < h / 40;
      const tex = ((s >>> 24) - 128) / 8 + 20 * Math.sin(x / 3) * Math.sin(y / 5);
      const i = (y * w + x) * 3;
      px[i] = Math.max(0, Math.min(255, (255 * x) / w + tex + (disc ? 60 : 0)));
      px[i + 1] = Math.max(0, Math.min(255, (255 * y) / h + tex - (ring ? 90 : 0)));
      px[i + 2] = Math.max(0, Math.min(255, 128 + tex + (disc ? -70 : 0) + (ring ? 100 : 0)));
    }
  const buf = await sharp(px, { raw: { width: w, height: h, channels: 3 } })
    .jpeg({ quality: 90, ...o })
    .toBuffer();
  fs.writeFileSync(file, buf);
  return buf;
}

interface OracleCase {
  file: string;
  /** crop (top, left, height, width) then resize to size [h, w]; or resize to [h, w] then crop; or neither. */
  kind: 'full' | 'resized_crop' | 'resize_then_crop';
  box?: [number, number, number, number];
  size?: [number, number];
}

const SCRIPT = `
import json, sys, torch
from torchvision.io import decode_jpeg, read_file
import torchvision.transforms.functional as F
cases = json.loads(sys.argv[1])
for i, c in enumerate(cases):
    img = decode_jpeg(read_file(c['file']))
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    if c['kind'] == 'resized_crop':
        t, l, h, w = c['box']
        img = F.resized_crop(img, t, l, h, w, c['size'], antialias=True)
    elif c['kind'] == 'resize_then_crop':
        t, l, h, w = c['box']
        img = F.crop(F.resize(img, c['size'], antialias=True), t, l, h, w)
    with open(sys.argv[2] + '/%d.bin' % i, 'wb') as f:
        f.write(img.permute(1, 2, 0).contiguous().numpy().tobytes())
`;

/** torchvision's pixels of each case, as HWC uint8. */
function torchvision(cases: OracleCase[]): Buffer[] {
  const out = fs.mkdtempSync(path.join(dir, 'tv-'));
  const r = spawnSync(PYTHON, ['-c', SCRIPT, JSON.stringify(cases), out], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return cases.map((_, i) => fs.readFileSync(path.join(out, `${i}.bin`)));
}

function diff(a: Uint8Array, b: Uint8Array): { max: number; mean: number } {
  assert.equal(a.length, b.length, 'same number of bytes');
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / a.length };
}

const ours = (bytes: Buffer, plan: (w: number, h: number) => Plan, dctScaling = false) => {
  const data = decodeJpeg(bytes, 3, plan, { dctScaling });
  assert.ok(data, 'TurboJPEG took the file');
  return new Uint8Array(data);
};

test(
  'TurboJPEG full decode equals torchvision.io.decode_jpeg (4:2:0, 4:4:4, progressive, grayscale)',
  { skip },
  async () => {
    const variants: [string, sharp.JpegOptions][] = [
      ['420', {}],
      ['444', { chromaSubsampling: '4:4:4' }],
      ['progressive', { progressive: true }],
    ];
    const files: { file: string; bytes: Buffer; w: number; h: number }[] = [];
    for (const [name, o] of variants) {
      const file = path.join(dir, `full-${name}.jpg`);
      files.push({ file, bytes: await photo(file, 333, 251, o), w: 333, h: 251 });
    }
    const gray = path.join(dir, 'gray.jpg');
    const g = await sharp(await photo(path.join(dir, 'g0.jpg'), 160, 120))
      .toColourspace('b-w')
      .jpeg({ quality: 85 })
      .toBuffer();
    fs.writeFileSync(gray, g);
    assert.equal(jpegHeader(g).colorspace, 'gray');
    files.push({ file: gray, bytes: g, w: 160, h: 120 });
    const ref = torchvision(files.map((f) => ({ file: f.file, kind: 'full' })));
    files.forEach((f, i) => {
      const got = ours(f.bytes, (w, h) => ({
        resizeW: w,
        resizeH: h,
        outW: w,
        outH: h,
        crops: [{ left: 0, top: 0, width: w, height: h }],
      }));
      const d = diff(got, ref[i]);
      assert.equal(d.max, 0, `${path.basename(f.file)}: max |Δ| ${d.max}, mean ${d.mean}`);
    });
  },
);

test(
  "crop + antialiased resize match torchvision's resized_crop and resize-then-crop within one level",
  { skip },
  async () => {
    const file = path.join(dir, 'photo.jpg');
    const bytes = await photo(file, 500, 375);
    // RandomResizedCrop-like regions: shrinking on both axes, shrinking one and enlarging the other, enlarging both.
    const boxes: [number, number, number, number][] = [
      [21, 37, 254, 301],
      [0, 0, 375, 500],
      [100, 50, 150, 400],
      [200, 300, 90, 120],
    ];
    const cases: OracleCase[] = boxes.map((box) => ({ file, kind: 'resized_crop', box, size: [224, 224] }));
    // The paper's evaluation: short side to 256 (341×256), then the centre 224×224.
    const center = planCenter(500, 375, { size: 224, shortSide: 256 });
    const c = center.crops[0];
    cases.push({
      file,
      kind: 'resize_then_crop',
      box: [c.top, c.left, 224, 224],
      size: [center.resizeH, center.resizeW],
    });
    const ref = torchvision(cases);
    boxes.forEach(([top, left, height, width], i) => {
      const got = ours(bytes, () => ({
        resizeW: 500,
        resizeH: 375,
        outW: 224,
        outH: 224,
        crops: [{ left, top, width, height }],
      }));
      const d = diff(got, ref[i]);
      assert.ok(d.max <= 1 && d.mean <= 0.02, `box ${boxes[i]}: max |Δ| ${d.max}, mean ${d.mean.toFixed(4)}`);
    });
    const got = ours(bytes, () => center);
    const d = diff(got, ref[boxes.length]);
    assert.ok(d.max <= 1 && d.mean <= 0.02, `resize then crop: max |Δ| ${d.max}, mean ${d.mean.toFixed(4)}`);
  },
);

test(
  'DCT-scaled decode stays close to full decode + resize (torchvision), and is used only when it may be',
  { skip },
  async (t) => {
    const file = path.join(dir, 'big.jpg');
    const bytes = await photo(file, 1600, 1200);
    const cases: OracleCase[] = [
      { file, kind: 'resized_crop', box: [0, 0, 1200, 1600], size: [224, 224] }, // 1/4 (5.4× and 7.1×)
      { file, kind: 'resized_crop', box: [300, 400, 500, 700], size: [224, 224] }, // 1/2 (2.2× and 3.1×)
      { file, kind: 'resized_crop', box: [300, 400, 400, 400], size: [224, 224] }, // none (1.8×)
    ];
    const ref = torchvision(cases);
    const expectedScale = [4, 2, 1];
    cases.forEach((c, i) => {
      const [top, left, height, width] = c.box!;
      const plan = () => ({
        resizeW: 1600,
        resizeH: 1200,
        outW: 224,
        outH: 224,
        crops: [{ left, top, width, height }],
      });
      const exact = diff(ours(bytes, plan, false), ref[i]);
      assert.ok(exact.max <= 1 && exact.mean <= 0.02, `unscaled ${c.box}: max |Δ| ${exact.max}, mean ${exact.mean}`);
      const scaled = diff(ours(bytes, plan, true), ref[i]);
      assert.ok(
        scaled.max <= 32 && scaled.mean <= 1.5,
        `DCT-scaled ${c.box}: max |Δ| ${scaled.max}, mean ${scaled.mean.toFixed(3)}`,
      );
      const used = jpegDecode(bytes, {
        channels: 3,
        resizeW: 1600,
        resizeH: 1200,
        outW: 224,
        outH: 224,
        crops: [left, top, width, height],
        dctScaling: true,
        fastDct: false,
        flip: false,
        maxPixels: 1e8,
      }).scale;
      assert.equal(used, expectedScale[i], `${c.box}: decoded at 1/${used}`);
      t.diagnostic(
        `${c.box} at 1/${used}: unscaled max ${exact.max} mean ${exact.mean.toFixed(4)}; scaled max ${scaled.max} mean ${scaled.mean.toFixed(3)}`,
      );
      if (used === 1) assert.deepEqual(scaled, exact);
    });
  },
);

test(
  'files TurboJPEG does not take go to sharp; damaged ones get a one-line reason (the pipeline adds the file name), never an exception',
  { skip: noTurbo },
  async () => {
    const t = presetTransform('torchvision', 64);
    const good = await photo(path.join(dir, 'g.jpg'), 200, 150);
    // EXIF-rotated: left to sharp (decodeJpeg says undefined), which turns it.
    const rotated = await sharp(good).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    assert.equal(jpegHeader(rotated).orientation, 6);
    assert.equal(
      decodeJpeg(rotated, 3, () => planCenter(200, 150, { size: 64, shortSide: 73 })),
      undefined,
    );
    // CMYK: left to sharp.
    const cmyk = await sharp(good).toColourspace('cmyk').jpeg().toBuffer();
    assert.match(jpegHeader(cmyk).colorspace, /cmyk|ycck/);
    assert.equal(
      decodeJpeg(cmyk, 3, (w, h) => planCenter(w, h, { size: 64, shortSide: 73 })),
      undefined,
    );
    // A truncated JPEG: TurboJPEG reports it, so sharp decides (as before: a reason, not an exception).
    const truncated = good.subarray(0, Math.floor(good.length / 2));
    assert.equal(
      decodeJpeg(truncated, 3, (w, h) => planCenter(w, h, { size: 64, shortSide: 73 })),
      undefined,
    );
    const files: Record<string, Buffer | string> = {
      'rotated.jpg': rotated,
      'cmyk.jpg': cmyk,
      'truncated.jpg': truncated,
      'garbage.jpg': Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 4, 5, 6, 7, 8]),
      'text.jpg': 'not a jpeg at all\n',
    };
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), content);
    for (const mode of ['train', 'center', 'ten-crop'] as const) {
      const r = (name: string) => decodeOne({ file: path.join(dir, name), seed: 7 }, mode, t, 'turbojpeg');
      const rot = await r('rotated.jpg');
      assert.ok(rot.ok, 'sharp decodes the rotated file');
      const viaSharp = await decodeOne({ file: path.join(dir, 'rotated.jpg'), seed: 7 }, mode, t, 'sharp');
      assert.ok(viaSharp.ok);
      assert.deepEqual(new Uint8Array(rot.data), new Uint8Array(viaSharp.data), 'the same pixels as sharp alone');
      assert.ok((await r('cmyk.jpg')).ok, 'sharp decodes the CMYK file');
      for (const bad of ['truncated.jpg', 'garbage.jpg', 'text.jpg']) {
        const res = await r(bad);
        if (!res.ok) assert.doesNotMatch(res.reason, /\n/, `${bad}: one line`);
      }
      const garbage = await r('garbage.jpg');
      assert.ok(!garbage.ok && /damaged or truncated|not an image/.test(garbage.reason), JSON.stringify(garbage));
      const text = await r('text.jpg');
      assert.ok(!text.ok && /not an image/.test(text.reason), JSON.stringify(text));
    }
  },
);

/** HWC rows mirrored left to right. */
function mirror(px: Uint8Array, width: number, channels = 3): Uint8Array {
  const out = new Uint8Array(px.length);
  for (let r = 0; r < px.length; r += width * channels)
    for (let x = 0; x < width; x++)
      for (let c = 0; c < channels; c++) out[r + (width - 1 - x) * channels + c] = px[r + x * channels + c];
  return out;
}

test(
  "training's flips are made by the decode worker, exactly the mirror image, by either decoder",
  { skip: noTurbo },
  async () => {
    const file = path.join(dir, 'flip.jpg');
    const bytes = await photo(file, 300, 200);
    const t = presetTransform('torchvision', 96);
    const seeds = [1, 2, 3, 4, 5, 6, 7, 8];
    assert.ok(seeds.some((s) => trainFlip(s, t)) && seeds.some((s) => !trainFlip(s, t)), 'both cases met');
    for (const seed of seeds) {
      const plan = planTrain(300, 200, t, seed);
      const plain = new Uint8Array(decodeJpeg(bytes, 3, () => plan)!);
      const turbo = await decodeOne({ file, seed }, 'train', t, 'turbojpeg');
      assert.ok(turbo.ok);
      assert.deepEqual(new Uint8Array(turbo.data), trainFlip(seed, t) ? mirror(plain, 96) : plain, `seed ${seed}`);
      const sharpPlain = new Uint8Array(await renderPlan(file, plan, 3));
      const viaSharp = await decodeOne({ file, seed }, 'train', t, 'sharp');
      assert.ok(viaSharp.ok);
      assert.deepEqual(new Uint8Array(viaSharp.data), trainFlip(seed, t) ? mirror(sharpPlain, 96) : sharpPlain);
    }
  },
);

/** jpegDecode's options for a plan (flat crops). */
const options = (p: Plan, o: Partial<JpegDecodeOptions> = {}): JpegDecodeOptions => ({
  channels: 3,
  resizeW: p.resizeW,
  resizeH: p.resizeH,
  outW: p.outW,
  outH: p.outH,
  crops: p.crops.flatMap((c) => [c.left, c.top, c.width, c.height]),
  dctScaling: true,
  fastDct: false,
  flip: false,
  maxPixels: 1e8,
  ...o,
});

test(
  "decoding only a crop's rows and columns gives the whole decode's pixels, bit for bit (4:2:0, 4:4:4, progressive, grayscale, DCT-scaled, flipped, ten crops)",
  { skip: noTurbo },
  async (t) => {
    const images: [string, Buffer][] = [
      ['420', await photo(path.join(dir, 'r420.jpg'), 333, 251)],
      ['444', await photo(path.join(dir, 'r444.jpg'), 333, 251, { chromaSubsampling: '4:4:4' })],
      ['progressive', await photo(path.join(dir, 'rprog.jpg'), 301, 203, { progressive: true })],
      ['big', await photo(path.join(dir, 'rbig.jpg'), 1024, 768)],
      [
        'gray',
        await sharp(await photo(path.join(dir, 'rg0.jpg'), 210, 150))
          .toColourspace('b-w')
          .jpeg({ quality: 85 })
          .toBuffer(),
      ],
    ];
    let region = 0;
    let cases = 0;
    for (const [name, bytes] of images) {
      const { width: w, height: h } = jpegHeader(bytes);
      const plans: [string, Plan][] = [];
      for (const augment of ['torchvision', 'paper'] as const) {
        const tr = presetTransform(augment, 96);
        for (let seed = 1; seed <= 12; seed++) plans.push([`${augment} train ${seed}`, planTrain(w, h, tr, seed)]);
        plans.push([`${augment} ten-crop`, planTenCrop(w, h, tr)]);
        plans.push([`${augment} centre`, planCenter(w, h, tr)]);
      }
      for (const [what, p] of plans)
        for (const flip of [false, true]) {
          const part = jpegDecode(bytes, options(p, { flip }));
          const whole = jpegDecode(bytes, options(p, { flip, regionDecode: false }));
          assert.equal(whole.region, false);
          assert.equal(part.scale, whole.scale);
          assert.ok(
            Buffer.from(part.data).equals(Buffer.from(whole.data)),
            `${name}, ${what}${flip ? ', flipped' : ''}: ${diff(new Uint8Array(part.data), new Uint8Array(whole.data)).max} max |Δ|`,
          );
          cases++;
          if (part.region) region++;
        }
    }
    t.diagnostic(`${cases} decodes, ${region} of them by region`);
    assert.ok(region > cases / 2, `most crops are decoded by region (${region} of ${cases})`);
    // A file without its end-of-image marker is always decoded whole, so a cut below the crop does not pass unseen:
    // the whole decode reports it (and sharp then says why), though the crop's rows are all there.
    const cut = images[0][1].subarray(0, images[0][1].length - 2);
    const p = planTrain(333, 251, presetTransform('torchvision', 96), 3);
    assert.equal(jpegDecode(images[0][1], options(p)).region, true);
    assert.throws(() => jpegDecode(cut, options(p)), /Premature end of JPEG file/);
  },
);

test(
  'float output: the normalised image the engine would make from the uint8 pixels, bit for bit; a recycled buffer is written into',
  { skip: noTurbo },
  async () => {
    const bytes = await photo(path.join(dir, 'affine.jpg'), 320, 240);
    const tr = presetTransform('paper', 96);
    const p = planTrain(320, 240, tr, 5);
    const a = pixelAffine(tr.mean, tr.std, 3, [0.01, -0.02, 0.03]);
    const u8 = new Uint8Array(jpegDecode(bytes, options(p)).data);
    const into = new ArrayBuffer(u8.length * 4);
    const out = jpegDecode(bytes, options(p, { affine: [...a.scale, ...a.bias], into }));
    assert.equal(out.data, into, 'written into the given buffer');
    const f = new Float32Array(out.data);
    // finishBatch's multiply then add, in the engine, on the same pixels.
    const x = finishBatch(tensor(u8, [1, 96, 96, 3], 'uint8'), {
      shifts: [[0.01, -0.02, 0.03]],
      mean: tr.mean,
      std: tr.std,
      device: 'cpu',
    });
    const engine = x.permute(0, 2, 3, 1).contiguous().toArray();
    x.dispose();
    assert.equal(f.length, engine.length);
    for (let i = 0; i < f.length; i++) assert.equal(f[i], engine[i], `element ${i}`);
    // A buffer of another size is not used.
    const other = new ArrayBuffer(16);
    assert.notEqual(jpegDecode(bytes, options(p, { affine: [...a.scale, ...a.bias], into: other })).data, other);
    assert.throws(() => jpegDecode(bytes, options(p, { affine: [1, 2] })), /affine must hold a scale and a bias/);
  },
);

test(
  "the async decode gives the same pixels on libuv's pool, without holding the JS thread; predict's decode uses it",
  { skip: noTurbo },
  async () => {
    const file = path.join(dir, 'async.jpg');
    const bytes = await photo(file, 1600, 1200);
    const p = planCenter(1600, 1200, presetTransform('torchvision', 224));
    const order: string[] = [];
    const pending = decodeJpegAsync(bytes, 3, () => p).then((d) => {
      order.push('decoded');
      return d;
    });
    setImmediate(() => order.push('the loop turned'));
    const got = await pending;
    // A decode in this thread would have settled first (its promise resolves before the loop turns).
    assert.deepEqual(order, ['the loop turned', 'decoded']);
    assert.ok(Buffer.from(got!).equals(Buffer.from(decodeJpeg(bytes, 3, () => p)!)));
    // What `alexnet predict` and the server decode with: the same pixels, planar.
    const planar = await loadImageAs(file, 3, 224, 224, 256);
    const hwc = new Uint8Array(got!);
    for (const i of [0, 1000, 50175]) for (let c = 0; c < 3; c++) assert.equal(planar[c * 50176 + i], hwc[i * 3 + c]);
    // Damaged data: undefined (sharp then reports it), never a rejection.
    assert.equal(await decodeJpegAsync(bytes.subarray(0, 5000), 3, () => p), undefined);
  },
);

test(
  "the server reads a JPEG upload's header with TurboJPEG, and anything it cannot read with sharp, as before",
  {
    skip: noTurbo,
  },
  async () => {
    const bytes = await photo(path.join(dir, 'upload.jpg'), 321, 123);
    assert.deepEqual(jpegSize(bytes), { width: 321, height: 123 });
    assert.deepEqual(await checkUpload(bytes, 1e8), { format: 'jpeg', width: 321, height: 123 });
    await assert.rejects(checkUpload(bytes, 1000), /at most 1,000 pixels \(--max-pixels\), got 321×123 = 39,483/);
    // A JPEG signature and nothing readable after it: TurboJPEG gives up, sharp says what is wrong.
    const junk = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(40, 7)]);
    assert.equal(jpegSize(junk), undefined);
    await assert.rejects(checkUpload(junk, 1e8), (e: Error & { code?: string }) => /corrupt|damaged/.test(e.message));
    const png = await sharp(Buffer.alloc(12, 9), { raw: { width: 2, height: 2, channels: 3 } })
      .png()
      .toBuffer();
    assert.equal(jpegSize(png), undefined);
    assert.deepEqual(await checkUpload(png, 1e8), { format: 'png', width: 2, height: 2 });
  },
);

test('ALEXNET_JPEG_DECODER chooses the decoder; anything else is a one-line UserError', () => {
  assert.equal(jpegDecoderFromEnv({}), 'turbojpeg');
  assert.equal(jpegDecoderFromEnv({ ALEXNET_JPEG_DECODER: 'sharp' }), 'sharp');
  assert.equal(jpegDecoderFromEnv({ ALEXNET_JPEG_DECODER: 'turbojpeg' }), 'turbojpeg');
  assert.throws(
    () => jpegDecoderFromEnv({ ALEXNET_JPEG_DECODER: 'pil' }),
    /ALEXNET_JPEG_DECODER must be turbojpeg or sharp, got 'pil'/,
  );
});
