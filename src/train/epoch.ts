// One pass over a batch source: steps until the epoch ends, the step budget is spent or a stop is asked for.
// It reads the running loss a few times a second (reading synchronises the device), stops at the first
// non-finite loss, and reports through the run's events. The step itself is the caller's (trainStep, a CUDA
// graph's replay, a strategy's step).
import { AlexnetError } from '../errors';
import { BatchSource } from '../data/source';
import { Progress } from '../persist/checkpoint';
import { Device } from '../tensor/dtype';
import { Tensor } from '../tensor/tensor';
import { StepSums } from './step';
import { TrainEvents } from './events';

export class NonFiniteLossError extends AlexnetError {}

export interface EpochPlan {
  /** One optimiser step on the batch (x, y) that adds its loss and correct predictions to `sums`. */
  step: (x: Tensor, y: Tensor, sums: StepSums) => void | Promise<void>;
  /** Where the running sums live (the step's device). */
  device: Device;
  /** The learning rate the step events report. */
  lr: () => number;
  source: BatchSource;
  events: TrainEvents;
  /** Where the run stands: `progress.epoch` is this epoch, `progress.batch` the first batch to run. */
  progress: Progress;
  epochs: number;
  maxSteps?: number;
  /** Also read and report the running loss every this many steps (0: only a few times a second). */
  statsEvery: number;
  shouldStop?: () => boolean;
  /** Says what to suspect when the loss stops being finite; absent: a non-finite loss does not stop the epoch. */
  nonFiniteHint?: () => string;
  /** Called with the duration of each step (the run's time estimate uses it). */
  onStepTime?: (seconds: number, globalStep: number) => void;
  /** Called after each step with where the run stands and the epoch's running sums (e.g. to read windows of them). */
  afterStep?: (progress: Progress, sums: StepSums) => void;
}

export interface EpochOutcome {
  progress: Progress;
  stopped: 'completed' | 'max-steps' | 'interrupted';
  /** Mean loss and accuracy over the steps run (NaN when none ran). */
  train: { loss: number; acc: number };
  images: number;
  seconds: number;
  /** Time spent waiting for the input pipeline. */
  waited: number;
}

/** Trains one epoch (or what is left of it) of `plan.source`. */
export async function trainOneEpoch(plan: EpochPlan): Promise<EpochOutcome> {
  const sums = new StepSums(plan.device);
  const state: EpochState = {
    progress: plan.progress,
    started: Date.now(),
    waited: 0,
    lastRead: 0,
    stopped: 'completed',
  };
  plan.events.emit({
    type: 'epoch-start',
    epoch: plan.progress.epoch,
    epochs: plan.epochs,
    batches: plan.source.numBatches,
    startBatch: plan.progress.batch,
  });
  try {
    await runSteps(plan, sums, state);
    // Batches that lost all their images are not yielded: the epoch is complete when the source is exhausted.
    if (state.stopped === 'completed') state.progress = { ...state.progress, batch: plan.source.numBatches };
    const train = sums.seen ? readSums(plan, sums, state) : { loss: NaN, acc: NaN };
    return {
      progress: state.progress,
      stopped: state.stopped,
      train,
      images: sums.seen,
      seconds: (Date.now() - state.started) / 1000,
      waited: state.waited,
    };
  } finally {
    sums.dispose();
  }
}

interface EpochState {
  progress: Progress;
  started: number;
  waited: number;
  lastRead: number;
  stopped: EpochOutcome['stopped'];
}

/** The running means; a loss that is not finite ends the run here. */
function readSums(plan: EpochPlan, sums: StepSums, state: EpochState): { loss: number; acc: number } {
  const s = sums.read();
  if (plan.nonFiniteHint && !Number.isFinite(s.loss)) {
    const where = `in epoch ${state.progress.epoch + 1} (step ${state.progress.globalStep})`;
    throw new NonFiniteLossError(`the training loss became ${s.loss} ${where}: ${plan.nonFiniteHint()}`);
  }
  return s;
}

async function runSteps(plan: EpochPlan, sums: StepSums, state: EpochState): Promise<void> {
  const { source, events } = plan;
  const epoch = state.progress.epoch;
  const batches = source.batches(epoch, state.progress.batch);
  try {
    for (let t0 = Date.now(); ; t0 = Date.now()) {
      const next = await batches.next();
      state.waited += (Date.now() - t0) / 1000;
      if (next.done) break;
      const b = next.value;
      // Let signal handlers (Ctrl-C) run between steps.
      await new Promise<void>((r) => setImmediate(r));
      const stop = plan.shouldStop?.();
      const stepStart = Date.now();
      try {
        if (!stop) await plan.step(b.x, b.y, sums);
      } finally {
        b.x.dispose();
        b.y.dispose();
      }
      if (stop) {
        state.stopped = 'interrupted';
        break;
      }
      const p = (state.progress = { epoch, batch: b.index + 1, globalStep: state.progress.globalStep + 1 });
      const now = Date.now();
      plan.onStepTime?.((now - stepStart) / 1000, p.globalStep);
      plan.afterStep?.(p, sums);
      const due = plan.statsEvery > 0 && p.globalStep % plan.statsEvery === 0;
      if (now - state.lastRead > 250 || p.batch === source.numBatches || due) {
        state.lastRead = now;
        const imagesPerSec = sums.seen / Math.max(1e-9, (now - state.started) / 1000);
        events.emit({
          type: 'step',
          epoch,
          batch: p.batch,
          batches: source.numBatches,
          globalStep: p.globalStep,
          ...readSums(plan, sums, state),
          lr: plan.lr(),
          imagesPerSec,
        });
      }
      if (plan.maxSteps && p.globalStep >= plan.maxSteps) {
        state.stopped = 'max-steps';
        break;
      }
    }
  } finally {
    // Stops the epoch's prefetching when the loop ends early.
    await batches.return(undefined);
  }
}
