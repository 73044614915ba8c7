// The served model's life: loaded and warmed before readiness, swapped atomically on reload (the old engine
// finishes its queued batches, then closes), and the process's: SIGTERM/SIGINT drain and exit, SIGHUP reloads.
import * as path from 'node:path';
import { UserError } from '../errors';
import { EmbeddingsHeader, readEmbeddingsHeader } from '../persist/embeddings';
import { readInputFile } from '../util/files';
import { Batcher, BatcherOptions } from './batcher';
import { Engine, ModelCard } from './types';

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
      // The answer goes to HTTP clients: files by their base names, as everywhere else.
      return { ok: false, error: baseNames(error), ms: ms() };
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

/** `text` with every absolute path shortened to its base name (for answers to clients). */
export function baseNames(text: string): string {
  return text.replace(/(?:^|(?<=[\s'"(=:]))(?:[A-Za-z]:)?[\\/](?:[^\s'"\\/]+[\\/])*([^\s'"\\/:,)]+)/g, '$1');
}

/** What the signal handlers need from the server. */
export interface Drainable {
  /** Fails readiness, ends live streams, stops accepting, finishes queued and in-flight work, closes the engine. */
  close(): Promise<unknown>;
  /** Readiness fails at once. */
  beginDrain(): void;
  /** For the line that says what a timed-out shutdown cut. */
  describeWork(): string;
  /** Work that exiting now would cut: admitted requests, queued images, uploads still arriving. */
  busy(): boolean;
  reload(): Promise<ReloadResult>;
}

/**
 * SIGTERM/SIGINT: drain and exit 0, or after `timeoutMs` exit at once: 1 saying what was cut, 0 when nothing was
 * (`timeoutMs` 0: do not wait for work in flight). A second signal exits at once. SIGHUP: reload the weights.
 * Returns a function that removes the handlers.
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
    const wait = o.timeoutMs > 0 ? `exit within ${o.timeoutMs / 1000} s` : 'not waiting (--shutdown-timeout 0)';
    o.log(`alexnet: ${signal}: draining (${s.describeWork()}); ${wait}`);
    const timer = setTimeout(() => {
      if (!s.busy()) {
        o.log('alexnet: stopped');
        return o.exit(0);
      }
      const why = o.timeoutMs > 0 ? `shutdown took over ${o.timeoutMs / 1000} s` : 'not waiting';
      o.log(`alexnet: ${why} (--shutdown-timeout): cut ${s.describeWork()}`);
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

/** The page's files as `serve` was given them, checked at startup (see checkPageFiles). */
export interface PageFiles {
  /** --eval, when given: refused when it cannot be read or is another model's. */
  eval?: string;
  /** eval.json found beside the weights (not asked for): another model's is only warned about. */
  defaultEval?: string;
  gallery?: string;
  queries?: string;
}

/** What a file says it belongs to, compared with the served model. */
interface Owner {
  model?: string;
  weights?: string;
  classes?: string[];
}

/** How `a` differs from `b` in words ('' when it does not): variant, then classes, then weights file. */
function ownerDifference(a: Owner, b: Owner): string {
  if (a.model && b.model && a.model !== b.model) return `${a.model}, not ${b.model}`;
  if (a.classes && b.classes) {
    if (a.classes.length !== b.classes.length) return `${a.classes.length} classes, not ${b.classes.length}`;
    const i = a.classes.findIndex((c, k) => c !== b.classes![k]);
    if (i >= 0) return `class ${i} is '${a.classes[i]}', not '${b.classes[i]}'`;
  }
  const base = (w: string) => path.basename(w);
  if (a.weights && b.weights && base(a.weights) !== base(b.weights))
    return `computed with ${base(a.weights)}, not ${base(b.weights)}`;
  return '';
}

/** An evaluation file's owner, or a one-line UserError naming the file when it cannot be read or is not one. */
function evaluationOwner(file: string): Owner {
  let e: { model?: unknown; weights?: unknown; perClass?: unknown; confusion?: unknown };
  try {
    e = JSON.parse(readInputFile(file).toString('utf8'));
  } catch (err) {
    throw new UserError(`--eval must be an evaluation (alexnet eval --json), got ${file}: ${firstLine(err)}`);
  }
  if (!e || !Array.isArray(e.confusion) || !Array.isArray(e.perClass))
    throw new UserError(`--eval must be an evaluation (alexnet eval --json), got ${path.basename(file)}`);
  const weights = Array.isArray(e.weights) ? e.weights[0] : e.weights;
  return {
    model: typeof e.model === 'string' ? e.model : undefined,
    weights: typeof weights === 'string' ? weights : undefined,
    classes: (e.perClass as { name?: unknown }[]).map((c) => String(c?.name)),
  };
}

const firstLine = (e: unknown) => String((e as Error)?.message ?? e).split('\n')[0];

/**
 * The page's files checked before the server listens. Refused (a one-line UserError, exit 2): a file that cannot
 * be read or is not what its option takes, --gallery without --queries or the reverse, a gallery and queries from
 * different embedding spaces (model, layer or size), an --eval of another model (variant or classes). Warned about
 * (loudly, on stderr, and served): embeddings of another model or weights file than the one served (the neighbours
 * view does not use the served model), an --eval computed with another weights file, and any mismatch of an
 * eval.json found beside the weights rather than asked for.
 */
export function checkPageFiles(f: PageFiles, card: ModelCard | undefined, warn: (line: string) => void): void {
  const served: Owner | undefined = card && { model: card.model, weights: card.weights, classes: card.classes };
  if (f.eval !== undefined || f.defaultEval !== undefined) {
    const file = (f.eval ?? f.defaultEval)!;
    const owner = evaluationOwner(file);
    const differs = served ? ownerDifference(owner, served) : '';
    const name = path.basename(file);
    if (differs && f.eval !== undefined && !differs.startsWith('computed with'))
      throw new UserError(`--eval must be an evaluation of the served model, got ${name} of ${differs}`);
    if (differs) warn(`alexnet: WARNING: ${name} is an evaluation of ${differs}; the page shows it as this model's`);
  }
  if ((f.gallery === undefined) !== (f.queries === undefined))
    throw new UserError(
      `--gallery and --queries go together (the page shows the queries' nearest gallery images), got only ${f.gallery !== undefined ? '--gallery' : '--queries'}`,
    );
  if (f.gallery === undefined || f.queries === undefined) return;
  const read = (file: string, option: string) => {
    try {
      return readEmbeddingsHeader(file);
    } catch (e) {
      throw new UserError(`${option} must be an embeddings file (alexnet features), got ${file}: ${firstLine(e)}`);
    }
  };
  const g = read(f.gallery, '--gallery');
  const q = read(f.queries, '--queries');
  const space = (e: EmbeddingsHeader) => `${e.model || '?'} ${e.layer || '?'}, ${e.dim} numbers per row`;
  if (g.model !== q.model || g.layer !== q.layer || g.dim !== q.dim)
    throw new UserError(
      `--gallery and --queries must come from one embedding space, got ${space(g)} and ${space(q)} (run alexnet features with the same --weights and --layer)`,
    );
  const between = ownerDifference(q, g);
  if (between) warn(`alexnet: WARNING: the queries and the gallery differ: ${between}; their distances mean little`);
  const differs = served ? ownerDifference(g, { ...served, classes: undefined }) : '';
  if (differs) warn(`alexnet: WARNING: the gallery's embeddings are of ${differs} (the served model)`);
}
