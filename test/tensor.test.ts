import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EngineError, UserError } from '../src/errors';
import {
  arange,
  cat,
  getNumThreads,
  manualSeed,
  noGrad,
  ones,
  randn,
  setNumThreads,
  stack,
  tensor,
  tensorFromBuffers,
  tidy,
  zeros,
} from '../src/tensor/tensor';

const close = (a: number[], b: number[], tol = 1e-6) => {
  assert.equal(a.length, b.length);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) <= tol, `index ${i}: ${x} vs ${b[i]}`));
};

test('tensors round-trip data for every dtype', () => {
  const f = tensor([1.5, -2, 3.25, 4], [2, 2]);
  assert.deepEqual(f.shape, [2, 2]);
  assert.equal(f.dtype, 'float32');
  assert.deepEqual(f.toArray(), [1.5, -2, 3.25, 4]);
  assert.deepEqual(tensor(new Uint8Array([0, 255, 7]), [3]).toArray(), [0, 255, 7]);
  assert.deepEqual(tensor([3, -4, 5], [3], 'int64').toArray(), [3, -4, 5]);
  assert.deepEqual(tensor(new Float64Array([0.1, 0.2])).toArray(), [0.1, 0.2]);
  // float16 / bfloat16 through conversion: 1.5 and -2 are exact in both
  assert.deepEqual(f.to('float16').toArray(), [1.5, -2, 3.25, 4]);
  assert.deepEqual(f.to('bfloat16').to('float32').toArray(), [1.5, -2, 3.25, 4]);
  // 1/3 in bfloat16 keeps 8 significant bits: 0.333984375
  assert.deepEqual(
    tensor([1 / 3])
      .to('bfloat16')
      .toArray(),
    [0.333984375],
  );
});

test('tensorFromBuffers lays buffers end to end; a total that misses the shape is refused', () => {
  const a = new Float32Array([1, 2, 3]).buffer;
  const b = new Float32Array([4, 5, 6]).buffer;
  const t = tensorFromBuffers([a, b], [2, 3], 'float32');
  assert.deepEqual(t.toArray(), [1, 2, 3, 4, 5, 6]);
  // A copy: changing a buffer afterwards changes nothing.
  new Float32Array(a)[0] = 9;
  assert.equal(t.toArray()[0], 1);
  assert.deepEqual(tensorFromBuffers([new Uint8Array([7, 8]).buffer], [2], 'uint8').toArray(), [7, 8]);
  assert.throws(
    () => tensorFromBuffers([a], [2, 3], 'float32'),
    /the buffers hold 12 bytes but shape and dtype need 24/,
  );
  assert.throws(() => tensorFromBuffers([a], [-1], 'float32'), UserError);
});

test('elementwise, matmul and reductions match hand-computed values', () => {
  const a = tensor([1, 2, 3, 4, 5, 6], [2, 3]);
  const b = tensor([1, 0, -1, 2, 1, 0], [3, 2]);
  // [[1,2,3],[4,5,6]] @ [[1,0],[-1,2],[1,0]] = [[2,4],[5,10]]
  assert.deepEqual(a.matmul(b).toArray(), [2, 4, 5, 10]);
  assert.deepEqual(a.add(1).mul(2).toArray(), [4, 6, 8, 10, 12, 14]);
  assert.deepEqual(a.sum(1).toArray(), [6, 15]);
  assert.deepEqual(a.mean(0).toArray(), [2.5, 3.5, 4.5]);
  assert.equal(a.sum().item(), 21);
  assert.deepEqual(a.max(1).toArray(), [3, 6]);
  assert.deepEqual(a.argmax(1).toArray(), [2, 2]);
  assert.deepEqual(a.transpose(0, 1).contiguous().toArray(), [1, 4, 2, 5, 3, 6]);
  const sm = tensor([0, Math.log(3)], [1, 2])
    .softmax(1)
    .toArray();
  close(sm, [0.25, 0.75]);
  const { values, indices } = tensor([0.1, 0.7, 0.2, 0.9], [1, 4]).topk(2, 1);
  close(values.toArray(), [0.9, 0.7]);
  assert.deepEqual(indices.toArray(), [3, 1]);
  assert.deepEqual(cat([a, a], 0).shape, [4, 3]);
  assert.deepEqual(stack([a, a], 0).shape, [2, 2, 3]);
  assert.deepEqual(arange(5).toArray(), [0, 1, 2, 3, 4]);
  assert.deepEqual(a.reshape(3, 2).shape, [3, 2]);
  close(tensor([1, 2, 3, 4]).var().toArray(), [1.25]);
});

test('autograd: d/dx sum(x^3) = 3x^2, and noGrad records nothing', () => {
  const x = tensor([1, -2, 0.5]).requiresGrad_();
  x.pow(3).sum().backward();
  close(x.grad!.toArray(), [3, 12, 0.75]);
  const y = noGrad(() => x.mul(2));
  assert.equal(y.requiresGrad, false);
  assert.throws(() => y.sum().backward(), EngineError);
});

test('libtorch errors become EngineError naming the op and the shapes', () => {
  const a = zeros([2, 3]);
  const b = zeros([4, 5]);
  assert.throws(
    () => a.matmul(b),
    (e: unknown) => {
      assert.ok(e instanceof EngineError);
      assert.equal(e.op, 'matmul');
      assert.match(e.message, /\[2,3\] float32, \[4,5\] float32/);
      assert.doesNotMatch(e.message, /frame #|Exception raised from/);
      return true;
    },
  );
  assert.throws(() => tensor([1, 2, 3], [2, 2]), UserError);
  assert.throws(() => zeros([2, -1]), UserError);
});

test('tidy disposes temporaries and keeps what it returns', () => {
  const outer = ones([2]);
  let inner: ReturnType<typeof ones> | undefined;
  const kept = tidy(() => {
    inner = outer.add(1);
    return { result: inner.mul(2) };
  });
  assert.ok(inner!.isDisposed);
  assert.equal(kept.result.isDisposed, false);
  assert.deepEqual(kept.result.toArray(), [4, 4]);
  assert.equal(outer.isDisposed, false);
  assert.throws(() => inner!.toArray(), /disposed/);
  // exceptions dispose everything created inside
  let leaked: ReturnType<typeof ones> | undefined;
  assert.throws(
    () =>
      tidy(() => {
        leaked = ones([3]);
        throw new Error('boom');
      }),
    /boom/,
  );
  assert.ok(leaked!.isDisposed);
});

test('manualSeed makes random tensors reproducible', () => {
  manualSeed(42);
  const a = randn([5]).toArray();
  manualSeed(42);
  const b = randn([5]).toArray();
  assert.deepEqual(a, b);
  const c = randn([5]).toArray();
  assert.notDeepEqual(a, c);
});

test('thread count can be set', () => {
  const before = getNumThreads();
  setNumThreads(1);
  assert.equal(getNumThreads(), 1);
  setNumThreads(before);
  assert.throws(() => setNumThreads(0), UserError);
});
