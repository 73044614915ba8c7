// The web page and the model views it draws from: GET / and the files of web/ (no build step, nothing from a CDN:
// uPlot comes from node_modules), conv1's filters, one image's feature maps, nearest neighbours in the embedding
// space and a stored evaluation. Every model view goes through `engine()`, which may change while the server runs
// (a reload), and answers 404 JSON when there is no model or the runtime cannot look inside it (onnxruntime).
import * as fs from 'node:fs';
import * as path from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import { MAX_PIXELS } from '../data/image';
import { readInputFile } from '../util/files';
import { ADMIT } from './admission';
import { ErrorOptions, ServeError, useErrorCatalogue } from './errors';
import { checkUpload, decodeUpload } from './images';
import { uploadOf } from './uploads';
import { KBounds, kParam } from './params';
import { describeRow, EmbeddingSet, ImageRenderer, nearest, readEmbeddings, row } from './neighbours';
import { Engine, InsightEngine, LayerOutput, PageData } from './types';

export interface PageRoutesOptions extends PageData {
  /** The served model; absent when the server shows runs only. */
  engine?: () => Engine | undefined;
  /** The IDX folder whose images the embeddings' `split:index` rows name (default: Debian's Fashion-MNIST). */
  dataDir?: string;
  /** The largest image accepted for feature maps, in bytes (default 10 MiB, as predict's default). */
  maxUploadBytes?: number;
  /** The most pixels an uploaded image may have, decided from its header (default: predict's limit). */
  maxPixels?: number;
  /** The page's files (default: the package's web/ folder). */
  webDir?: string;
  /** Told every refusal and 5xx, as the server's other routes are (default: stderr, no metrics). */
  errors?: Pick<ErrorOptions, 'onRejection' | 'log'>;
}

/** The package's web/ folder, seen from the compiled file (dist/src/serve/page.js). */
export const WEB_DIR = path.resolve(__dirname, '../../../web');

/** Channels sent per layer for feature maps: enough to see what a layer does, small enough to send at once. */
export const MAX_MAP_CHANNELS = 32;
/** Neighbours returned at most per query. */
export const MAX_NEIGHBOURS = 64;
/** Query rankings kept (the oldest is dropped first). */
const MAX_RANKINGS = 10_000;

const VENDOR: Record<string, string> = {
  'uPlot.iife.min.js': 'application/javascript; charset=utf-8',
  'uPlot.min.css': 'text/css; charset=utf-8',
};

/** The current engine and its insight, or the 404 that says why the model views are not available. */
function insightOf(o: PageRoutesOptions): { engine: Engine; insight: InsightEngine } {
  const engine = o.engine?.();
  if (!engine) throw new ServeError('no_model', 'no model is loaded (this server shows training runs only)');
  if (!engine.insight)
    throw new ServeError(
      'no_insight',
      `the ${engine.card.runtime} runtime cannot show the model's insides: serve with --runtime libtorch`,
    );
  return { engine, insight: engine.insight };
}

/** The page (GET /), its static assets and the model views, as a plugin (its errors in the catalogue's form). */
export const pagePlugin: FastifyPluginAsync<PageRoutesOptions> = async (app, o) => {
  useErrorCatalogue(app, { maxUploadBytes: o.maxUploadBytes ?? DEFAULT_UPLOAD_BYTES, ...o.errors });
  await app.register(fastifyStatic, { root: o.webDir ?? WEB_DIR, prefix: '/', wildcard: false, index: 'index.html' });
  registerVendor(app);
  const filters = new WeakMap<Engine, Promise<{ shape: number[]; data: number[] }>>();
  app.get('/v1/filters', async () => {
    const { engine, insight } = insightOf(o);
    let p = filters.get(engine);
    if (!p) {
      p = insight.filters().then((t) => ({ shape: t.shape, data: Array.from(t.data) }));
      filters.set(engine, p);
      p.catch(() => filters.delete(engine));
    }
    return { model: engine.card.model, ...(await p) };
  });
  await app.register(async (sub) => registerFeatureMaps(sub, o));
  registerNeighbours(app, o);
  app.get('/v1/evaluation', async () => readEvaluation(o.evaluationFile));
  // Which views have data: the page asks only for those (an endpoint without data would be a 404 in its console).
  app.get('/v1/views', async () => ({
    model: Boolean(o.engine?.()),
    neighbours: Boolean(o.galleryFile && o.queriesFile),
    evaluation: Boolean(o.evaluationFile),
    runs: Boolean(o.runsDir),
  }));
};

const DEFAULT_UPLOAD_BYTES = 10 * 1024 * 1024;

/** uPlot's script and style, from its npm package. */
function registerVendor(app: FastifyInstance): void {
  const dir = path.join(path.dirname(require.resolve('uplot/package.json')), 'dist');
  const cache = new Map<string, Buffer>();
  app.get<{ Params: { file: string } }>('/vendor/uplot/:file', async (req, reply) => {
    const type = VENDOR[req.params.file];
    if (!type) throw new ServeError('not_found', `no file ${req.params.file} under /vendor/uplot/`);
    let body = cache.get(req.params.file);
    if (!body) cache.set(req.params.file, (body = fs.readFileSync(path.join(dir, req.params.file))));
    return reply.type(type).header('cache-control', 'public, max-age=3600').send(body);
  });
}

/**
 * POST /v1/feature-maps: a raw image body (as POST /v1/predict takes it) → every conv layer's activations. The
 * route has its own body parser (in its own plugin scope), so it does not depend on what else the server parses.
 */
function registerFeatureMaps(app: FastifyInstance, o: PageRoutesOptions): void {
  const bodyLimit = o.maxUploadBytes ?? DEFAULT_UPLOAD_BYTES;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_req, body, done) => done(null, body));
  app.post('/v1/feature-maps', { config: ADMIT }, async (req) => {
    const first = insightOf(o);
    const pixels = await uploadedPixels(req, first.engine, o.maxPixels ?? MAX_PIXELS);
    // A reload while the image decoded: the new engine answers (the old one may be closing), when it takes the
    // same input; else the old one (which answers unless it has closed meanwhile).
    const now = insightOf(o);
    const same = sameGeometry(now.engine, first.engine);
    const { engine, insight } = same ? now : first;
    const layers = await insight.featureMaps(pixels);
    return { model: engine.card.model, layers: layers.map((l) => compactLayer(l, MAX_MAP_CHANNELS)) };
  });
}

const sameGeometry = (a: Engine, b: Engine) => {
  const [g, h] = [a.card.geometry, b.card.geometry];
  return g.channels === h.channels && g.height === h.height && g.width === h.width;
};

/**
 * The body of an image upload, taken (uploads.ts) and checked (images.ts) as POST /v1/predict takes and checks it,
 * raw bodies only, and decoded.
 */
async function uploadedPixels(req: FastifyRequest, engine: Engine, maxPixels: number): Promise<Uint8Array> {
  const body = await uploadOf(req, { multipart: false });
  await checkUpload(body, maxPixels);
  return decodeUpload(body, engine.card.geometry);
}

/** One layer for the page: its first channels, each min-max normalised to 0–255 and sent as base64 uint8. */
export function compactLayer(l: LayerOutput, maxChannels: number) {
  const [c, h, w] = l.shape;
  const n = Math.min(c, maxChannels);
  const size = h * w;
  const bytes = new Uint8Array(n * size);
  const lo: number[] = [];
  const hi: number[] = [];
  for (let ch = 0; ch < n; ch++) {
    const map = l.data.subarray(ch * size, (ch + 1) * size);
    let a = Infinity;
    let b = -Infinity;
    for (const v of map) {
      a = Math.min(a, v);
      b = Math.max(b, v);
    }
    const scale = b > a ? 255 / (b - a) : 0;
    for (let i = 0; i < size; i++) bytes[ch * size + i] = Math.round((map[i] - a) * scale);
    lo.push(a);
    hi.push(b);
  }
  return { layer: l.layer, shape: l.shape, channels: n, min: lo, max: hi, data: Buffer.from(bytes).toString('base64') };
}

/** GET /v1/neighbours and GET /v1/images/:set/:i: the embeddings files are read once, on first use. */
function registerNeighbours(app: FastifyInstance, o: PageRoutesOptions): void {
  const files: Record<string, string | undefined> = { queries: o.queriesFile, gallery: o.galleryFile };
  const loaded = new Map<string, Promise<EmbeddingSet>>();
  // A search scans the whole gallery on the event loop (about 0.3 s for 60,000 × 4096): each query's ranking is
  // kept, so paging back and forth through the page's rows costs nothing after the first visit.
  const rankings = new Map<number, { index: number; distance: number }[]>();
  const ranked = (gallery: EmbeddingSet, queries: EmbeddingSet, q: number) => {
    let r = rankings.get(q);
    if (!r) {
      r = nearest(gallery, row(queries, q), MAX_NEIGHBOURS);
      if (rankings.size >= MAX_RANKINGS) rankings.delete(rankings.keys().next().value!);
      rankings.set(q, r);
    }
    return r;
  };
  const load = (set: string): Promise<EmbeddingSet> => {
    const file = files[set];
    if (!file)
      throw new ServeError('no_neighbours', `no ${set} embeddings are configured (serve with --gallery and --queries)`);
    let p = loaded.get(set);
    if (!p) {
      p = Promise.resolve().then(() => readEmbeddings(file));
      loaded.set(set, p);
      p.catch(() => loaded.delete(set));
    }
    return p;
  };
  app.get<{ Querystring: { query?: string; k?: string } }>('/v1/neighbours', async (req) => {
    const [queries, gallery] = await Promise.all([load('queries'), load('gallery')]);
    if (queries.dim !== gallery.dim)
      throw new ServeError('mismatch', `the queries have ${queries.dim} numbers per row, the gallery ${gallery.dim}`);
    const info = { metric: 'euclidean', layer: gallery.layer, model: gallery.model, classes: gallery.classes };
    const counts = { queries: queries.rows, gallery: gallery.rows };
    if (req.query.query === undefined) return { ...info, ...counts };
    const q = intParam('query', req.query.query, 0, queries.rows - 1);
    const k = req.query.k === undefined ? Math.min(8, gallery.rows) : kParam(req.query.k, neighbourBounds(gallery));
    const near = ranked(gallery, queries, q).slice(0, k);
    return {
      ...info,
      ...counts,
      query: describeRow(queries, q),
      neighbours: near.map((n) => describeRow(gallery, n.index, n.distance)),
    };
  });
  const renderer = new ImageRenderer(o.dataDir);
  app.get<{ Params: { set: string; i: string } }>('/v1/images/:set/:i', async (req, reply) => {
    const { set, i } = req.params;
    if (!Object.hasOwn(files, set))
      throw new ServeError('not_found', `no image set '${set}' (expected queries or gallery)`);
    const s = await load(set);
    const index = intParam('i', i, 0, s.rows - 1, true);
    return reply
      .type('image/png')
      .header('cache-control', 'public, max-age=3600')
      .send(await renderer.png(s, index, set === 'gallery' ? 'gallery' : 'query'));
  });
}

/** The bounds of k for neighbours: MAX_NEIGHBOURS, or the gallery's rows when it has fewer. */
const neighbourBounds = (gallery: EmbeddingSet): KBounds =>
  gallery.rows < MAX_NEIGHBOURS
    ? { max: gallery.rows, why: `the gallery has ${gallery.rows} images` }
    : { max: MAX_NEIGHBOURS, why: `at most ${MAX_NEIGHBOURS} neighbours are answered per query` };

/** An integer parameter in [lo, hi], or the error that says what was expected and what was received. */
function intParam(name: string, value: string, lo: number, hi: number, notFound = false): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(n >= lo && n <= hi))
    throw new ServeError(
      notFound ? 'not_found' : 'bad_request',
      `${name} must be an integer from ${lo} to ${hi}, got '${value}'`,
    );
  return n;
}

/** The evaluation file's JSON, without the full path of the weights it names. */
function readEvaluation(file: string | undefined): unknown {
  if (!file) throw new ServeError('no_evaluation', 'no evaluation is configured (serve with --eval FILE)');
  let e: { confusion?: unknown; perClass?: unknown; weights?: unknown };
  try {
    e = JSON.parse(readInputFile(file).toString('utf8'));
  } catch (err) {
    throw new ServeError('bad_evaluation', `the evaluation file cannot be read: ${(err as Error).message}`);
  }
  if (!e || !Array.isArray(e.confusion) || !Array.isArray(e.perClass))
    throw new ServeError('bad_evaluation', `${path.basename(file)} is not an evaluation (alexnet eval --json)`);
  const base = (w: unknown) => (typeof w === 'string' ? path.basename(w) : w);
  return {
    ...e,
    ...(e.weights !== undefined && { weights: Array.isArray(e.weights) ? e.weights.map(base) : base(e.weights) }),
  };
}
