// Axis ticks of the training charts: "nice" steps (1, 2 or 5 × 10^k) and labels with just enough decimals to tell
// neighbouring ticks apart (a loss between 2.2995 and 2.3012 reads 2.2995, 2.3000, 2.3005, 2.3010, never
// "2.301, 2.3, 2.3").
//
// A classic script (no modules, no build step), loaded before curves.js on the page and inlined before it in
// `alexnet report`. It defines window.AlexnetTicks:
//   niceStep(span, maxTicks)   the smallest 1/2/5 × 10^k step that cuts `span` into at most `maxTicks` intervals
//   ticks(min, max, maxTicks)  {step, values, labels}: the multiples of that step in [min, max], and their labels
//   labels(values, step?)      the labels of evenly spaced values (the step found from them when not given)
(function (root) {
  'use strict';

  var MANTISSAS = [1, 2, 5];
  // Relative slack for values that are a multiple of the step up to floating-point error (0.1 · 3 = 0.30000000000000004).
  var EPS = 1e-9;

  /** m × 10^k, exact for k < 0 as far as a double allows (2 / 1e4, not 2 × 1e-4 = 0.00020000000000000001). */
  function scaled(m, k) {
    return k >= 0 ? m * Math.pow(10, k) : m / Math.pow(10, -k);
  }

  function exponent(x) {
    return Math.floor(Math.log10(Math.abs(x)) + EPS);
  }

  function niceStep(span, maxTicks) {
    if (!(span > 0) || !isFinite(span)) return 0;
    var raw = span / Math.max(1, Math.floor(maxTicks) || 1);
    for (var k = exponent(raw); ; k++) {
      for (var i = 0; i < MANTISSAS.length; i++) {
        var s = scaled(MANTISSAS[i], k);
        if (s >= raw * (1 - EPS)) return s;
      }
    }
  }

  /** The 1/2/5 × 10^k nearest to `d` (a difference of two ticks, with its floating-point error). */
  function snapStep(d) {
    var k = exponent(d);
    var best = scaled(1, k);
    [2, 5, 10].forEach(function (m) {
      var s = scaled(m, k);
      if (Math.abs(Math.log(s / d)) < Math.abs(Math.log(best / d))) best = s;
    });
    return best;
  }

  function inferStep(values) {
    var d = Infinity;
    for (var i = 1; i < values.length; i++) {
      var g = Math.abs(values[i] - values[i - 1]);
      if (g > 0 && g < d) d = g;
    }
    return isFinite(d) ? snapStep(d) : 0;
  }

  function labels(values, step) {
    var s = step > 0 ? step : inferStep(values);
    if (!s) {
      return values.map(function (v) {
        return v == null ? '' : String(+Number(v).toPrecision(6));
      });
    }
    var ks = exponent(s);
    var big = 0;
    values.forEach(function (v) {
      if (v != null && isFinite(v)) big = Math.max(big, Math.abs(v));
    });
    // Zero when it is zero up to the step's precision (no "-0.000", no "1.2e-17").
    var clean = function (v) {
      return Math.abs(v) < s * 1e-6 ? 0 : v;
    };
    // Very small or very large: exponent form, with as many mantissa digits as the step needs next to the largest.
    if (big >= 1e6 || (big > 0 && big < 1e-3)) {
      var digits = Math.max(0, exponent(big) - ks);
      return values.map(function (v) {
        if (v == null) return '';
        v = clean(v);
        return v === 0 ? '0' : v.toExponential(digits);
      });
    }
    var decimals = Math.min(20, Math.max(0, -ks));
    return values.map(function (v) {
      return v == null ? '' : clean(v).toFixed(decimals);
    });
  }

  /** The multiples of `step` in [min, max], without their floating-point error (23 × 0.1 is 2.3, not 2.3…03). */
  function multiples(min, max, step) {
    var values = [];
    var last = Math.floor(max / step + EPS);
    for (var n = Math.ceil(min / step - EPS); n <= last; n++) values.push(+(n * step).toPrecision(15));
    return values;
  }

  /** The next nice step down: 1 → 0.5, 2 → 1, 5 → 2 (times 10^k). */
  function smallerStep(step) {
    var k = exponent(step);
    var m = Math.round(step / scaled(1, k));
    return m === 5 ? scaled(2, k) : m === 2 ? scaled(1, k) : scaled(5, k - 1);
  }

  function ticks(min, max, maxTicks) {
    if (!isFinite(min) || !isFinite(max)) return { step: 0, values: [], labels: [] };
    if (max < min) return ticks(max, min, maxTicks);
    var step = niceStep(max - min, maxTicks || 5);
    if (!step) return { step: 0, values: [min], labels: labels([min]) };
    var values = multiples(min, max, step);
    // A range that holds one multiple of the step or none (31.4102 … 31.4148 by 0.005): a finer step, so that the
    // axis has two labelled ticks (the ticks a step of a third of the range gives, at most).
    while (values.length < 2) values = multiples(min, max, (step = smallerStep(step)));
    return { step: step, values: values, labels: labels(values, step) };
  }

  root.AlexnetTicks = { niceStep: niceStep, ticks: ticks, labels: labels };
})(typeof window !== 'undefined' ? window : globalThis);
