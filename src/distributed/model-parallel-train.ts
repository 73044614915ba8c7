// `alexnet train --nproc 2 --model-parallel 2`: the paper's two GPUs as two ranks in a whole training run. Both
// ranks read the same batches in the same order (not shards: every tower sees every image) and build the same
// one-process model from the run's seed; each keeps its tower (half the kernels of every layer) and steps its own
// half of the parameters. Rank 0 reports and writes: --metrics, and --save as a WEIGHTS file in the one-process
// layout (both towers reassembled), which `alexnet eval --weights` and `predict` load as a plain alexnet-2012.
import { UserError } from '../errors';
import { Problem } from '../data/image-folder';
import { BatchSource } from '../data/source';
import { AlexNet } from '../models/alexnet';
import { getModel } from '../models/registry';
import { F, StateDict } from '../nn';
import { Optimizer } from '../optim/optimizer';
import { makeSchedule, Schedule } from '../optim/schedules';
import { Progress } from '../persist/checkpoint';
import { ModelRecord, recordMetadata, WEIGHTS_FORMAT } from '../persist/record';
import { saveSafetensors } from '../io/safetensors';
import { describeCpu } from '../runtime/cpu';
import { prepareDevice, prepareModel } from '../runtime/device';
import { Device } from '../tensor/dtype';
import { manualSeed, noGrad, Tensor, tidy } from '../tensor/tensor';
import { RunConfig } from '../train/config';
import { OpenedData, PreparedData, prepareData, problemLogger } from '../train/data';
import { NonFiniteLossError } from '../train/epoch';
import { EvalResult, EvalSums, finishEval } from '../train/evaluate';
import { EpochRecord, Listener, TrainEvent, TrainEvents } from '../train/events';
import { checkpointSize, planRunOutputs, RunOutputs } from '../train/outputs';
import { DataParallel } from '../train/parallel';
import { logReporter, metricsReporter, progressReporter } from '../train/reporters';
import { initFrom } from '../train/reuse';
import { modelRecord, rankSettings, recipeOptimizer } from '../train/run';
import { newRunId } from '../util/outputs';
import { DdpGroup } from './data-parallel';
import { DistEnv } from './env';
import { asRank } from './group';
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

export interface ModelParallelHooks {
  /** Polled between steps: true asks the run to stop, save and return (Ctrl-C sets it); agreed by both ranks. */
  shouldStop?: () => boolean;
  /** Rank 0's log lines (default: console.log). */
  log?: (line: string) => void;
  /** Where rank 0's progress bars go (default: stderr). */
  progressStream?: NodeJS.WriteStream;
}

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
 * before the rendezvous, the same on both ranks.
 */
export async function trainModelParallel(
  cfg: RunConfig,
  env: DistEnv,
  hooks: ModelParallelHooks = {},
  o: { timeoutSeconds?: number; resume?: string } = {},
): Promise<ModelParallelResult> {
  checkRequest(cfg, env, o.resume);
  const events = new TrainEvents();
  const runId = newRunId();
  const unsubscribe = (env.rank === 0 ? reporters(hooks) : []).map((l) => events.on(l));
  try {
    const r = await prepareRank(cfg, env.rank, events, runId);
    try {
      return await asRank(env, { timeoutSeconds: o.timeoutSeconds }, (par) => runRank(r, par, hooks));
    } finally {
      r.tower.dispose();
      r.outputs.release();
      await r.data.close();
    }
  } finally {
    unsubscribe.forEach((u) => u());
  }
}

/** The one-line refusals that need neither data nor a model. */
function checkRequest(cfg: RunConfig, env: DistEnv, resume?: string): void {
  if (env.worldSize !== 2)
    throw new UserError(`--model-parallel 2 needs exactly 2 ranks: --nproc 2 (this run has ${env.worldSize})`);
  if (resume !== undefined)
    throw new UserError(
      '--resume is not supported with --model-parallel yet: start a new run, or continue from the saved weights with --init-from',
    );
  if (cfg.precision === 'fp16' || cfg.precision === 'bf16')
    throw new UserError(
      `--model-parallel runs in fp32 (its towers have no autocast yet), got --precision ${cfg.precision}: give --precision fp32 or leave it out`,
    );
  if (cfg.runtime.cudaGraph === 'on')
    throw new UserError('--cuda-graph on cannot record a model-parallel step (it waits on the other rank)');
  if (cfg.model.freeze) throw new UserError('--freeze is not supported with --model-parallel yet');
}

/** Rank 0's subscribers: the log lines and the progress bar, as a one-process run prints them. */
function reporters(hooks: ModelParallelHooks): Listener[] {
  const log = hooks.log ?? ((l: string) => console.log(l));
  const lines = logReporter(log);
  // The weights file cannot be resumed (yet): say what it is good for instead of "--resume".
  const interrupted: Listener = (e) => {
    if (e.type !== 'interrupted' || !e.saved) return lines(e);
    log(
      `interrupted after step ${e.progress.globalStep}: weights saved to ${e.saved} ` +
        `(eval/predict --weights, or --init-from for a new run)`,
    );
  };
  return [interrupted, progressReporter(hooks.progressStream)];
}

/** One rank's run, set up. */
interface Rank {
  cfg: RunConfig;
  runId: string;
  rank: number;
  device: Device;
  threads: number;
  tower: Tower;
  inputShape: number[];
  optimizer: Optimizer;
  schedule: Schedule;
  record: ModelRecord;
  data: OpenedData;
  outputs: RunOutputs;
  events: TrainEvents;
  history: EpochRecord[];
  progress: Progress;
}

/** Device, data, the full model from the seed (as a one-process run builds it), the tower, outputs, optimiser. */
async function prepareRank(cfg: RunConfig, rank: number, events: TrainEvents, runId: string): Promise<Rank> {
  const warn = (message: string) => events.emit({ type: 'warning', message });
  const dev = prepareDevice(cfg.runtime.device, cfg.runtime.threads);
  if (dev.warning) warn(dev.warning);
  const prepared = prepareData({ ...cfg.data, seed: cfg.runtime.seed });
  const onProblem = problemLogger(warn);
  prepared.problems.forEach(onProblem);
  const { tower, inputShape, bytes } = towerOf(cfg, rank, prepared, dev.device, warn);
  let data: OpenedData | undefined;
  try {
    const optimizer = makeOptimizer(cfg, tower);
    const schedule = makeSchedule(cfg.optimization.schedule);
    data = openData(prepared, inputShape, dev.device, cfg, onProblem);
    const run = { ...cfg, data: { ...cfg.data, transform: data.transform, preprocess: data.preprocess } };
    const record = modelRecord(run, prepared, data, inputShape[0]);
    // Rank 0 writes; its --save and --metrics are checked (and locked) before anything trains.
    const outputs: RunOutputs =
      rank === 0
        ? planRunOutputs(cfg, bytes, { runId, warn: (m) => warn(`warning: ${m}`) })
        : { save: () => undefined, appendMetrics: () => undefined, release: () => undefined };
    if (rank === 0 && cfg.output.metrics)
      events.on(metricsReporter((r) => outputs.appendMetrics(r, warn), runId, cfg.output.metricsEvery));
    const progress = { epoch: 0, batch: 0, globalStep: 0 };
    const base = { cfg: run, runId, rank, device: dev.device, threads: dev.threads, tower, inputShape };
    return { ...base, optimizer, schedule, record, data, outputs, events, history: [], progress };
  } catch (e) {
    tower.dispose();
    await data?.close();
    throw e;
  }
}

/**
 * The tower of `rank`, sliced from the one-process model built from the run's seed exactly as `alexnet train`
 * builds it (so both ranks hold halves of the same network). The full model is let go once sliced.
 */
function towerOf(cfg: RunConfig, rank: number, prepared: PreparedData, device: Device, warn: (m: string) => void) {
  manualSeed(cfg.runtime.seed);
  const options = { ...cfg.model.options, numClasses: prepared.classes.length };
  if (prepared.channels !== undefined) options.inChannels = prepared.channels;
  const model: AlexNet = getModel(cfg.model.name, options);
  try {
    if (cfg.model.initFrom) {
      const r = initFrom(model, cfg.model.initFrom, cfg.model.name);
      const fresh = r.fresh.length ? `; initialised afresh: ${r.fresh.join(', ')}` : '';
      warn(
        `started from the given weights: ${r.copied.length} of ${r.copied.length + r.fresh.length} tensors copied${fresh}`,
      );
    }
    prepareModel(model, device);
    const tower = buildTower(rank, model);
    // Dropout draws its masks per rank: from the same seed both towers would drop the same units of their halves.
    manualSeed(cfg.runtime.seed + 7919 * (rank + 1));
    const bytes = checkpointSize(model, { stateTensors: () => [] } as unknown as Optimizer);
    return { tower, inputShape: [...model.inputShape], bytes };
  } finally {
    model.dispose();
  }
}

/** The same batches on both ranks: the whole training set in the run's shuffled order, the whole test set. */
function openData(
  p: PreparedData,
  inputShape: number[],
  device: Device,
  cfg: RunConfig,
  onProblem: (p: Problem) => void,
) {
  return p.open({
    inputShape,
    device,
    batchSize: cfg.optimization.batchSize,
    evalBatchSize: cfg.optimization.evalBatchSize,
    preprocess: cfg.data.preprocess,
    transform: cfg.data.transform,
    onProblem,
  });
}

/** What the weights file says about the model: as a one-process run records it. */
/** The recipe's optimiser over the tower's parameters; --head-lr covers the tower's part of the last layer. */
function makeOptimizer(cfg: RunConfig, tower: Tower): Optimizer {
  const owned = tower.shards.filter((s) => s.param !== undefined).map((s): [string, Tensor] => [s.key, s.param!]);
  // The head: the last layer's keys (FC8: its columns on both ranks, its bias on rank 0).
  const last = tower.shards[tower.shards.length - 1].key.replace(/\.[^.]+$/, '.');
  return recipeOptimizer(cfg, owned, last);
}

/** Joined: check both ranks run the same thing, then train. */
async function runRank(r: Rank, par: DataParallel, hooks: ModelParallelHooks): Promise<ModelParallelResult> {
  if (!(par instanceof DdpGroup)) throw new Error('model parallelism needs a c10d process group');
  par.checkSameConfig(sameSettings(r.cfg));
  const exchange = processGroupExchange(par.pg);
  r.events.emit(startEvent(r));
  const shouldStop = () => par.anyStop(hooks.shouldStop?.() ?? false);
  return loop(r, exchange, shouldStop);
}

/** What both ranks must agree on; also whether weights are saved (assembling them is a collective). */
function sameSettings(cfg: RunConfig): Record<string, unknown> {
  return { ...rankSettings(cfg), save: Boolean(cfg.output.save) };
}

function startEvent(r: Rank): TrainEvent {
  const { cfg } = r;
  return {
    type: 'start',
    runId: r.runId,
    model: cfg.model.name,
    dataset: r.record.dataset ?? cfg.data.dataset,
    trainSize: r.data.train.size,
    testSize: r.data.test.size,
    classes: r.record.classes.length,
    input: r.inputShape,
    device: r.device,
    threads: r.threads,
    cpu: describeCpu(),
    precision: 'fp32',
    precisionReason: cfg.precision === 'auto' ? 'model-parallel towers run in fp32' : undefined,
    headLr: cfg.optimization.headLr,
    optimizer: cfg.optimization.optimizer,
    lr: r.optimizer.lr,
    batchSize: cfg.optimization.batchSize,
    epochs: cfg.optimization.epochs,
    recipe: cfg.recipe,
    parallel: MODEL_PARALLEL_LINE,
  };
}

/** Epochs: train, evaluate, the schedule, the weights; a stop or the step budget ends it early (saving first). */
async function loop(r: Rank, exchange: Exchange, shouldStop: () => boolean): Promise<ModelParallelResult> {
  const o = r.cfg.optimization;
  const runStart = Date.now();
  let stopped: ModelParallelResult['stopped'] = 'completed';
  while (r.progress.epoch < o.epochs && stopped === 'completed') {
    const e = await trainEpoch(r, exchange, shouldStop);
    r.progress = e.progress;
    stopped = e.stopped;
    if (stopped === 'interrupted') {
      await saveWeights(r, exchange);
      r.events.emit({ type: 'interrupted', progress: r.progress, saved: r.outputs.saved });
      break;
    }
    const ev = await evaluateTowers(r, exchange);
    r.events.emit({ type: 'evaluation', epoch: r.progress.epoch, result: ev });
    if (e.progress.batch === r.data.train.numBatches) finishEpoch(r, e, ev, (Date.now() - runStart) / 1000);
    else {
      const batches = r.data.train.numBatches;
      r.events.emit({ type: 'stopped', progress: r.progress, batches, train: e.train, eval: ev });
    }
    await saveWeights(r, exchange);
  }
  return { stopped, globalStep: r.progress.globalStep, history: r.history };
}

interface EpochResult {
  progress: Progress;
  stopped: ModelParallelResult['stopped'];
  train: { loss: number; acc: number };
  images: number;
  seconds: number;
  waited: number;
}

/** One epoch (or what the step budget or a stop leaves of it), both ranks on the same batches. */
async function trainEpoch(r: Rank, exchange: Exchange, shouldStop: () => boolean): Promise<EpochResult> {
  const { epoch } = r.progress;
  const source = r.data.train;
  const s = { loss: 0, correct: 0, seen: 0, waited: 0, lastEmit: 0, started: Date.now() };
  let progress = r.progress;
  let stopped: EpochResult['stopped'] = 'completed';
  r.events.emit({
    type: 'epoch-start',
    epoch,
    epochs: r.cfg.optimization.epochs,
    batches: source.numBatches,
    startBatch: progress.batch,
  });
  r.tower.train();
  const batches = source.batches(epoch, progress.batch);
  try {
    for (let t0 = Date.now(); ; t0 = Date.now()) {
      const next = await batches.next();
      s.waited += (Date.now() - t0) / 1000;
      if (next.done) break;
      const b = next.value;
      await new Promise<void>((res) => setImmediate(res)); // let Ctrl-C's handler run
      const stop = shouldStop(); // collective: both ranks stop at the same step
      try {
        if (!stop) addStep(s, await towerStep(r, exchange, b.x, b.y), b.y.size(0));
      } finally {
        b.x.dispose();
        b.y.dispose();
      }
      if (stop) {
        stopped = 'interrupted';
        break;
      }
      progress = { epoch, batch: b.index + 1, globalStep: progress.globalStep + 1 };
      checkFinite(s, progress);
      emitStep(r, s, progress, source);
      if (r.cfg.optimization.maxSteps && progress.globalStep >= r.cfg.optimization.maxSteps) {
        stopped = 'max-steps';
        break;
      }
    }
  } finally {
    await batches.return(undefined);
  }
  if (stopped === 'completed') progress = { ...progress, batch: source.numBatches };
  const train = s.seen ? { loss: s.loss / s.seen, acc: s.correct / s.seen } : { loss: NaN, acc: NaN };
  return { progress, stopped, train, images: s.seen, seconds: (Date.now() - s.started) / 1000, waited: s.waited };
}

type Sums = { loss: number; correct: number; seen: number; lastEmit: number; started: number };

function addStep(s: Sums, step: { loss: number; correct: number }, n: number): void {
  s.loss += step.loss * n;
  s.correct += step.correct;
  s.seen += n;
}

function checkFinite(s: Sums, p: Progress): void {
  if (Number.isFinite(s.loss)) return;
  throw new NonFiniteLossError(
    `the training loss became ${s.loss} in epoch ${p.epoch + 1} (step ${p.globalStep}): the learning rate is probably too high`,
  );
}

/** The running means a few times a second, at the epoch's last batch and every --metrics-every steps. */
function emitStep(r: Rank, s: Sums, p: Progress, source: BatchSource): void {
  const now = Date.now();
  const every = r.cfg.output.metrics ? r.cfg.output.metricsEvery : 0;
  if (!(now - s.lastEmit > 250 || p.batch === source.numBatches || (every > 0 && p.globalStep % every === 0))) return;
  s.lastEmit = now;
  r.events.emit({
    type: 'step',
    epoch: p.epoch,
    batch: p.batch,
    batches: source.numBatches,
    globalStep: p.globalStep,
    loss: s.loss / s.seen,
    acc: s.correct / s.seen,
    lr: r.optimizer.lr,
    imagesPerSec: s.seen / Math.max(1e-9, (now - s.started) / 1000),
  });
}

/**
 * One step of the two towers (towerTrainStep's forward, loss, backward and update, plus the batch's correct
 * predictions for the epoch line). Both ranks get the same loss and count: the logits are summed over the ranks.
 */
async function towerStep(
  r: Rank,
  exchange: Exchange,
  x: Tensor,
  y: Tensor,
): Promise<{ loss: number; correct: number }> {
  const pass = await towerForward(r.tower, exchange, x);
  const loss = F.crossEntropy(pass.logits, y);
  try {
    const correct = noGrad(() => tidy(() => pass.logits.argmax(1).eq(y).sum().item()));
    await towerBackward(r.tower, exchange, pass, loss);
    r.optimizer.step();
    r.optimizer.zeroGrad();
    return { loss: loss.item(), correct };
  } finally {
    loss.dispose();
    disposePass(pass);
  }
}

/** Loss, top-1, top-5 and the confusion matrix of the two-tower model on the whole test set (both ranks). */
async function evaluateTowers(r: Rank, exchange: Exchange): Promise<EvalResult> {
  const source = r.data.test;
  const c = source.classes.length;
  const k = Math.min(5, c);
  const s: EvalSums = { n: 0, lossSum: 0, top5: 0, confusion: new Array<number>(c * c).fill(0), seconds: 0 };
  const started = Date.now();
  r.tower.eval();
  try {
    for await (const b of source.batches(0)) {
      try {
        const logits = await towerLogits(r.tower, exchange, b.x);
        noGrad(() => tidy(() => addEval(s, logits, b.y, k, c)));
        logits.dispose();
      } finally {
        b.x.dispose();
        b.y.dispose();
      }
      r.events.emit({ type: 'evaluating', done: b.index + 1, total: source.numBatches });
    }
  } finally {
    r.tower.train();
  }
  return finishEval({ ...s, seconds: (Date.now() - started) / 1000 }, source.classes);
}

function addEval(s: EvalSums, logits: Tensor, y: Tensor, k: number, c: number): void {
  s.lossSum += F.crossEntropy(logits, y, { reduction: 'sum' }).item();
  const topk = logits.topk(k, 1).indices;
  s.top5 += topk.eq(y.unsqueeze(1)).sum().item();
  const pred = topk.narrow(1, 0, 1).squeeze(1).toArray();
  const truth = y.toArray();
  truth.forEach((t, i) => s.confusion[t * c + pred[i]]++);
  s.n += truth.length;
}

/** After a complete epoch: the schedule's step, the history record, the event (as the one-process trainer). */
function finishEpoch(r: Rank, e: EpochResult, ev: EvalResult, elapsed: number): void {
  const lr = r.optimizer.lr;
  r.optimizer.lr = r.schedule.epochEnd(lr, 1 - ev.top1);
  const record: EpochRecord = {
    epoch: r.progress.epoch + 1,
    train_loss: e.train.loss,
    train_acc: e.train.acc,
    test_loss: ev.loss,
    test_acc: ev.top1,
    test_top5: ev.top5,
    lr,
    images_per_sec: e.images / e.seconds,
    epoch_seconds: e.seconds,
    elapsed_seconds: elapsed,
    skipped: r.data.train.skipped,
    data_wait_seconds: e.waited,
  };
  r.history.push(record);
  r.progress = { epoch: r.progress.epoch + 1, batch: 0, globalStep: r.progress.globalStep };
  r.events.emit({ type: 'epoch', record, lrAfter: r.optimizer.lr, epochs: r.cfg.optimization.epochs });
}

/** Both ranks reassemble the one-process state dict (collective); rank 0 writes it as a weights file. */
async function saveWeights(r: Rank, exchange: Exchange): Promise<void> {
  if (!r.cfg.output.save) return;
  const sd: StateDict = await assembleStateDict(r.tower, exchange);
  try {
    const warn = (message: string) => r.events.emit({ type: 'warning', message });
    const meta = recordMetadata(r.record, WEIGHTS_FORMAT);
    const file = r.outputs.save((f) => saveSafetensors(f, sd, meta, '--save'), warn);
    if (file) r.events.emit({ type: 'checkpoint', file, progress: r.progress });
  } finally {
    for (const t of sd.values()) t.dispose();
  }
}
