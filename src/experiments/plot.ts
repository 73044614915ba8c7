// Line charts as SVG text (no dependency, no browser): an experiment's curves, one colour per arm, a legend, axes
// with ticks, optional horizontal reference lines (a threshold), thin per-seed lines under each arm's mean (the
// spread), and markers (a measurement taken once, at the end of training: the test error).

export interface Series {
  name: string;
  points: [number, number][];
  /** Dashed (the paper's Figure 1 draws tanh dashed). */
  dashed?: boolean;
  /** Thin, pale lines of the same colour drawn under the series (one per seed), without a legend entry. */
  seeds?: [number, number][][];
  /** Points drawn as markers (e.g. each seed's test error at the last step), with their own legend entry. */
  markers?: { name: string; points: [number, number][] };
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Horizontal lines: [y, label]. */
  hlines?: [number, string][];
}

const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b'];
const W = 720;
const H = 420;
const M = { left: 64, right: 170, top: 40, bottom: 52 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Round tick values spanning [lo, hi]: the smallest step of 1, 2, 2.5 or 5 × 10^k that makes at most six. */
export function ticks(lo: number, hi: number): number[] {
  if (!(hi > lo)) return [lo];
  const mag = 10 ** Math.floor(Math.log10((hi - lo) / 6));
  const step = [1, 2, 2.5, 5, 10].map((k) => k * mag).find((s) => (hi - lo) / s <= 6)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

export function lineChartSvg(c: Chart): string {
  const all = c.series.flatMap((s) => [...s.points, ...(s.seeds ?? []).flat(), ...(s.markers?.points ?? [])]);
  const ys = [...all.map((p) => p[1]), ...(c.hlines ?? []).map(([y]) => y)];
  const [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  const [y0, y1] = [Math.min(0, ...ys), Math.max(...ys) * 1.05 || 1];
  const px = (x: number) => M.left + ((x - x0) / (x1 - x0 || 1)) * (W - M.left - M.right);
  const py = (y: number) => H - M.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - M.top - M.bottom);
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(c.title)}</text>`,
    `<line x1="${M.left}" y1="${H - M.bottom}" x2="${W - M.right}" y2="${H - M.bottom}" stroke="black"/>`,
    `<line x1="${M.left}" y1="${M.top}" x2="${M.left}" y2="${H - M.bottom}" stroke="black"/>`,
  ];
  for (const t of ticks(x0, x1))
    out.push(
      `<text x="${px(t).toFixed(1)}" y="${H - M.bottom + 16}" text-anchor="middle">${t}</text>`,
      `<line x1="${px(t).toFixed(1)}" y1="${H - M.bottom}" x2="${px(t).toFixed(1)}" y2="${H - M.bottom + 4}" stroke="black"/>`,
    );
  for (const t of ticks(y0, y1))
    out.push(
      `<text x="${M.left - 6}" y="${(py(t) + 4).toFixed(1)}" text-anchor="end">${t}</text>`,
      `<line x1="${M.left}" y1="${py(t).toFixed(1)}" x2="${W - M.right}" y2="${py(t).toFixed(1)}" stroke="#eee"/>`,
    );
  out.push(
    `<text x="${(M.left + W - M.right) / 2}" y="${H - 12}" text-anchor="middle">${esc(c.xLabel)}</text>`,
    `<text transform="translate(16 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`,
  );
  for (const [y, label] of c.hlines ?? [])
    out.push(
      `<line x1="${M.left}" y1="${py(y).toFixed(1)}" x2="${W - M.right}" y2="${py(y).toFixed(1)}" stroke="gray" stroke-dasharray="5 4"/>`,
      `<text x="${W - M.right - 4}" y="${(py(y) - 5).toFixed(1)}" text-anchor="end" fill="gray">${esc(label)}</text>`,
    );
  let legend = 0;
  const entry = (colour: string, name: string, marker: boolean, dashed = false) => {
    const y = M.top + 20 * legend++;
    out.push(
      marker
        ? `<circle cx="${W - M.right + 15}" cy="${y + 2}" r="3.5" fill="white" stroke="${colour}" stroke-width="1.5"/>`
        : dashed
          ? `<line x1="${W - M.right + 4}" y1="${y + 2}" x2="${W - M.right + 24}" y2="${y + 2}" stroke="${colour}" stroke-width="3" stroke-dasharray="7 4"/>`
          : `<rect x="${W - M.right + 8}" y="${y}" width="14" height="4" fill="${colour}"/>`,
      `<text x="${W - M.right + 28}" y="${y + 6}">${esc(name)}</text>`,
    );
  };
  const xy = (points: [number, number][]) => points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`);
  c.series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const dash = s.dashed ? ' stroke-dasharray="7 4"' : '';
    for (const seed of s.seeds ?? [])
      out.push(
        `<polyline points="${xy(seed).join(' ')}" fill="none" stroke="${colour}" stroke-opacity="0.35" stroke-width="1"${dash}/>`,
      );
    if (s.points.length) {
      const d = s.points.map(([x, y], k) => `${k ? 'L' : 'M'}${px(x).toFixed(1)} ${py(y).toFixed(1)}`).join(' ');
      out.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"${dash}/>`);
      // One point draws no line: mark it so that a very short run still shows.
      if (s.points.length === 1)
        out.push(`<circle cx="${xy(s.points)[0].replace(',', '" cy="')}" r="3" fill="${colour}"/>`);
      entry(colour, s.name, false, s.dashed);
    }
    if (s.markers) {
      for (const p of xy(s.markers.points))
        out.push(
          `<circle cx="${p.replace(',', '" cy="')}" r="3.5" fill="white" stroke="${colour}" stroke-width="1.5"/>`,
        );
      entry(colour, s.markers.name, true);
    }
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
