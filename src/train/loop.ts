// The run's loop, once it is set up: `trainOneEpoch`, evaluation, the learning-rate schedule and a save, epoch after
// epoch, until the epochs are done, the step budget is spent or a stop is asked for. How a step, the evaluation
// forward and the save are done is the strategy's (src/train/parallel.ts); the loop is the same for all of them.
import { AlexNet } from '../models/alexnet';
import { Module } from '../nn/module';
import { Optimizer } from '../optim/optimizer';
import { Schedule } from '../optim/schedules';
import { saveSafetensors } from '../io/safetensors';
import { Progress, saveCheckpoint } from '../persist/checkpoint';
import { ModelRecord, recordMetadata, WEIGHTS_FORMAT } from '../persist/record';
import { GradScaler, Precision } from '../runtime/precision';
import { Device } from '../tensor/dtype';
import { getRngState, Tensor } from '../tensor/tensor';
import { RunConfig } from './config';
import { OpenedData } from './data';
import { EpochOutcome, trainOneEpoch } from './epoch';
import { EvalResult, evaluateSums, finishEval } from './evaluate';
import { EpochRecord, TrainEvents } from './events';
import { GraphedStep } from './graph';
import { RunOutputs } from './outputs';
import { Replica, Strategy } from './parallel';
import { StepSums } from './step';

/** Everything a run trains with, once it is set up. */
export interface Trainer {
  cfg: RunConfig;
  runId: string;
  /** The one-process model, when this rank trains it whole (one process, data parallel). */
  model?: AlexNet;
  /** What this rank trains instead, when the strategy replicates the model (a tower). */
  replica?: Replica;
  /** Layers --freeze holds: no gradients, and evaluation mode while the rest trains. */
  frozen: Module[];
  optimizer: Optimizer;
  device: Device;
  precision: Precision;
  /** Dynamic loss scaling (fp16). */
  scaler?: GradScaler;
  /** One optimiser step on a batch. */
  step: (x: Tensor, y: Tensor, sums: StepSums) => void | Promise<void>;
  graphed?: GraphedStep;
  schedule: Schedule;
  record: ModelRecord;
  data: OpenedData;
  outputs: RunOutputs;
  events: TrainEvents;
  history: EpochRecord[];
  progress: Progress;
  strategy?: Strategy;
}

export interface LoopOutcome {
  stopped: 'completed' | 'max-steps' | 'interrupted';
  lastEval?: EvalResult;
}

/** Training mode, except for the layers --freeze holds. */
function trainMode(t: Trainer): void {
  (t.replica?.module ?? t.model!).train();
  for (const layer of t.frozen) layer.eval();
}

/** Saves the run: its checkpoint, or (a strategy that replicates the model) the assembled one-process weights. */
async function save(t: Trainer): Promise<void> {
  const warn = (message: string) => t.events.emit({ type: 'warning', message });
  const file = t.replica ? await saveWeights(t, t.replica, warn) : saveRunCheckpoint(t, t.model!, warn);
  if (file) t.events.emit({ type: 'checkpoint', file, progress: t.progress });
}

function saveRunCheckpoint(t: Trainer, model: AlexNet, warn: (m: string) => void): string | undefined {
  const o = t.optimizer;
  const rng = getRngState();
  try {
    return t.outputs.save(
      (f) =>
        saveCheckpoint(f, model, {
          record: t.record,
          progress: t.progress,
          config: t.cfg as unknown as Record<string, unknown>,
          history: t.history,
          runId: t.runId,
          optimizer: {
            type: t.cfg.optimization.optimizer,
            scalars: o.stateScalars(),
            schedule: t.schedule.state(),
            ...(t.scaler ? { scaler: t.scaler.state() } : {}),
          },
          optimizerTensors: o.stateTensors(),
          rng,
        }),
      warn,
    );
  } finally {
    rng.dispose();
  }
}

/** Every rank assembles the one-process weights (a collective); rank 0 writes them as a weights file. */
async function saveWeights(t: Trainer, replica: Replica, warn: (m: string) => void): Promise<string | undefined> {
  if (!t.cfg.output.save) return undefined;
  const sd = await replica.weights();
  try {
    const meta = recordMetadata(t.record, WEIGHTS_FORMAT);
    return t.outputs.save((f) => saveSafetensors(f, sd, meta, '--save'), warn);
  } finally {
    for (const x of sd.values()) x.dispose();
  }
}

/** Evaluation of the test set: the strategy's forward, its shards' sums merged. */
async function evaluateRun(t: Trainer): Promise<EvalResult> {
  const onBatch = (done: number, total: number) => t.events.emit({ type: 'evaluating', done, total });
  const replica = t.replica;
  replica?.module.eval();
  const forward = replica ? (x: Tensor) => replica.logits(x) : t.model!;
  const sums = await evaluateSums(forward, t.data.test, { precision: t.precision, onBatch });
  return finishEval(t.strategy?.reduceEval ? t.strategy.reduceEval(sums) : sums, t.data.test.classes);
}

/** An epoch's training means and image count over every rank (each rank its shard; else as they are). */
function reduceTrain(t: Trainer, r: EpochOutcome): EpochOutcome {
  if (!t.strategy?.sum) return r;
  const [loss, correct, images] = t.strategy.sum([r.train.loss * r.images, r.train.acc * r.images, r.images]);
  return { ...r, images, train: { loss: loss / images, acc: correct / images } };
}

function nonFiniteHint(t: Trainer): () => string {
  return () => {
    const pca = t.cfg.data.folder?.pcaStd;
    const cause =
      pca !== undefined && pca > 1
        ? `--pca-std ${pca} adds colour noise far above the paper's 0.1 (the inputs themselves are extreme)`
        : `the learning rate (${t.optimizer.lr}) is probably too high`;
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
  const lr = t.optimizer.lr;
  t.optimizer.lr = t.schedule.epochEnd(lr, 1 - ev.top1);
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
  t.events.emit({ type: 'epoch', record, lrAfter: t.optimizer.lr, epochs: t.cfg.optimization.epochs });
}

/** One epoch of the run (or what is left of it), its means over every rank. */
async function epoch(t: Trainer, shouldStop: (() => boolean) | undefined, onStepTime: ReturnType<typeof estimator>) {
  const { cfg } = t;
  const o = cfg.optimization;
  const r = await trainOneEpoch({
    step: t.step,
    device: t.device,
    lr: () => t.optimizer.lr,
    source: t.data.train,
    events: t.events,
    progress: t.progress,
    epochs: o.epochs,
    maxSteps: o.maxSteps,
    statsEvery: cfg.output.metrics ? cfg.output.metricsEvery : 0,
    shouldStop,
    nonFiniteHint: nonFiniteHint(t),
    onStepTime,
  });
  return reduceTrain(t, r);
}

/** Epochs: train, evaluate, the schedule, a save; a stop or the step budget ends it early (saving first). */
export async function loop(t: Trainer, stopAsked?: () => boolean): Promise<LoopOutcome> {
  const { data, events } = t;
  const runStart = Date.now();
  const elapsedBefore = t.history.length ? t.history[t.history.length - 1].elapsed_seconds : 0;
  let stopped: LoopOutcome['stopped'] = 'completed';
  let lastEval: EvalResult | undefined;
  const onStepTime = estimator(t);
  const strategy = t.strategy;
  // Ranks must stop at the same step: a stop asked of any of them (Ctrl-C reaches each at its own step) is shared.
  const shouldStop = strategy ? () => strategy.anyStop(stopAsked?.() ?? false) : stopAsked;
  trainMode(t);
  while (t.progress.epoch < t.cfg.optimization.epochs && stopped === 'completed') {
    const r = await epoch(t, shouldStop, onStepTime);
    t.progress = r.progress;
    stopped = r.stopped;
    if (stopped === 'interrupted') {
      await save(t);
      events.emit({ type: 'interrupted', progress: t.progress, saved: t.outputs.saved, weights: !!t.replica });
      break;
    }
    lastEval = await evaluateRun(t);
    events.emit({ type: 'evaluation', epoch: t.progress.epoch, result: lastEval });
    trainMode(t);
    const batches = data.train.numBatches;
    if (r.progress.batch === batches) finishEpoch(t, r, lastEval, elapsedBefore + (Date.now() - runStart) / 1000);
    else events.emit({ type: 'stopped', progress: t.progress, batches, train: r.train, eval: lastEval });
    await save(t);
  }
  t.graphed?.dispose();
  return { stopped, lastEval };
}
