// One pass over a batch source: steps until the epoch ends, the step budget is spent or a stop is asked for.
// It reads the running loss a few times a second (reading synchronises the device), stops at the first
// non-finite loss, and reports through the run's events.
import { AlexnetError } from '../errors';
import { BatchSource } from '../data/source';
import { Progress } from '../persist/checkpoint';
import { StepContext, StepSums, trainStep } from './step';
import { TrainEvents } from './events';

export class NonFiniteLossError extends AlexnetError {}

export interface EpochPlan {
  ctx: StepContext;
  source: BatchSource;
  events: TrainEvents;
  /** Where the run stands: `progress.epoch` is this epoch, `progress.batch` the first batch to run. */
  progress: Progress;
  epochs: number;
  maxSteps?: number;
  /** Also read and report the running loss every this many steps (0: only a few times a second). */
  statsEvery: number;
  shouldStop?: () => boolean;
  /** Says what to suspect when the loss stops being finite. */
  nonFiniteHint: () => string;
  /** Called with the duration of each step (the run's time estimate uses it). */
  onStepTime?: (seconds: number, globalStep: number) => void;
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
  const { ctx, source, events } = plan;
  const epoch = plan.progress.epoch;
  let progress = plan.progress;
  const sums = new StepSums(ctx.device);
  const started = Date.now();
  let waited = 0;
  let lastRead = 0;
  let stopped: EpochOutcome['stopped'] = 'completed';
  const read = () => {
    const s = sums.read();
    if (!Number.isFinite(s.loss)) {
      throw new NonFiniteLossError(`the training loss became ${s.loss} in epoch ${epoch + 1} (step ${progress.globalStep}): ${plan.nonFiniteHint()}`);
    }
    return s;
  };
  events.emit({ type: 'epoch-start', epoch, epochs: plan.epochs, batches: source.numBatches, startBatch: progress.batch });
  const batches = source.batches(epoch, progress.batch);
  try {
    for (let t0 = Date.now(); ; t0 = Date.now()) {
      const next = await batches.next();
      waited += (Date.now() - t0) / 1000;
      if (next.done) break;
      const b = next.value;
      // Let signal handlers (Ctrl-C) run between steps.
      await new Promise<void>((r) => setImmediate(r));
      if (plan.shouldStop?.()) {
        b.x.dispose();
        b.y.dispose();
        stopped = 'interrupted';
        break;
      }
      const stepStart = Date.now();
      try {
        trainStep(ctx, b.x, b.y, sums);
      } finally {
        b.x.dispose();
        b.y.dispose();
      }
      progress = { epoch, batch: b.index + 1, globalStep: progress.globalStep + 1 };
      const now = Date.now();
      plan.onStepTime?.((now - stepStart) / 1000, progress.globalStep);
      const last = b.index + 1 === source.numBatches;
      const due = plan.statsEvery > 0 && progress.globalStep % plan.statsEvery === 0;
      if (now - lastRead > 250 || last || due) {
        lastRead = now;
        const s = read();
        const imagesPerSec = sums.seen / Math.max(1e-9, (now - started) / 1000);
        events.emit({ type: 'step', epoch, batch: b.index + 1, batches: source.numBatches, globalStep: progress.globalStep, ...s, lr: ctx.optimizer.lr, imagesPerSec });
      }
      if (plan.maxSteps && progress.globalStep >= plan.maxSteps) {
        stopped = 'max-steps';
        break;
      }
    }
  } finally {
    // Stops the epoch's prefetching when the loop ends early.
    await batches.return(undefined);
  }
  try {
    // Batches that lost all their images are not yielded: the epoch is complete when the source is exhausted.
    if (stopped === 'completed') progress = { ...progress, batch: source.numBatches };
    const train = sums.seen ? read() : { loss: NaN, acc: NaN };
    return { progress, stopped, train, images: sums.seen, seconds: (Date.now() - started) / 1000, waited };
  } finally {
    sums.dispose();
  }
}
