#!/usr/bin/env node
// Builds the native addon of this copy of alexnet-ts into its own build/Release/, where the library looks for it.
// This is the one step after `npm install alexnet-ts-*.tgz`: the package has no install script (npm 11 skips
// dependencies' install scripts unless approved, and older npm would compile for minutes inside every install).
//
//   npx alexnet-build                 compile native/*.cc against libtorch (a few minutes; scripts/build-addon.js,
//                                     with its variables: LIBTORCH, LIBTORCH_USE_PYTORCH=1, JOBS, CXX)
//   npx alexnet-build --from DIR      reuse the addon already built in another copy of alexnet-ts (a clone, or another
//                                     project's node_modules/alexnet-ts) when its native/ sources are identical to
//                                     these, its build is newer than them, and it loads here; otherwise compile.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const ADDON = path.join('build', 'Release', 'alexnet_native.node');
const INFO = path.join('build', 'Release', 'build-info.json');

function usage(code) {
  (code ? console.error : console.log)(
    'usage: alexnet-build [--from DIR]\n' +
      '  Builds the native addon into ' +
      path.join(root, ADDON) +
      '.\n' +
      '  --from DIR  reuse the addon built in another copy of alexnet-ts (same native sources) instead of compiling',
  );
  process.exit(code);
}

/** Why the addon built in `from` cannot be reused here, or undefined when it can be copied. */
function notReusable(from) {
  const addon = path.join(from, ADDON);
  if (!fs.existsSync(addon)) return `${addon} does not exist`;
  const ours = path.join(root, 'native');
  const theirs = path.join(from, 'native');
  if (!fs.existsSync(theirs)) return `${from} has no native/ folder: is it a copy of alexnet-ts?`;
  const list = (d) =>
    fs
      .readdirSync(d)
      .filter((f) => /\.(cc|h)$/.test(f))
      .sort();
  const names = list(ours);
  if (names.join() !== list(theirs).join()) return `its native/ files differ from these (${list(theirs).join(' ')})`;
  const differing = names.filter(
    (f) => !fs.readFileSync(path.join(ours, f)).equals(fs.readFileSync(path.join(theirs, f))),
  );
  if (differing.length) return `its native sources differ from these: ${differing.join(', ')}`;
  const built = fs.statSync(addon).mtimeMs;
  const newer = names.filter((f) => fs.statSync(path.join(theirs, f)).mtimeMs > built);
  if (newer.length) return `its build is older than its sources (${newer.join(', ')}): run 'npm run build:addon' there`;
  return undefined;
}

/** Loads the addon the way the library does, in a child process; undefined when it loads, else the reason. */
function loadProblem() {
  const binding = path.join(root, 'dist', 'src', 'tensor', 'binding.js');
  const code = `try { require(${JSON.stringify(binding)}).native(); } catch (e) { console.error(e.message); process.exit(1); }`;
  const r = spawnSync(process.execPath, ['-e', code], {
    encoding: 'utf8',
    env: { ...process.env, ALEXNET_NATIVE: '' },
  });
  return r.status === 0 ? undefined : r.stderr.trim() || `exit code ${r.status}`;
}

function reuse(from) {
  const why = notReusable(from);
  if (why) {
    console.log(`alexnet-build: not reusing the addon in ${from}: ${why}; compiling instead`);
    return false;
  }
  fs.mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
  const target = path.join(root, ADDON);
  const tmp = `${target}.${process.pid}.tmp`;
  fs.copyFileSync(path.join(from, ADDON), tmp);
  fs.renameSync(tmp, target);
  if (fs.existsSync(path.join(from, INFO))) fs.copyFileSync(path.join(from, INFO), path.join(root, INFO));
  else fs.rmSync(path.join(root, INFO), { force: true });
  const problem = loadProblem();
  if (problem) {
    fs.rmSync(target, { force: true });
    fs.rmSync(path.join(root, INFO), { force: true });
    console.log(`alexnet-build: the addon from ${from} does not load here (${problem}); compiling instead`);
    return false;
  }
  console.log(`alexnet-build: reused the addon built in ${from}: wrote ${target}`);
  return true;
}

const args = process.argv.slice(2);
let from;
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--help' || args[i] === '-h') usage(0);
  else if (args[i] === '--from' && args[i + 1]) from = path.resolve(args[++i]);
  else if (args[i].startsWith('--from=')) from = path.resolve(args[i].slice('--from='.length));
  else {
    console.error(`alexnet-build: unknown argument '${args[i]}'`);
    usage(2);
  }
}
if (from && fs.existsSync(from) && fs.realpathSync(from) === fs.realpathSync(root)) {
  console.log('alexnet-build: --from names this copy itself; compiling (incremental) instead');
  from = undefined;
}
if (!from || !reuse(from)) require(path.join(root, 'scripts', 'build-addon.js'));
