// `alexnet train --nproc 2 --model-parallel 2`: the paper's two GPUs as two ranks in a whole training run, as a
// strategy of the one trainer (src/train). Both ranks read the same batches in the same order (not shards: every
// tower sees every image) and build the same one-process model from the run's seed; each keeps its tower (half the
// kernels of every layer) and steps its own half of the parameters. Rank 0 reports and writes: --metrics, and
// --save as a WEIGHTS file in the one-process layout (both towers reassembled), which `alexnet eval --weights` and
// `predict` load as a plain alexnet-2012.
import { UserError } from '../errors';
import { AlexNet } from '../models/alexnet';
import { F } from '../nn';
import { Optimizer } from '../optim/optimizer';
import { manualSeed, noGrad, Tensor, tidy } from '../tensor/tensor';
import { RunConfig } from '../train/config';
import { EpochRecord } from '../train/events';
import { Replica, Strategy } from '../train/parallel';
import { TrainHooks, trainWith } from '../train/run';
import { StepSums } from '../train/step';
import { DdpGroup } from './data-parallel';
import { DistEnv } from './env';
import { asLateRank } from './group';
import { checkRunOutputs } from './preflight';
import {
  assembleStateDict,
  buildTower,
  disposePass,
  Exchange,
  processGroupExchange,
  Tower,
  towerBackward,
  towerForward,
  towerLogits,
} from './model-parallel';

export type ModelParallelHooks = Pick<TrainHooks, 'shouldStop' | 'log' | 'progressStream'>;

export interface ModelParallelResult {
  stopped: 'completed' | 'max-steps' | 'interrupted';
  globalStep: number;
  history: EpochRecord[];
}

/** What the start line says a model-parallel run is. */
export const MODEL_PARALLEL_LINE =
  "model-parallel: 2 ranks, each half the kernels of every layer (the paper's two GPUs)";

/**
 * Trains `cfg` as rank `env.rank` of the paper's two-GPU model parallelism. Every refusal that needs no peer
 * (world size, --resume, precision, CUDA graphs, --freeze, a model that cannot be split, a bad --save path) comes
 * before the rendezvous, the same on both ranks (--save, which rank 0 alone writes, on rank 0).
 */
export async function trainModelParallel(
  cfg: RunConfig,
  env: DistEnv,
  hooks: ModelParallelHooks = {},
  o: { timeoutSeconds?: number; resume?: string } = {},
): Promise<ModelParallelResult> {
  checkRequest(cfg, env, o.resume);
  // Rank 0 writes --save, a weights file: refused here, before the other rank waits for it, and in those words.
  if (env.rank === 0) checkRunOutputs({ ...cfg.output, weightsOnly: true });
  return asLateRank(env, { timeoutSeconds: o.timeoutSeconds }, async (join) => {
    const r = await trainWith(cfg, { ...hooks, strategy: new TowerStrategy(env.rank, cfg, join) });
    return { stopped: r.stopped, globalStep: r.globalStep, history: r.history };
  });
}

/** The one-line refusals that need neither data nor a model. */
function checkRequest(cfg: RunConfig, env: DistEnv, resume?: string): void {
  const { precision, model, runtime } = cfg;
  checkModelParallel({
    worldSize: env.worldSize,
    resume,
    precision,
    cudaGraph: runtime.cudaGraph,
    freeze: model.freeze,
  });
}

/**
 * Model parallelism's refusals from the flags alone, the same on every rank and in the launcher (which makes them
 * before any rank starts): the world size, --resume, a precision or CUDA graph it cannot run, --freeze.
 */
export function checkModelParallel(o: {
  worldSize: number;
  resume?: string;
  precision?: string;
  cudaGraph?: string;
  freeze?: string;
}): void {
  if (o.worldSize !== 2)
    throw new UserError(`--model-parallel 2 needs exactly 2 ranks: --nproc 2 (this run has ${o.worldSize})`);
  if (o.resume !== undefined)
    throw new UserError(
      '--resume is not supported with --model-parallel yet: start a new run, or continue from the saved weights with --init-from',
    );
  if (o.precision === 'fp16' || o.precision === 'bf16')
    throw new UserError(
      `--model-parallel runs in fp32 (its towers have no autocast yet), got --precision ${o.precision}: give --precision fp32 or leave it out`,
    );
  if (o.cudaGraph === 'on')
    throw new UserError('--cuda-graph on cannot record a model-parallel step (it waits on the other rank)');
  if (o.freeze) throw new UserError('--freeze is not supported with --model-parallel yet');
}

/**
 * The paper's two towers as the trainer's strategy: both ranks read every batch; each trains its tower, exchanging
 * activations and gradients with the other; the run saves the assembled one-process weights. The ranks meet (the
 * rendezvous) only once the run is set up, so a refusal on either needs no peer.
 */
class TowerStrategy implements Strategy {
  readonly worldSize = 2;
  readonly precision = { fixed: 'fp32' as const, reason: 'model-parallel towers run in fp32' };
  #group?: DdpGroup;
  #exchange?: Exchange;

  constructor(
    readonly rank: number,
    private readonly cfg: RunConfig,
    private readonly join: () => DdpGroup,
  ) {}

  describe(): string {
    return MODEL_PARALLEL_LINE;
  }

  /** The rendezvous, then the settings check; whether weights are saved is compared too (assembling is collective). */
  meet(summary: Record<string, unknown>): void {
    this.#group = this.join();
    this.#group.checkSameConfig({ ...summary, save: Boolean(this.cfg.output.save) });
    this.#exchange = processGroupExchange(this.#group.pg);
  }

  anyStop(local: boolean): boolean {
    return this.group().anyStop(local);
  }

  /** This rank's tower, sliced from the one-process model (so both ranks hold halves of the same network). */
  replicate(model: AlexNet): Replica {
    const tower = buildTower(this.rank, model);
    // Dropout draws its masks per rank: from the same seed both towers would drop the same units of their halves.
    manualSeed(this.cfg.runtime.seed + 7919 * (this.rank + 1));
    return towerReplica(tower, [...model.inputShape], () => this.exchange());
  }

  private group(): DdpGroup {
    if (!this.#group) throw new Error('the ranks have not met yet');
    return this.#group;
  }

  private exchange(): Exchange {
    if (!this.#exchange) throw new Error('the ranks have not met yet');
    return this.#exchange;
  }
}

/** A tower as what the trainer trains: its step, its evaluation forward and the assembled weights. */
function towerReplica(tower: Tower, inputShape: number[], exchange: () => Exchange): Replica {
  const parameters = tower.shards.filter((s) => s.param !== undefined).map((s): [string, Tensor] => [s.key, s.param!]);
  // The head: the last layer's keys (FC8: its columns on both ranks, its bias on rank 0).
  const headPrefix = tower.shards[tower.shards.length - 1].key.replace(/\.[^.]+$/, '.');
  return {
    module: tower,
    parameters,
    inputShape,
    headPrefix,
    step: (x, y, sums, optimizer) => towerStep(tower, exchange(), { x, y, sums, optimizer }),
    logits: (x) => towerLogits(tower, exchange(), x),
    weights: () => assembleStateDict(tower, exchange()),
    dispose: () => tower.dispose(),
  };
}

/**
 * One step of the two towers: forward, loss, backward, each rank's update of its half. Both ranks add the same loss
 * and count to their sums: the logits are summed over the ranks.
 */
async function towerStep(
  tower: Tower,
  exchange: Exchange,
  b: { x: Tensor; y: Tensor; sums: StepSums; optimizer: Optimizer },
): Promise<void> {
  const pass = await towerForward(tower, exchange, b.x);
  const loss = F.crossEntropy(pass.logits, b.y);
  try {
    noGrad(() => tidy(() => b.sums.add(loss, pass.logits, b.y)));
    await towerBackward(tower, exchange, pass, loss);
    b.optimizer.step();
    b.optimizer.zeroGrad();
  } finally {
    loss.dispose();
    disposePass(pass);
  }
}
