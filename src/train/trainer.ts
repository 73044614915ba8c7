// The training loop: seeded, resumable, checkpointed at every epoch end and on Ctrl-C, stopped with a clear
// message (and the last good checkpoint kept) when the loss stops being finite.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AlexnetError, UserError } from '../errors';
import { Preprocess } from '../data/loader';
import { Problem } from '../data/image-folder';
import { PhotoTransform } from '../data/transforms';
import { AlexNet, AlexNetOptions } from '../models/alexnet';
import { getModel } from '../models/registry';
import { crossEntropy } from '../nn/functional';
import { Adam, Optimizer, SGD } from '../optim/optimizer';
import { makeSchedule, Schedule } from '../optim/schedules';
import { Device } from '../tensor/dtype';
import { native } from '../tensor/binding';
import { blasWarning } from '../tensor/blas';
import { cudaAvailable, getRngState, manualSeed, setNumThreads, setRngState, tidy, zeros } from '../tensor/tensor';
import { loadCheckpoint, ModelRecord, saveCheckpoint } from './checkpoint';
import { FolderConfig, OpenedData, PreparedData, prepareData } from './data';
import { autocast, GradScaler, Precision, resolvePrecision } from './precision';
import { evaluate, EvalResult } from './evaluate';
import { formatDuration, ProgressBar } from './progress';

export interface TrainConfig {
  model: string;
  modelOptions: AlexNetOptions;
  /** fashion-mnist, mnist or folder:PATH. */
  dataset: string;
  dataDir?: string;
  /** Image-folder settings (folder:PATH data sets). */
  folder?: FolderConfig;
  /** The photo transform in use: resolved at the start of a run and kept, so a resumed run needs no stats file. */
  transform?: PhotoTransform;
  /** Use only the first N training / test examples. */
  trainLimit?: number;
  testLimit?: number;
  epochs: number;
  batchSize: number;
  evalBatchSize: number;
  optimizer: 'sgd' | 'sgd-paper' | 'adam';
  lr: number;
  momentum: number;
  weightDecay: number;
  schedule: string;
  preprocess: Preprocess;
  seed: number;
  device: 'cpu' | 'cuda' | 'auto' | Device;
  threads?: number;
  save?: string;
  metrics?: string;
  /** Stop after this many optimiser steps in total (the run can be resumed later). */
  maxSteps?: number;
  /** Where the defaults came from, printed when the run starts (the CLI's recipes). */
  recipe?: string;
  /** Arithmetic: fp32, bf16 or fp16 autocast (fp16 with loss scaling); auto: bf16 on a GPU, fp32 on the CPU. */
  precision?: Precision | 'auto';
}

export interface EpochRecord {
  epoch: number;
  train_loss: number;
  train_acc: number;
  test_loss: number;
  test_acc: number;
  test_top5: number;
  lr: number;
  images_per_sec: number;
  epoch_seconds: number;
  elapsed_seconds: number;
  /** Images left out in this epoch because they could not be read. */
  skipped: number;
  /** Time the training loop waited for the input pipeline. */
  data_wait_seconds: number;
  [k: string]: number;
}

export interface TrainResult {
  model: AlexNet;
  record: ModelRecord;
  history: EpochRecord[];
  lastEval?: EvalResult;
  stopped: 'completed' | 'max-steps' | 'interrupted';
  globalStep: number;
  device: Device;
}

export interface TrainHooks {
  log?: (line: string) => void;
  /** A progress stream (stderr by default). */
  progressStream?: NodeJS.WriteStream;
  /** Polled between steps: true asks the run to stop, save and return (Ctrl-C sets it). */
  shouldStop?: () => boolean;
}

export class NonFiniteLossError extends AlexnetError {}

export function resolveDevice(d: TrainConfig['device']): Device {
  if (d === 'auto') return cudaAvailable() ? 'cuda' : 'cpu';
  if (d.startsWith('cuda') && !cudaAvailable()) {
    throw new UserError(`--device ${d} was asked for, but this libtorch build has no usable CUDA device (use --device cpu, or build the addon with LIBTORCH_USE_PYTORCH=1 against a CUDA PyTorch)`);
  }
  return d as Device;
}

function makeOptimizer(cfg: TrainConfig, model: AlexNet): Optimizer {
  const params = model.parameters();
  switch (cfg.optimizer) {
    case 'sgd': return new SGD(params, { lr: cfg.lr, momentum: cfg.momentum, weightDecay: cfg.weightDecay, form: 'pytorch' });
    case 'sgd-paper': return new SGD(params, { lr: cfg.lr, momentum: cfg.momentum, weightDecay: cfg.weightDecay, form: 'paper' });
    case 'adam': return new Adam(params, { lr: cfg.lr, weightDecay: cfg.weightDecay });
    default: throw new UserError(`unknown optimiser '${cfg.optimizer}' (expected sgd, sgd-paper or adam)`);
  }
}

/** Logs unreadable files: each one the first time, up to `max` lines, then only a count. */
export function problemLogger(log: (s: string) => void, max = 20): (p: Problem) => void {
  let n = 0;
  return (p) => {
    n++;
    if (n <= max) log(`warning: skipping ${p.file}: ${p.reason}`);
    else if (n === max + 1) log('warning: more unreadable files: they are skipped and counted, not listed');
  };
}

/** Settings that may change when a run is resumed; everything else comes from the checkpoint. */
export const RESUMABLE_OVERRIDES = ['epochs', 'maxSteps', 'save', 'metrics', 'threads', 'lr', 'device'] as const;
export type ResumeOverrides = Partial<Pick<TrainConfig, (typeof RESUMABLE_OVERRIDES)[number]>>;

/**
 * Trains from scratch with `cfg`, or, with `resume`, continues that checkpoint exactly where it stopped with its
 * own settings, except for the overrides given (`epochs`, `maxSteps`, `save` (default: the checkpoint itself),
 * `metrics`, `threads`, `lr`, `device`).
 */
export async function train(cfgIn: TrainConfig | ResumeOverrides, hooks: TrainHooks = {}, resume?: string): Promise<TrainResult> {
  const log = hooks.log ?? ((s: string) => console.log(s));
  const ckpt = resume ? loadCheckpoint(resume) : undefined;
  let cfg: TrainConfig;
  if (ckpt) {
    cfg = { ...(ckpt.config as unknown as TrainConfig), save: resume, maxSteps: undefined };
    for (const k of RESUMABLE_OVERRIDES) {
      const v = (cfgIn as ResumeOverrides)[k];
      if (v !== undefined) (cfg as unknown as Record<string, unknown>)[k] = v;
    }
  } else {
    cfg = cfgIn as TrainConfig;
  }
  const device = resolveDevice(cfg.device);
  const blas = device === 'cpu' ? blasWarning() : undefined;
  if (blas) log(blas);
  setNumThreads(cfg.threads ?? os.cpus().length);
  if (device.startsWith('cuda')) native().setCudnnBenchmark(true);

  const prepared = prepareData(cfg);
  const onProblem = problemLogger(log);
  for (const p of prepared.problems) onProblem(p);
  manualSeed(cfg.seed);
  const model = getModel(cfg.model, { ...cfg.modelOptions, numClasses: prepared.classes.length });
  if (device !== 'cpu') model.to(device);
  const data: OpenedData = prepared.open({
    inputShape: model.inputShape, device, batchSize: cfg.batchSize, evalBatchSize: cfg.evalBatchSize,
    preprocess: cfg.preprocess, transform: cfg.transform, onProblem,
  });
  try {
    // The resolved transform is part of the run's settings from now on (a resumed run needs no stats file).
    cfg = { ...cfg, transform: data.transform, preprocess: data.preprocess };
    return await trainLoop(cfg, { model, data, prepared, ckpt, cfgIn, resume, device, hooks, log });
  } finally {
    await data.close();
  }
}

async function trainLoop(cfg: TrainConfig, c: {
  model: AlexNet; data: OpenedData; prepared: PreparedData;
  ckpt?: ReturnType<typeof loadCheckpoint>; cfgIn: TrainConfig | ResumeOverrides; resume?: string; device: Device; hooks: TrainHooks; log: (s: string) => void;
}): Promise<TrainResult> {
  const { model, data, ckpt, cfgIn, resume, device, hooks, log } = c;
  const opt = makeOptimizer(cfg, model);
  const schedule: Schedule = makeSchedule(cfg.schedule);
  const precision = resolvePrecision(cfg.precision, device);
  const scaler = precision === 'fp16' ? new GradScaler() : undefined;
  const record: ModelRecord = {
    model: cfg.model,
    modelOptions: { ...cfg.modelOptions, numClasses: c.prepared.classes.length, inChannels: model.inputShape[0] },
    classes: c.prepared.classes,
    classIds: c.prepared.classIds,
    preprocess: data.preprocess,
    sourceShape: data.sourceShape,
    dataset: c.prepared.name,
    transform: data.transform,
    split: cfg.folder ? { valSplit: cfg.folder.valSplit, seed: cfg.seed } : undefined,
  };
  let history: EpochRecord[] = [];
  let progress = { epoch: 0, batch: 0, globalStep: 0 };
  if (ckpt) {
    const sd = new Map([...ckpt.tensors].filter(([k]) => k.startsWith('model.')).map(([k, t]) => [k.slice(6), t]));
    model.loadStateDict(sd);
    const optState = new Map([...ckpt.tensors].filter(([k]) => k.startsWith('optim.')).map(([k, t]) => [k.slice(6), t]));
    opt.loadState(optState, ckpt.optimizer.scalars);
    if ((cfgIn as ResumeOverrides).lr !== undefined) opt.lr = (cfgIn as ResumeOverrides).lr!;
    schedule.load(ckpt.optimizer.schedule);
    scaler?.load(ckpt.optimizer.scaler);
    setRngState(ckpt.tensors.get('rng.cpu')!);
    for (const t of ckpt.tensors.values()) t.dispose();
    history = ckpt.history as EpochRecord[];
    progress = ckpt.progress;
    log(`resuming ${resume}: ${progress.epoch} epochs and ${progress.batch} batches done, step ${progress.globalStep}`);
  }

  const loader = data.train;
  const save = (p: typeof progress) => {
    if (!cfg.save) return;
    saveCheckpoint(cfg.save, model, {
      record, progress: p, config: cfg as unknown as Record<string, unknown>, history,
      optimizer: { type: cfg.optimizer, scalars: opt.stateScalars(), schedule: schedule.state(), ...(scaler ? { scaler: scaler.state() } : {}) },
      optimizerTensors: opt.stateTensors(), rng: getRngState(),
    });
  };
  const appendMetrics = (r: EpochRecord) => {
    if (cfg.metrics) {
      fs.mkdirSync(path.dirname(path.resolve(cfg.metrics)), { recursive: true });
      fs.appendFileSync(cfg.metrics, JSON.stringify(r) + '\n');
    }
  };

  if (cfg.recipe && !ckpt) log(`recipe: ${cfg.recipe}`);
  log(`training ${cfg.model} on ${record.dataset} (${loader.size} train / ${data.test.size} test images, ${record.classes.length} classes, input ${model.inputShape.join('×')}) on ${device}${device === 'cpu' ? ` with ${cfg.threads ?? os.cpus().length} threads` : ''}, ${precision}; ${cfg.optimizer} lr ${opt.lr}, batch ${cfg.batchSize}, ${cfg.epochs} epochs`);
  const runStart = Date.now();
  const elapsedBefore = history.length ? history[history.length - 1].elapsed_seconds : 0;
  let stopped: TrainResult['stopped'] = 'completed';
  let lastEval: EvalResult | undefined;
  let estimatePrinted = !!ckpt;

  model.train();
  for (let epoch = progress.epoch; epoch < cfg.epochs && stopped === 'completed'; epoch++) {
    const bar = new ProgressBar(`epoch ${epoch + 1}/${cfg.epochs}`, loader.numBatches, hooks.progressStream, progress.batch);
    const epochStart = Date.now();
    const lossSum = zeros([], { device, dtype: 'float64' });
    const correct = zeros([], { device, dtype: 'int64' });
    let seen = 0;
    let waited = 0;
    const readStats = () => {
      const l = lossSum.item();
      if (!Number.isFinite(l)) {
        throw new NonFiniteLossError(`the training loss became ${l} in epoch ${epoch + 1} (step ${progress.globalStep}): the learning rate (${opt.lr}) is probably too high. ` +
          (cfg.save && fs.existsSync(cfg.save) ? `The last good checkpoint is ${cfg.save}.` : 'No checkpoint was written.'));
      }
      return { loss: l / Math.max(1, seen), acc: correct.item() / Math.max(1, seen) };
    };
    let lastRead = 0;
    const batches = loader.batches(epoch, progress.batch);
    let t0 = Date.now();
    try {
      for (;;) {
        const next = await batches.next();
        waited += (Date.now() - t0) / 1000;
        if (next.done) break;
        const batch = next.value;
        // Let signal handlers (Ctrl-C) run between steps.
        await new Promise<void>((r) => setImmediate(r));
        if (hooks.shouldStop?.()) {
          stopped = 'interrupted';
          batch.x.dispose();
          batch.y.dispose();
          break;
        }
        const stepStart = Date.now();
        const n = batch.y.size(0);
        try {
          tidy(() => {
            // Forward and loss under autocast; backward outside it, as torch.autocast prescribes.
            const { logits, loss } = autocast(device, precision, () => {
              const out = model.forward(batch.x);
              return { logits: out, loss: crossEntropy(out, batch.y) };
            });
            (scaler ? scaler.scaleLoss(loss) : loss).backward();
            lossSum.copy_(lossSum.add(loss.detach().to('float64').mul(n)));
            correct.copy_(correct.add(logits.argmax(1).eq(batch.y).sum()));
          });
        } finally {
          batch.x.dispose();
          batch.y.dispose();
        }
        if (scaler) scaler.step(opt.params, () => opt.step());
        else opt.step();
        opt.zeroGrad();
        seen += n;
        progress = { epoch, batch: batch.index + 1, globalStep: progress.globalStep + 1 };
        const now = Date.now();
        // Reading the running sums synchronises the device: do it a few times a second, not every step.
        if (now - lastRead > 250 || batch.index + 1 === loader.numBatches) {
          lastRead = now;
          const s = readStats();
          const ips = (seen / ((now - epochStart) / 1000)).toFixed(0);
          bar.update(batch.index + 1, `loss ${s.loss.toFixed(4)} acc ${s.acc.toFixed(3)} ${ips} img/s`);
        }
        if (!estimatePrinted && progress.globalStep >= 4) {
          estimatePrinted = true;
          const perStep = (now - stepStart) / 1000;
          const steps = cfg.maxSteps ? Math.min(cfg.maxSteps, loader.numBatches * cfg.epochs) : loader.numBatches * cfg.epochs;
          const evalCost = cfg.maxSteps ? 1 : cfg.epochs;
          const est = perStep * (steps + (evalCost * data.test.size) / cfg.batchSize / 3);
          log(`estimated time: about ${formatDuration(est)} (${steps} steps at ${perStep.toFixed(2)} s/step, plus evaluation)`);
        }
        if (cfg.maxSteps && progress.globalStep >= cfg.maxSteps) {
          stopped = 'max-steps';
          break;
        }
        t0 = Date.now();
      }
    } finally {
      // Stops the epoch's prefetching when the loop ends early.
      await batches.return(undefined);
    }
    // Batches that lost all their images are not yielded: the epoch is complete when the source is exhausted.
    if (stopped === 'completed') progress = { ...progress, batch: loader.numBatches };
    bar.done();
    const trainStats = seen ? readStats() : { loss: NaN, acc: NaN };
    lossSum.dispose();
    correct.dispose();
    if (stopped === 'interrupted') {
      save(progress);
      log(`interrupted after step ${progress.globalStep}${cfg.save ? `: checkpoint saved to ${cfg.save}; continue with --resume ${cfg.save}` : ' (no --save given: nothing was written)'}`);
      break;
    }
    const finishedEpoch = progress.batch === loader.numBatches;
    const epochSeconds = (Date.now() - epochStart) / 1000;
    const skipped = loader.skipped;
    if (finishedEpoch || stopped === 'max-steps') {
      const evalBar = new ProgressBar('  evaluating', data.test.numBatches, hooks.progressStream);
      lastEval = await evaluate(model, data.test, { precision, onBatch: (d) => evalBar.update(d) });
      evalBar.done();
      model.train();
    }
    if (finishedEpoch) {
      const lr = opt.lr;
      opt.lr = schedule.epochEnd(opt.lr, 1 - lastEval!.top1);
      const r: EpochRecord = {
        epoch: epoch + 1, train_loss: trainStats.loss, train_acc: trainStats.acc,
        test_loss: lastEval!.loss, test_acc: lastEval!.top1, test_top5: lastEval!.top5, lr,
        images_per_sec: seen / epochSeconds, epoch_seconds: epochSeconds,
        elapsed_seconds: elapsedBefore + (Date.now() - runStart) / 1000,
        skipped, data_wait_seconds: waited,
      };
      history.push(r);
      appendMetrics(r);
      log(`epoch ${r.epoch}/${cfg.epochs}: train loss ${r.train_loss.toFixed(4)} acc ${r.train_acc.toFixed(4)} | test loss ${r.test_loss.toFixed(4)} top-1 ${r.test_acc.toFixed(4)} top-5 ${r.test_top5.toFixed(4)} | ${r.images_per_sec.toFixed(0)} img/s, ${formatDuration(r.epoch_seconds)}` +
        (waited > 0.05 * epochSeconds ? `, ${((100 * waited) / epochSeconds).toFixed(0)}% waiting for data` : '') +
        (skipped ? ` | ${skipped} unreadable image${skipped === 1 ? '' : 's'} skipped` : '') +
        (opt.lr !== lr ? ` | lr ${lr} -> ${opt.lr}` : ''));
      progress = { epoch: epoch + 1, batch: 0, globalStep: progress.globalStep };
    } else if (lastEval) {
      log(`stopped after step ${progress.globalStep} (${progress.batch}/${loader.numBatches} batches of epoch ${epoch + 1}): train loss ${trainStats.loss.toFixed(4)} acc ${trainStats.acc.toFixed(4)} | test loss ${lastEval.loss.toFixed(4)} top-1 ${lastEval.top1.toFixed(4)} top-5 ${lastEval.top5.toFixed(4)}`);
    }
    save(progress);
  }
  return { model, record, history, lastEval, stopped, globalStep: progress.globalStep, device };
}

export { formatDuration };
