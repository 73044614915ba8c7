#!/usr/bin/env node
// npm run lint: every static check CI runs before the tests, each reported by name.
//   prettier      TypeScript/JavaScript formatting (.prettierrc.json)
//   eslint        typescript-eslint's rules over src, test, bench, scripts, bin and web (the page's classic
//                 scripts), and the size limits: lines per function and per file (eslint.config.mjs)
//   imports       the layer order, no cycles, who may open the native binding (dependency-cruiser over src/ and
//                 bench/, .dependency-cruiser.cjs)
//   exports       the addon's C++ export tables against binding.ts's Native interface (scripts/check-exports.js)
//   clang-format  the C++ addon's formatting (.clang-format); skipped with a note where clang-format is missing,
//                 except in CI
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const natives = fs
  .readdirSync(path.join(root, 'native'))
  .filter((f) => /\.(cc|h)$/.test(f))
  .map((f) => path.join('native', f));
const checks = [
  ['prettier', bin('prettier'), ['--check', '--log-level', 'warn', '.']],
  ['eslint', bin('eslint'), ['src', 'test', 'bench', 'scripts', 'bin', 'web']],
  ['imports', bin('depcruise'), ['src', 'bench', '--config', '.dependency-cruiser.cjs']],
  ['exports', process.execPath, [path.join('scripts', 'check-exports.js')]],
  ['clang-format', 'clang-format', ['--dry-run', '--Werror', ...natives]],
];
let failed = 0;
for (const [name, cmd, args] of checks) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error && r.error.code === 'ENOENT' && name === 'clang-format' && !process.env.CI) {
    console.log(`lint: ${name} skipped: not installed (apt-get install clang-format)`);
    continue;
  }
  const ok = r.status === 0;
  console.log(`lint: ${name} ${ok ? 'ok' : 'FAILED'}`);
  if (!ok) failed++;
}
process.exit(failed ? 1 : 0);
