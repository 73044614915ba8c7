// 200 forward/backward/update steps of a small conv net: resident memory must not grow after warm-up.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { Conv2d, F, Flatten, Linear, MaxPool2d, ReLU, Sequential } from '../src/nn';
import { native } from '../src/tensor/binding';
import { manualSeed, randint, randn, tidy, zerosLike } from '../src/tensor/tensor';

// A full garbage collection whether or not node was started with --expose-gc (test runner children may not be).
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

test('memory stays flat over 200 training steps', () => {
  manualSeed(0);
  const net = new Sequential(
    new Conv2d(3, 16, 3, { padding: 1 }),
    new ReLU(),
    new MaxPool2d(2),
    new Conv2d(16, 32, 3, { padding: 1 }),
    new ReLU(),
    new MaxPool2d(2),
    new Flatten(),
    new Linear(32 * 8 * 8, 10),
  );
  const params = net.parameters();
  const bufs = params.map((p) => zerosLike(p).keep());
  const x = randn([16, 3, 32, 32]).keep();
  const y = randint(0, 10, [16]).keep();
  let rss20 = 0;
  let live20 = 0;
  let misses20 = 0;
  let firstLoss = 0;
  let lastLoss = 0;
  for (let step = 1; step <= 200; step++) {
    const loss = tidy(() => {
      const l = F.crossEntropy(net.forward(x), y);
      l.backward();
      return l.item();
    });
    native().sgdStep(
      params.map((p) => p.handle),
      bufs.map((b) => b.handle),
      {
        lr: 0.01,
        momentum: 0.9,
        weightDecay: 0,
        dampening: 0,
        nesterov: false,
        form: 'pytorch',
        firstStep: step === 1,
      },
    );
    native().zeroGrad(params.map((p) => p.handle));
    if (step === 1) firstLoss = loss;
    lastLoss = loss;
    if (step === 20) {
      gc();
      rss20 = process.memoryUsage().rss;
      live20 = native().memoryStats().liveTensors;
      misses20 = native().allocatorStats()?.misses ?? 0;
    }
  }
  gc();
  const rssEnd = process.memoryUsage().rss;
  const growthMb = (rssEnd - rss20) / 1e6;
  assert.equal(native().memoryStats().liveTensors, live20, 'tensors that hold memory after step 200 = after step 20');
  const alloc = native().allocatorStats();
  if (alloc?.enabled) {
    // libtorch 1.x builds: after warm-up every large buffer comes from the cache (no new mappings).
    assert.ok(alloc.hits > 1000, `cache hits ${alloc.hits}`);
    assert.ok(alloc.misses - misses20 <= 2, `${alloc.misses - misses20} new mappings after step 20`);
  }
  assert.ok(growthMb < 15, `resident memory grew by ${growthMb.toFixed(1)} MB between step 20 and step 200`);
  assert.ok(lastLoss < firstLoss, 'the net learned the fixed batch');
});
