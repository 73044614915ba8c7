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
        { label: 'train', src: 'step', field: 'loss', smooth: true },
        { label: 'train (epoch)', src: 'epoch', field: 'train_loss', dash: [6, 4], points: true },
        { label: 'test (epoch)', src: 'epoch', field: 'test_loss', dash: [2, 3], points: true },
      ],
    },
    {
      key: 'accuracy',
      title: 'accuracy',
      range: [0, 1],
      lines: [
        { label: 'train', src: 'step', field: 'acc', smooth: true },
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

  function createRunsView(el, options) {
    var o = options || {};
    var doc = el.ownerDocument || root.document;
    var base = o.baseUrl || '';
    var weight = o.smoothing === undefined ? DEFAULT_SMOOTHING : o.smoothing;
    var folders = new Map(); // id → {id, name, source?}
    var series = new Map(); // folder id + '\n' + run id → Series
    var received = 0;
    var charts = [];
    var structureChanged = true;
    var timer = null;
    var poller = null;
    var destroyed = false;

    el.classList.add('alexnet-curves');
    var controls = element(doc, 'div', 'curves-controls');
    var status = element(doc, 'div', 'curves-status');
    var slider = element(doc, 'input', 'curves-smoothing');
    slider.type = 'range';
    slider.min = '0';
    slider.max = '0.99';
    slider.step = '0.01';
    slider.value = String(weight);
    slider.setAttribute('aria-label', 'smoothing');
    var sliderValue = element(doc, 'span', 'curves-smoothing-value', weight.toFixed(2));
    var label = element(doc, 'label', '', 'smoothing ');
    label.appendChild(slider);
    label.appendChild(sliderValue);
    controls.appendChild(label);
    controls.appendChild(status);
    var grid = element(doc, 'div', 'curves-grid');
    // Laid out here (not only in a style sheet) so that the view looks the same on the page and in a report.
    controls.style.cssText = 'display:flex;flex-wrap:wrap;gap:1em 2em;align-items:center';
    grid.style.cssText = 'display:flex;flex-wrap:wrap;gap:16px;margin-top:0.5em';
    el.replaceChildren(controls, grid);
    slider.addEventListener('input', function () {
      view.setSmoothing(Number(slider.value));
    });

    function setStatus(text) {
      status.textContent = text;
    }

    function chartWidth() {
      var w = grid.clientWidth || el.clientWidth || 800;
      return Math.max(280, w >= 900 ? Math.floor((w - 16) / 2) : w);
    }

    function runLabel(s) {
      var f = folders.get(s.folder);
      var name = f ? f.name : s.folder;
      var ids = 0;
      series.forEach(function (t) {
        if (t.folder === s.folder) ids++;
      });
      return ids > 1 && s.runId ? name + ' ' + s.runId : name;
    }

    function xLabel() {
      var steps = false;
      series.forEach(function (s) {
        if (s.steps.length) steps = true;
      });
      return steps ? 'step' : 'epoch';
    }

    function chartData(def) {
      var tables = [];
      series.forEach(function (s) {
        def.lines.forEach(function (line) {
          tables.push(s.line(line, weight));
        });
      });
      return align(tables);
    }

    function chartOptions(def) {
      var list = [{ label: xLabel() }];
      series.forEach(function (s) {
        var name = runLabel(s);
        def.lines.forEach(function (line) {
          list.push({
            label: name + ' \u00b7 ' + line.label,
            stroke: s.color,
            width: line.points ? 1 : 1.5,
            dash: line.dash,
            spanGaps: true,
            points: { show: !!line.points, size: 5, fill: s.color },
          });
        });
      });
      var y = def.range ? { range: def.range.slice() } : { auto: true };
      return {
        title: def.title,
        width: chartWidth(),
        height: 240,
        scales: { x: { time: false }, y: y },
        axes: [
          { label: xLabel(), incrs: STEP_INCREMENTS },
          { values: tickLabels, size: 64 },
        ],
        series: list,
        legend: { show: true },
      };
    }

    // Small values (a learning rate of 1e-4) in exponent form: uPlot's default labels would round them to 0.
    function tickLabels(_u, splits) {
      return splits.map(function (v) {
        if (v === 0 || v == null) return String(v);
        var a = Math.abs(v);
        return a < 0.01 || a >= 1e6 ? v.toExponential(1) : String(+v.toPrecision(4));
      });
    }

    function build() {
      charts.forEach(function (c) {
        c.plot.destroy();
      });
      charts = [];
      grid.replaceChildren();
      if (!series.size) return;
      CHARTS.forEach(function (def) {
        var box = element(doc, 'div', 'curves-chart curves-' + def.key);
        box.setAttribute('data-chart', def.key);
        grid.appendChild(box);
        charts.push({ def: def, plot: new root.uPlot(chartOptions(def), chartData(def), box) });
      });
    }

    function render() {
      timer = null;
      if (destroyed) return;
      if (!root.uPlot) return setStatus('the charts need uPlot, which did not load');
      if (structureChanged) {
        structureChanged = false;
        build();
      } else {
        charts.forEach(function (c) {
          c.plot.setData(chartData(c.def));
        });
      }
      el.setAttribute('data-records', String(received));
      el.setAttribute('data-runs', String(folders.size));
    }

    function schedule() {
      if (timer === null && !destroyed) timer = setTimeout(render, 150);
    }

    function addFolder(run) {
      if (folders.has(run.id)) return folders.get(run.id);
      var f = { id: run.id, name: run.name || run.id, source: null };
      folders.set(run.id, f);
      structureChanged = true;
      if (o.live) subscribe(f);
      // Live views receive every record from the stream (the ones already written first).
      if (run.records && !o.live) view.addRecords(run.id, run.records);
      schedule();
      return f;
    }

    function subscribe(f) {
      if (!root.EventSource) return setStatus('this browser has no EventSource: live curves are off');
      var url = base + '/v1/runs/' + encodeURIComponent(f.id) + '/events';
      f.source = new root.EventSource(url);
      f.source.onmessage = function (ev) {
        var r;
        try {
          r = JSON.parse(ev.data);
        } catch {
          return; // not a record: nothing to draw
        }
        view.addRecords(f.id, [r]);
      };
      f.source.addEventListener('reset', function () {
        view.reset(f.id);
      });
      f.source.onerror = function () {
        if (f.source && f.source.readyState === 2) setStatus('lost the stream of ' + f.name);
      };
    }

    function describe() {
      if (!folders.size) return setStatus('no runs: start alexnet serve with --runs DIR');
      var n = folders.size;
      setStatus(n + (n === 1 ? ' run' : ' runs') + (o.live ? ', live' : ''));
    }

    function fetchRuns() {
      if (!root.fetch) return Promise.resolve();
      return root
        .fetch(base + '/v1/runs')
        .then(function (res) {
          return res.ok ? res.json() : Promise.reject(new Error('GET /v1/runs answered ' + res.status));
        })
        .then(function (body) {
          if (destroyed) return;
          (body.runs || []).forEach(addFolder);
          describe();
        })
        .catch(function (e) {
          setStatus('could not list the runs: ' + e.message);
        });
    }

    var view = {
      element: el,
      /** Appends records of the folder `id` (added when new). */
      addRecords: function (id, records) {
        if (!folders.has(id)) addFolder({ id: id });
        records.forEach(function (r) {
          if (!r || typeof r !== 'object') return;
          var key = id + '\n' + (r.run || '');
          var s = series.get(key);
          if (!s) {
            s = new Series(id, r.run || '', PALETTE[series.size % PALETTE.length]);
            series.set(key, s);
            structureChanged = true;
          }
          s.add(r);
          received++;
        });
        schedule();
      },
      /** Drops everything shown for the folder `id` (its file was truncated or replaced). */
      reset: function (id) {
        series.forEach(function (s, key) {
          if (s.folder === id) series.delete(key);
        });
        structureChanged = true;
        schedule();
      },
      setSmoothing: function (w) {
        weight = Math.min(Math.max(Number(w) || 0, 0), 0.99);
        slider.value = String(weight);
        sliderValue.textContent = weight.toFixed(2);
        schedule();
      },
      /** Records received so far (all runs). */
      pointCount: function () {
        return received;
      },
      runs: function () {
        return Array.from(folders.values()).map(function (f) {
          return { id: f.id, name: f.name };
        });
      },
      resize: function () {
        var w = chartWidth();
        charts.forEach(function (c) {
          c.plot.setSize({ width: w, height: 240 });
        });
      },
      destroy: function () {
        destroyed = true;
        if (timer !== null) clearTimeout(timer);
        if (poller !== null) clearInterval(poller);
        if (observer) observer.disconnect();
        folders.forEach(function (f) {
          if (f.source) f.source.close();
        });
        charts.forEach(function (c) {
          c.plot.destroy();
        });
        charts = [];
      },
    };

    var observer = root.ResizeObserver ? new root.ResizeObserver(view.resize) : null;
    if (observer) observer.observe(el);
    if (o.runs) {
      o.runs.forEach(addFolder);
      describe();
    } else if (o.live) {
      setStatus('looking for runs\u2026');
      fetchRuns();
      // Runs started after the page opened appear on their own.
      poller = setInterval(fetchRuns, 5000);
    } else describe();
    return view;
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
