#!/usr/bin/env node
// Runs every compiled test file (dist/test/**/*.test.js) with node's test runner, one file at a time (the
// machines have 2 cores and the model tests use both). Extra arguments filter the files by substring.
//
// --quick (npm run test:quick): only the QUICK files below, the tests that run in this process alone: no child
// processes, no PyTorch oracle, no servers on ports, no browser. About a minute on 2 cores; CI runs it first.
//
// --also-avx2 (CI): then runs the files that compare numbers a second time with oneDNN and ATen held to AVX2
// (DNNL_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2; the PyTorch oracle inherits them), so a tolerance that holds
// only for this CPU's kernels (AVX-512, native bfloat16) fails here rather than on the next machine; tests that
// cannot depend on the kernels (file formats, messages, processes) skip themselves in this pass. The closing line
// counts both passes. Skipped on a CPU without AVX-512, where the first pass already ran AVX2 kernels.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

// Test files whose assertions compare computed numbers (with the oracle or with hand-computed values).
const NUMERIC = [
  'tensor',
  'nn-parity',
  'models',
  'precision',
  'optim',
  'data',
  'folder',
  'io',
  'safetensors',
  'train',
  'folder-train',
  'cpu',
  'inference',
].map((n) => `${n}.test.js`);
// The quick tier: whole files whose every test stays in-process and needs no oracle. A file that starts a process
// or the oracle for any of its tests does not belong here (move such a test to another file instead).
const QUICK = ['tensor', 'data', 'memory', 'models-size', 'safetensors', 'infer', 'check-exports'].map(
  (n) => `${n}.test.js`,
);
const AVX2 = { DNNL_MAX_CPU_ISA: 'AVX2', ATEN_CPU_CAPABILITY: 'avx2' };
// Tells the tests that this is the repeat: a test (or part of one) whose result cannot depend on the kernels (file
// formats, messages, processes) skips itself here, saying so (test/helpers/oracle.ts firstPassOnly).
const REPEAT = { ALEXNET_AVX2_PASS: '1' };

const root = path.resolve(__dirname, '..');
const dir = path.join(root, 'dist', 'test');
if (!fs.existsSync(dir)) {
  console.error("run-tests: dist/test is missing: run 'npm run build' first");
  process.exit(1);
}
const files = [];
(function walk(d) {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else if (e.name.endsWith('.test.js')) files.push(p);
  }
})(dir);
const args = process.argv.slice(2);
const options = args.filter((a) => a.startsWith('--'));
const filters = args.filter((a) => !a.startsWith('--'));
for (const o of options) {
  if (o !== '--also-avx2' && o !== '--quick') {
    console.error(`run-tests: unknown option ${o} (known: --quick, --also-avx2)`);
    process.exit(2);
  }
}
const chosen = files
  .sort()
  .filter((f) => !options.includes('--quick') || QUICK.includes(path.basename(f)))
  .filter((f) => !filters.length || filters.some((s) => f.includes(s)));

/** One run of node's test runner over `list`; returns its exit status and the counts from its TAP summary. */
function pass(list, env, tap) {
  fs.rmSync(tap, { force: true });
  const r = spawnSync(
    process.execPath,
    [
      '--expose-gc',
      '--test',
      '--test-concurrency=1',
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      '--test-reporter=tap',
      `--test-reporter-destination=${tap}`,
      ...list,
    ],
    { stdio: 'inherit', cwd: root, env },
  );
  const text = fs.existsSync(tap) ? fs.readFileSync(tap, 'utf8') : '';
  const count = (k) => Number((text.match(new RegExp(`^# ${k} (\\d+)$`, 'm')) || [])[1] || 0);
  return { status: r.status ?? 1, pass: count('pass'), fail: count('fail'), skipped: count('skipped') };
}

const results = [pass(chosen, process.env, path.join(root, 'dist', 'test-results.tap'))];
if (options.includes('--also-avx2')) {
  const numeric = chosen.filter((f) => NUMERIC.includes(path.basename(f)));
  const flags = (() => {
    try {
      return (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:\s*(.*)$/m) || ['', ''])[1].split(/\s+/);
    } catch {
      return [];
    }
  })();
  const summary = (r) => `${r.pass} passed, ${r.fail} failed, ${r.skipped} skipped`;
  if (!flags.includes('avx512f')) {
    console.log(
      'run-tests: no second pass under AVX2: this CPU has no AVX-512, so the first pass ran its AVX2 (or older) kernels',
    );
  } else if (numeric.length) {
    console.log(`run-tests: first pass (native ISA): ${summary(results[0])}`);
    console.log(
      `run-tests: second pass, ${numeric.length} numeric test files under ${Object.entries(AVX2)
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`,
    );
    const env = { ...process.env, ...AVX2, ...REPEAT };
    results.push(pass(numeric, env, path.join(root, 'dist', 'test-results-avx2.tap')));
    console.log(`run-tests: second pass (AVX2): ${summary(results[1])}`);
  }
}
// The plain closing line, summed over the passes.
const total = (k) => results.reduce((a, r) => a + r[k], 0);
console.log(`${total('pass')} passed, ${total('fail')} failed, ${total('skipped')} skipped`);
process.exit(results.find((r) => r.status !== 0)?.status ?? 0);
