// The served model's life: loaded and warmed before readiness, swapped atomically on reload (the old engine
// finishes its queued batches, then closes), and the process's: SIGTERM/SIGINT drain and exit, SIGHUP reloads.
import { Batcher, BatcherOptions } from './batcher';
import { Engine } from './types';

export type ModelState = 'loading' | 'ready' | 'failed' | 'runs-only';

/** One engine with its batcher: what a request uses from start to end, even across a reload. */
export interface Slot {
  engine: Engine;
  batcher: Batcher;
}

export interface ReloadResult {
  ok: boolean;
  /** Why it failed (the old model is still served). */
  error?: string;
  ms: number;
}

/**
 * Holds the current engine. `open` is called at start and on every reload; a reload builds and warms a new slot
 * beside the old one and swaps them in one assignment, so every request runs wholly on one of the two.
 */
export class ModelHost {
  state: ModelState;
  /** Why the first load failed. */
  error?: Error;
  slot: Slot | undefined;
  /** Resolves when the first engine is ready (rejects with its error); runs-only: at once. */
  readonly ready: Promise<void>;
  private reloading: Promise<ReloadResult> | undefined;
  /** Replaced engines still finishing what they admitted, then closing. */
  private readonly retiring = new Set<Promise<void>>();

  constructor(
    private readonly open: (() => Promise<Engine>) | undefined,
    private readonly batching: BatcherOptions,
    private readonly log: (line: string) => void,
    /** Told the outcome of every reload (metrics). */
    private readonly onReload: (ok: boolean) => void = () => undefined,
  ) {
    this.state = open ? 'loading' : 'runs-only';
    this.ready = open
      ? this.load().then(
          (s) => {
            this.slot = s;
            this.state = 'ready';
          },
          (e: Error) => {
            this.state = 'failed';
            this.error = e;
            throw e;
          },
        )
      : Promise.resolve();
    this.ready.catch(() => undefined);
  }

  /** A new engine, warmed at every batch size. */
  private async load(): Promise<Slot> {
    const engine = await this.open!();
    const batcher = new Batcher(engine, this.batching);
    try {
      await batcher.warm();
    } catch (e) {
      await engine.close().catch(() => undefined);
      throw e;
    }
    return { engine, batcher };
  }

  get reloadRunning(): boolean {
    return this.reloading !== undefined;
  }

  /** Loads the weights anew; on failure the old model stays. One reload at a time (a second one joins the first). */
  reload(): Promise<ReloadResult> {
    if (!this.open) return Promise.resolve({ ok: false, error: 'no model is served (runs only)', ms: 0 });
    this.reloading ??= this.swap()
      .then((r) => (this.onReload(r.ok), r))
      .finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  private async swap(): Promise<ReloadResult> {
    const start = performance.now();
    const ms = () => Math.round(performance.now() - start);
    let next: Slot;
    try {
      next = await this.load();
    } catch (e) {
      const error = String((e as Error)?.message ?? e).split('\n')[0];
      this.log(`alexnet: reload failed, still serving the old model: ${error}`);
      return { ok: false, error, ms: ms() };
    }
    const old = this.slot;
    // One tick: the new slot serves new requests, and the old batcher forwards to it whatever arrives late.
    this.slot = next;
    old?.batcher.retire(next.batcher);
    this.state = 'ready';
    const c = next.engine.card;
    this.log(`alexnet: reloaded ${c.weights} (${c.model}, ${c.runtime} ${c.precision}) in ${ms()} ms`);
    if (old) this.retire(old);
    return { ok: true, ms: ms() };
  }

  /** The old engine answers every batch it admitted, then closes (its close waits for calls in flight). */
  private retire(old: Slot): void {
    const done: Promise<void> = old.batcher
      .drained()
      .then(() => old.engine.close())
      .catch((e: Error) => this.log(`alexnet: closing the replaced engine: ${String(e?.message ?? e).split('\n')[0]}`))
      .finally(() => this.retiring.delete(done));
    this.retiring.add(done);
  }

  /** Waits for queued batches, then closes the engine (at shutdown), and the engines replaced before it. */
  async close(): Promise<void> {
    await this.reloading;
    await Promise.all([...this.retiring]);
    const s = this.slot;
    if (!s) return;
    await s.batcher.drained();
    await s.engine.close();
  }
}

/** What the signal handlers need from the server. */
export interface Drainable {
  /** Fails readiness, ends live streams, stops accepting, finishes queued and in-flight work, closes the engine. */
  close(): Promise<unknown>;
  /** Readiness fails at once. */
  beginDrain(): void;
  /** For the line that says what a timed-out shutdown cut. */
  describeWork(): string;
  reload(): Promise<ReloadResult>;
}

/**
 * SIGTERM/SIGINT: drain and exit 0, or exit 1 after `timeoutMs` saying what was cut (a second signal exits at
 * once); SIGHUP: reload the weights. Returns a function that removes the handlers.
 */
export function installSignals(
  s: Drainable,
  o: { timeoutMs: number; log: (line: string) => void; exit: (code: number) => void },
): () => void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      o.log(`alexnet: ${signal} again: exiting now (${s.describeWork()})`);
      return o.exit(1);
    }
    stopping = true;
    s.beginDrain();
    o.log(`alexnet: ${signal}: draining (${s.describeWork()}); exit within ${o.timeoutMs / 1000} s`);
    const timer = setTimeout(() => {
      o.log(`alexnet: shutdown took over ${o.timeoutMs / 1000} s (--shutdown-timeout): cut ${s.describeWork()}`);
      o.exit(1);
    }, o.timeoutMs);
    s.close().then(
      () => {
        clearTimeout(timer);
        o.log('alexnet: stopped');
        o.exit(0);
      },
      (e: Error) => {
        clearTimeout(timer);
        o.log(`alexnet: error while stopping: ${e.message}`);
        o.exit(1);
      },
    );
  };
  const term = () => stop('SIGTERM');
  const int = () => stop('SIGINT');
  const hup = () => {
    o.log('alexnet: SIGHUP: reloading the weights');
    void s.reload();
  };
  process.on('SIGTERM', term);
  process.on('SIGINT', int);
  process.on('SIGHUP', hup);
  return () => {
    process.off('SIGTERM', term);
    process.off('SIGINT', int);
    process.off('SIGHUP', hup);
  };
}
