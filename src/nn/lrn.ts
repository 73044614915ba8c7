import { UserError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { localResponseNorm } from './functional';
import { expectRank, Module } from './module';

/**
 * The conventions in use, by name. All normalise across channels, b = a / (k + s · Σ a²)^β, over a window
 * clipped at the first and last channel; they differ in how α is scaled and how the window is named:
 * - 'pytorch' (PyTorch's LocalResponseNorm, Caffe): `size` channels, s = α / size, k default 1.
 * - 'tensorflow' (tf.nn.lrn, tfjs): 2·depthRadius + 1 channels, s = α, bias default 1.
 * - 'paper' (Krizhevsky et al. 2012): n channels, s = α; AlexNet's k = 2, n = 5, α = 1e-4, β = 0.75.
 */
export type LrnOptions =
  | { convention: 'pytorch'; size: number; alpha?: number; beta?: number; k?: number }
  | { convention: 'tensorflow'; depthRadius?: number; bias?: number; alpha?: number; beta?: number }
  | { convention: 'paper'; n?: number; k?: number; alpha?: number; beta?: number };

/** Local response normalisation across channels. (N, C, H, W) -> (N, C, H, W). */
export class LocalResponseNorm extends Module {
  readonly size: number;
  readonly alpha: number;
  readonly beta: number;
  readonly k: number;
  /** α is divided by the window size (PyTorch, Caffe) rather than used as is (paper, TensorFlow). */
  readonly alphaPerSize: boolean;

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
  }

  forward(x: Tensor): Tensor {
    return localResponseNorm(x, this.size, this.alpha, this.beta, this.k, this.alphaPerSize);
  }
  override outputShape(input: number[]): number[] {
    expectRank('LocalResponseNorm', input, 3);
    return input;
  }
  override describe(): string {
    const c = this.options.convention;
    return `LocalResponseNorm(${c}, size=${this.size}, alpha=${this.alpha}, beta=${this.beta}, k=${this.k})`;
  }
}
