// A training run: `train(config)` starts one, `resume(file, overrides)` continues a checkpoint exactly where it
// stopped. Both set the run up (device, data, model, optimiser), then alternate `trainOneEpoch`, evaluation, the
// learning-rate schedule and a checkpoint, saying what happens through events that reporters subscribe to.
import { UserError } from '../errors';
import { checkBatchFits } from '../models/budget';
import { getModel } from '../models/registry';
import { Module } from '../nn/module';
import { Adam, Optimizer, SGD, TwoGroups } from '../optim/optimizer';
import { makeSchedule, Schedule } from '../optim/schedules';
import { CheckpointData, loadCheckpoint, Progress, saveCheckpoint, tensorsWithPrefix } from '../persist/checkpoint';
import { ModelRecord } from '../persist/record';
import { resumePosition } from '../data/sampler';
import { prepareDevice, prepareModel } from '../runtime/device';
import { describeCpu } from '../runtime/cpu';
import { autoPrecisionReason, GradScaler, resolvePrecision } from '../runtime/precision';
import { getRngState, manualSeed, setRngState, Tensor } from '../tensor/tensor';
import { AlexNet } from '../models/alexnet';
import { Device } from '../tensor/dtype';
import { applyOverrides, checkRunConfig, CudaGraphMode, ResumeOverrides, RunConfig, upgradeConfig } from './config';
import { OpenedData, PreparedData, prepareData, problemLogger, ShardSamplers } from './data';
import { EpochOutcome, trainOneEpoch } from './epoch';
import { EvalResult, evaluateSums, finishEval } from './evaluate';
import { DataParallel } from './parallel';
import { EpochRecord, TrainEvent, TrainEvents } from './events';
import { logReporter, metricsReporter, progressReporter } from './reporters';
import { cudaGraphObstacle, GraphedStep } from './graph';
import { freeze, initFrom, InitReport } from './reuse';
import { StepContext } from './step';
import { checkpointSize, planRunOutputs, RunOutputs } from './outputs';
import { newRunId } from '../util/outputs';

export interface TrainHooks {
  /** Log lines (default: console.log). */
  log?: (line: string) => void;
  /** Where progress bars go (default: stderr). */
  progressStream?: NodeJS.WriteStream;
  /** Polled between steps: true asks the run to stop, save and return (Ctrl-C sets it). */
  shouldStop?: () => boolean;
  /** More subscribers to the run's events. */
  events?: TrainEvents;
  /**
   * A data-parallel run's process group (src/distributed): each process trains on its shard, gradients are
   * averaged, and only rank 0 reports and writes files.
   */
  parallel?: DataParallel;
}

export interface TrainResult {
  model: AlexNet;
  record: ModelRecord;
  history: EpochRecord[];
  lastEval?: EvalResult;
  stopped: 'completed' | 'max-steps' | 'interrupted';
  globalStep: number;
  device: Device;
  runId: string;
}

/** Trains from scratch with `config` (see `buildRunConfig` for flat options over a recipe). */
export async function train(config: RunConfig, hooks: TrainHooks = {}): Promise<TrainResult> {
  const cfg = checkRunConfig(config, 'the run configuration');
  return run({ cfg, runId: newRunId() }, hooks);
}

/** Continues the checkpoint `file` where it stopped, with its own settings except for `overrides`. */
export async function resume(
  file: string,
  overrides: ResumeOverrides = {},
  hooks: TrainHooks = {},
): Promise<TrainResult> {
  const ckpt = loadCheckpoint(file);
  try {
    const cfg = applyOverrides(checkRunConfig(upgradeConfig(ckpt.config), file), overrides, file);
    const done = ckpt.progress;
    if (cfg.optimization.epochs <= done.epoch) {
      throw new UserError(
        `${file} has done ${done.epoch} epochs and the run asks for ${cfg.optimization.epochs}: give --epochs above ${done.epoch} to train further`,
      );
    }
    if (cfg.optimization.maxSteps !== undefined && cfg.optimization.maxSteps <= done.globalStep) {
      throw new UserError(
        `--max-steps ${cfg.optimization.maxSteps} is not above the ${done.globalStep} steps ${file} has done`,
      );
    }
    return await run({ cfg, runId: ckpt.runId ?? 'resumed', ckpt, resumeFile: file, lrOverride: overrides.lr }, hooks);
  } finally {
    for (const t of ckpt.tensors.values()) t.dispose();
  }
}

interface Session {
  cfg: RunConfig;
  runId: string;
  ckpt?: CheckpointData;
  resumeFile?: string;
  /** An --lr given on resume: it replaces the checkpoint's current (scheduled) rate. */
  lrOverride?: number;
}

/** Everything a run trains with, once it is set up. */
interface Trainer {
  cfg: RunConfig;
  frozen: Module[];
  runId: string;
  ctx: StepContext;
  graphed?: GraphedStep;
  schedule: Schedule;
  record: ModelRecord;
  data: OpenedData;
  outputs: RunOutputs;
  events: TrainEvents;
  history: EpochRecord[];
  progress: Progress;
  par?: DataParallel;
}

async function run(s: Session, hooks: TrainHooks): Promise<TrainResult> {
  const events = hooks.events ?? new TrainEvents();
  const warn = (message: string) => events.emit({ type: 'warning', message });
  const par = hooks.parallel;
  // In a data-parallel run only rank 0 speaks; the others train quietly (their errors still end the launcher).
  const reporters =
    par && par.rank !== 0
      ? []
      : [logReporter(hooks.log ?? ((l) => console.log(l))), progressReporter(hooks.progressStream)];
  const unsubscribe = reporters.map((l) => events.on(l));
  try {
    // The world size goes into the checkpoint: a resumed run with another one knows where the epoch stood.
    s = { ...s, cfg: { ...s.cfg, runtime: { ...s.cfg.runtime, worldSize: par?.worldSize } } };
    par?.checkSameConfig(configSummary(s));
    const dev = prepareDevice(s.cfg.runtime.device, s.cfg.runtime.threads);
    if (dev.warning) warn(dev.warning);
    const prepared = prepareData({ ...s.cfg.data, seed: s.cfg.runtime.seed });
    const onProblem = problemLogger(warn);
    prepared.problems.forEach(onProblem);
    manualSeed(s.cfg.runtime.seed);
    const model = buildModel(s.cfg, prepared);
    // A resumed run's weights come from its checkpoint: --init-from only starts a new one.
    if (s.cfg.model.initFrom && !s.resumeFile)
      warn(initMessage(initFrom(model, s.cfg.model.initFrom, s.cfg.model.name)));
    const frozen = s.cfg.model.freeze ? freeze(model, s.cfg.model.freeze) : [];
    prepareModel(model, dev.device);
    checkBatches(s.cfg, model, dev.device, warn);
    const optimizer = makeOptimizer(s.cfg, model);
    // Every output is checked (and locked) before the first step: a run never trains and then fails to save.
    // The whole data set's sizes (a data-parallel run's sources hold one rank's shard).
    const totals = { train: 0, test: 0 };
    const outputs =
      par && par.rank !== 0
        ? quietOutputs(s.resumeFile)
        : planRunOutputs(s.cfg, checkpointSize(model, optimizer), {
            runId: s.runId,
            resuming: s.resumeFile,
            warn: (m) => warn(`warning: ${m}`),
          });
    try {
      const d = s.cfg.data;
      const data = prepared.open({
        inputShape: model.inputShape,
        device: dev.device,
        batchSize: s.cfg.optimization.batchSize,
        evalBatchSize: s.cfg.optimization.evalBatchSize,
        preprocess: d.preprocess,
        transform: d.transform,
        onProblem,
        samplers: par && shardSamplers(par, totals),
      });
      try {
        // The resolved transform is part of the run's settings from now on (a resumed run needs no stats file).
        const cfg = { ...s.cfg, data: { ...d, transform: data.transform, preprocess: data.preprocess } };
        const parts = { model, frozen, optimizer, prepared, data, device: dev.device, events, outputs, par };
        const t = setUp({ ...s, cfg }, parts);
        events.emit(startEvent(t, s, dev.threads, par ? totals : undefined));
        return await loop(t, hooks, dev.device);
      } finally {
        await data.close();
      }
    } finally {
      outputs.release();
    }
  } finally {
    unsubscribe.forEach((u) => u());
  }
}

/** Each rank's shards of the training and test sets; records the whole sets' sizes in `totals`. */
function shardSamplers(par: DataParallel, totals: { train: number; test: number }): ShardSamplers {
  return {
    train: (n, seed) => ((totals.train = n), par.trainSampler(n, seed)),
    test: (n) => ((totals.test = n), par.evalSampler(n)),
  };
}

function startEvent(t: Trainer, s: Session, threads: number, totals?: { train: number; test: number }): TrainEvent {
  const { cfg, data, record, ctx } = t;
  return {
    type: 'start',
    runId: t.runId,
    model: cfg.model.name,
    dataset: record.dataset ?? cfg.data.dataset,
    trainSize: totals?.train ?? data.train.size,
    testSize: totals?.test ?? data.test.size,
    classes: record.classes.length,
    input: ctx.model.inputShape,
    device: ctx.device,
    threads,
    cpu: describeCpu(),
    precision: ctx.precision,
    precisionReason: autoPrecisionReason(cfg.precision, ctx.device),
    cudaGraph: Boolean(t.graphed),
    headLr: cfg.optimization.headLr,
    optimizer: cfg.optimization.optimizer,
    lr: ctx.optimizer.lr,
    batchSize: cfg.optimization.batchSize,
    epochs: cfg.optimization.epochs,
    recipe: cfg.recipe,
    resumed: s.resumeFile ? { file: s.resumeFile, progress: t.progress } : undefined,
    parallel: t.par?.describe(cfg.optimization.batchSize, ctx.optimizer.lr),
  };
}

/**
 * What every rank of a distributed run must agree on: the model, the data and the recipe (threads and output paths
 * may differ). Compared through the store before anything trains (DataParallel.checkSameConfig).
 */
export function rankSettings(cfg: RunConfig): Record<string, unknown> {
  const { model, data, optimization, precision, runtime } = cfg;
  return {
    model: model.name,
    'model options': model.options,
    'init from': model.initFrom,
    freeze: model.freeze,
    'data set': data.dataset,
    'train limit': data.trainLimit,
    'test limit': data.testLimit,
    folder: data.folder && { ...data.folder, workers: undefined, prefetch: undefined },
    optimisation: optimization,
    precision,
    seed: runtime.seed,
    device: runtime.device,
  };
}

/** A data-parallel run's settings, and where a resumed one stands. */
function configSummary(s: Session): Record<string, unknown> {
  return { ...rankSettings(s.cfg), resume: s.ckpt ? { run: s.ckpt.runId, progress: s.ckpt.progress } : undefined };
}

/** The outputs of a rank other than 0: it writes nothing (rank 0 saves the checkpoint and the metrics). */
function quietOutputs(resuming?: string): RunOutputs {
  return { saved: resuming, save: () => undefined, appendMetrics: () => undefined, release: () => undefined };
}

/** Refuses batch sizes whose activations cannot fit in memory before anything is allocated for them. */
function checkBatches(cfg: RunConfig, model: AlexNet, device: Device, warn: (m: string) => void): void {
  const bytesPerElement = resolvePrecision(cfg.precision, device) === 'fp32' ? 4 : 2;
  const o = cfg.optimization;
  for (const [mode, batch, option] of [
    ['train', o.batchSize, '--batch-size'],
    ['eval', o.evalBatchSize, '--eval-batch-size'],
  ] as const) {
    const fit = checkBatchFits(model, batch, { mode, device, bytesPerElement, option });
    if (fit.warning) warn(`warning: ${fit.warning}`);
  }
}

/** The model for the data: its classes, and its input channels following the data (1 for Fashion-MNIST/MNIST). */
function buildModel(cfg: RunConfig, prepared: PreparedData): AlexNet {
  const options = { ...cfg.model.options, numClasses: prepared.classes.length };
  if (prepared.channels !== undefined) options.inChannels = prepared.channels;
  return getModel(cfg.model.name, options);
}

/** Training mode, except for the layers --freeze holds. */
function trainMode(t: Trainer): void {
  t.ctx.model.train();
  for (const layer of t.frozen) layer.eval();
}

function initMessage(r: InitReport): string {
  const fresh = r.fresh.length ? `; initialised afresh: ${r.fresh.join(', ')}` : '';
  return `started from the given weights: ${r.copied.length} of ${r.copied.length + r.fresh.length} tensors copied${fresh}`;
}

function makeOptimizer(cfg: RunConfig, model: AlexNet): Optimizer {
  const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad);
  // The head: the classifier's last layer (the one --init-from makes afresh for a new number of classes).
  const layers = model.layers();
  return recipeOptimizer(cfg, trainable, `${layers[layers.length - 1][0]}.`);
}

/**
 * The recipe's optimiser (SGD in PyTorch's or the paper's form, or Adam) over `named` parameters; with --head-lr,
 * those whose names start with `headPrefix` learn at that rate in a group of their own.
 */
export function recipeOptimizer(cfg: RunConfig, named: [string, Tensor][], headPrefix: string): Optimizer {
  const o = cfg.optimization;
  const make = (params: Tensor[], lr: number): Optimizer =>
    o.optimizer === 'adam'
      ? new Adam(params, { lr, weightDecay: o.weightDecay })
      : new SGD(params, {
          lr,
          momentum: o.momentum,
          weightDecay: o.weightDecay,
          form: o.optimizer === 'sgd-paper' ? 'paper' : 'pytorch',
        });
  if (o.headLr === undefined)
    return make(
      named.map(([, p]) => p),
      o.lr,
    );
  const isHead = ([n]: [string, Tensor]) => n.startsWith(headPrefix);
  const body = named.filter((p) => !isHead(p)).map(([, p]) => p);
  const headParams = named.filter(isHead).map(([, p]) => p);
  return body.length ? new TwoGroups(make(body, o.lr), make(headParams, o.headLr)) : make(headParams, o.headLr);
}

/** What a saved model keeps: the variant and its options, classes, preprocessing, data set and split. */
export function modelRecord(cfg: RunConfig, prepared: PreparedData, data: OpenedData, inChannels: number): ModelRecord {
  return {
    model: cfg.model.name,
    modelOptions: { ...cfg.model.options, numClasses: prepared.classes.length, inChannels },
    classes: prepared.classes,
    classIds: prepared.classIds,
    preprocess: data.preprocess,
    sourceShape: data.sourceShape,
    dataset: prepared.name,
    transform: data.transform,
    split: cfg.data.folder ? { valSplit: cfg.data.folder.valSplit, seed: cfg.runtime.seed } : undefined,
  };
}

interface Parts {
  model: AlexNet;
  /** Layers --freeze holds: no gradients, and evaluation mode while the rest trains. */
  frozen: Module[];
  optimizer: Optimizer;
  prepared: PreparedData;
  data: OpenedData;
  device: Device;
  events: TrainEvents;
  outputs: RunOutputs;
  par?: DataParallel;
}

/** The CUDA graph for `mode` ('on' refuses a run whose step cannot be recorded). */
function graphedStep(ctx: StepContext, mode: CudaGraphMode): GraphedStep | undefined {
  if (mode === 'off') return undefined;
  const obstacle = cudaGraphObstacle(ctx);
  if (obstacle) throw new UserError(`--cuda-graph on, but ${obstacle}`);
  return new GraphedStep(ctx);
}

function setUp(s: Session, p: Parts): Trainer {
  const { cfg } = s;
  const { model, optimizer, prepared, data, device, events, outputs } = p;
  const precision = resolvePrecision(cfg.precision, device);
  const ctx: StepContext = {
    model,
    optimizer,
    device,
    precision,
    scaler: precision === 'fp16' ? new GradScaler() : undefined,
    ...(p.par && parallelHooks(p.par, model)),
  };
  const graphed = graphedStep(ctx, cfg.runtime.cudaGraph ?? 'off');
  const schedule = makeSchedule(cfg.optimization.schedule);
  const record = modelRecord(cfg, prepared, data, model.inputShape[0]);
  const t: Trainer = {
    graphed,
    frozen: p.frozen,
    cfg,
    runId: s.runId,
    ctx,
    schedule,
    record,
    data,
    outputs,
    events,
    history: [],
    progress: { epoch: 0, batch: 0, globalStep: 0 },
    par: p.par,
  };
  if (s.ckpt) restore(t, s.ckpt, s.lrOverride);
  if (s.ckpt) t.progress = carryPosition(t.progress, s.ckpt, p.par?.worldSize ?? 1, cfg.optimization.batchSize, events);
  // DDP's start: every rank begins from rank 0's parameters and buffers.
  p.par?.syncModel(model);
  const warn = (message: string) => events.emit({ type: 'warning', message });
  if (cfg.output.metrics)
    events.on(metricsReporter((r) => outputs.appendMetrics(r, warn), s.runId, cfg.output.metricsEvery));
  return t;
}

/** Model, optimiser, schedule, loss scale, RNG, history and progress as the checkpoint left them. */
function restore(t: Trainer, c: CheckpointData, lrOverride?: number): void {
  t.ctx.model.loadStateDict(tensorsWithPrefix(c.tensors, 'model.'));
  t.ctx.optimizer.loadState(tensorsWithPrefix(c.tensors, 'optim.'), c.optimizer.scalars);
  if (lrOverride !== undefined) t.ctx.optimizer.lr = lrOverride;
  t.schedule.load(c.optimizer.schedule);
  t.ctx.scaler?.load(c.optimizer.scaler);
  setRngState(c.tensors.get('rng.cpu')!);
  t.history = c.history as EpochRecord[];
  t.progress = c.progress;
}

function save(t: Trainer): void {
  const o = t.ctx.optimizer;
  const rng = getRngState();
  try {
    const file = t.outputs.save(
      (f) =>
        saveCheckpoint(f, t.ctx.model, {
          record: t.record,
          progress: t.progress,
          config: t.cfg as unknown as Record<string, unknown>,
          history: t.history,
          runId: t.runId,
          optimizer: {
            type: t.cfg.optimization.optimizer,
            scalars: o.stateScalars(),
            schedule: t.schedule.state(),
            ...(t.ctx.scaler ? { scaler: t.ctx.scaler.state() } : {}),
          },
          optimizerTensors: o.stateTensors(),
          rng,
        }),
      (message) => t.events.emit({ type: 'warning', message }),
    );
    if (file) t.events.emit({ type: 'checkpoint', file, progress: t.progress });
  } finally {
    rng.dispose();
  }
}

/** The step's data-parallel hooks: BatchNorm buffers from rank 0 before each forward, buckets armed for backward. */
function parallelHooks(par: DataParallel, model: AlexNet): Pick<StepContext, 'beforeForward' | 'beforeBackward'> {
  return { beforeForward: () => par.beforeForward(model), beforeBackward: () => par.beforeBackward(model) };
}

/**
 * Where a resumed data-parallel run starts in its epoch. With the world size the checkpoint was written with, the
 * same batch (an exact continuation); with another one, the same number of samples into the epoch's order,
 * rounded down to a whole batch of the new world size (the shards interleave the one shuffled order).
 */
function carryPosition(p: Progress, c: CheckpointData, world: number, batch: number, events: TrainEvents): Progress {
  const before = (c.config as { runtime?: { worldSize?: number } }).runtime?.worldSize ?? 1;
  if (before === world || p.batch === 0) return p;
  // The sampler's rule; a checkpoint written mid-epoch has not consumed the whole order, so no total caps it here.
  const old = { epoch: p.epoch, batch: p.batch, perRankBatch: batch, worldSize: before, total: Infinity };
  const { batch: next, repeated: lost } = resumePosition(old, { perRankBatch: batch, worldSize: world });
  events.emit({
    type: 'warning',
    message:
      `the checkpoint was written by ${before} process${before === 1 ? '' : 'es'}, this run has ${world}: ` +
      `epoch ${p.epoch + 1} continues after ${next * batch * world} of its samples` +
      (lost ? ` (${lost} samples into a batch of ${batch * world} are seen again)` : ' (the same position)'),
  });
  return { ...p, batch: next };
}

/** Evaluation of the test set: in a data-parallel run each rank evaluates its shard and the sums are merged. */
async function evaluateRun(t: Trainer): Promise<EvalResult> {
  const onBatch = (done: number, total: number) => t.events.emit({ type: 'evaluating', done, total });
  const sums = await evaluateSums(t.ctx.model, t.data.test, { precision: t.ctx.precision, onBatch });
  return finishEval(t.par ? t.par.reduceEval(sums) : sums, t.data.test.classes);
}

/** An epoch's training means and image count over every rank (one process: as they are). */
function reduceTrain(t: Trainer, r: EpochOutcome): EpochOutcome {
  if (!t.par) return r;
  const [loss, correct, images] = t.par.sum([r.train.loss * r.images, r.train.acc * r.images, r.images]);
  return { ...r, images, train: { loss: loss / images, acc: correct / images } };
}

function nonFiniteHint(t: Trainer): () => string {
  return () => {
    const pca = t.cfg.data.folder?.pcaStd;
    const cause =
      pca !== undefined && pca > 1
        ? `--pca-std ${pca} adds colour noise far above the paper's 0.1 (the inputs themselves are extreme)`
        : `the learning rate (${t.ctx.optimizer.lr}) is probably too high`;
    const file = t.outputs.saved;
    return `${cause}. ` + (file ? `The last good checkpoint is ${file}.` : 'No checkpoint was written.');
  };
}

/** Emits the run's time estimate once, from the duration of its fifth step. */
function estimator(t: Trainer): (perStep: number, step: number) => void {
  const o = t.cfg.optimization;
  let done = t.progress.globalStep > 0;
  return (perStep, step) => {
    if (done || step < 4) return;
    done = true;
    const total = t.data.train.numBatches * o.epochs;
    const steps = o.maxSteps ? Math.min(o.maxSteps, total) : total;
    const evals = o.maxSteps ? 1 : o.epochs;
    const seconds = perStep * (steps + (evals * t.data.test.size) / o.batchSize / 3);
    t.events.emit({ type: 'estimate', seconds, steps, secondsPerStep: perStep });
  };
}

/** After a complete epoch: the schedule's step, the history record, the event. */
function finishEpoch(t: Trainer, r: EpochOutcome, ev: EvalResult, elapsed: number): void {
  const lr = t.ctx.optimizer.lr;
  t.ctx.optimizer.lr = t.schedule.epochEnd(lr, 1 - ev.top1);
  const record: EpochRecord = {
    epoch: t.progress.epoch + 1,
    train_loss: r.train.loss,
    train_acc: r.train.acc,
    test_loss: ev.loss,
    test_acc: ev.top1,
    test_top5: ev.top5,
    lr,
    images_per_sec: r.images / r.seconds,
    epoch_seconds: r.seconds,
    elapsed_seconds: elapsed,
    skipped: t.data.train.skipped,
    data_wait_seconds: r.waited,
  };
  t.history.push(record);
  t.progress = { epoch: t.progress.epoch + 1, batch: 0, globalStep: t.progress.globalStep };
  t.events.emit({ type: 'epoch', record, lrAfter: t.ctx.optimizer.lr, epochs: t.cfg.optimization.epochs });
}

async function loop(t: Trainer, hooks: TrainHooks, device: Device): Promise<TrainResult> {
  const { cfg, data, events } = t;
  const o = cfg.optimization;
  const runStart = Date.now();
  const elapsedBefore = t.history.length ? t.history[t.history.length - 1].elapsed_seconds : 0;
  let stopped: TrainResult['stopped'] = 'completed';
  let lastEval: EvalResult | undefined;
  const onStepTime = estimator(t);
  const par = t.par;
  // Ranks must stop at the same step: a stop asked of any of them (Ctrl-C reaches each at its own step) is shared.
  const shouldStop = par ? () => par.anyStop(hooks.shouldStop?.() ?? false) : hooks.shouldStop;
  trainMode(t);
  while (t.progress.epoch < o.epochs && stopped === 'completed') {
    const r0 = await trainOneEpoch({
      ctx: t.ctx,
      graphed: t.graphed,
      source: data.train,
      events,
      progress: t.progress,
      epochs: o.epochs,
      maxSteps: o.maxSteps,
      statsEvery: cfg.output.metrics ? cfg.output.metricsEvery : 0,
      shouldStop,
      nonFiniteHint: nonFiniteHint(t),
      onStepTime,
    });
    const r = reduceTrain(t, r0);
    t.progress = r.progress;
    stopped = r.stopped;
    if (stopped === 'interrupted') {
      save(t);
      events.emit({ type: 'interrupted', progress: t.progress, saved: t.outputs.saved });
      break;
    }
    lastEval = await evaluateRun(t);
    events.emit({ type: 'evaluation', epoch: t.progress.epoch, result: lastEval });
    trainMode(t);
    if (r.progress.batch === data.train.numBatches)
      finishEpoch(t, r, lastEval, elapsedBefore + (Date.now() - runStart) / 1000);
    else
      events.emit({
        type: 'stopped',
        progress: t.progress,
        batches: data.train.numBatches,
        train: r.train,
        eval: lastEval,
      });
    save(t);
  }
  t.graphed?.dispose();
  const { model } = t.ctx;
  return {
    model,
    record: t.record,
    history: t.history,
    lastEval,
    stopped,
    globalStep: t.progress.globalStep,
    device,
    runId: t.runId,
  };
}
