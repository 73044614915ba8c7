// Subscribers to a run's events: the progress bar (stderr), the log lines (stdout), the JSONL metrics file.
import { formatDuration, ProgressBar } from './progress';
import { Listener, TrainEvent } from './events';

const f4 = (x: number) => x.toFixed(4);

/** The lines a person reads: what runs where, the estimate, each epoch's summary, checkpoints and stops. */
export function logReporter(log: (line: string) => void): Listener {
  return (e: TrainEvent) => {
    const line = logLine(e);
    if (line !== undefined) log(line);
  };
}

function logLine(e: TrainEvent): string | undefined {
  switch (e.type) {
    case 'start': {
      const where = e.device === 'cpu' ? `cpu with ${e.threads} threads (${e.cpu})` : e.device;
      const head = e.resumed
        ? `resuming ${e.resumed.file}: ${e.resumed.progress.epoch} epochs and ${e.resumed.progress.batch} batches done, step ${e.resumed.progress.globalStep}\n`
        : e.recipe
          ? `recipe: ${e.recipe}\n`
          : '';
      return (
        `${head}training ${e.model} on ${e.dataset} (${e.trainSize} train / ${e.testSize} test images, ${e.classes} classes, ` +
        `input ${e.input.join('×')}) on ${where}, ${e.precision}${e.precisionReason ? ` (${e.precisionReason})` : ''}${e.cudaGraph ? ', CUDA graph' : ''}; ${e.optimizer} lr ${e.lr}${e.headLr !== undefined ? ` (head ${e.headLr})` : ''}, batch ${e.batchSize}, ${e.epochs} epochs (run ${e.runId})` +
        (e.parallel ? `\n${e.parallel}` : '')
      );
    }
    case 'estimate':
      return `estimated time: about ${formatDuration(e.seconds)} (${e.steps} steps at ${e.secondsPerStep.toFixed(2)} s/step, plus evaluation)`;
    case 'epoch': {
      const r = e.record;
      return (
        `epoch ${r.epoch}/${e.epochs}: train loss ${f4(r.train_loss)} acc ${f4(r.train_acc)} | test loss ${f4(r.test_loss)} top-1 ${f4(r.test_acc)} ` +
        `top-5 ${f4(r.test_top5)} | ${r.images_per_sec.toFixed(0)} img/s, ${formatDuration(r.epoch_seconds)}` +
        (r.data_wait_seconds > 0.05 * r.epoch_seconds
          ? `, ${((100 * r.data_wait_seconds) / r.epoch_seconds).toFixed(0)}% waiting for data`
          : '') +
        (r.skipped ? ` | ${r.skipped} unreadable image${r.skipped === 1 ? '' : 's'} skipped` : '') +
        (e.lrAfter !== r.lr ? ` | lr ${r.lr} -> ${e.lrAfter}` : '')
      );
    }
    case 'stopped':
      return (
        `stopped after step ${e.progress.globalStep} (${e.progress.batch}/${e.batches} batches of epoch ${e.progress.epoch + 1}): ` +
        `train loss ${f4(e.train.loss)} acc ${f4(e.train.acc)} | test loss ${f4(e.eval.loss)} top-1 ${f4(e.eval.top1)} top-5 ${f4(e.eval.top5)}`
      );
    case 'interrupted':
      return (
        `interrupted after step ${e.progress.globalStep}` +
        (!e.saved
          ? ' (no --save given: nothing was written)'
          : e.weights
            ? `: weights saved to ${e.saved} (eval/predict --weights, or --init-from for a new run)`
            : `: checkpoint saved to ${e.saved}; continue with --resume ${e.saved}`)
      );
    case 'warning':
      return e.message;
    default:
      return undefined;
  }
}

/** A progress bar per epoch and per evaluation, with rate and ETA (plain lines when not on a terminal). */
export function progressReporter(stream: NodeJS.WriteStream = process.stderr): Listener {
  let bar: ProgressBar | undefined;
  let evalBar: ProgressBar | undefined;
  return (e: TrainEvent) => {
    if (e.type === 'epoch-start')
      bar = new ProgressBar(`epoch ${e.epoch + 1}/${e.epochs}`, e.batches, stream, e.startBatch);
    else if (e.type === 'step')
      bar?.update(e.batch, `loss ${f4(e.loss)} acc ${e.acc.toFixed(3)} ${e.imagesPerSec.toFixed(0)} img/s`);
    else if (e.type === 'evaluating') {
      if (bar) bar = void bar.done();
      evalBar ??= new ProgressBar('  evaluating', e.total, stream);
      evalBar.update(e.done);
    } else if (e.type === 'evaluation' || e.type === 'interrupted') {
      bar?.done();
      evalBar?.done();
      bar = evalBar = undefined;
    }
  };
}

/**
 * JSON Lines: a record per `metricsEvery` steps ({kind: 'step', run, step, epoch, loss, acc, lr, images_per_sec})
 * and one per epoch ({kind: 'epoch', run, …EpochRecord}). Each record carries the run id, so two runs' records in
 * one file can be told apart. Each record is appended whole (a failed write leaves no half record).
 */
export function metricsReporter(write: (record: object) => void, runId: string, every: number): Listener {
  return (e: TrainEvent) => {
    if (e.type === 'step' && every > 0 && e.globalStep % every === 0) {
      write({
        kind: 'step',
        run: runId,
        step: e.globalStep,
        epoch: e.epoch + 1,
        batch: e.batch,
        loss: e.loss,
        acc: e.acc,
        lr: e.lr,
        images_per_sec: e.imagesPerSec,
        time: Date.now() / 1000,
      });
    } else if (e.type === 'epoch') {
      write({ kind: 'epoch', run: runId, ...e.record });
    }
  };
}
