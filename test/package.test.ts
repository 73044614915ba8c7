// The package as another project gets it: `npm pack`, the tarball installed into a fresh project, the one documented
// build step (`npx alexnet-build`), then the library from TypeScript and the commands through npx — all offline.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(__dirname, '..', '..');
const NPM_CLI = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const NPX_CLI = process.platform === 'win32' ? 'npx.cmd' : 'npx';

/** The environment of a user's shell: nothing from an npm script that runs this test, no addon override, offline. */
function userEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const keep = new Set(['npm_config_cache', 'npm_config_userconfig', 'npm_config_globalconfig']);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if ((k.startsWith('npm_') && !keep.has(k)) || k === 'INIT_CWD' || k === 'ALEXNET_NATIVE') continue;
    env[k] = v;
  }
  return {
    ...env,
    npm_config_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
    ONNXRUNTIME_NODE_INSTALL: 'skip',
    ...extra,
  };
}

function run(cmd: string, args: string[], cwd: string, env = userEnv()) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  assert.equal(
    r.status,
    0,
    `${cmd} ${args.join(' ')} (in ${cwd}) failed with ${r.status}${r.error ? ` (${r.error.message})` : ''}:\n${out}`,
  );
  return r;
}

/**
 * A lock file for the consumer made from the repository's: npm resolves the dependencies to the versions the
 * repository was tested with and takes them from npm's cache (`npm ci` fills it with those tarballs), so the install
 * needs no registry. (`npm install --offline` of the bare tarball would need the registry's package documents.)
 */
function consumerLock(tarball: string) {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const spec = `file:../${tarball}`;
  const packages: Record<string, unknown> = {
    '': { name: 'consumer', version: '1.0.0', dependencies: { 'alexnet-ts': spec } },
    'node_modules/alexnet-ts': {
      version: pkg.version,
      resolved: spec,
      license: pkg.license,
      dependencies: pkg.dependencies,
      bin: pkg.bin,
      engines: pkg.engines,
    },
  };
  for (const [key, entry] of Object.entries(lock.packages as Record<string, { dev?: boolean }>)) {
    if (key.startsWith('node_modules/') && !entry.dev) packages[key] = entry;
  }
  return {
    manifest: { name: 'consumer', version: '1.0.0', private: true, dependencies: { 'alexnet-ts': spec } },
    lock: { name: 'consumer', version: '1.0.0', lockfileVersion: 3, requires: true, packages },
  };
}

const CONSUMER_TS = `import { getModel } from 'alexnet-ts';

const model = getModel('alexnet-torchvision');
const count: number = model.numParameters();
// @ts-expect-error: the package's types are real (this line would be accepted if 'alexnet-ts' resolved to any)
const wrong: string = model.numParameters();
console.log(\`alexnet-torchvision: \${count.toLocaleString('en-US')} parameters\`, typeof wrong);
`;

test('npm pack gives a tarball that installs into a fresh project, builds its addon with one command, and runs', (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-pack-'));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  let last = Date.now();
  const took = (step: string) => {
    t.diagnostic(`${step}: ${((Date.now() - last) / 1000).toFixed(1)} s`);
    last = Date.now();
  };

  // 1. The tarball. The prepack script (tsc) is skipped: dist/ was compiled together with this test.
  const packed = JSON.parse(
    run(NPM_CLI, ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], ROOT).stdout,
  )[0];
  const files = (packed.files as { path: string }[]).map((f) => f.path);
  for (const f of [
    'package.json',
    'README.md',
    'dist/src/index.js',
    'dist/src/index.d.ts',
    'dist/src/cli/main.js',
    'dist/src/tensor/binding.js',
    'dist/src/models/imagenet-classes.json',
    'bin/alexnet.js',
    'bin/alexnet-build.js',
    'scripts/build-addon.js',
    'native/addon.cc',
  ]) {
    assert.ok(files.includes(f), `the tarball has ${f}`);
  }
  const stray = files.filter(
    (f) => /^(dist\/(test|bench)|build|test|src|node_modules)\//.test(f) || f.endsWith('.map'),
  );
  assert.deepEqual(stray, [], 'no tests, TypeScript sources, source maps or build outputs in the tarball');
  took(`npm pack (${packed.filename}: ${packed.size} bytes, ${files.length} files)`);

  // 2. A fresh project that depends on it, installed offline.
  const proj = path.join(tmp, 'consumer');
  fs.mkdirSync(proj);
  const { manifest, lock } = consumerLock(packed.filename);
  fs.writeFileSync(path.join(proj, 'package.json'), JSON.stringify(manifest, null, 2));
  fs.writeFileSync(path.join(proj, 'package-lock.json'), JSON.stringify(lock, null, 2));
  run(NPM_CLI, ['ci', '--offline', '--no-audit', '--no-fund'], proj);
  const installed = path.join(proj, 'node_modules', 'alexnet-ts');
  assert.ok(fs.existsSync(path.join(proj, 'node_modules', '.bin', 'alexnet')));
  took('npm ci --offline');

  // 3. The documented build step, reusing this repository's compiled addon when it is up to date (else it compiles).
  const build = run(NPX_CLI, ['alexnet-build', '--from', ROOT], proj);
  assert.ok(
    fs.existsSync(path.join(installed, 'build', 'Release', 'alexnet_native.node')),
    'the addon lies inside the installed package',
  );
  took(`npx alexnet-build (${/reused/.test(build.stdout) ? "reused the repository's addon" : 'compiled'})`);

  // 4. `import { getModel } from 'alexnet-ts'` type-checks (the package's declarations included) and runs.
  fs.writeFileSync(path.join(proj, 'main.ts'), CONSUMER_TS);
  fs.writeFileSync(
    path.join(proj, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'commonjs',
        moduleResolution: 'node',
        strict: true,
        esModuleInterop: true,
        types: ['node'],
        typeRoots: [path.join(ROOT, 'node_modules', '@types')],
        outDir: 'out',
      },
      files: ['main.ts'],
    }),
  );
  run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], proj);
  took('tsc');
  assert.match(run(process.execPath, ['out/main.js'], proj).stdout, /alexnet-torchvision: 61,100,840 parameters/);
  // ES modules find it through "exports" too.
  fs.writeFileSync(
    path.join(proj, 'main.mjs'),
    "import { getModel, listModels } from 'alexnet-ts';\nconsole.log(typeof getModel, listModels().length);\n",
  );
  assert.equal(run(process.execPath, ['main.mjs'], proj).stdout.trim(), 'function 6');
  took('the library from CommonJS and ES modules');

  // 5. The commands through npx, from the project; a dead registry proves that nothing is fetched.
  const noNet = userEnv({ npm_config_registry: 'http://127.0.0.1:9/' });
  assert.match(run(NPX_CLI, ['alexnet', '--help'], proj, noNet).stdout, /Usage: alexnet <command>/);
  assert.match(
    run(NPX_CLI, ['alexnet', 'summary', '--model', 'alexnet-d2l'], proj, noNet).stdout,
    /total: 46,764,746 parameters/,
  );
  took('npx alexnet --help, summary');
});
