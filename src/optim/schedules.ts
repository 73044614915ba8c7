// Learning-rate schedules, applied at the end of each epoch.
import { UserError } from '../errors';

export interface Schedule {
  readonly name: string;
  /** Called after each epoch with the validation error (1 − top-1); returns the learning rate for the next epoch. */
  epochEnd(lr: number, valError: number): number;
  state(): Record<string, number>;
  load(s: Record<string, number>): void;
}

export class ConstantSchedule implements Schedule {
  readonly name = 'constant';
  epochEnd(lr: number): number {
    return lr;
  }
  state(): Record<string, number> {
    return {};
  }
  load(): void {}
}

/** Multiplies the rate by `gamma` every `stepSize` epochs. */
export class StepSchedule implements Schedule {
  readonly name = 'step';
  #epoch = 0;
  constructor(
    readonly stepSize: number,
    readonly gamma = 0.1,
  ) {
    if (!Number.isInteger(stepSize) || stepSize < 1)
      throw new UserError(`step schedule needs a positive step size in epochs, got ${stepSize}`);
  }
  epochEnd(lr: number): number {
    this.#epoch++;
    return this.#epoch % this.stepSize === 0 ? lr * this.gamma : lr;
  }
  state(): Record<string, number> {
    return { epoch: this.#epoch };
  }
  load(s: Record<string, number>): void {
    this.#epoch = s.epoch ?? 0;
  }
}

/**
 * The paper's schedule: divide the rate by 10 when the validation error stops improving (no improvement larger
 * than `threshold` for `patience` epochs), at most `maxReductions` times (three in the paper).
 */
export class PlateauSchedule implements Schedule {
  readonly name = 'plateau';
  #best = Infinity;
  #bad = 0;
  #reductions = 0;
  constructor(readonly o: { factor?: number; patience?: number; threshold?: number; maxReductions?: number } = {}) {}
  epochEnd(lr: number, valError: number): number {
    const threshold = this.o.threshold ?? 1e-3;
    if (valError < this.#best - threshold) {
      this.#best = valError;
      this.#bad = 0;
      return lr;
    }
    this.#bad++;
    if (this.#bad >= (this.o.patience ?? 2) && this.#reductions < (this.o.maxReductions ?? 3)) {
      this.#bad = 0;
      this.#reductions++;
      return lr * (this.o.factor ?? 0.1);
    }
    return lr;
  }
  state(): Record<string, number> {
    return { best: Number.isFinite(this.#best) ? this.#best : -1, bad: this.#bad, reductions: this.#reductions };
  }
  load(s: Record<string, number>): void {
    this.#best = s.best === undefined || s.best < 0 ? Infinity : s.best;
    this.#bad = s.bad ?? 0;
    this.#reductions = s.reductions ?? 0;
  }
}

export function makeSchedule(spec: string): Schedule {
  if (spec === 'constant' || spec === 'none') return new ConstantSchedule();
  if (spec === 'plateau') return new PlateauSchedule();
  const m = /^step:(\d+)(?::([0-9.eE-]+))?$/.exec(spec);
  if (m) return new StepSchedule(Number(m[1]), m[2] ? Number(m[2]) : 0.1);
  throw new UserError(`unknown schedule '${spec}' (expected constant, plateau, or step:EPOCHS[:GAMMA])`);
}
