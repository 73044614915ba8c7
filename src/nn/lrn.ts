import { UserError } from '../errors';
import { cat, Tensor, tidy } from '../tensor/tensor';
import { localResponseNorm } from './functional';
import { expectRank, LayerShapeError, Module } from './module';
import type { LrnSpec } from './spec';

/**
 * The conventions in use, by name. All normalise across channels, b = a / (k + s · Σ a²)^β, over a window
 * clipped at the first and last channel; they differ in how α is scaled and how the window is named:
 * - 'pytorch' (PyTorch's LocalResponseNorm, Caffe): `size` channels, s = α / size, k default 1.
 * - 'tensorflow' (tf.nn.lrn, tfjs): 2·depthRadius + 1 channels, s = α, bias default 1.
 * - 'paper' (Krizhevsky et al. 2012): n channels, s = α; AlexNet's k = 2, n = 5, α = 1e-4, β = 0.75.
 */
export type LrnOptions = (
  | { convention: 'pytorch'; size: number; alpha?: number; beta?: number; k?: number }
  | { convention: 'tensorflow'; depthRadius?: number; bias?: number; alpha?: number; beta?: number }
  | { convention: 'paper'; n?: number; k?: number; alpha?: number; beta?: number }
) & {
  /**
   * The channels split into this many equal, consecutive groups and the window never crosses a group's edge (it
   * is clipped there as at the first and last channel). 2 is the paper's two GPUs: each GPU's normalisation sees
   * only its own kernel maps (cuda-convnet2's rnorm1a/rnorm1b with channels=48). Default 1.
   */
  groups?: number;
};

/** Local response normalisation across channels. (N, C, H, W) -> (N, C, H, W). */
export class LocalResponseNorm extends Module {
  readonly size: number;
  readonly alpha: number;
  readonly beta: number;
  readonly k: number;
  /** α is divided by the window size (PyTorch, Caffe) rather than used as is (paper, TensorFlow). */
  readonly alphaPerSize: boolean;
  /** Channel groups normalised independently (see LrnOptions.groups). */
  readonly groups: number;

  constructor(readonly options: LrnOptions) {
    super();
    switch (options.convention) {
      case 'pytorch':
        this.size = options.size;
        this.alpha = options.alpha ?? 1e-4;
        this.beta = options.beta ?? 0.75;
        this.k = options.k ?? 1;
        this.alphaPerSize = true;
        break;
      case 'tensorflow':
        this.size = 2 * (options.depthRadius ?? 5) + 1;
        this.alpha = options.alpha ?? 1;
        this.beta = options.beta ?? 0.5;
        this.k = options.bias ?? 1;
        this.alphaPerSize = false;
        break;
      case 'paper':
        this.size = options.n ?? 5;
        this.alpha = options.alpha ?? 1e-4;
        this.beta = options.beta ?? 0.75;
        this.k = options.k ?? 2;
        this.alphaPerSize = false;
        break;
      default:
        throw new UserError(
          `LocalResponseNorm: unknown convention '${(options as { convention: string }).convention}' (expected pytorch, tensorflow or paper)`,
        );
    }
    if (!Number.isInteger(this.size) || this.size < 1)
      throw new UserError(`LocalResponseNorm: window size must be a positive integer, got ${this.size}`);
    this.groups = options.groups ?? 1;
    if (!Number.isInteger(this.groups) || this.groups < 1)
      throw new UserError(`LocalResponseNorm: groups must be a positive integer, got ${this.groups}`);
  }

  forward(x: Tensor): Tensor {
    const norm = (t: Tensor) => localResponseNorm(t, this.size, this.alpha, this.beta, this.k, this.alphaPerSize);
    if (this.groups === 1) return norm(x);
    const c = x.shape[1];
    this.checkChannels(c);
    // Each group's channel slice normalised on its own: the window is clipped at the slice's ends.
    const width = c / this.groups;
    return tidy(() =>
      cat(
        Array.from({ length: this.groups }, (_, g) => norm(x.narrow(1, g * width, width))),
        1,
      ),
    );
  }
  override outputShape(input: number[]): number[] {
    expectRank('LocalResponseNorm', input, 3);
    this.checkChannels(input[0]);
    return input;
  }
  override spec(): LrnSpec {
    const { size, alpha, beta, k, alphaPerSize, groups } = this;
    return { kind: 'lrn', convention: this.options.convention, size, alpha, beta, k, alphaPerSize, groups };
  }
  override describe(): string {
    const c = this.options.convention;
    const groups = this.groups === 1 ? '' : `, groups=${this.groups}`;
    return `LocalResponseNorm(${c}, size=${this.size}, alpha=${this.alpha}, beta=${this.beta}, k=${this.k}${groups})`;
  }

  private checkChannels(channels: number): void {
    if (channels % this.groups !== 0)
      throw new LayerShapeError(
        `LocalResponseNorm: ${this.groups} groups need a channel count divisible by ${this.groups}, got ${channels}`,
      );
  }
}
