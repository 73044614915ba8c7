// The training step as a CUDA graph: recorded once after a few ordinary steps, then replayed, so that one native
// call queues the whole step (forward, loss, backward, optimiser) instead of JavaScript queuing each kernel. The
// batch is copied into static input tensors before each replay; the running loss and accuracy are recorded into
// tensors the graph owns and added to the epoch's sums after each replay.
//
// A batch of another shape (an epoch's last, smaller batch) runs as an ordinary step; a change of learning rate
// records the step again. Not recorded at all (cudaGraphObstacle): fp16 loss scaling (it reads the gradients on
// the host), optimisers whose arithmetic changes every step (Adam's bias correction), gradient averaging across
// processes.
import { SGD } from '../optim/optimizer';
import { cudaIndex, isCuda } from '../runtime/device';
import {
  cudaGraphBegin,
  cudaGraphEnd,
  cudaGraphRelease,
  cudaGraphReplay,
  cudaGraphsAvailable,
  cudaUseSideStream,
} from '../tensor/cuda-graph';
import { sameShape } from '../tensor/dtype';
import { Tensor, tidy, zeros } from '../tensor/tensor';
import { StepContext, StepSums, trainStep } from './step';

/** Why the steps of `ctx` cannot be a CUDA graph; undefined when they can. */
export function cudaGraphObstacle(ctx: StepContext): string | undefined {
  if (!isCuda(ctx.device)) return 'CUDA graphs need a CUDA device';
  if (!cudaGraphsAvailable()) return 'this build of the addon has no CUDA graphs';
  if (cudaIndex(ctx.device) !== 0) return 'CUDA graphs are recorded on the first GPU only';
  if (ctx.scaler) return 'fp16 loss scaling checks the gradients on the host every step';
  if (!(ctx.optimizer instanceof SGD)) return "only SGD steps are recorded (Adam's bias correction changes every step)";
  if (ctx.afterBackward || ctx.beforeBackward || ctx.beforeForward)
    return 'steps with gradient averaging across processes are not recorded';
  return undefined;
}

export class GraphedStep {
  private id = 0;
  private x?: Tensor;
  private y?: Tensor;
  private own?: StepSums;
  private zero?: { loss: Tensor; correct: Tensor };
  private lr = NaN;
  private ordinary = 0;
  /** Why recording failed (step() throws then). */
  failed?: string;

  /**
   * `warmup` ordinary steps first: cuDNN's autotuning and the optimiser's first step happen outside the graph. From
   * here on this thread's CUDA work runs on a side stream, where the graph is recorded and replayed.
   */
  constructor(
    private readonly ctx: StepContext,
    private readonly warmup = 3,
  ) {
    cudaUseSideStream(cudaIndex(ctx.device));
  }

  /** Replays made so far (tests and benchmarks). */
  replays = 0;

  step(x: Tensor, y: Tensor, sums?: StepSums): void {
    if (this.ordinary < this.warmup) {
      this.ordinary++;
      return trainStep(this.ctx, x, y, sums);
    }
    if (this.id && this.ctx.optimizer.lr !== this.lr) this.release();
    if (this.id && !(sameLayout(x, this.x!) && sameLayout(y, this.y!))) return trainStep(this.ctx, x, y, sums);
    // A failed recording can leave libtorch's CUDA generator unusable for ordinary steps: stop, saying why.
    if (!this.id && !this.record(x, y))
      throw new Error(`recording the training step as a CUDA graph failed: ${this.failed}`);
    this.x!.copy_(x);
    this.y!.copy_(y);
    cudaGraphReplay(this.id);
    this.replays++;
    this.ctx.optimizer.steps++;
    if (sums) {
      const own = this.own!;
      tidy(() => {
        sums.loss.copy_(sums.loss.add(own.loss));
        sums.correct.copy_(sums.correct.add(own.correct));
      });
      sums.seen += y.size(0);
    }
  }

  /** Records one step on static copies of (x, y); false (and `failed` says why) when libtorch refused. */
  private record(x: Tensor, y: Tensor): boolean {
    const { ctx } = this;
    this.x = x.clone().keep();
    this.y = y.clone().keep();
    this.own ??= new StepSums(ctx.device);
    this.zero ??= {
      loss: zeros([], { device: ctx.device, dtype: 'float64' }).keep(),
      correct: zeros([], { device: ctx.device, dtype: 'int64' }).keep(),
    };
    const steps = ctx.optimizer.steps;
    const id = cudaGraphBegin();
    try {
      this.own.loss.copy_(this.zero.loss);
      this.own.correct.copy_(this.zero.correct);
      trainStep(ctx, this.x, this.y, this.own);
      cudaGraphEnd(id);
    } catch (e) {
      cudaGraphRelease(id);
      this.failed = (e as Error).message.split('\n')[0];
      this.disposeInputs();
      return false;
    } finally {
      ctx.optimizer.steps = steps; // recording ran nothing: replays count the steps
    }
    this.id = id;
    this.lr = ctx.optimizer.lr;
    return true;
  }

  private release(): void {
    if (this.id) cudaGraphRelease(this.id);
    this.id = 0;
    this.disposeInputs();
  }

  private disposeInputs(): void {
    this.x?.dispose();
    this.y?.dispose();
    this.x = this.y = undefined;
  }

  dispose(): void {
    this.release();
    this.own?.dispose();
    this.zero?.loss.dispose();
    this.zero?.correct.dispose();
    this.own = this.zero = undefined;
  }
}

function sameLayout(a: Tensor, b: Tensor): boolean {
  return a.dtype === b.dtype && sameShape(a.shape, b.shape);
}
