// Training curves of one or more runs, drawn with uPlot: loss, accuracy (train and test, the axis fixed to
// [0, 1]), learning rate and images/s, runs overlaid, per-step series smoothed as TensorBoard does.
//
// A classic script (no modules, no build step): the served page loads it after uPlot, and `alexnet report`
// inlines it into a self-contained HTML file. It defines window.AlexnetCurves:
//   smooth(values, weight)      TensorBoard's debiased exponential moving average (non-finite values pass through)
//   decimate(xs, ys, max)       at most `max` points, evenly spaced, the last one always kept
//   align(tables)               [[xs, ys], ...] → uPlot's aligned data [x, y1, y2, ...] (null where a series has none)
//   createRunsView(el, options) the view; options:
//       runs:     [{id, name, records?}]  (absent and live: fetched from GET /v1/runs, and looked for again)
//       live:     subscribe to GET /v1/runs/:id/events (server-sent events) and append as records arrive
//       baseUrl:  prefix of those URLs (default '')
//       smoothing: initial weight (default 0.6)
//     It returns {addRecords(id, records), reset(id), setSmoothing(w), pointCount(), runs(), resize(), destroy()}
//     and keeps data-records (records received) and data-runs on `el` for tests to watch.
// One legend above the charts names each run once, in its colour, and keys the line styles (legend.js); the y axes
// tick at 1/2/5 × 10^k steps (ticks.js). Both load before this script; without them the charts have no legend and
// uPlot's own ticks. A series with a single value is drawn as a dot.
(function (root) {
  'use strict';

  var DEFAULT_SMOOTHING = 0.6;
  var MAX_POINTS = 1000;
  // Tick spacings of the step axis: whole steps only (1, 2, 5, 10, 20, 50, …).
  var STEP_INCREMENTS = [];
  for (var p = 1; p <= 1e9; p *= 10) STEP_INCREMENTS.push(p, 2 * p, 5 * p);
  var PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

  /** last = last·w + (1−w)·y; shown = last / (1 − wⁿ) over the n finite values so far (w = 1: unsmoothed). */
  function smooth(values, weight) {
    var w = weight === undefined ? DEFAULT_SMOOTHING : Math.min(Math.max(Number(weight), 0), 1);
    var out = new Array(values.length);
    var last = 0;
    var n = 0;
    for (var i = 0; i < values.length; i++) {
      var y = values[i];
      if (y === null || y === undefined || !isFinite(y) || w === 1) {
        out[i] = y === undefined ? null : y;
        continue;
      }
      last = last * w + (1 - w) * y;
      n++;
      out[i] = last / (1 - Math.pow(w, n));
    }
    return out;
  }

  /** Every k-th point counted back from the last, k chosen so that at most `max` remain. */
  function decimate(xs, ys, max) {
    var n = xs.length;
    var limit = max || MAX_POINTS;
    if (n <= limit) return { xs: xs, ys: ys };
    var stride = Math.ceil(n / limit);
    var ox = [];
    var oy = [];
    for (var i = (n - 1) % stride; i < n; i += stride) {
      ox.push(xs[i]);
      oy.push(ys[i]);
    }
    return { xs: ox, ys: oy };
  }

  /** Series with their own x values onto one sorted x axis (uPlot's data layout). A repeated x: the last y wins. */
  function align(tables) {
    var set = new Set();
    tables.forEach(function (t) {
      t[0].forEach(function (x) {
        set.add(x);
      });
    });
    var xs = Array.from(set).sort(function (a, b) {
      return a - b;
    });
    var index = new Map();
    xs.forEach(function (x, i) {
      index.set(x, i);
    });
    var data = [xs];
    tables.forEach(function (t) {
      var ys = new Array(xs.length).fill(null);
      for (var i = 0; i < t[0].length; i++) ys[index.get(t[0][i])] = t[1][i] === undefined ? null : t[1][i];
      data.push(ys);
    });
    return data;
  }

  // What each chart draws for every run: per-step records (smoothed) and per-epoch records (points).
  // src 'rate': the run's step records when it has some, else its epoch records.
  var CHARTS = [
    {
      key: 'loss',
      title: 'loss',
      lines: [
        { label: 'train (step)', src: 'step', field: 'loss', smooth: true },
        { label: 'train (epoch)', src: 'epoch', field: 'train_loss', dash: [6, 4], points: true },
        { label: 'test (epoch)', src: 'epoch', field: 'test_loss', dash: [2, 3], points: true },
      ],
    },
    {
      key: 'accuracy',
      title: 'accuracy',
      range: [0, 1],
      lines: [
        { label: 'train (step)', src: 'step', field: 'acc', smooth: true },
        { label: 'train (epoch)', src: 'epoch', field: 'train_acc', dash: [6, 4], points: true },
        { label: 'test (epoch)', src: 'epoch', field: 'test_acc', dash: [2, 3], points: true },
      ],
    },
    { key: 'lr', title: 'learning rate', lines: [{ label: 'lr', src: 'rate', field: 'lr' }] },
    {
      key: 'speed',
      title: 'images/s',
      lines: [{ label: 'images/s', src: 'rate', field: 'images_per_sec', smooth: true }],
    },
  ];

  /** One training run's records (one run id of one folder), by kind. */
  function Series(folder, runId, color) {
    this.folder = folder;
    this.runId = runId;
    this.color = color;
    this.steps = [];
    this.epochs = [];
    this.lastStep = 0;
    this.batchesPerEpoch = 0;
  }

  Series.prototype.add = function (r) {
    if (r.kind === 'step' && isFinite(r.step)) {
      this.steps.push(r);
      this.lastStep = Math.max(this.lastStep, r.step);
      // global step = (epoch − 1) · batches per epoch + batch: known from any step past the first epoch.
      if (r.epoch > 1 && isFinite(r.batch)) {
        var b = (r.step - r.batch) / (r.epoch - 1);
        if (b > 0 && Math.round(b) === b) this.batchesPerEpoch = b;
      }
    } else if (r.kind === 'epoch' && isFinite(r.epoch)) {
      this.epochs.push({ r: r, lastStep: this.lastStep });
    }
  };

  /** An epoch record's place on the step axis: its end (or the last step seen then; its number without steps). */
  Series.prototype.epochX = function (e) {
    if (!this.steps.length) return e.r.epoch;
    return this.batchesPerEpoch ? e.r.epoch * this.batchesPerEpoch : e.lastStep;
  };

  /** x and y values of one chart line for this run, smoothed and decimated for display. */
  Series.prototype.line = function (line, weight) {
    var src = line.src === 'rate' ? (this.steps.length ? 'step' : 'epoch') : line.src;
    var xs;
    var ys;
    if (src === 'step') {
      xs = this.steps.map(function (r) {
        return r.step;
      });
      ys = this.steps.map(function (r) {
        return typeof r[line.field] === 'number' ? r[line.field] : null;
      });
    } else {
      xs = this.epochs.map(this.epochX, this);
      ys = this.epochs.map(function (e) {
        return typeof e.r[line.field] === 'number' ? e.r[line.field] : null;
      });
    }
    if (line.smooth) ys = smooth(ys, weight);
    var d = decimate(xs, ys, MAX_POINTS);
    return [d.xs, d.ys];
  };

  function element(doc, tag, className, text) {
    var e = doc.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // ---- the view ----------------------------------------------------------------------------------------------
  // One state object `v` per view, passed to named functions: {el, o, doc, base, weight, folders (id → {id, name,
  // source?}), series (folder id + '\n' + run id → Series), received, charts, structureChanged, timer, poller,
  // destroyed, status, slider, sliderValue, legend, grid, observer, view (the object createRunsView returns)}.

  function createRunsView(el, options) {
    var o = options || {};
    var v = {
      el: el,
      o: o,
      doc: el.ownerDocument || root.document,
      base: o.baseUrl || '',
      weight: o.smoothing === undefined ? DEFAULT_SMOOTHING : o.smoothing,
      folders: new Map(),
      series: new Map(),
      received: 0,
      charts: [],
      structureChanged: true,
      timer: null,
      poller: null,
      destroyed: false,
      observer: null,
    };
    buildControls(v);
    v.view = viewApi(v);
    start(v);
    return v.view;
  }

  /** The smoothing slider and the status line above an empty chart grid. */
  function buildControls(v) {
    var doc = v.doc;
    v.el.classList.add('alexnet-curves');
    var controls = element(doc, 'div', 'curves-controls');
    v.status = element(doc, 'div', 'curves-status');
    var slider = (v.slider = element(doc, 'input', 'curves-smoothing'));
    slider.type = 'range';
    slider.min = '0';
    slider.max = '0.99';
    slider.step = '0.01';
    slider.value = String(v.weight);
    slider.setAttribute('aria-label', 'smoothing');
    v.sliderValue = element(doc, 'span', 'curves-smoothing-value', v.weight.toFixed(2));
    var label = element(doc, 'label', '', 'smoothing ');
    label.appendChild(slider);
    label.appendChild(v.sliderValue);
    controls.appendChild(label);
    controls.appendChild(v.status);
    v.legend = element(doc, 'div', 'curves-legend');
    v.grid = element(doc, 'div', 'curves-grid');
    // Laid out here (not only in a style sheet) so that the view looks the same on the page and in a report.
    controls.style.cssText = 'display:flex;flex-wrap:wrap;gap:1em 2em;align-items:center';
    v.grid.style.cssText = 'display:flex;flex-wrap:wrap;gap:16px;margin-top:0.5em';
    v.el.replaceChildren(controls, v.legend, v.grid);
    slider.addEventListener('input', function () {
      v.view.setSmoothing(Number(slider.value));
    });
  }

  /** Watches the element's size, then shows the given runs, or looks for runs on the server (live). */
  function start(v) {
    var o = v.o;
    v.observer = root.ResizeObserver ? new root.ResizeObserver(v.view.resize) : null;
    if (v.observer) v.observer.observe(v.el);
    if (o.runs) {
      o.runs.forEach(function (run) {
        addFolder(v, run);
      });
      describe(v);
    } else if (o.live) {
      setStatus(v, 'looking for runs\u2026');
      fetchRuns(v);
      // Runs started after the page opened appear on their own.
      v.poller = setInterval(function () {
        fetchRuns(v);
      }, 5000);
    } else describe(v);
  }

  function setStatus(v, text) {
    v.status.textContent = text;
  }

  function chartWidth(v) {
    var w = v.grid.clientWidth || v.el.clientWidth || 800;
    return Math.max(280, w >= 900 ? Math.floor((w - 16) / 2) : w);
  }

  function runLabel(v, s) {
    var f = v.folders.get(s.folder);
    var name = f ? f.name : s.folder;
    var ids = 0;
    v.series.forEach(function (t) {
      if (t.folder === s.folder) ids++;
    });
    return ids > 1 && s.runId ? name + ' ' + s.runId : name;
  }

  function xLabel(v) {
    var steps = false;
    v.series.forEach(function (s) {
      if (s.steps.length) steps = true;
    });
    return steps ? 'step' : 'epoch';
  }

  function chartData(v, def) {
    var tables = [];
    v.series.forEach(function (s) {
      def.lines.forEach(function (line) {
        tables.push(s.line(line, v.weight));
      });
    });
    return align(tables);
  }

  /** The index of a series' only value, drawn as a dot (a line needs two); null otherwise (no dots). */
  function lonePoint(u, si, show) {
    if (show) return null;
    var ys = u.data[si];
    var at = -1;
    for (var i = 0; i < ys.length; i++) {
      if (ys[i] === null || ys[i] === undefined) continue;
      if (at >= 0) return null;
      at = i;
    }
    return at >= 0 ? [at] : null;
  }

  /** The y axis: ticks.js's nice steps, 25 pixels apart or more (uPlot's 30 leaves two labels too often). */
  function yAxis() {
    var T = root.AlexnetTicks;
    if (!T) return { size: 64 };
    return {
      size: 64,
      splits: function (u, _axis, min, max) {
        var h = u.bbox && u.bbox.height ? u.bbox.height / (root.uPlot.pxRatio || 1) : 175;
        return T.ticks(min, max, Math.max(2, Math.floor(h / 25))).values;
      },
      values: function (_u, splits) {
        return T.labels(splits);
      },
    };
  }

  function chartOptions(v, def) {
    var list = [{ label: xLabel(v) }];
    v.series.forEach(function (s) {
      var name = runLabel(v, s);
      def.lines.forEach(function (line) {
        list.push({
          label: name + ' \u00b7 ' + line.label,
          stroke: s.color,
          width: line.points ? 1 : 1.5,
          dash: line.dash,
          spanGaps: true,
          points: { show: !!line.points, size: line.points ? 5 : 6, fill: s.color, filter: lonePoint },
        });
      });
    });
    var y = def.range ? { range: def.range.slice() } : { auto: true };
    return {
      title: def.title,
      width: chartWidth(v),
      height: 240,
      scales: { x: { time: false }, y: y },
      axes: [{ label: xLabel(v), incrs: STEP_INCREMENTS }, yAxis()],
      series: list,
      // One legend for all charts (buildLegend); a readout below each chart gives the values under the cursor.
      legend: { show: false },
      hooks: { setCursor: [readout] },
    };
  }

  /** The values under the cursor, over the top of the chart below: x, then each series that has one there. */
  function readout(u) {
    var out = u.root.parentNode && u.root.parentNode.querySelector('.curves-readout');
    var i = u.cursor.idx;
    if (!out) return;
    out.hidden = i === null || i === undefined;
    if (out.hidden) return;
    var parts = [u.series[0].label + ' ' + u.data[0][i]];
    for (var si = 1; si < u.series.length; si++) {
      var y = u.data[si][i];
      if (y === null || y === undefined) continue;
      parts.push(u.series[si].label + ' ' + (y !== 0 && Math.abs(y) < 1e-3 ? y.toExponential(3) : y.toPrecision(5)));
    }
    out.textContent = parts.join(' \u00b7 ');
  }

  /** The legend (legend.js): the runs in their colours, the line styles of the loss chart in gray. */
  function buildLegend(v) {
    if (!root.AlexnetLegend) return;
    var runs = [];
    v.series.forEach(function (s) {
      runs.push({ name: runLabel(v, s), color: s.color });
    });
    root.AlexnetLegend.draw(v.legend, runs, CHARTS[0].lines);
  }

  function destroyCharts(v) {
    v.charts.forEach(function (c) {
      c.plot.destroy();
    });
    v.charts = [];
  }

  function build(v) {
    destroyCharts(v);
    v.grid.replaceChildren();
    buildLegend(v);
    if (!v.series.size) return;
    CHARTS.forEach(function (def) {
      var box = element(v.doc, 'div', 'curves-chart curves-' + def.key);
      box.setAttribute('data-chart', def.key);
      v.grid.appendChild(box);
      v.charts.push({ def: def, plot: new root.uPlot(chartOptions(v, def), chartData(v, def), box) });
      var out = element(v.doc, 'div', 'curves-readout');
      out.hidden = true;
      box.style.position = 'relative';
      out.style.cssText =
        'position:absolute;top:100%;left:0;right:0;z-index:1;font-size:0.8em;color:#333;background:#fff;padding:2px';
      box.appendChild(out);
    });
  }

  function render(v) {
    v.timer = null;
    if (v.destroyed) return;
    if (!root.uPlot) return setStatus(v, 'the charts need uPlot, which did not load');
    if (v.structureChanged) {
      v.structureChanged = false;
      build(v);
    } else {
      v.charts.forEach(function (c) {
        c.plot.setData(chartData(v, c.def));
      });
    }
    v.el.setAttribute('data-records', String(v.received));
    v.el.setAttribute('data-runs', String(v.folders.size));
  }

  function schedule(v) {
    if (v.timer === null && !v.destroyed) {
      v.timer = setTimeout(function () {
        render(v);
      }, 150);
    }
  }

  function addFolder(v, run) {
    if (v.folders.has(run.id)) return v.folders.get(run.id);
    var f = { id: run.id, name: run.name || run.id, source: null };
    v.folders.set(run.id, f);
    v.structureChanged = true;
    if (v.o.live) subscribe(v, f);
    // Live views receive every record from the stream (the ones already written first).
    if (run.records && !v.o.live) v.view.addRecords(run.id, run.records);
    schedule(v);
    return f;
  }

  function subscribe(v, f) {
    if (!root.EventSource) return setStatus(v, 'this browser has no EventSource: live curves are off');
    var url = v.base + '/v1/runs/' + encodeURIComponent(f.id) + '/events';
    f.source = new root.EventSource(url);
    f.source.onmessage = function (ev) {
      var r;
      try {
        r = JSON.parse(ev.data);
      } catch {
        return; // not a record: nothing to draw
      }
      v.view.addRecords(f.id, [r]);
    };
    f.source.addEventListener('reset', function () {
      v.view.reset(f.id);
    });
    f.source.onerror = function () {
      if (f.source && f.source.readyState === 2) setStatus(v, 'lost the stream of ' + f.name);
    };
  }

  function describe(v) {
    if (!v.folders.size) return setStatus(v, 'no runs: start alexnet serve with --runs DIR');
    var n = v.folders.size;
    setStatus(v, n + (n === 1 ? ' run' : ' runs') + (v.o.live ? ', live' : ''));
  }

  function fetchRuns(v) {
    if (!root.fetch) return Promise.resolve();
    return root
      .fetch(v.base + '/v1/runs')
      .then(function (res) {
        return res.ok ? res.json() : Promise.reject(new Error('GET /v1/runs answered ' + res.status));
      })
      .then(function (body) {
        if (v.destroyed) return;
        (body.runs || []).forEach(function (run) {
          addFolder(v, run);
        });
        describe(v);
      })
      .catch(function (e) {
        setStatus(v, 'could not list the runs: ' + e.message);
      });
  }

  function addRecords(v, id, records) {
    if (!v.folders.has(id)) addFolder(v, { id: id });
    records.forEach(function (r) {
      if (!r || typeof r !== 'object') return;
      var key = id + '\n' + (r.run || '');
      var s = v.series.get(key);
      if (!s) {
        s = new Series(id, r.run || '', PALETTE[v.series.size % PALETTE.length]);
        v.series.set(key, s);
        v.structureChanged = true;
      }
      s.add(r);
      v.received++;
    });
    schedule(v);
  }

  function destroy(v) {
    v.destroyed = true;
    if (v.timer !== null) clearTimeout(v.timer);
    if (v.poller !== null) clearInterval(v.poller);
    if (v.observer) v.observer.disconnect();
    v.folders.forEach(function (f) {
      if (f.source) f.source.close();
    });
    destroyCharts(v);
  }

  /** What createRunsView returns. */
  function viewApi(v) {
    return {
      element: v.el,
      /** Appends records of the folder `id` (added when new). */
      addRecords: function (id, records) {
        addRecords(v, id, records);
      },
      /** Drops everything shown for the folder `id` (its file was truncated or replaced). */
      reset: function (id) {
        v.series.forEach(function (s, key) {
          if (s.folder === id) v.series.delete(key);
        });
        v.structureChanged = true;
        schedule(v);
      },
      setSmoothing: function (w) {
        v.weight = Math.min(Math.max(Number(w) || 0, 0), 0.99);
        v.slider.value = String(v.weight);
        v.sliderValue.textContent = v.weight.toFixed(2);
        schedule(v);
      },
      /** Records received so far (all runs). */
      pointCount: function () {
        return v.received;
      },
      runs: function () {
        return Array.from(v.folders.values()).map(function (f) {
          return { id: f.id, name: f.name };
        });
      },
      resize: function () {
        var w = chartWidth(v);
        v.charts.forEach(function (c) {
          c.plot.setSize({ width: w, height: 240 });
        });
      },
      destroy: function () {
        destroy(v);
      },
    };
  }

  root.AlexnetCurves = {
    DEFAULT_SMOOTHING: DEFAULT_SMOOTHING,
    MAX_POINTS: MAX_POINTS,
    smooth: smooth,
    decimate: decimate,
    align: align,
    createRunsView: createRunsView,
  };
})(typeof window !== 'undefined' ? window : globalThis);
