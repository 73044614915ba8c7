// `alexnet report RUN_DIR`: a run's figures as one self-contained HTML file, for people who would rather not run
// a server. The page's own scripts are inlined (uPlot, web/curves.js with its ticks.js and legend.js, and
// web/filters.js and web/confusion.js when they are there) with the data embedded as JSON: the file opens offline
// and fetches nothing.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { firstConvolution } from '../infer/introspect';
import { loadModel } from '../persist/load';
import { tidy } from '../tensor/tensor';
import { MetricsRecord, readMetricsFile } from './follow';
import { METRICS_FILE } from './runs';

/** conv1's kernels as the page's filter grid draws them: out × in × kh × kw, row-major. */
export interface FilterData {
  /** The weights file they were read from (its name inside the run folder). */
  file: string;
  layer: string;
  shape: number[];
  data: number[];
  /** The variant and classes of the model they come from (to check the run folder's eval.json against). */
  model?: string;
  classes?: string[];
}

/** What a report shows. */
export interface ReportData {
  name: string;
  records: MetricsRecord[];
  /** Complete lines of the metrics file that were not records (skipped). */
  malformed: number;
  filters?: FilterData;
  /** eval.json as `alexnet eval --json` and the demo write it (confusion matrix, per class). */
  evaluation?: Record<string, unknown>;
  /** When the report was made (ISO 8601). */
  created: string;
}

/** The run folder's metrics file; a one-line usage error when the folder or the file is missing. */
export function checkRunDir(runDir: string): string {
  const st = fs.statSync(runDir, { throwIfNoEntry: false });
  if (!st || !st.isDirectory())
    throw new UserError(
      `expected RUN_DIR to be a run folder (one holding ${METRICS_FILE}), got '${runDir}', which ${st ? 'is not a folder' : 'does not exist'}`,
    );
  const file = path.join(runDir, METRICS_FILE);
  const m = fs.statSync(file, { throwIfNoEntry: false });
  if (!m || !m.isFile())
    throw new UserError(
      `expected a run folder holding ${METRICS_FILE} (alexnet train --metrics writes it), got '${runDir}' without one`,
    );
  return file;
}

/** Weights files of the run folder, the checkpoint first. */
function weightsFiles(runDir: string): string[] {
  const names = fs.readdirSync(runDir).filter((n) => n.endsWith('.safetensors'));
  const rank = (n: string) => (n === 'checkpoint.safetensors' ? 0 : 1);
  return names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/** conv1's kernels from the first of the folder's weights files that holds a model; undefined when none does. */
export function readFilters(runDir: string, warn: (m: string) => void = () => undefined): FilterData | undefined {
  for (const name of weightsFiles(runDir)) {
    let loaded: ReturnType<typeof loadModel>;
    try {
      loaded = loadModel(path.join(runDir, name));
    } catch (e) {
      // Other safetensors files (alexnet features' embeddings) are not models: the next one may be.
      warn(`${name}: no filters from it (${(e as Error).message})`);
      continue;
    }
    const { model, record } = loaded;
    try {
      const conv = firstConvolution(model);
      if (!conv) continue;
      const w = conv.weight;
      const data = tidy(() => w.float().cpu().contiguous().toArray()).map((x) => Number(x.toPrecision(6)));
      const owner = { model: record.model, classes: [...record.classes] };
      return { file: name, layer: conv.layer, shape: [...w.shape], data, ...owner };
    } finally {
      model.dispose();
    }
  }
  return undefined;
}

/**
 * eval.json of the run folder when there is one and it is a JSON object. When the run's model is known (`run`: the
 * folder's weights, else its metrics records), an evaluation of another variant or other classes is left out with
 * a warning: a report never shows another model's confusion matrix as this run's.
 */
export function readEvaluation(
  runDir: string,
  warn: (m: string) => void = () => undefined,
  run: { model?: string; classes?: string[] } = {},
): ReportData['evaluation'] {
  const file = path.join(runDir, 'eval.json');
  if (!fs.existsSync(file)) return undefined;
  try {
    const v: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      const e = v as Record<string, unknown>;
      const differs = evaluationDifference(e, run);
      if (!differs) return e;
      warn(`eval.json: an evaluation of ${differs}; left out`);
      return undefined;
    }
    warn('eval.json: expected a JSON object; left out');
  } catch (e) {
    warn(`eval.json: left out (${(e as Error).message})`);
  }
  return undefined;
}

/** How an evaluation's model differs from the run's, in words ('' when it does not or cannot be told). */
function evaluationDifference(e: Record<string, unknown>, run: { model?: string; classes?: string[] }): string {
  if (typeof e.model === 'string' && run.model && e.model !== run.model)
    return `${e.model}, but this run's model is ${run.model}`;
  const names = Array.isArray(e.perClass) ? e.perClass.map((c: { name?: unknown }) => String(c?.name)) : undefined;
  if (!names || !run.classes) return '';
  if (names.length !== run.classes.length)
    return `${names.length} classes, but this run's model has ${run.classes.length}`;
  const i = names.findIndex((n, k) => n !== run.classes![k]);
  return i < 0 ? '' : `class ${i} '${names[i]}', but this run's model calls it '${run.classes[i]}'`;
}

/** The model the run's metrics records name (the first record with a string `model`), if any. */
function recordsModel(records: MetricsRecord[]): string | undefined {
  const r = records.find((x) => typeof x.model === 'string');
  return r?.model as string | undefined;
}

/** Everything a report of `runDir` shows, read now. */
export function collectReport(runDir: string, warn: (m: string) => void = () => undefined): ReportData {
  const metrics = checkRunDir(runDir);
  const { records, malformed } = readMetricsFile(metrics);
  if (malformed) warn(`${METRICS_FILE}: ${malformed} malformed line${malformed === 1 ? '' : 's'} skipped`);
  const filters = readFilters(runDir, warn);
  const run = { model: filters?.model ?? recordsModel(records), classes: filters?.classes };
  return {
    name: path.basename(path.resolve(runDir)),
    records,
    malformed,
    filters,
    evaluation: readEvaluation(runDir, warn, run),
    created: new Date().toISOString(),
  };
}

/** The folder of the page's scripts (web/), found above this file in the package (dist/src/serve or src/serve). */
export function webDir(): string {
  for (let d = __dirname, i = 0; i < 5; i++, d = path.dirname(d)) {
    if (fs.existsSync(path.join(d, 'web', 'curves.js'))) return path.join(d, 'web');
  }
  throw new UserError(
    `the page's scripts (web/curves.js) are missing from this installation (looked above ${__dirname})`,
  );
}

/** The scripts and styles a report inlines; the optional views are absent when their files are. */
export interface ReportAssets {
  uplotJs: string;
  uplotCss: string;
  curvesJs: string;
  /** The curves' axis ticks and legend (web/ticks.js, web/legend.js), inlined before curves.js. */
  ticksJs: string;
  legendJs: string;
  filtersJs?: string;
  confusionJs?: string;
  /** The page's style sheet (web/style.css), so the views look as they do on the page. */
  pageCss?: string;
}

export function loadAssets(dir = webDir()): ReportAssets {
  const read = (f: string) => fs.readFileSync(f, 'utf8');
  const optional = (n: string) => (fs.existsSync(path.join(dir, n)) ? read(path.join(dir, n)) : undefined);
  return {
    uplotJs: read(require.resolve('uplot/dist/uPlot.iife.min.js')),
    uplotCss: read(require.resolve('uplot/dist/uPlot.min.css')),
    curvesJs: read(path.join(dir, 'curves.js')),
    ticksJs: read(path.join(dir, 'ticks.js')),
    legendJs: read(path.join(dir, 'legend.js')),
    filtersJs: optional('filters.js'),
    confusionJs: optional('confusion.js'),
    pageCss: optional('style.css'),
  };
}

const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** JSON that stays inside its <script> element whatever the strings in it hold ("</script>", "<!--"). */
export function jsonForScript(v: unknown): string {
  return JSON.stringify(v)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}

/** A script's text made safe to inline: "</script" (in a string or a comment) cannot close the element early. */
const inlineScript = (js: string): string => `<script>\n${js.replace(/<\/(script)/gi, '<\\/$1')}\n</script>`;
const inlineStyle = (css: string): string => `<style>\n${css.replace(/<\/(style)/gi, '<\\/$1')}\n</style>`;

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
.meta { color: #666; margin-top: 0; } .curves-controls { display: flex; gap: 2em; align-items: center; }
.curves-grid { display: flex; flex-wrap: wrap; gap: 16px; margin-top: 0.5em; }
.curves-status { color: #666; } .missing { color: #a33; } canvas { image-rendering: pixelated; }`;

// Runs in the browser: draws every view the file has data and a script for; one failing leaves the others.
const BOOT = `(function () {
  var d = JSON.parse(document.getElementById('alexnet-report-data').textContent);
  function attempt(id, fn) {
    try { fn(document.getElementById(id)); }
    catch (e) { var p = document.createElement('p'); p.className = 'missing'; p.textContent = 'could not draw: ' + e.message; document.getElementById(id).after(p); }
  }
  attempt('training-view', function (el) {
    AlexnetCurves.createRunsView(el, { runs: [{ id: d.name, name: d.name, records: d.records }] });
  });
  var views = window.AlexnetViews || {};
  if (d.filters && views.drawFilters) attempt('filters', function (el) {
    views.drawFilters(el, { shape: d.filters.shape, data: new Float32Array(d.filters.data) });
  });
  if (d.evaluation && views.drawConfusion) attempt('confusion', function (el) { views.drawConfusion(el, d.evaluation); });
})();`;

const pct = (v: unknown): string | undefined => (typeof v === 'number' ? `${(100 * v).toFixed(2)}%` : undefined);

/** One summary line: records, training runs, epochs, the last test accuracy. */
function summary(d: ReportData): string {
  const runs = new Set(d.records.map((r) => r.run).filter((r) => typeof r === 'string'));
  const epochs = d.records.filter((r) => r.kind === 'epoch');
  const last = epochs[epochs.length - 1];
  const parts = [`${d.records.length} records`, `${runs.size} training run${runs.size === 1 ? '' : 's'}`];
  if (last) parts.push(`${epochs.length} epochs, last test top-1 ${pct(last.test_acc) ?? '?'}`);
  if (d.malformed) parts.push(`${d.malformed} malformed lines skipped`);
  return `${parts.join(' · ')} · made ${d.created.replace('T', ' ').slice(0, 19)} UTC`;
}

function sections(d: ReportData, a: ReportAssets): string[] {
  const out = [`<section><h2>Training</h2><div id="training-view"></div></section>`];
  if (d.filters && a.filtersJs) {
    const [n, c, h, w] = d.filters.shape;
    out.push(
      `<section><h2>Learned filters</h2><p class="meta">${escapeHtml(d.filters.layer)}: ${n} kernels of ${c} × ${h} × ${w}` +
        ` from ${escapeHtml(d.filters.file)}</p><canvas id="filters"></canvas></section>`,
    );
  }
  if (d.evaluation) {
    const e = d.evaluation;
    const head = [pct(e.top1) && `top-1 ${pct(e.top1)}`, pct(e.top5) && `top-5 ${pct(e.top5)}`].filter(Boolean);
    const n = typeof e.n === 'number' ? ` on ${e.n} images` : '';
    out.push(
      `<section><h2>Evaluation</h2>` +
        // confusion.js heads its own view with these numbers.
        (a.confusionJs ? '<div id="confusion"></div>' : `<p class="meta">${escapeHtml(head.join(', ') + n)}</p>`) +
        `</section>`,
    );
  }
  return out;
}

/** The report's HTML: one file, no external URL. */
export function renderReport(d: ReportData, a: ReportAssets = loadAssets()): string {
  const embedded = { ...d, filters: a.filtersJs ? d.filters : undefined };
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>alexnet report: ${escapeHtml(d.name)}</title>`,
    inlineStyle(a.uplotCss),
    ...(a.pageCss ? [inlineStyle(a.pageCss)] : []),
    inlineStyle(STYLE),
    '</head><body>',
    `<header><h1>${escapeHtml(d.name)}</h1><p class="meta">${escapeHtml(summary(d))}</p></header>`,
    ...sections(d, a),
    `<script type="application/json" id="alexnet-report-data">${jsonForScript(embedded)}</script>`,
    inlineScript(a.uplotJs),
    inlineScript(a.ticksJs),
    inlineScript(a.legendJs),
    inlineScript(a.curvesJs),
    ...(a.filtersJs ? [inlineScript(a.filtersJs)] : []),
    ...(a.confusionJs ? [inlineScript(a.confusionJs)] : []),
    inlineScript(BOOT),
    '</body></html>',
    '',
  ].join('\n');
}
