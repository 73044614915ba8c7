// The legend of the training charts: one entry per run in its colour, then one key of the line styles the charts
// draw (solid, dashed, dotted, with a dot where a line marks its points), each a short line sample, never a square.
// All of it wraps as a flex row, so eight runs stay eight readable entries.
//
// A classic script (no modules, no build step), loaded before curves.js on the page and inlined before it in
// `alexnet report`. It defines window.AlexnetLegend:
//   draw(el, runs, styles)  fills `el` (.curves-legend-run per run {name, color}, then one .curves-legend-styles
//                           holding a .curves-legend-style per style {label, dash?, points?}); nothing without runs
(function (root) {
  'use strict';

  var SVG = 'http://www.w3.org/2000/svg';
  var KEY_COLOR = '#555';

  function svgElement(doc, tag, attrs) {
    var e = doc.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) {
      e.setAttribute(k, String(attrs[k]));
    });
    return e;
  }

  /** A short sample of a chart line: its colour and dash, with a dot where the chart marks its points. */
  function lineSample(doc, color, style) {
    var svg = svgElement(doc, 'svg', { width: 28, height: 10, 'aria-hidden': 'true' });
    var line = svgElement(doc, 'line', { x1: 1, y1: 5, x2: 27, y2: 5, stroke: color, 'stroke-width': 2 });
    if (style.dash) line.setAttribute('stroke-dasharray', style.dash.join(' '));
    svg.appendChild(line);
    if (style.points) svg.appendChild(svgElement(doc, 'circle', { cx: 14, cy: 5, r: 2.5, fill: color }));
    return svg;
  }

  /** A sample and its name on one line; a long name ends in an ellipsis, whole in its tooltip. */
  function item(doc, className, sample, text) {
    var e = doc.createElement('span');
    e.className = className;
    e.style.cssText = 'display:inline-flex;align-items:center;gap:0.35em;white-space:nowrap;max-width:24em';
    var name = doc.createElement('span');
    name.className = 'curves-legend-name';
    name.style.cssText = 'overflow:hidden;text-overflow:ellipsis;min-width:0';
    name.textContent = text;
    name.title = text;
    e.appendChild(sample);
    e.appendChild(name);
    return e;
  }

  function draw(el, runs, styles) {
    var doc = el.ownerDocument;
    var items = runs.map(function (r) {
      var e = item(doc, 'curves-legend-run', lineSample(doc, r.color, {}), r.name);
      e.setAttribute('data-color', r.color);
      return e;
    });
    if (items.length && styles.length) {
      var key = doc.createElement('span');
      key.className = 'curves-legend-styles';
      key.style.cssText = 'display:inline-flex;flex-wrap:wrap;gap:0.3em 1em;color:' + KEY_COLOR;
      styles.forEach(function (s) {
        key.appendChild(item(doc, 'curves-legend-style', lineSample(doc, KEY_COLOR, s), s.label));
      });
      items.push(key);
    }
    el.style.cssText = 'display:flex;flex-wrap:wrap;gap:0.3em 1.5em;align-items:center;margin-top:0.5em';
    el.replaceChildren.apply(el, items);
  }

  root.AlexnetLegend = { draw: draw };
})(typeof window !== 'undefined' ? window : globalThis);
