// Learned filters as the paper's Figure 3: every conv1 kernel min-max normalised on its own, enlarged and laid out
// in a grid on one canvas (3-channel kernels in colour, 1-channel kernels in gray). Pure drawing from data, so the
// offline report can inline this file as it is.
(function () {
  'use strict';
  const views = (window.AlexnetViews = window.AlexnetViews || {});

  /** Kernels per row, the enlargement and the canvas size for kernels of shape [out, in, kh, kw]. */
  views.filterGridLayout = function (shape) {
    const [out, , kh, kw] = shape;
    const cols = Math.min(out, 16);
    const rows = Math.ceil(out / cols);
    const scale = Math.max(1, Math.floor(48 / Math.max(kh, kw)));
    const gap = 2;
    return {
      cols,
      rows,
      scale,
      gap,
      width: cols * (kw * scale + gap) + gap,
      height: rows * (kh * scale + gap) + gap,
    };
  };

  /** One kernel's pixels (RGBA, kh × kw), min-max normalised over all its channels. */
  function kernelPixels(data, k, inCh, kh, kw) {
    const size = kh * kw;
    const start = k * inCh * size;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = start; i < start + inCh * size; i++) {
      lo = Math.min(lo, data[i]);
      hi = Math.max(hi, data[i]);
    }
    const scale = hi > lo ? 255 / (hi - lo) : 0;
    const level = (c, p) => Math.round((data[start + c * size + p] - lo) * scale);
    const px = new Uint8ClampedArray(size * 4);
    for (let p = 0; p < size; p++) {
      const colour = inCh === 3;
      px[p * 4] = level(0, p);
      px[p * 4 + 1] = colour ? level(1, p) : px[p * 4];
      px[p * 4 + 2] = colour ? level(2, p) : px[p * 4];
      px[p * 4 + 3] = 255;
    }
    return px;
  }

  /** Draws the kernels `{shape: [out, in, kh, kw], data}` on `canvas`, resizing it to the grid. */
  views.drawFilters = function (canvas, filters) {
    const [out, inCh, kh, kw] = filters.shape;
    const g = views.filterGridLayout(filters.shape);
    canvas.width = g.width;
    canvas.height = g.height;
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#222';
    ctx.fillRect(0, 0, g.width, g.height);
    ctx.imageSmoothingEnabled = false;
    const tile = document.createElement('canvas');
    tile.width = kw;
    tile.height = kh;
    const tctx = tile.getContext('2d');
    for (let k = 0; k < out; k++) {
      tctx.putImageData(new ImageData(kernelPixels(filters.data, k, inCh, kh, kw), kw, kh), 0, 0);
      const x = g.gap + (k % g.cols) * (kw * g.scale + g.gap);
      const y = g.gap + Math.floor(k / g.cols) * (kh * g.scale + g.gap);
      ctx.drawImage(tile, x, y, kw * g.scale, kh * g.scale);
    }
    return g;
  };
})();
