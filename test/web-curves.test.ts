// The training charts (web/curves.js with ticks.js and legend.js over uPlot) in real Chromium, on a bare page that
// loads the scripts as the served page and the report do, given runs as the report gives them (no server): the
// legend (one entry per run, one key of the line styles), a run of one record drawn as a dot, and the y axes'
// labels coming from ticks.js.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Browser, chromium, Page } from 'playwright-core';

const CHROMIUM = '/usr/bin/chromium';
const WEB = path.resolve(__dirname, '..', '..', 'web');
const noBrowser =
  !fs.existsSync(CHROMIUM) && !process.env.CI ? `${CHROMIUM} is missing (apt-get install chromium)` : false;

/** The browser's objects as far as the checks below use them (the tests compile without the DOM library). */
interface Rect {
  left: number;
  right: number;
  top: number;
  bottom: number;
}
interface Shown {
  width: number;
  height: number;
  className: string;
  textContent: string | null;
  getAttribute(name: string): string | null;
  getBoundingClientRect(): Rect;
  querySelector(selector: string): Shown | null;
  querySelectorAll(selector: string): ArrayLike<Shown>;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
}
interface Curves {
  createRunsView(el: unknown, o: object): { destroy(): void };
}
declare const window: {
  AlexnetCurves: Curves;
  AlexnetTicks: { labels(values: number[], step?: number): string[] };
  curvesView?: { destroy(): void };
  seenLabels: string[][];
};
declare const document: { getElementById(id: string): (Shown & { removeAttribute(name: string): void }) | null };

type Run = { id: string; name: string; records: object[] };

/** A run of `epochs` epoch records (and no step records), its loss falling from `start`. */
function epochRun(name: string, epochs: number, start: number): Run {
  const records = Array.from({ length: epochs }, (_, i) => ({
    kind: 'epoch',
    run: 'r1',
    epoch: i + 1,
    train_loss: start / (i + 1),
    test_loss: start / (i + 1) + 0.1,
    train_acc: 0.1 + 0.08 * i,
    test_acc: 0.1 + 0.07 * i,
    lr: 0.01,
    images_per_sec: 500 + i,
  }));
  return { id: name, name, records };
}

const overlaps = (a: Rect, b: Rect) =>
  a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;

describe('the training charts in Chromium', { skip: noBrowser }, () => {
  let browser: Browser;
  let page: Page;

  before(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    await page.setContent('<!doctype html><html><body><div id="view" style="width:1000px"></div></body></html>');
    await page.addStyleTag({ path: require.resolve('uplot/dist/uPlot.min.css') });
    await page.addScriptTag({ path: require.resolve('uplot/dist/uPlot.iife.min.js') });
    for (const f of ['ticks.js', 'legend.js', 'curves.js']) await page.addScriptTag({ path: path.join(WEB, f) });
  });

  after(async () => {
    await browser?.close();
  });

  /** A fresh view of these runs, drawn (its data-records attribute counts every record). */
  async function show(runs: Run[]): Promise<void> {
    await page.evaluate((r) => {
      window.curvesView?.destroy();
      document.getElementById('view')!.removeAttribute('data-records');
      window.curvesView = window.AlexnetCurves.createRunsView(document.getElementById('view'), { runs: r });
    }, runs);
    const n = runs.reduce((s, r) => s + r.records.length, 0);
    await page.waitForFunction((k) => document.getElementById('view')!.getAttribute('data-records') === String(k), n);
  }

  test('8 runs: 8 legend entries in 8 colours and one key of the dash styles, as line samples, none overlapping', async () => {
    const names = Array.from({ length: 8 }, (_, i) => `sweep-lr-${(0.001 * (i + 1)).toFixed(3)}-momentum-0.9`);
    await show(names.map((n, i) => epochRun(n, 4, 2.3 + i / 10)));
    const legend = await page.$eval('#view .curves-legend', (el) => {
      const e = el as unknown as Shown;
      const box = (x: Shown) => {
        const r = x.getBoundingClientRect();
        return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
      };
      const sample = (x: Shown) => {
        const line = x.querySelector('svg line');
        return line && { stroke: line.getAttribute('stroke'), dash: line.getAttribute('stroke-dasharray') };
      };
      return {
        entries: Array.from(e.querySelectorAll(':scope > *')).map((x) => ({
          className: x.className,
          text: x.textContent,
          box: box(x),
          sample: sample(x),
        })),
        styles: Array.from(e.querySelectorAll('.curves-legend-style')).map((x) => ({
          text: x.textContent,
          box: box(x),
          sample: sample(x),
          dot: x.querySelector('svg circle') !== null,
        })),
        legendBox: box(e),
        uplotLegends: e.querySelectorAll('.u-legend').length,
      };
    });
    // One entry per run, named and coloured as the run, then the style key.
    assert.deepEqual(
      legend.entries.map((x) => x.className),
      [...names.map(() => 'curves-legend-run'), 'curves-legend-styles'],
    );
    assert.deepEqual(
      legend.entries.slice(0, 8).map((x) => x.text),
      names,
    );
    const colours = legend.entries.slice(0, 8).map((x) => x.sample?.stroke);
    assert.equal(new Set(colours).size, 8, `8 colours: ${colours}`);
    assert.ok(
      legend.entries.slice(0, 8).every((x) => x.sample && x.sample.dash === null),
      'a run is a solid line sample',
    );
    // The key: the dash styles the loss and accuracy charts draw (chartOptions' dash arrays), drawn as lines.
    assert.deepEqual(
      legend.styles.map((s) => [s.text, s.sample?.dash ?? null, s.dot]),
      [
        ['train (step)', null, false],
        ['train (epoch)', '6 4', true],
        ['test (epoch)', '2 3', true],
      ],
    );
    assert.equal(
      await page.$$eval('#view .u-legend, #view .u-marker', (e) => e.length),
      0,
      'no uPlot legend (its squares) under any chart',
    );
    // Readable: no two entries (nor two samples of the key) overlap, and every one lies inside the view's width.
    const boxes = [...legend.entries.map((x) => x.box), ...legend.styles.map((s) => s.box)];
    for (let i = 0; i < boxes.length; i++) {
      assert.ok(boxes[i].right - boxes[i].left > 20 && boxes[i].left >= legend.legendBox.left - 0.5, `entry ${i}`);
      assert.ok(boxes[i].right <= legend.legendBox.right + 0.5, `entry ${i} inside the legend's width`);
      for (let j = i + 1; j < boxes.length; j++) {
        // The key holds its samples: those two boxes nest, the others must not touch.
        if (i === 8 || j === 8) continue;
        assert.ok(
          !overlaps(boxes[i], boxes[j]),
          `entries ${i} and ${j} overlap: ${JSON.stringify([boxes[i], boxes[j]])}`,
        );
      }
    }
    for (const s of legend.styles) assert.ok(!overlaps(s.box, legend.entries[7].box), 'the key clear of the last run');
  });

  test('without a legend per chart, the values under the cursor show below the chart', async () => {
    await show([epochRun('a', 4, 2.3), epochRun('b', 4, 1.5)]);
    const readout = '#view .curves-chart[data-chart="loss"] .curves-readout';
    assert.equal(await page.isVisible(readout), false, 'nothing before the cursor comes');
    const over = (await page.$('#view .curves-chart[data-chart="loss"] .u-over'))!;
    const box = (await over.boundingBox())!;
    // A third of the way along epochs 1 to 4: epoch 2.
    await page.mouse.move(box.x + box.width / 3, box.y + box.height / 2);
    await page.waitForSelector(readout, { state: 'visible' });
    const text = (await page.textContent(readout))!;
    assert.match(text, /^epoch 2 · /);
    // epochRun's losses: start / epoch, test 0.1 above.
    for (const part of [
      'a · train (epoch) 1.1500',
      'a · test (epoch) 1.2500',
      'b · train (epoch) 0.75000',
      'b · test (epoch) 0.85000',
    ])
      assert.ok(text.includes(part), `${part} in ${text}`);
    await page.mouse.move(0, 0);
    await page.waitForSelector(readout, { state: 'hidden' });
  });

  /** Pixels of a chart's canvas within 40 of `rgb` in every channel. */
  async function pixelsOf(chart: string, rgb: [number, number, number]): Promise<number> {
    return page.$eval(
      `#view .curves-chart[data-chart="${chart}"] canvas`,
      (c, [r, g, b]) => {
        const canvas = c as unknown as Shown;
        const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (Math.abs(d[i] - r) < 40 && Math.abs(d[i + 1] - g) < 40 && Math.abs(d[i + 2] - b) < 40 && d[i + 3] > 200)
            n++;
        return n;
      },
      rgb,
    );
  }

  test('a run of one record is drawn as a dot on every chart', async () => {
    const blue: [number, number, number] = [0x1f, 0x77, 0xb4]; // the first run's colour
    // One epoch record: loss and accuracy have dotted epoch lines already; learning rate and images/s had nothing.
    await show([epochRun('one-epoch', 1, 2.3)]);
    for (const chart of ['loss', 'accuracy', 'lr', 'speed'])
      assert.ok((await pixelsOf(chart, blue)) >= 10, `${chart}: a dot of the run's colour`);
    // One step record: every chart's line is a per-step line of one point.
    const step = { kind: 'step', run: 'r1', epoch: 1, batch: 1, step: 1, loss: 2.3, acc: 0.1, lr: 0.01 };
    await show([{ id: 'one-step', name: 'one-step', records: [{ ...step, images_per_sec: 480 }] }]);
    for (const chart of ['loss', 'accuracy', 'lr', 'speed'])
      assert.ok((await pixelsOf(chart, blue)) >= 10, `${chart}: a dot of the run's colour`);
  });

  test("the y axes' labels are ticks.js's: distinct for a loss between 2.2995 and 2.3012", async () => {
    await page.evaluate(() => {
      window.seenLabels = [];
      const labels = window.AlexnetTicks.labels;
      window.AlexnetTicks.labels = (v, s) => {
        const out = labels(v, s);
        window.seenLabels.push(out);
        return out;
      };
    });
    const run = epochRun('flat', 2, 0);
    Object.assign(run.records[0], { train_loss: 2.2995, test_loss: 2.3 });
    Object.assign(run.records[1], { train_loss: 2.3012, test_loss: 2.3005 });
    await show([run]);
    const seen: string[][] = await page.evaluate(() => window.seenLabels);
    // The loss axis (uPlot pads the range a little): at least two labels, distinct, all with the same decimals,
    // three or more (2.300 and 2.301 differ in the third).
    const loss = seen.find((l) => l.every((s) => Number(s) > 2.29 && Number(s) < 2.31));
    assert.ok(loss, `the loss axis's labels among ${JSON.stringify(seen)}`);
    assert.ok(loss.length >= 2, `${loss}`);
    assert.equal(new Set(loss).size, loss.length, `${loss}`);
    const decimals = new Set(loss.map((s) => s.split('.')[1]?.length ?? 0));
    assert.equal(decimals.size, 1, `${loss}`);
    assert.ok([...decimals][0] >= 3, `${loss}`);
  });
});
