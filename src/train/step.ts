// One training step, the same for every caller (the trainer, `alexnet bench`, `npm run bench`): forward and loss
// under autocast, backward outside it (as torch.autocast prescribes), optional hooks before the forward, before
// backward and between backward and the optimiser step (where data-parallel training syncs buffers and averages
// gradients), loss scaling for fp16, the update.
import { AlexNet } from '../models/alexnet';
import { crossEntropy } from '../nn/functional';
import { Optimizer } from '../optim/optimizer';
import { autocast, GradScaler, Precision } from '../runtime/precision';
import { Device } from '../tensor/dtype';
import { Tensor, tidy, zeros } from '../tensor/tensor';

export interface StepContext {
  model: AlexNet;
  optimizer: Optimizer;
  device: Device;
  precision: Precision;
  /** Dynamic loss scaling (fp16). */
  scaler?: GradScaler;
  /** Runs before the forward (data-parallel runs broadcast BatchNorm's buffers from rank 0 here). */
  beforeForward?: () => void;
  /** Runs between the loss and backward (data-parallel runs arm the gradient buckets backward's hooks reduce). */
  beforeBackward?: () => void;
  /** Runs after backward, before the optimiser step (e.g. to average gradients across processes). */
  afterBackward?: () => void;
}

/** Running sums of an epoch on the device: read them (which synchronises) only a few times a second. */
export class StepSums {
  readonly loss: Tensor;
  readonly correct: Tensor;
  seen = 0;

  constructor(device: Device) {
    this.loss = zeros([], { device, dtype: 'float64' }).keep();
    this.correct = zeros([], { device, dtype: 'int64' }).keep();
  }

  /** Adds a batch's mean loss and its correct predictions (call inside tidy: it makes temporaries). */
  add(loss: Tensor, logits: Tensor, y: Tensor): void {
    const n = y.size(0);
    this.loss.copy_(this.loss.add(loss.detach().to('float64').mul(n)));
    this.correct.copy_(this.correct.add(logits.argmax(1).eq(y).sum()));
    this.seen += n;
  }

  /** Mean loss and accuracy so far (synchronises with the device). */
  read(): { loss: number; acc: number } {
    const n = Math.max(1, this.seen);
    return { loss: this.loss.item() / n, acc: this.correct.item() / n };
  }

  dispose(): void {
    this.loss.dispose();
    this.correct.dispose();
  }
}

/** One optimiser step on the batch (x, y); adds its loss and correct predictions to `sums` when given. */
export function trainStep(ctx: StepContext, x: Tensor, y: Tensor, sums?: StepSums): void {
  ctx.beforeForward?.();
  tidy(() => {
    const { logits, loss } = autocast(ctx.device, ctx.precision, () => {
      const out = ctx.model.forward(x);
      return { logits: out, loss: crossEntropy(out, y) };
    });
    ctx.beforeBackward?.();
    (ctx.scaler ? ctx.scaler.scaleLoss(loss) : loss).backward();
    sums?.add(loss, logits, y);
  });
  ctx.afterBackward?.();
  if (ctx.scaler) ctx.scaler.step(ctx.optimizer.params, () => ctx.optimizer.step());
  else ctx.optimizer.step();
  ctx.optimizer.zeroGrad();
}
