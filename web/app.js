// The page: tabs over one server. It asks the server what it serves (GET /v1/views, then /v1/models and the views'
// endpoints that have data) and shows only the tabs that have something behind them; each tab loads its data the
// first time it is opened.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const views = window.AlexnetViews || {};
  const state = { card: undefined, image: undefined, mapsFor: undefined, evaluation: undefined, loaded: {} };

  /** fetch with the JSON answer (or the server's {error}) read out. */
  async function api(url, init) {
    const r = await fetch(url, init);
    const type = r.headers.get('content-type') || '';
    const body = type.includes('json') ? await r.json() : undefined;
    return { ok: r.ok, status: r.status, body };
  }
  const errorText = (r) => (r.body && r.body.error) || `the server answered ${r.status}`;

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function showError(id, message) {
    $(id).textContent = message || '';
    $(id).hidden = !message;
  }

  // ---- tabs ----

  const tabs = () => Array.from(document.querySelectorAll('#tabs button'));

  function selectTab(name) {
    for (const b of tabs()) {
      const on = b.dataset.tab === name;
      b.setAttribute('aria-selected', String(on));
      $(`tab-${b.dataset.tab}`).hidden = !on;
    }
    if (location.hash !== `#${name}`) history.replaceState(null, '', `#${name}`);
    const open = OPENERS[name];
    if (open) open();
  }

  /** The first models' card from GET /v1/models, whatever its wrapping ({models: [...]}, [...] or one card). */
  function firstCard(body) {
    if (!body) return undefined;
    const list = Array.isArray(body) ? body : Array.isArray(body.models) ? body.models : [body];
    return list.find((c) => c && Array.isArray(c.classes));
  }

  async function discover() {
    // The server says which views have data; only those are asked for (no 404s in the console). A server that
    // does not say: every view is asked.
    const offered = await api('/v1/views').catch(() => ({ ok: false }));
    const ask = (view, url) =>
      offered.ok && !offered.body[view] ? { ok: false } : api(url).catch(() => ({ ok: false }));
    const [models, neighbours, evaluation, runs] = await Promise.all([
      ask('model', '/v1/models'),
      ask('neighbours', '/v1/neighbours'),
      ask('evaluation', '/v1/evaluation'),
      ask('runs', '/v1/runs'),
    ]);
    state.card = models.ok ? firstCard(models.body) : undefined;
    state.neighbours = neighbours.ok ? neighbours.body : undefined;
    state.evaluation = evaluation.ok ? evaluation.body : undefined;
    const has = {
      model: Boolean(state.card),
      insight: Boolean(state.card && state.card.runtime === 'libtorch'),
      neighbours: Boolean(state.neighbours),
      evaluation: Boolean(state.evaluation),
      runs: runs.ok,
    };
    for (const b of tabs()) b.hidden = !has[b.dataset.needs];
    const c = state.card;
    $('model-info').textContent = c
      ? `${c.model} · ${c.weights} · ${c.classes.length} classes · ${c.runtime} ${c.precision}`
      : 'no model loaded: training runs only';
  }

  // ---- predict ----

  function useImage(file) {
    if (!file) return;
    state.image = file;
    state.mapsFor = undefined;
    $('preview').src = URL.createObjectURL(file);
    predict(file);
    if (!$('tab-maps').hidden) openMaps();
  }

  let predictions = 0;

  /** The top-5 of the latest upload only: no earlier top-5 beside its picture while it is computed or refused. */
  async function predict(file) {
    const asked = ++predictions;
    showError('predict-error');
    const list = $('top5');
    list.textContent = '';
    $('timings').textContent = '';
    $('predict-result').hidden = true;
    const r = await api('/v1/predict?k=5', {
      method: 'POST',
      headers: { 'content-type': file.type || 'application/octet-stream' },
      body: file,
    }).catch((e) => ({ ok: false, status: 0, body: { error: String(e) } }));
    if (asked !== predictions) return; // a later upload's answer is the one to show
    if (!r.ok) return showError('predict-error', errorText(r));
    for (const t of r.body.top) {
      list.appendChild(views.barRow('li', { 'data-index': t.index, 'data-prob': t.prob }, t.label, t.prob));
    }
    $('timings').textContent = timingText(r.body.timing_ms);
    $('predict-result').hidden = false;
  }

  function timingText(t) {
    if (typeof t === 'number') return `${t.toFixed(1)} ms`;
    if (!t || typeof t !== 'object') return '';
    return Object.entries(t)
      .map(([k, v]) => `${k} ${typeof v === 'number' ? v.toFixed(1) : v} ms`)
      .join(' · ');
  }

  function setUpDrop() {
    const drop = $('drop');
    drop.addEventListener('dragover', (e) => {
      e.preventDefault();
      drop.classList.add('over');
    });
    drop.addEventListener('dragleave', () => drop.classList.remove('over'));
    drop.addEventListener('drop', (e) => {
      e.preventDefault();
      drop.classList.remove('over');
      useImage(e.dataTransfer.files[0]);
    });
    $('file').addEventListener('change', (e) => useImage(e.target.files[0]));
    $('maps-file').addEventListener('change', (e) => useImage(e.target.files[0]));
  }

  // ---- filters ----

  async function openFilters() {
    if (state.loaded.filters) return;
    state.loaded.filters = true;
    const r = await api('/v1/filters');
    if (!r.ok) return ($('filters-info').textContent = errorText(r));
    const [out, inCh, kh, kw] = r.body.shape;
    $('filters-info').textContent = `${out} kernels of ${inCh} × ${kh} × ${kw}`;
    views.drawFilters($('filters-canvas'), r.body);
  }

  // ---- feature maps ----

  function base64Bytes(s) {
    const bin = atob(s);
    const out = new Uint8ClampedArray(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  /** One layer's maps as a grid on a canvas, each map enlarged to about 64 pixels. */
  function drawLayer(l) {
    const [c, h, w] = l.shape;
    const bytes = base64Bytes(l.data);
    const cols = Math.min(l.channels, 8);
    const scale = Math.max(1, Math.floor(64 / Math.max(h, w)));
    const gap = 2;
    const canvas = el('canvas', { class: 'pixelated', 'data-layer': l.layer });
    canvas.width = cols * (w * scale + gap) + gap;
    canvas.height = Math.ceil(l.channels / cols) * (h * scale + gap) + gap;
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    const tile = el('canvas');
    tile.width = w;
    tile.height = h;
    const tctx = tile.getContext('2d');
    for (let ch = 0; ch < l.channels; ch++) {
      const px = new Uint8ClampedArray(w * h * 4);
      for (let i = 0; i < w * h; i++) {
        const v = bytes[ch * w * h + i];
        px.set([v, v, v, 255], i * 4);
      }
      tctx.putImageData(new ImageData(px, w, h), 0, 0);
      const x = gap + (ch % cols) * (w * scale + gap);
      const y = gap + Math.floor(ch / cols) * (h * scale + gap);
      ctx.drawImage(tile, x, y, w * scale, h * scale);
    }
    const div = el('div', { class: 'layer' });
    const shown = l.channels < c ? ` (the first ${l.channels} shown)` : '';
    div.appendChild(el('h3', {}, `${l.layer}: ${c} maps of ${h} × ${w}${shown}`));
    div.appendChild(canvas);
    return div;
  }

  async function openMaps() {
    showError('maps-error');
    const file = state.image;
    if (!file) return ($('maps').textContent = 'Choose an image first.');
    if (state.mapsFor === file) return;
    state.mapsFor = file;
    $('maps').textContent = 'computing…';
    const r = await api('/v1/feature-maps', {
      method: 'POST',
      headers: { 'content-type': file.type || 'application/octet-stream' },
      body: file,
    });
    $('maps').textContent = '';
    if (!r.ok) return showError('maps-error', errorText(r));
    for (const l of r.body.layers) $('maps').appendChild(drawLayer(l));
  }

  // ---- neighbours ----

  const QUERIES_PER_PAGE = 5;
  const NEIGHBOURS_K = 8;
  let queryOffset = 0;

  function thumb(set, item, cls, caption) {
    const fig = el('figure', { class: cls, title: `${item.file}: ${item.class}` });
    const src = `/v1/images/${set}/${item.index}`;
    const img = el('img', { src, alt: item.class, loading: 'lazy' });
    // An image moved or damaged since the embeddings were made: a placeholder box, and the server's reason as its
    // tooltip (the 404's JSON message names the file).
    img.addEventListener('error', () => {
      const box = el(
        'div',
        { class: 'missing-image', role: 'img', 'aria-label': 'image unavailable' },
        'image unavailable',
      );
      img.replaceWith(box);
      fetch(src)
        .then((r) => r.json())
        .then((b) => b && b.error && box.setAttribute('title', b.error))
        .catch(() => undefined);
    });
    fig.appendChild(img);
    // One line within the thumbnail's width, a long class name cut with an ellipsis and whole in the tooltip.
    fig.appendChild(el('figcaption', { title: caption }, caption));
    return fig;
  }

  async function neighbourRow(q) {
    const r = await api(`/v1/neighbours?query=${q}&k=${NEIGHBOURS_K}`);
    const rowEl = el('div', { class: 'neighbour-row', 'data-query': q });
    if (!r.ok) {
      rowEl.appendChild(el('p', { class: 'error' }, errorText(r)));
      return rowEl;
    }
    const query = r.body.query;
    rowEl.appendChild(thumb('queries', query, 'query', query.class));
    for (const n of r.body.neighbours) {
      const same = n.label === query.label ? 'same neighbour' : 'other neighbour';
      rowEl.appendChild(thumb('gallery', n, same, `${n.class} · ${n.distance.toPrecision(3)}`));
    }
    return rowEl;
  }

  async function showQueries() {
    const info = state.neighbours;
    const end = Math.min(queryOffset + QUERIES_PER_PAGE, info.queries);
    const rows = [];
    for (let q = queryOffset; q < end; q++) rows.push(await neighbourRow(q));
    $('neighbours').replaceChildren(...rows);
    $('neighbours-info').textContent =
      `Test images ${queryOffset}–${end - 1} of ${info.queries} (left) and the ${NEIGHBOURS_K} training images of ` +
      `${info.gallery} nearest to each by ${info.metric} distance in ${info.layer || 'the embedding'}'s output.`;
    queryOffset = end >= info.queries ? 0 : end;
  }

  function openNeighbours() {
    if (state.loaded.neighbours) return;
    state.loaded.neighbours = true;
    $('neighbours-more').addEventListener('click', showQueries);
    showQueries();
  }

  // ---- evaluation and training ----

  function openEvaluation() {
    if (state.loaded.evaluation) return;
    state.loaded.evaluation = true;
    views.drawConfusion($('evaluation'), state.evaluation);
  }

  function openTraining() {
    if (state.loaded.training) return;
    state.loaded.training = true;
    if (window.AlexnetCurves) window.AlexnetCurves.createRunsView($('training-view'), { live: true });
    else $('training-view').textContent = 'The training view (curves.js) is not available.';
  }

  const OPENERS = {
    filters: openFilters,
    maps: openMaps,
    neighbours: openNeighbours,
    evaluation: openEvaluation,
    training: openTraining,
  };

  async function start() {
    for (const b of tabs()) b.addEventListener('click', () => selectTab(b.dataset.tab));
    setUpDrop();
    await discover();
    const visible = tabs().filter((b) => !b.hidden);
    const wanted = visible.find((b) => `#${b.dataset.tab}` === location.hash) || visible[0];
    if (wanted) selectTab(wanted.dataset.tab);
    document.body.dataset.ready = 'true';
  }

  start();
})();
