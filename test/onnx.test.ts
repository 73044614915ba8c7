// ONNX export at every input size a model accepts: adaptive average pooling from any feature map to its output size
// (identity, AveragePool, the 1×1 broadcast as Expand, constant gathers, averaging matrices), and Tanh. Each file
// passes onnx.checker (full check, shape inference included) and onnxruntime's output matches our libtorch forward.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import { UserError } from '../src/errors';
import { exportOnnx } from '../src/io/onnx';
import { AlexNetOptions, getModel } from '../src/models/registry';
import { AdaptiveAvgPool2d, Flatten, LayerEntry, Module, NetworkSpec, ReLU, Sequential } from '../src/nn';
import { manualSeed, noGrad, randn, tensor, Tensor } from '../src/tensor/tensor';
import { firstPassOnly, maxAbsDiff, OnnxCheck, onnxChecker, oracleMissing, relDiff } from './helpers/oracle';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-onnx-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Layers (in eval mode) as a NetworkSpec of plain data, with their shapes at `input`. */
function network(name: string, input: number[], layers: Module[]): NetworkSpec {
  let shape = input;
  const entries = layers.map((m, i): LayerEntry => {
    const entry = { name: String(i), spec: m.spec(), description: m.describe(), input: shape };
    shape = m.outputShape(shape);
    return { ...entry, output: shape };
  });
  return { name, input, layers: entries, weights: new Map() };
}

/** onnxruntime's output for x from an exported file. */
async function runOnnx(file: string, x: Tensor): Promise<Tensor> {
  const session = await ort.InferenceSession.create(file);
  try {
    const out = await session.run({ input: new ort.Tensor('float32', x.data() as Float32Array, x.shape) });
    return tensor(out.logits.data as Float32Array, out.logits.dims as number[]);
  } finally {
    await session.release();
  }
}

/** Checks every file given to `add` with onnx.checker (first pass only, as io.test's export test). */
async function checked(t: { diagnostic(m: string): void }, body: (add: (file: string) => void) => Promise<void>) {
  const structure = firstPassOnly('onnx.checker on the exported files');
  const checker = structure ? undefined : onnxChecker();
  const files: string[] = [];
  let answers: Map<string, OnnxCheck> | undefined;
  try {
    await body((file) => {
      files.push(file);
      checker?.add(file);
    });
  } finally {
    answers = await checker?.done(); // also ends the checker when an assertion above failed
  }
  for (const file of answers ? files : []) {
    const c = answers!.get(file);
    assert.ok(c, `onnx.checker gave no answer for ${path.basename(file)}`);
    assert.equal(c.error, undefined, `${path.basename(file)}: ${c.error}`);
    assert.equal(c.opset, 13, file);
  }
  if (structure) t.diagnostic(structure);
}

test(
  'adaptive average pooling exports from any map size to any output size and matches libtorch in onnxruntime',
  { skip: oracleMissing() },
  async (t) => {
    manualSeed(21);
    // Even windows, the 1×1 broadcast, one-cell windows (n divides m), and uneven, overlapping ones (m < n and
    // m > n), along each axis alone and both together.
    const outputs: [number, number][] = [
      [6, 6],
      [3, 5],
      [1, 1],
    ];
    const maps = [1, 2, 3, 4, 5, 7, 13];
    const ops = new Set<string>();
    await checked(t, async (add) => {
      for (const [oh, ow] of outputs)
        for (const h of maps)
          for (const w of maps) {
            if (h === oh && w === ow) continue; // identity: no node at all (the next test has one in a model)
            const pool = new AdaptiveAvgPool2d([oh, ow]);
            const file = path.join(dir, `pool-${h}x${w}-to-${oh}x${ow}.onnx`);
            const { bytes, opTypes } = exportOnnx(network('pool', [3, h, w], [pool]));
            fs.writeFileSync(file, bytes);
            add(file);
            opTypes.forEach((o) => ops.add(o));
            const x = randn([2, 3, h, w]);
            const ours = noGrad(() => pool.forward(x));
            const theirs = await runOnnx(file, x);
            const where = `${h}×${w} → ${oh}×${ow} (${opTypes.join(', ')})`;
            // a broadcast or a gather copies values: bit for bit; averages at float32 rounding
            if (opTypes.every((o) => o === 'Expand' || o === 'Gather'))
              assert.equal(maxAbsDiff(ours, theirs), 0, where);
            else assert.ok(relDiff(theirs, ours) <= 1e-5, `${where}: relative difference ${relDiff(theirs, ours)}`);
            const single = h === 1 && w === 1 && (oh > 1 || ow > 1);
            if (single) assert.deepEqual(opTypes, ['Expand'], where);
            if (h % oh === 0 && w % ow === 0 && !single && (h !== oh || w !== ow))
              assert.deepEqual(opTypes, ['AveragePool'], where);
          }
    });
    assert.deepEqual([...ops].sort(), ['AveragePool', 'Expand', 'Gather', 'MatMul']);
  },
);

// alexnet-torchvision (narrow, to stay quick) from its smallest input to odd and non-square ones: the feature map
// before avgpool and the nodes it becomes.
const SIZES: { inputSize: number | [number, number]; map: string; ops: string[] }[] = [
  { inputSize: 63, map: '1×1', ops: ['Expand'] }, // the smallest input it accepts
  { inputSize: 70, map: '1×1', ops: ['Expand'] },
  { inputSize: 95, map: '2×2', ops: ['Gather', 'Gather'] },
  { inputSize: 127, map: '3×3', ops: ['Gather', 'Gather'] },
  { inputSize: 159, map: '4×4', ops: ['MatMul', 'MatMul'] },
  { inputSize: 201, map: '5×5', ops: ['MatMul', 'MatMul'] },
  { inputSize: 223, map: '6×6', ops: [] },
  { inputSize: 255, map: '7×7', ops: ['MatMul', 'MatMul'] },
  { inputSize: 415, map: '12×12', ops: ['AveragePool'] },
  { inputSize: [63, 300], map: '1×8', ops: ['Gather', 'MatMul'] },
  { inputSize: [300, 95], map: '8×2', ops: ['MatMul', 'Gather'] },
  { inputSize: [127, 200], map: '3×5', ops: ['Gather', 'MatMul'] },
];

test(
  'alexnet-torchvision exports at every input size it accepts, from the smallest (1×1 maps) to odd and non-square ones',
  { skip: oracleMissing() },
  async (t) => {
    await checked(t, async (add) => {
      for (const { inputSize, map, ops } of SIZES) {
        manualSeed(22);
        const options: AlexNetOptions = { inputSize, numClasses: 7, widths: [8, 16, 16, 16, 16] };
        const m = getModel('alexnet-torchvision', options).eval();
        const label = String(inputSize).replace(',', 'x');
        const spec = m.networkSpec();
        assert.equal(
          spec.layers
            .find((l) => l.name === 'avgpool')!
            .input.slice(1)
            .join('×'),
          map,
          label,
        );
        const file = path.join(dir, `torchvision-${label}.onnx`);
        const { bytes, opTypes } = exportOnnx(spec, { model: m.name });
        fs.writeFileSync(file, bytes);
        add(file);
        const pooling = opTypes.slice(opTypes.lastIndexOf('MaxPool') + 1, opTypes.indexOf('Flatten'));
        assert.deepEqual(pooling, ops, label);
        const x = randn([2, ...m.inputShape]);
        const ours = noGrad(() => m.forward(x));
        const d = relDiff(await runOnnx(file, x), ours);
        assert.ok(d <= 1e-5, `input ${label}: relative difference ${d}`);
        m.dispose();
      }
    });
  },
);

test('models built with the tanh activation export it as ONNX Tanh', { skip: oracleMissing() }, async (t) => {
  const models: [string, AlexNetOptions][] = [
    ['alexnet-torchvision', { activation: 'tanh', inputSize: 111, widths: [8, 16, 16, 16, 16], numClasses: 5 }],
    ['alexnet-2012', { activation: 'tanh', inputSize: 99, widths: [8, 16, 16, 16, 16], numClasses: 5 }],
  ];
  await checked(t, async (add) => {
    for (const [name, options] of models) {
      manualSeed(23);
      const m = getModel(name, options).eval();
      const file = path.join(dir, `${name}-tanh.onnx`);
      const { bytes, opTypes } = exportOnnx(m, { model: name });
      fs.writeFileSync(file, bytes);
      add(file);
      // after each of the five convolutions and the two hidden fully connected layers
      assert.equal(opTypes.filter((o) => o === 'Tanh').length, 7, name);
      assert.ok(!opTypes.includes('Relu'), name);
      const x = randn([3, ...m.inputShape]);
      const ours = noGrad(() => m.forward(x));
      const d = relDiff(await runOnnx(file, x), ours);
      assert.ok(d <= 1e-5, `${name}: relative difference ${d}`);
      m.dispose();
    }
  });
});

test('what ONNX export still refuses is a one-line UserError naming the layer', () => {
  const refused = (layers: Module[], input: number[], message: RegExp) =>
    assert.throws(
      () => exportOnnx(network('refused', input, layers)),
      (e: Error) => e instanceof UserError && message.test(e.message) && !e.message.includes('\n'),
    );
  // a nested container is not flattened by the writer (a model's networkSpec() lists its layers one by one)
  refused([new Flatten(), new Sequential(new ReLU())], [3, 2, 2], /^1: Sequential\(1\) has no ONNX mapping$/);
  refused([], [3, 2, 2], /^refused has no layers to export$/);
});
