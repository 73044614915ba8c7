// safetensors in process: every variant's weights round-trip through a file, dtypes and metadata survive, hostile
// files get clear errors before any allocation (moved from io.test.ts into the quick tier: no oracle, no process).
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { FormatError } from '../src/errors';
import { decodeSafetensors, encodeSafetensors, MAX_HEADER_BYTES } from '../src/io/safetensors';
import { getModel, listModels } from '../src/models/registry';
import { saveWeights } from '../src/persist/checkpoint';
import { loadModel } from '../src/persist/load';
import { manualSeed, noGrad, randn, tensor, Tensor } from '../src/tensor/tensor';
import { firstPassOnly, maxAbsDiff } from './helpers/oracle';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-safetensors-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
const record = (m: ReturnType<typeof getModel>) => ({
  model: m.name,
  modelOptions: { numClasses: 5, inChannels: m.inputShape[0] },
  classes: ['a', 'b', 'c', 'd', 'e'],
  preprocess: {
    inputSize: [m.inputShape[1], m.inputShape[2]] as [number, number],
    resize: 'bilinear' as const,
    mean: [],
    std: [],
  },
});

test(
  'every variant round-trips through a safetensors weights file with identical outputs',
  { skip: firstPassOnly('a file round trip compared by the same kernels on both sides') },
  () => {
    for (const { name } of listModels()) {
      manualSeed(2);
      const m = getModel(name, { numClasses: 5 }).eval();
      const file = path.join(dir, `${name}.safetensors`);
      saveWeights(file, m, record(m));
      const { model, record: r } = loadModel(file);
      assert.deepEqual(r.classes, ['a', 'b', 'c', 'd', 'e']);
      const x = randn([2, ...m.inputShape]);
      assert.equal(
        maxAbsDiff(
          noGrad(() => m.forward(x)),
          noGrad(() => model.forward(x)),
        ),
        0,
        name,
      );
      m.dispose();
      model.dispose();
    }
  },
);

test('dtypes are preserved and metadata kept', () => {
  const t = new Map<string, Tensor>([
    ['f', tensor([1.5, -2], [2])],
    ['h', tensor([0.5, 3], [2]).to('float16')],
    ['b', tensor([1, 2], [2]).to('bfloat16')],
    ['l', tensor([7, -9], [2], 'int64')],
    ['u', tensor(new Uint8Array([1, 255]), [2])],
  ]);
  const { tensors, metadata } = decodeSafetensors(encodeSafetensors(t, { note: 'hi' }));
  for (const [k, v] of t) {
    assert.equal(tensors.get(k)!.dtype, v.dtype, k);
    assert.deepEqual(tensors.get(k)!.toArray(), v.toArray(), k);
  }
  assert.equal(metadata.note, 'hi');
});

test('hostile safetensors files get clear errors and no huge allocation', () => {
  const good = encodeSafetensors(
    new Map([
      ['a', tensor([1, 2, 3, 4], [4])],
      ['b', tensor([5, 6], [2])],
    ]),
  );
  const header = (h: object) => {
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, Buffer.alloc(24)]);
  };
  const cases: [string, Buffer, RegExp][] = [
    [
      'header longer than file',
      Buffer.concat([Buffer.from([0xff, 0xff, 0, 0, 0, 0, 0, 0]), good.subarray(8)]),
      /claims 65535 bytes but the file has only/,
    ],
    [
      'gigabyte header',
      (() => {
        const b = Buffer.from(good);
        b.writeBigUInt64LE(5n << 30n);
        return b;
      })(),
      new RegExp(`more than the ${MAX_HEADER_BYTES}-byte limit`),
    ],
    [
      'overlap',
      header({
        a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
        b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] },
      }),
      /'a' and 'b' overlap/,
    ],
    ['past the end', header({ a: { dtype: 'F32', shape: [16], data_offsets: [0, 64] } }), /runs past the end/],
    ['unknown dtype', header({ a: { dtype: 'Q7', shape: [1], data_offsets: [0, 1] } }), /unsupported dtype 'Q7'/],
    [
      'size mismatch',
      header({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }),
      /has 8 bytes but its shape \[3\]/,
    ],
    ['not JSON', Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{{{{')]), /not JSON/],
    ['too short', Buffer.from([1, 2, 3]), /only 3 bytes/],
  ];
  for (const [what, buf, re] of cases) {
    const before = process.memoryUsage().rss;
    assert.throws(
      () => decodeSafetensors(buf, what),
      (e: unknown) => e instanceof FormatError && re.test(e.message),
      what,
    );
    assert.ok(process.memoryUsage().rss - before < 50e6, `${what}: no large allocation`);
  }
});
