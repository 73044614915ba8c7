// Finds what a CUDA graph recording refuses: records growing parts of a training step (a copy, an inference
// forward, a training forward with dropout, forward and backward, the whole step) and prints, for each, whether it
// recorded and replayed or the first error libtorch gave. One part per process (a failed recording can leave
// libtorch's CUDA state unusable): node dist/bench/graph-probe.js PART, or with no argument every part in turn.
import { spawnSync } from 'node:child_process';
import { getModel } from '../src/models/registry';
import { crossEntropy } from '../src/nn/functional';
import { SGD } from '../src/optim/optimizer';
import { prepareDevice, prepareModel, synchronize } from '../src/runtime/device';
import { autocast } from '../src/runtime/precision';
import {
  cudaGraphBegin,
  cudaGraphEnd,
  cudaGraphRelease,
  cudaGraphReplay,
  cudaUseSideStream,
} from '../src/tensor/cuda-graph';
import { manualSeed, noGrad, randint, randn, tidy, zeros } from '../src/tensor/tensor';
import { StepSums, trainStep } from '../src/train/step';

const PARTS = ['copy', 'forward-eval', 'forward-train', 'backward-no-dropout', 'step-no-dropout', 'step'] as const;
type Part = (typeof PARTS)[number];

function probe(part: Part): string {
  prepareDevice('cuda');
  manualSeed(1);
  const dropout = part === 'backward-no-dropout' || part === 'step-no-dropout' ? 0 : 0.5;
  const model = prepareModel(getModel('alexnet-d2l', { inputSize: 65, dropout }), 'cuda');
  if (part === 'forward-eval') model.eval();
  const x = randn([16, 1, 65, 65], { device: 'cuda' }).keep();
  const y = randint(0, 10, [16], { device: 'cuda' }).keep();
  const a = zeros([], { device: 'cuda' }).keep();
  const b = zeros([], { device: 'cuda' }).keep();
  const ctx = {
    model,
    device: 'cuda' as const,
    precision: part === 'step' ? ('bf16' as const) : ('fp32' as const),
    optimizer: new SGD(model.parameters(), { lr: 0.01, momentum: 0.9 }),
  };
  const sums = new StepSums('cuda');
  const body = () => {
    if (part === 'copy') a.copy_(b);
    else if (part === 'forward-eval' || part === 'forward-train') noGrad(() => tidy(() => model.forward(x)));
    else if (part === 'backward-no-dropout')
      tidy(() => autocast('cuda', 'fp32', () => crossEntropy(model.forward(x), y)).backward());
    else trainStep(ctx, x, y, sums);
  };
  cudaUseSideStream(0);
  for (let i = 0; i < 3; i++) body();
  synchronize('cuda');
  const id = cudaGraphBegin();
  try {
    body();
    cudaGraphEnd(id);
  } catch (e) {
    cudaGraphRelease(id);
    return `FAILED to record: ${(e as Error).message.split('\n')[0]}`;
  }
  try {
    for (let i = 0; i < 3; i++) cudaGraphReplay(id);
    synchronize('cuda');
  } catch (e) {
    return `recorded, FAILED to replay: ${(e as Error).message.split('\n')[0]}`;
  }
  cudaGraphRelease(id);
  return 'recorded and replayed';
}

const part = process.argv[2] as Part | undefined;
if (part) {
  if (!PARTS.includes(part)) throw new Error(`unknown part '${part}' (expected ${PARTS.join(', ')})`);
  console.log(`${part}: ${probe(part)}`);
} else {
  for (const p of PARTS) {
    const r = spawnSync(process.execPath, [__filename, p], { encoding: 'utf8', timeout: 120_000 });
    const out = (r.stdout.trim() || r.stderr.trim().split('\n').slice(-3).join(' | ')).split('\n').pop();
    console.log(out || `${p}: exited with ${r.status}`);
  }
}
