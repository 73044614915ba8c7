// One rank of test/model-parallel.test.ts's two-process run: `node mp-worker.js '<json>'` with
// {rank, port, timeoutMs, out}. It builds alexnet-2012 from the shared seed, keeps its tower, and over c10d runs:
// a forward and backward (logits, loss, the gradients reassembled), an SGD step, then one towerTrainStep with the
// optimiser (its loss) and the weights reassembled. Rank 0 writes them to `out` (safetensors); every rank ends
// with one JSON line: {done: rank} or {error}.
import { Store, ProcessGroup } from '../../src/distributed/c10d';
import {
  assembleGradients,
  assembleStateDict,
  buildTower,
  processGroupExchange,
  towerBackward,
  towerForward,
  towerTrainStep,
} from '../../src/distributed/model-parallel';
import { saveSafetensors } from '../../src/io/safetensors';
import { AlexNet } from '../../src/models/alexnet';
import { getModel } from '../../src/models/registry';
import { F } from '../../src/nn';
import { SGD } from '../../src/optim/optimizer';
import { manualSeed, randint, randn, setNumThreads, Tensor, tensor } from '../../src/tensor/tensor';

export interface MpWorkerArgs {
  rank: number;
  port: number;
  timeoutMs: number;
  out: string;
}

/** What both the ranks and the test's one-process reference start from: the model, a batch, the optimiser's setting. */
export const MP_SIZE = 99;
export const MP_SGD = { lr: 0.01, momentum: 0.9, weightDecay: 5e-4 };
export function mpSetting(): { model: AlexNet; x: Tensor; y: Tensor } {
  manualSeed(31);
  const model = getModel('alexnet-2012', { inputSize: MP_SIZE }).eval(); // dropout off: the comparison is exact
  return { model, x: randn([2, 3, MP_SIZE, MP_SIZE]).keep(), y: randint(0, 1000, [2]).keep() };
}

async function run(a: MpWorkerArgs, pg: ProcessGroup): Promise<void> {
  const { model, x, y } = mpSetting();
  const tower = buildTower(a.rank, model);
  model.dispose();
  const exchange = processGroupExchange(pg);
  const pass = await towerForward(tower, exchange, x);
  const loss = F.crossEntropy(pass.logits, y);
  await towerBackward(tower, exchange, pass, loss);
  const grads = await assembleGradients(tower, exchange);
  const sgd = new SGD(tower.parameters(), MP_SGD);
  sgd.step();
  sgd.zeroGrad();
  const loss2 = await towerTrainStep(tower, exchange, x, y, { optimizer: sgd });
  const weights = await assembleStateDict(tower, exchange);
  if (a.rank === 0) {
    saveSafetensors(a.out, [
      ['logits', pass.logits],
      ['loss', tensor([loss.item(), loss2])],
      ...[...grads].map(([k, t]) => [`grad.${k}`, t] as [string, Tensor]),
      ...[...weights].map(([k, t]) => [`weight.${k}`, t] as [string, Tensor]),
    ]);
  }
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]) as MpWorkerArgs;
  setNumThreads(1);
  try {
    const store = new Store({
      host: '127.0.0.1',
      port: a.port,
      worldSize: 2,
      isMaster: a.rank === 0,
      timeoutMs: a.timeoutMs,
    });
    const pg = new ProcessGroup(store, { rank: a.rank, worldSize: 2, host: '127.0.0.1' });
    await run(a, pg);
    pg.barrier(); // rank 0 has written its file
    pg.destroy();
    process.stdout.write(JSON.stringify({ done: a.rank }) + '\n');
  } catch (e) {
    process.stdout.write(JSON.stringify({ error: (e as Error).message }) + '\n');
    process.exitCode = 3;
  }
}

if (require.main === module) void main();
