// A training run: `train(config)` starts one, `resume(file, overrides)` continues a checkpoint exactly where it
// stopped. Both set the run up (device, data, model, optimiser, outputs), then hand it to the loop (train/loop.ts):
// `trainOneEpoch`, evaluation, the learning-rate schedule and a save, saying what happens through events that
// reporters subscribe to. A strategy (train/parallel.ts) spreads the run over processes; one process needs none.
import { checkBatchFits } from '../models/budget';
import { getModel } from '../models/registry';
import { Module } from '../nn/module';
import { Optimizer } from '../optim/optimizer';
import { makeSchedule } from '../optim/schedules';
import { CheckpointData, loadCheckpoint, Progress, tensorsWithPrefix } from '../persist/checkpoint';
import { ModelRecord, modelRecord } from '../persist/record';
import { Problem } from '../data/image-folder';
import { resumePosition } from '../data/sampler';
import { prepareDevice, prepareModel } from '../runtime/device';
import { describeCpu } from '../runtime/cpu';
import { autoPrecisionReason, GradScaler, Precision, resolvePrecision } from '../runtime/precision';
import { manualSeed, setRngState } from '../tensor/tensor';
import { AlexNet } from '../models/alexnet';
import { Device } from '../tensor/dtype';
import {
  applyOverrides,
  checkRunConfig,
  CudaGraphMode,
  OptionError,
  ResumeOverrides,
  RunConfig,
  upgradeConfig,
} from './config';
import { OpenedData, PreparedData, prepareData, problemLogger, ShardSamplers } from './data';
import { EvalResult } from './evaluate';
import { EpochRecord, TrainEvent, TrainEvents } from './events';
import { loop, Trainer } from './loop';
import { rankSettings, Replica, Strategy } from './parallel';
import { logReporter, metricsReporter, progressReporter } from './reporters';
import { cudaGraphObstacle, GraphedStep } from './graph';
import { recipeOptimizer } from './recipes';
import { freeze, initFrom, InitReport } from './reuse';
import { StepContext, trainStep } from './step';
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
   * How the run is spread over processes (src/distributed: data parallel, the paper's two towers); only rank 0
   * reports and writes files. Default: one process.
   */
  strategy?: Strategy;
}

/** How a run ended. */
export interface RunResult {
  record: ModelRecord;
  history: EpochRecord[];
  lastEval?: EvalResult;
  stopped: 'completed' | 'max-steps' | 'interrupted';
  globalStep: number;
  device: Device;
  runId: string;
}

export interface TrainResult extends RunResult {
  model: AlexNet;
}

/** Trains from scratch with `config` (see `buildRunConfig` for flat options over a recipe). */
export async function train(config: RunConfig, hooks: TrainHooks = {}): Promise<TrainResult> {
  return withModel(await trainWith(config, hooks));
}

/**
 * Trains from scratch with `config` whatever the strategy; with one that replicates the model (the paper's towers)
 * no rank holds the whole trained model, and the result has none.
 */
export async function trainWith(config: RunConfig, hooks: TrainHooks = {}): Promise<RunResult & { model?: AlexNet }> {
  const cfg = checkRunConfig(config, 'the run configuration');
  return run({ cfg, runId: newRunId() }, hooks);
}

function withModel(r: RunResult & { model?: AlexNet }): TrainResult {
  if (!r.model) throw new Error('this strategy trains a replica of the model: call trainWith');
  return r as TrainResult;
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
    const { epochs, maxSteps } = cfg.optimization;
    if (epochs <= done.epoch)
      throw new OptionError(
        'epochs',
        (n) =>
          `${file} has done ${done.epoch} epochs and the run asks for ${epochs}: give ${n('epochs')} above ${done.epoch} to train further`,
      );
    if (maxSteps !== undefined && maxSteps <= done.globalStep)
      throw new OptionError(
        'maxSteps',
        (n) => `${n('maxSteps')} ${maxSteps} is not above the ${done.globalStep} steps ${file} has done`,
      );
    const session = { cfg, runId: ckpt.runId ?? 'resumed', ckpt, resumeFile: file, lrOverride: overrides.lr };
    return withModel(await run(session, hooks));
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

/** What one rank trains, built: the model (or the strategy's replica of it) and its optimiser. */
interface Built {
  model?: AlexNet;
  replica?: Replica;
  frozen: Module[];
  optimizer: Optimizer;
  precision: Precision;
  /** Bytes of what the run saves. */
  bytes: number;
}

async function run(s: Session, hooks: TrainHooks): Promise<RunResult & { model?: AlexNet }> {
  const events = hooks.events ?? new TrainEvents();
  const warn = (message: string) => events.emit({ type: 'warning', message });
  const strategy = hooks.strategy;
  // In a run over several processes only rank 0 speaks; the others train quietly (their errors still end the
  // launcher).
  const reporters =
    strategy && strategy.rank !== 0
      ? []
      : [logReporter(hooks.log ?? ((l) => console.log(l))), progressReporter(hooks.progressStream)];
  const unsubscribe = reporters.map((l) => events.on(l));
  try {
    // The world size goes into the checkpoint: a resumed run with another one knows where the epoch stood.
    s = { ...s, cfg: { ...s.cfg, runtime: { ...s.cfg.runtime, worldSize: strategy?.worldSize } } };
    const dev = prepareDevice(s.cfg.runtime.device, s.cfg.runtime.threads);
    if (dev.warning) warn(dev.warning);
    const prepared = prepareData({ ...s.cfg.data, seed: s.cfg.runtime.seed });
    const onProblem = problemLogger(warn);
    prepared.problems.forEach(onProblem);
    const built = build(s, prepared, dev.device, warn, strategy);
    try {
      const parts = { ...built, prepared, onProblem, device: dev.device, threads: dev.threads, events };
      return await withOutputs(s, parts, hooks);
    } finally {
      built.replica?.dispose();
    }
  } finally {
    unsubscribe.forEach((u) => u());
  }
}

/**
 * The model from the run's seed (its weights from --init-from for a new run), frozen layers, on its device; the
 * strategy's replica of it where it has one (the one-process model is let go then); the optimiser.
 */
function build(s: Session, prepared: PreparedData, device: Device, warn: (m: string) => void, st?: Strategy): Built {
  const { cfg } = s;
  manualSeed(cfg.runtime.seed);
  const model = buildModel(cfg, prepared);
  try {
    // A resumed run's weights come from its checkpoint: --init-from only starts a new one.
    if (cfg.model.initFrom && !s.resumeFile) warn(initMessage(initFrom(model, cfg.model.initFrom, cfg.model.name)));
    const frozen = cfg.model.freeze ? freeze(model, cfg.model.freeze) : [];
    prepareModel(model, device);
    const precision = st?.precision?.fixed ?? resolvePrecision(cfg.precision, device);
    checkBatches(cfg, model, device, precision, warn);
    const replica = st?.replicate?.(model);
    if (!replica) {
      const optimizer = makeOptimizer(cfg, model);
      return { model, frozen, optimizer, precision, bytes: checkpointSize(model, optimizer) };
    }
    try {
      const optimizer = recipeOptimizer(cfg.optimization, replica.parameters, replica.headPrefix);
      // A replicating strategy saves the one-process weights, not a checkpoint.
      const bytes = checkpointSize(model);
      model.dispose();
      return { replica, frozen, optimizer, precision, bytes };
    } catch (e) {
      replica.dispose();
      throw e;
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
}

interface Parts extends Built {
  prepared: PreparedData;
  onProblem: (p: Problem) => void;
  device: Device;
  threads: number;
  events: TrainEvents;
}

/** Outputs checked (and locked) before the first step, the ranks met, the data opened: the loop. */
async function withOutputs(s: Session, p: Parts, hooks: TrainHooks): Promise<RunResult & { model?: AlexNet }> {
  const strategy = hooks.strategy;
  const warn = (message: string) => p.events.emit({ type: 'warning', message });
  // A run never trains and then fails to save. Only rank 0 writes.
  const outputs =
    strategy && strategy.rank !== 0
      ? quietOutputs(s.resumeFile)
      : planRunOutputs(s.cfg, p.bytes, { runId: s.runId, resuming: s.resumeFile, warn: (m) => warn(`warning: ${m}`) });
  try {
    strategy?.meet(configSummary(s));
    // The whole data set's sizes (a data-parallel run's sources hold one rank's shard).
    const totals = { train: 0, test: 0 };
    const d = s.cfg.data;
    const inputShape = p.model?.inputShape ?? p.replica!.inputShape;
    const data = p.prepared.open({
      inputShape,
      device: p.device,
      batchSize: s.cfg.optimization.batchSize,
      evalBatchSize: s.cfg.optimization.evalBatchSize,
      preprocess: d.preprocess,
      transform: d.transform,
      onProblem: p.onProblem,
      samplers: strategy?.samplers && shardSamplers(strategy.samplers, totals),
    });
    try {
      // The resolved transform is part of the run's settings from now on (a resumed run needs no stats file).
      const cfg = { ...s.cfg, data: { ...d, transform: data.transform, preprocess: data.preprocess } };
      const t = setUp({ ...s, cfg }, { ...p, data, outputs, strategy, inputShape });
      p.events.emit(startEvent(t, s, p.threads, strategy?.samplers ? totals : undefined));
      const { stopped, lastEval } = await loop(t, hooks.shouldStop);
      const { record, history, runId } = t;
      return {
        model: t.model,
        record,
        history,
        lastEval,
        stopped,
        globalStep: t.progress.globalStep,
        device: t.device,
        runId,
      };
    } finally {
      await data.close();
    }
  } finally {
    outputs.release();
  }
}

/** Each rank's shards of the training and test sets; records the whole sets' sizes in `totals`. */
function shardSamplers(
  samplers: NonNullable<Strategy['samplers']>,
  totals: { train: number; test: number },
): ShardSamplers {
  return {
    train: (n, seed) => ((totals.train = n), samplers.train(n, seed)),
    test: (n) => ((totals.test = n), samplers.test(n)),
  };
}

function startEvent(t: Trainer, s: Session, threads: number, totals?: { train: number; test: number }): TrainEvent {
  const { cfg, data, record } = t;
  const fixed = t.strategy?.precision;
  return {
    type: 'start',
    runId: t.runId,
    model: cfg.model.name,
    dataset: record.dataset ?? cfg.data.dataset,
    trainSize: totals?.train ?? data.train.size,
    testSize: totals?.test ?? data.test.size,
    classes: record.classes.length,
    input: t.model?.inputShape ?? t.replica!.inputShape,
    device: t.device,
    threads,
    cpu: describeCpu(),
    precision: t.precision,
    precisionReason: fixed
      ? cfg.precision === 'auto'
        ? fixed.reason
        : undefined
      : autoPrecisionReason(cfg.precision, t.device),
    cudaGraph: Boolean(t.graphed),
    headLr: cfg.optimization.headLr,
    optimizer: cfg.optimization.optimizer,
    lr: t.optimizer.lr,
    batchSize: cfg.optimization.batchSize,
    epochs: cfg.optimization.epochs,
    recipe: cfg.recipe,
    resumed: s.resumeFile ? { file: s.resumeFile, progress: t.progress } : undefined,
    parallel: t.strategy?.describe(cfg.optimization.batchSize, t.optimizer.lr),
  };
}

/** What every rank checks the others run: the settings, and where a resumed run stands. */
function configSummary(s: Session): Record<string, unknown> {
  return { ...rankSettings(s.cfg), resume: s.ckpt ? { run: s.ckpt.runId, progress: s.ckpt.progress } : undefined };
}

/** The outputs of a rank other than 0: it writes nothing (rank 0 saves the checkpoint and the metrics). */
function quietOutputs(resuming?: string): RunOutputs {
  return { saved: resuming, save: () => undefined, appendMetrics: () => undefined, release: () => undefined };
}

/** Refuses batch sizes whose activations cannot fit in memory before anything is allocated for them. */
function checkBatches(cfg: RunConfig, model: AlexNet, device: Device, p: Precision, warn: (m: string) => void): void {
  const bytesPerElement = p === 'fp32' ? 4 : 2;
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

function initMessage(r: InitReport): string {
  const fresh = r.fresh.length ? `; initialised afresh: ${r.fresh.join(', ')}` : '';
  return `started from the given weights: ${r.copied.length} of ${r.copied.length + r.fresh.length} tensors copied${fresh}`;
}

function makeOptimizer(cfg: RunConfig, model: AlexNet): Optimizer {
  const trainable = model.namedParameters().filter(([, p]) => p.requiresGrad);
  // The head: the classifier's last layer (the one --init-from makes afresh for a new number of classes).
  const layers = model.layers();
  return recipeOptimizer(cfg.optimization, trainable, `${layers[layers.length - 1][0]}.`);
}

/** The CUDA graph for `mode` ('on' refuses a run whose step cannot be recorded). */
function graphedStep(ctx: StepContext, mode: CudaGraphMode): GraphedStep | undefined {
  if (mode === 'off') return undefined;
  const obstacle = cudaGraphObstacle(ctx);
  if (obstacle) throw new OptionError('cudaGraph', (n) => `${n('cudaGraph')} on, but ${obstacle}`);
  return new GraphedStep(ctx);
}

interface SetUpParts extends Parts {
  data: OpenedData;
  outputs: RunOutputs;
  strategy?: Strategy;
  inputShape: number[];
}

/** The step: the strategy's replica's, or trainStep on the model (recorded as a CUDA graph when asked). */
function stepOf(p: SetUpParts, cfg: RunConfig, scaler?: GradScaler): Pick<Trainer, 'step' | 'graphed'> {
  const { model, replica, optimizer } = p;
  if (replica) return { step: (x, y, sums) => replica.step(x, y, sums, optimizer) };
  const ctx: StepContext = {
    model: model!,
    optimizer,
    device: p.device,
    precision: p.precision,
    scaler,
    ...p.strategy?.stepHooks?.(model!),
  };
  const graphed = graphedStep(ctx, cfg.runtime.cudaGraph ?? 'off');
  return {
    graphed,
    step: graphed ? (x, y, sums) => graphed.step(x, y, sums) : (x, y, sums) => trainStep(ctx, x, y, sums),
  };
}

function setUp(s: Session, p: SetUpParts): Trainer {
  const { cfg } = s;
  const { events, outputs } = p;
  const scaler = p.precision === 'fp16' ? new GradScaler() : undefined;
  const t: Trainer = {
    ...stepOf(p, cfg, scaler),
    cfg,
    runId: s.runId,
    model: p.model,
    replica: p.replica,
    frozen: p.frozen,
    optimizer: p.optimizer,
    device: p.device,
    precision: p.precision,
    scaler,
    schedule: makeSchedule(cfg.optimization.schedule),
    record: runRecord(cfg, p.prepared, p.data, p.inputShape[0]),
    data: p.data,
    outputs,
    events,
    history: [],
    progress: { epoch: 0, batch: 0, globalStep: 0 },
    strategy: p.strategy,
  };
  if (s.ckpt) restore(t, s.ckpt, s.lrOverride);
  if (s.ckpt) t.progress = carryPosition(t.progress, s.ckpt, p.strategy?.worldSize ?? 1, cfg, events);
  // DDP's start: every rank begins from rank 0's parameters and buffers.
  if (p.model) p.strategy?.syncModel?.(p.model);
  const warn = (message: string) => events.emit({ type: 'warning', message });
  if (cfg.output.metrics)
    events.on(metricsReporter((r) => outputs.appendMetrics(r, warn), s.runId, cfg.output.metricsEvery));
  return t;
}

/** What a saved model keeps of the run: the variant and options, the data's classes and preprocessing, the split. */
function runRecord(cfg: RunConfig, prepared: PreparedData, data: OpenedData, inChannels: number): ModelRecord {
  const { name, classes, classIds } = prepared;
  const { preprocess, transform, sourceShape } = data;
  const split = cfg.data.folder ? { valSplit: cfg.data.folder.valSplit, seed: cfg.runtime.seed } : undefined;
  return modelRecord(cfg.model, { name, classes, classIds, preprocess, transform, sourceShape }, inChannels, split);
}

/** Model, optimiser, schedule, loss scale, RNG, history and progress as the checkpoint left them. */
function restore(t: Trainer, c: CheckpointData, lrOverride?: number): void {
  if (!t.model) throw new Error('a strategy that replicates the model cannot resume a checkpoint');
  t.model.loadStateDict(tensorsWithPrefix(c.tensors, 'model.'));
  t.optimizer.loadState(tensorsWithPrefix(c.tensors, 'optim.'), c.optimizer.scalars);
  if (lrOverride !== undefined) t.optimizer.lr = lrOverride;
  t.schedule.load(c.optimizer.schedule);
  t.scaler?.load(c.optimizer.scaler);
  setRngState(c.tensors.get('rng.cpu')!);
  t.history = c.history as EpochRecord[];
  t.progress = c.progress;
}

/**
 * Where a resumed data-parallel run starts in its epoch. With the world size the checkpoint was written with, the
 * same batch (an exact continuation); with another one, the same number of samples into the epoch's order,
 * rounded down to a whole batch of the new world size (the shards interleave the one shuffled order).
 */
function carryPosition(p: Progress, c: CheckpointData, world: number, cfg: RunConfig, events: TrainEvents): Progress {
  const batch = cfg.optimization.batchSize;
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
