// The same behaviour on a CUDA device as on the CPU. Skipped, saying why, where there is no usable CUDA device
// (every CPU machine, and CI); ALEXNET_REQUIRE_GPU=1 (scripts/gpu-check.sh) turns that skip into a failure.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { loadIdxDataset } from '../src/data/fashion-mnist';
import { DecodePool, FolderSource } from '../src/data/pipeline';
import { TensorSource } from '../src/data/source';
import { writeShapesFolder } from '../src/data/synthetic';
import { presetTransform } from '../src/data/transforms';
import { getModel } from '../src/models/registry';
import { crossEntropy } from '../src/nn/functional';
import { native } from '../src/tensor/binding';
import { cudaAvailable, manualSeed, noGrad, randint, randn, runtimeInfo } from '../src/tensor/tensor';
import { autocast, GradScaler } from '../src/runtime/precision';
import { buildRunConfig } from '../src/train/config';
import { train } from '../src/train/run';
import { relDiff } from './helpers/oracle';

function gpuMissing(): string | undefined {
  if (cudaAvailable()) return undefined;
  const buildInfo = path.resolve(__dirname, '..', '..', 'build', 'Release', 'build-info.json');
  const cpuBuild = fs.existsSync(buildInfo) && !JSON.parse(fs.readFileSync(buildInfo, 'utf8')).cuda;
  const why = `no CUDA device (libtorch ${runtimeInfo().libtorchVersion}${cpuBuild ? ', a CPU-only build' : ''}): GPU tests run with scripts/gpu-check.sh on a CUDA machine`;
  if (process.env.ALEXNET_REQUIRE_GPU === '1') throw new Error(why);
  return why;
}
const skip = gpuMissing();
const quiet = { log: () => {}, progressStream: fs.createWriteStream('/dev/null') as unknown as NodeJS.WriteStream };

test(
  'a model gives the same logits and gradients on the GPU as on the CPU (float32; TF32 convolutions allowed)',
  { skip },
  () => {
    for (const name of ['alexnet-torchvision', 'alexnet-2012', 'alexnet-bn']) {
      manualSeed(1);
      const cpu = getModel(name).eval();
      const gpu = getModel(name).eval();
      gpu.loadStateDict(cpu.stateDict());
      gpu.to('cuda');
      const x = randn([4, ...cpu.inputShape]);
      const y = randint(0, 2, [4]);
      const a = cpu.forward(x);
      const b = gpu.forward(x.to('cuda'));
      assert.equal(b.device, 'cuda');
      assert.ok(relDiff(b.cpu(), a) < 1e-2, `${name}: logits differ by ${relDiff(b.cpu(), a)} (relative)`);
      crossEntropy(a, y).backward();
      crossEntropy(b, y.to('cuda')).backward();
      const gp = new Map(gpu.namedParameters());
      for (const [k, p] of cpu.namedParameters())
        assert.ok(relDiff(gp.get(k)!.grad!.cpu(), p.grad!) < 2e-2, `${name}: gradient of ${k}`);
      cpu.dispose();
      gpu.dispose();
    }
  },
);

test(
  'bf16 and fp16 autocast run the model in half precision on the GPU; loss scaling keeps fp16 steps finite',
  { skip },
  () => {
    manualSeed(2);
    const m = getModel('alexnet-torchvision').to('cuda');
    const x = randn([8, 3, 224, 224], { device: 'cuda' });
    const y = randint(0, 1000, [8], { device: 'cuda' });
    const ref = noGrad(() => m.forward(x));
    for (const p of ['bf16', 'fp16'] as const) {
      const out = noGrad(() => autocast('cuda', p, () => m.forward(x)));
      assert.equal(out.dtype, p === 'bf16' ? 'bfloat16' : 'float16');
      assert.ok(relDiff(out.float(), ref) < 0.05, `${p} logits close to float32's`);
    }
    const scaler = new GradScaler();
    for (let i = 0; i < 3; i++) {
      const loss = autocast('cuda', 'fp16', () => crossEntropy(m.forward(x), y));
      scaler.scaleLoss(loss).backward();
      assert.ok(
        scaler.step(m.parameters(), () => undefined),
        'no overflow at the initial scale on this model',
      );
      native().zeroGrad(m.parameters().map((t) => t.handle));
    }
    m.dispose();
  },
);

test('Fashion-MNIST stays on the GPU: batches are gathered, resized and normalised there', { skip }, () => {
  const ds = loadIdxDataset({ split: 'test', limit: 512 });
  const src = new TensorSource(
    ds,
    { inputSize: [224, 224], resize: 'bilinear', mean: [], std: [] },
    { batchSize: 128, shuffle: true, seed: 0, device: 'cuda' },
  );
  assert.equal(src.ds.images.device, 'cuda');
  return (async () => {
    let n = 0;
    for await (const b of src.batches(0)) {
      assert.equal(b.x.device, 'cuda');
      assert.deepEqual(b.x.shape, [128, 1, 224, 224]);
      n += b.y.size(0);
      b.x.dispose();
      b.y.dispose();
    }
    assert.equal(n, 512);
    await src.close();
  })();
});

test('photo batches are finished on the GPU, channels-last, identical to the CPU ones', { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-gpu-'));
  await writeShapesFolder(dir, { perClass: 4, shapes: ['circle', 'square'] });
  const samples = fs
    .readdirSync(path.join(dir, 'circle'))
    .map((f) => ({ file: path.join(dir, 'circle', f), label: 0 }));
  const pool = new DecodePool(2);
  try {
    const o = {
      batchSize: 4,
      shuffle: true,
      seed: 3,
      mode: 'train' as const,
      transform: presetTransform('paper', 64, { shortSide: 80 }),
      pool,
    };
    const it = (device: 'cpu' | 'cuda') =>
      new FolderSource(samples, ['circle', 'square'], { ...o, device }).batches(0).next();
    const a = (await it('cpu')).value!;
    const b = (await it('cuda')).value!;
    assert.equal(b.x.device, 'cuda');
    assert.ok(b.x.isContiguous('channelsLast'));
    assert.ok(relDiff(b.x.cpu(), a.x) < 1e-5);
  } finally {
    await pool.close();
  }
});

test("d2l's recipe trains on the GPU with bf16 by default and learns", { skip, timeout: 600_000 }, async () => {
  const cfg = buildRunConfig({
    model: 'alexnet-d2l',
    inputSize: 224,
    dataset: 'fashion-mnist',
    trainLimit: 12800,
    testLimit: 2000,
    epochs: 1,
    batchSize: 128,
    evalBatchSize: 256,
    optimizer: 'sgd',
    lr: 0.01,
    momentum: 0,
    weightDecay: 0,
    schedule: 'constant',
    seed: 0,
    device: 'cuda',
  });
  const lines: string[] = [];
  const r = await train(cfg, { ...quiet, log: (l: string) => lines.push(l) });
  assert.match(lines.join('\n'), /on cuda, bf16/);
  assert.ok(r.history[0].test_acc > 0.6, `test accuracy ${r.history[0].test_acc} after 100 steps`);
  r.model.dispose();
});
