// Reusing trained networks: ensembles (the paper's averaged CNNs), fine-tuning from torchvision's weights with
// frozen layers.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { TensorSource } from '../src/data/source';
import { writeShapesFolder } from '../src/data/synthetic';
import { loadSafetensors } from '../src/io/safetensors';
import { loadModel } from '../src/persist/load';
import { getModel } from '../src/models/registry';
import { manualSeed, randint, randn, tensor } from '../src/tensor/tensor';
import { SGD, TwoGroups } from '../src/optim/optimizer';
import { evaluate } from '../src/train/evaluate';
import { cli } from './helpers/cli';
import { maxAbsDiff, oracleMissing, runOracle } from './helpers/oracle';

function tinySource(n: number) {
  manualSeed(3);
  const images = randint(0, 256, [n, 1, 28, 28]).to('uint8');
  const labels = randint(0, 10, [n]);
  const classes = Array.from({ length: 10 }, (_, i) => `c${i}`);
  const ds = { name: 'random', split: 'test' as const, images, labels, classes };
  const pre = { inputSize: [65, 65] as [number, number], resize: 'bilinear' as const, mean: [], std: [] };
  return new TensorSource(ds, pre, { batchSize: 16, shuffle: false, seed: 0, device: 'cpu' });
}

test('an ensemble of a model with itself equals the model; two models average their softmax', async () => {
  manualSeed(1);
  const a = getModel('alexnet-d2l', { inputSize: 65 });
  const b = getModel('alexnet-d2l', { inputSize: 65 });
  const src = tinySource(40);
  const one = await evaluate(a, src);
  const self = await evaluate([a, a], src);
  assert.deepEqual(self.confusion, one.confusion);
  assert.equal(self.top5, one.top5);
  assert.ok(Math.abs(self.loss - one.loss) <= 1e-5 * one.loss, `loss ${self.loss} vs ${one.loss}`);
  // Two different models: the loss is −log of the mean of their probabilities of the true class, by hand.
  const pair = await evaluate([a, b], src);
  let want = 0;
  for await (const batch of src.batches(0)) {
    const pa = a.eval().forward(batch.x).softmax(1);
    const pb = b.eval().forward(batch.x).softmax(1);
    const p = pa.add(pb).div(2).gather(1, batch.y.unsqueeze(1)).toArray();
    want -= p.reduce((s, v) => s + Math.log(v), 0);
  }
  assert.ok(Math.abs(pair.loss - want / 40) <= 1e-5 * pair.loss, `ensemble loss ${pair.loss} vs ${want / 40}`);
  assert.equal(tensor(pair.confusion.flat(), [100]).sum().item(), 40);
  // forwardTo (alexnet features) up to the last layer is the forward pass.
  const x = (await src.batches(0).next()).value!.x;
  assert.equal(maxAbsDiff(a.forwardTo(x, 'classifier.6'), a.forward(x)), 0);
  a.dispose();
  b.dispose();
});

test(
  "fine-tuning from torchvision's AlexNet saved by real torch.save: frozen features stay bit-identical, a new two-class head learns",
  { skip: oracleMissing(), timeout: 600_000 },
  async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-reuse-'));
    try {
      const pth = path.join(dir, 'alexnet-owt.pth');
      runOracle([{ id: 'a', op: 'save_pth', args: { path: pth, seed: 1 }, tensors: { x: randn([1, 3, 63, 63]) } }]);
      const folder = path.join(dir, 'shapes');
      await writeShapesFolder(folder, { perClass: 24, shapes: ['circle', 'square'], colourByClass: true, seed: 2 });
      const ckpt = path.join(dir, 'tuned.safetensors');
      const metrics = path.join(dir, 'tuned.jsonl');
      const args = ['train', '--init-from', pth, '--freeze', 'features', '--dataset', `folder:${folder}`];
      const r = cli([
        ...args,
        ...['--input-size', '63', '--epochs', '3', '--batch-size', '8', '--lr', '0.1', '--head-lr', '0.2'],
        ...['--augment', 'none'],
        ...['--val-split', '0.25', '--save', ckpt, '--metrics', metrics],
      ]);
      assert.equal(r.code, 0, r.stderr);
      // --model came from the file; every tensor but the 1000-class head was copied.
      assert.match(r.stdout, /training alexnet-torchvision on folder:.*sgd lr 0\.1 \(head 0\.2\)/);
      assert.match(
        r.stdout,
        /started from the given weights: 14 of 16 tensors copied; initialised afresh: classifier\.6\.weight \(1000×4096 there, 2×4096 here\), classifier\.6\.bias \(1000 there, 2 here\)/,
      );
      const tuned = loadModel(ckpt).model;
      const original = loadModel(pth).model;
      const before = original.stateDict();
      for (const [k, t] of tuned.stateDict()) {
        if (k.startsWith('features.')) assert.equal(maxAbsDiff(t, before.get(k)!), 0, `${k} changed although frozen`);
      }
      assert.ok(maxAbsDiff(tuned.stateDict().get('classifier.4.weight')!, before.get('classifier.4.weight')!) > 0);
      const epochs = fs
        .readFileSync(metrics, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .filter((e) => e.kind === 'epoch');
      // The file holds torchvision's architecture with seeded random weights (no download here), so its features
      // are not ImageNet's: the head learns slowly from them. It does learn: the validation loss falls every epoch
      // and ends below chance (ln 2; measured 0.691, 0.685, 0.659).
      const losses = epochs.map((e) => e.test_loss as number);
      assert.ok(losses[1] < losses[0] && losses[2] < losses[1], `validation losses ${losses.join(', ')}`);
      assert.ok(losses[2] < Math.log(2) - 0.005, `validation loss ${losses[2]} is not below chance (${Math.log(2)})`);
      // Its embeddings: the last hidden layer (torchvision's classifier.5, a ReLU), a row per image of the folder,
      // labelled by its class folder, equal to the model's own forward up to that layer.
      const emb = path.join(dir, 'emb.safetensors');
      const f = cli(['features', '--weights', ckpt, '--split', 'all', '--out', emb]);
      assert.equal(f.code, 0, f.stderr);
      assert.match(f.stdout, /48 × 4096 features of classifier\.5 \(alexnet-torchvision\)/);
      const { tensors, metadata } = loadSafetensors(emb);
      const files: string[] = JSON.parse(metadata.files);
      assert.equal(files.length, 48);
      const labels = tensors.get('labels')!.toArray();
      files.forEach((file, i) => assert.equal(labels[i], path.basename(path.dirname(file)) === 'circle' ? 0 : 1));
      assert.ok(
        tensors
          .get('features')!
          .toArray()
          .every((v) => v >= 0),
        'a ReLU output is never negative',
      );
      tuned.dispose();
      original.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);

test('--init-from and --freeze say what is wrong in one line', () => {
  const r = cli(['train', '--init-from', '/nonexistent.pth']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--init-from.*nonexistent\.pth/);
  const f = cli(['train', '--freeze', 'features.99', '--train-limit', '64', '--epochs', '1', '--input-size', '65']);
  assert.equal(f.code, 2);
  assert.match(f.stderr, /--freeze must be features or a layer of alexnet-d2l: features\.0, .*; got 'features\.99'/);
});

test('two parameter groups: the head steps at its own rate, a schedule scales both, state names stay apart', () => {
  // Plain SGD (no momentum): w ← w − lr·g, by hand, with g = 1 everywhere (the gradient of sum(w)).
  const body = tensor([1, 2], [2]).requiresGrad_();
  const head = tensor([3], [1]).requiresGrad_();
  const opt = new TwoGroups(new SGD([body], { lr: 0.1 }), new SGD([head], { lr: 0.5 }));
  body.sum().add(head.sum()).backward();
  opt.step();
  assert.deepEqual(
    body.toArray().map((v) => +v.toFixed(6)),
    [0.9, 1.9],
  );
  assert.deepEqual(head.toArray(), [2.5]);
  opt.zeroGrad();
  opt.lr = 0.01; // a schedule's ÷10: the head's rate follows (0.05)
  body.sum().add(head.sum()).backward();
  opt.step();
  assert.equal(+head.toArray()[0].toFixed(6), 2.45);
  assert.equal(+body.toArray()[0].toFixed(6), 0.89);
  const opt2 = new TwoGroups(new SGD([body], { lr: 0.1, momentum: 0.9 }), new SGD([head], { lr: 0.5, momentum: 0.9 }));
  assert.deepEqual(
    opt2.stateTensors().map(([k]) => k),
    ['momentum.0', 'head.momentum.0'],
  );
});
