// An evaluation drawn from its JSON (alexnet eval --json): the confusion matrix as a table (rows: true class,
// columns: predicted; each cell shaded by its share of the row, its count and share on hover), a toggle between
// counts and row-normalised fractions, and per-class accuracy bars. Pure drawing from data, so the offline report
// can inline this file as it is.
(function () {
  'use strict';
  const views = (window.AlexnetViews = window.AlexnetViews || {});

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  /** A cell's text: the count, or its fraction of the row with two decimals. */
  views.confusionCellText = function (count, rowTotal, normalised) {
    if (!normalised) return String(count);
    return rowTotal > 0 ? (count / rowTotal).toFixed(2) : '–';
  };

  function matrixTable(evaluation, normalised) {
    const names = evaluation.perClass.map((c) => c.name);
    const table = el('table', { class: 'confusion-matrix' });
    const head = el('tr');
    head.appendChild(el('th', { class: 'corner' }, 'true \\ predicted'));
    names.forEach((n, j) => head.appendChild(el('th', { class: 'col', title: n }, String(j))));
    table.appendChild(head);
    evaluation.confusion.forEach((row, i) => {
      const total = row.reduce((a, b) => a + b, 0);
      const tr = el('tr');
      tr.appendChild(el('th', { class: 'row', title: names[i] }, `${i} ${names[i]}`));
      row.forEach((count, j) => {
        const share = total > 0 ? count / total : 0;
        const td = el('td', {
          'data-true': i,
          'data-pred': j,
          title: `true ${names[i]}, predicted ${names[j]}: ${count} of ${total} (${(share * 100).toFixed(1)}%)`,
        });
        td.textContent = views.confusionCellText(count, total, normalised);
        const hue = i === j ? '140, 70%' : '5, 75%';
        td.style.background = count ? `hsla(${hue}, 45%, ${(0.12 + 0.88 * share).toFixed(3)})` : '';
        tr.appendChild(td);
      });
      table.appendChild(tr);
    });
    return table;
  }

  /** One horizontal bar: label, a bar as long as `fraction` of the track, the percentage (the page's top-5 too). */
  function barRow(tag, attrs, label, fraction) {
    const row = el(tag, Object.assign({ class: 'bar-row' }, attrs));
    row.appendChild(el('span', { class: 'bar-label', title: label }, label));
    const track = el('span', { class: 'bar-track' });
    const bar = el('span', { class: 'bar' });
    bar.style.width = `${(fraction * 100).toFixed(1)}%`;
    track.appendChild(bar);
    row.appendChild(track);
    row.appendChild(el('span', { class: 'bar-value' }, `${(fraction * 100).toFixed(1)}%`));
    return row;
  }
  views.barRow = barRow;

  function accuracyBars(evaluation) {
    const list = el('div', { class: 'per-class' });
    list.appendChild(el('h3', {}, 'Accuracy per class'));
    for (const c of evaluation.perClass) {
      const title = `${c.name}: ${(c.accuracy * 100).toFixed(1)}% of ${c.count}`;
      list.appendChild(barRow('div', { title }, c.name, c.accuracy));
    }
    return list;
  }

  // The view's own look, added once, so that it looks the same on the page and in the offline report.
  const STYLE = `
.confusion-matrix { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
.confusion-matrix td, .confusion-matrix th { border: 1px solid #d6dbe1; padding: 0.25rem 0.45rem; text-align: right; }
.confusion-matrix th.row { text-align: left; white-space: nowrap; }
.per-class { max-width: 640px; }
.per-class .bar-row { display: grid; grid-template-columns: 10rem 1fr 4rem; gap: 0.5rem; align-items: center; margin: 0.25rem 0; }
.per-class .bar-track { background: #e7ebf0; height: 0.9rem; border-radius: 3px; }
.per-class .bar { display: block; height: 100%; background: #2f6fb3; border-radius: 3px; }
.per-class .bar-value { text-align: right; font-variant-numeric: tabular-nums; }`;

  function ensureStyle() {
    if (document.getElementById('alexnet-confusion-style')) return;
    const style = el('style', { id: 'alexnet-confusion-style' }, STYLE);
    document.head.appendChild(style);
  }

  /** Draws `evaluation` ({n, top1, top5, perClass, confusion}) into `container`, replacing what was there. */
  views.drawConfusion = function (container, evaluation) {
    ensureStyle();
    container.textContent = '';
    const pct = (x) => (typeof x === 'number' ? `${(x * 100).toFixed(2)}%` : '–');
    container.appendChild(
      el(
        'p',
        { class: 'summary' },
        `${evaluation.n} images · top-1 ${pct(evaluation.top1)} · top-5 ${pct(evaluation.top5)}`,
      ),
    );
    const label = el('label', { class: 'toggle' });
    const box = el('input', { type: 'checkbox', class: 'normalise' });
    label.appendChild(box);
    label.appendChild(document.createTextNode(' row-normalised'));
    container.appendChild(label);
    const holder = el('div', { class: 'matrix-holder' });
    holder.appendChild(matrixTable(evaluation, false));
    container.appendChild(holder);
    box.addEventListener('change', () => holder.replaceChildren(matrixTable(evaluation, box.checked)));
    container.appendChild(accuracyBars(evaluation));
  };
})();
