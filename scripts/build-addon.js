#!/usr/bin/env node
// Builds the native addon (native/*.cc) against libtorch.
//
// Where libtorch comes from (the conventions tch-rs uses):
//   LIBTORCH=/path/to/libtorch       an official libtorch tree (include/, lib/)
//   LIBTORCH_USE_PYTORCH=1           the libtorch inside an installed Python torch (PYTHON=... picks the python)
//   neither                          Debian's libtorch-dev (apt-get install libtorch-dev)
// Other variables: CXX (compiler, default g++), JOBS (parallel compiles), CXXSTD (default c++17),
//   CUDA_HOME (where the CUDA headers are, for CUDA graphs; default: /usr/local/cuda, nvcc's, the PyTorch wheel's),
//   ALEXNET_NO_CUDA_GRAPHS=1 (a CUDA build without CUDA graphs).
// Distributed training (native/distributed.cc) needs Gloo's headers (Debian: libgloo-dev); without them, or with
//   ALEXNET_NO_C10D=1, the addon is built without c10d and says so at run time.
//
// Output: build/Release/alexnet_native.node and build/Release/build-info.json. Nothing is rebuilt when the
// sources and the configuration are unchanged.
'use strict';

const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const srcDir = path.join(root, 'native');
const outDir = path.join(root, 'build', 'Release');
const objDir = path.join(root, 'build', 'obj');

function fail(msg) {
  console.error(`build-addon: ${msg}`);
  process.exit(1);
}

function findLibtorch() {
  if (process.env.LIBTORCH) {
    const base = path.resolve(process.env.LIBTORCH);
    if (!fs.existsSync(path.join(base, 'include', 'torch'))) {
      fail(`LIBTORCH=${base} has no include/torch: point it at the root of a libtorch tree`);
    }
    return {
      source: `LIBTORCH=${base}`,
      include: [path.join(base, 'include'), path.join(base, 'include/torch/csrc/api/include')],
      lib: path.join(base, 'lib'),
      abi: detectAbi(path.join(base, 'lib')),
    };
  }
  if (process.env.LIBTORCH_USE_PYTORCH === '1') {
    const py = process.env.PYTHON || 'python3';
    let out;
    try {
      out = execFileSync(
        py,
        [
          '-c',
          'import torch,os;print(os.path.dirname(torch.__file__));print(int(torch._C._GLIBCXX_USE_CXX11_ABI));print(torch.__version__)',
        ],
        { encoding: 'utf8' },
      );
    } catch {
      fail(
        `LIBTORCH_USE_PYTORCH=1 but '${py} -c "import torch"' failed: install PyTorch for that python or set PYTHON`,
      );
    }
    const [dir, abi, version] = out.trim().split('\n');
    return {
      source: `PyTorch ${version} at ${dir}`,
      site: path.dirname(dir),
      include: [path.join(dir, 'include'), path.join(dir, 'include/torch/csrc/api/include')],
      lib: path.join(dir, 'lib'),
      abi: Number(abi),
    };
  }
  let multiarch = 'x86_64-linux-gnu';
  try {
    multiarch = execFileSync('gcc', ['-print-multiarch'], { encoding: 'utf8' }).trim() || multiarch;
  } catch {
    /* keep the default */
  }
  const lib = `/usr/lib/${multiarch}`;
  if (
    !fs.existsSync('/usr/include/torch/csrc/api/include/torch/torch.h') ||
    !fs.existsSync(path.join(lib, 'libtorch.so'))
  ) {
    fail(
      'libtorch not found. On Debian/Ubuntu: apt-get install libtorch-dev. ' +
        'Or set LIBTORCH=/path/to/libtorch, or LIBTORCH_USE_PYTORCH=1 to use an installed PyTorch.',
    );
  }
  return {
    source: 'Debian libtorch-dev',
    include: ['/usr/include/torch/csrc/api/include'] /* /usr/include is searched already */,
    lib,
    abi: 1,
  };
}

function detectAbi(libDir) {
  // Official libtorch trees come in two ABIs; the "cxx11-abi" builds export std::__cxx11 symbols.
  try {
    const syms = execFileSync('sh', ['-c', `nm -DC ${path.join(libDir, 'libc10.so')} | grep -c __cxx11 || true`], {
      encoding: 'utf8',
    });
    return Number(syms.trim()) > 0 ? 1 : 0;
  } catch {
    return 1;
  }
}

// CUDA graphs (native/cuda_graph.cc) include libtorch's CUDA headers, which include the CUDA toolkit's.
function cudaInclude(torch) {
  if (process.env.ALEXNET_NO_CUDA_GRAPHS === '1') return undefined;
  if (!torch.include.some((d) => fs.existsSync(path.join(d, 'ATen', 'cuda', 'CUDAGraph.h')))) return undefined;
  const candidates = [];
  if (process.env.CUDA_HOME) candidates.push(path.join(process.env.CUDA_HOME, 'include'));
  candidates.push('/usr/local/cuda/include');
  try {
    const nvcc = execFileSync('sh', ['-c', 'command -v nvcc'], { encoding: 'utf8' }).trim();
    if (nvcc) candidates.push(path.join(path.dirname(path.dirname(fs.realpathSync(nvcc))), 'include'));
  } catch {
    /* no nvcc on PATH */
  }
  if (torch.site) {
    const nv = path.join(torch.site, 'nvidia');
    if (fs.existsSync(nv)) for (const d of fs.readdirSync(nv)) candidates.push(path.join(nv, d, 'include'));
  }
  return candidates.find((d) => fs.existsSync(path.join(d, 'cuda_runtime_api.h')));
}

// c10d's Gloo process group: its header is empty unless USE_C10D_GLOO is defined, and includes <gloo/...>, which
// Debian's libtorch-dev does not ship (libgloo-dev does; its libgloo.so.0 is the one libtorch_cpu links). Debian
// also lacks the distributed-autograd header that c10d/reducer.hpp includes: native/shim stands in for it.
function c10dFlags(torch) {
  if (process.env.ALEXNET_NO_C10D === '1') return { cflags: [], libs: [] };
  const dirs = [...torch.include, '/usr/include'];
  const has = (rel) => dirs.some((d) => fs.existsSync(path.join(d, rel)));
  if (!has('torch/csrc/distributed/c10d/ProcessGroupGloo.hpp') || !has('gloo/config.h')) {
    console.log('build-addon: Gloo headers not found (apt-get install libgloo-dev): building without c10d');
    return { cflags: [], libs: [] };
  }
  const cflags = ['-DUSE_C10D_GLOO'];
  if (!has('torch/csrc/distributed/autograd/context/context.h')) cflags.push(`-I${path.join(srcDir, 'shim')}`);
  const libs = fs.existsSync(path.join(torch.lib, 'libgloo.so')) ? ['gloo'] : [];
  return { cflags, libs };
}

// Photo decoding (native/jpeg.cc) links libjpeg-turbo's TurboJPEG library when its header is there (Debian:
// libturbojpeg0-dev), and libjpeg's own API (libjpeg62-turbo-dev: the same library, which can decode just a crop's
// rows and columns) when its header is too. Without TurboJPEG the addon is built without the decoder and every
// JPEG goes through sharp; without jpeglib.h every JPEG is decoded whole. ALEXNET_NO_TURBOJPEG=1 builds without both.
function jpegLibs(torch) {
  const none = { libs: [], cflags: ['-DALEXNET_NO_TURBOJPEG'] };
  if (process.env.ALEXNET_NO_TURBOJPEG === '1') return none;
  const dirs = [...torch.include, '/usr/include', '/usr/local/include', '/usr/include/x86_64-linux-gnu'];
  const has = (h) => dirs.some((d) => fs.existsSync(path.join(d, h)));
  if (!has('turbojpeg.h')) {
    console.log(
      'build-addon: turbojpeg.h not found (apt-get install libturbojpeg0-dev): JPEGs will be decoded by sharp',
    );
    return none;
  }
  if (!has('jpeglib.h')) {
    console.log('build-addon: jpeglib.h not found (apt-get install libjpeg62-turbo-dev): JPEGs are decoded whole');
    return { libs: ['turbojpeg'], cflags: ['-DALEXNET_NO_JPEGLIB'] };
  }
  return { libs: ['turbojpeg', 'jpeg'], cflags: [] };
}

// Inference plans (native/onednn.cc) call oneDNN directly: only when its headers (Debian: libdnnl-dev) match the
// libdnnl.so.2 that libtorch itself links, so that one oneDNN runs everything (a PyTorch wheel carries its own,
// hidden inside libtorch_cpu: no plans there, inference stays on libtorch's ops).
function onednnFlags(torch) {
  if (process.env.ALEXNET_NO_ONEDNN === '1') return { cflags: [], libs: [] };
  const version = '/usr/include/oneapi/dnnl/dnnl_version.h';
  const major = fs.existsSync(version) && /DNNL_VERSION_MAJOR\s+(\d+)/.exec(fs.readFileSync(version, 'utf8'));
  let linked = '';
  try {
    linked = execFileSync('ldd', [path.join(torch.lib, 'libtorch_cpu.so')], { encoding: 'utf8' });
  } catch {
    /* no ldd or no such library: no plans */
  }
  if (!major || major[1] !== '2' || !/libdnnl\.so\.2 /.test(linked)) {
    console.log(
      'build-addon: oneDNN 2 headers (apt-get install libdnnl-dev) or a libtorch linking them not found: ' +
        'building without oneDNN inference plans',
    );
    return { cflags: [], libs: [] };
  }
  return { cflags: ['-DALEXNET_ONEDNN'], libs: ['dnnl'] };
}

function nodeInclude() {
  const candidates = [
    path.join(path.dirname(process.execPath), '..', 'include', 'node'),
    '/usr/local/include/node',
    '/usr/include/node',
  ];
  const found = candidates.find((d) => fs.existsSync(path.join(d, 'node_api.h')));
  if (!found)
    fail(
      'Node.js headers (node_api.h) not found: install the nodejs development headers (apt-get install libnode-dev or nodejs)',
    );
  return found;
}

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'inherit' });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${code}`))));
  });
}

async function main() {
  const torch = findLibtorch();
  const cxx = process.env.CXX || 'g++';
  const std = process.env.CXXSTD || 'c++17';
  let addonApi;
  try {
    addonApi = require('node-addon-api').include_dir;
  } catch {
    fail('node-addon-api is missing: run npm ci first');
  }
  // include_dir is relative to the current directory (node-addon-api computes it with path.relative('.')), which is
  // not this package's root when the script runs inside node_modules/alexnet-ts (npx alexnet-build).
  const includes = [nodeInclude(), path.resolve(addonApi), ...torch.include];
  const libNames = ['c10', 'torch_cpu', 'torch'];
  for (const extra of ['c10_cuda', 'torch_cuda']) {
    if (fs.existsSync(path.join(torch.lib, `lib${extra}.so`))) libNames.push(extra);
  }
  const c10d = c10dFlags(torch);
  libNames.push(...c10d.libs);
  const onednn = onednnFlags(torch);
  libNames.push(...onednn.libs);
  const jpeg = jpegLibs(torch);
  libNames.push(...jpeg.libs);
  const cudaHeaders = libNames.includes('torch_cuda') ? cudaInclude(torch) : undefined;
  if (cudaHeaders) includes.push(cudaHeaders);
  else if (libNames.includes('torch_cuda')) {
    console.log('build-addon: CUDA headers not found (set CUDA_HOME): building without CUDA graphs');
  }
  const cflags = [
    `-std=${std}`,
    '-O3',
    '-fno-math-errno',
    '-fPIC',
    '-fexceptions',
    '-pthread',
    `-D_GLIBCXX_USE_CXX11_ABI=${torch.abi}`,
    '-DNAPI_VERSION=8',
    '-DNODE_ADDON_API_CPP_EXCEPTIONS',
    '-DNODE_ADDON_API_DISABLE_DEPRECATED',
    ...(cudaHeaders ? ['-DALEXNET_CUDA_GRAPHS'] : []),
    ...c10d.cflags,
    ...onednn.cflags,
    ...jpeg.cflags,
    '-Wall',
    '-Wno-unused-parameter',
    '-Wno-deprecated-declarations',
    '-Wno-unused-variable',
    ...includes.map((d) => `-isystem${d}`),
  ];
  const ldflags = [
    '-shared',
    '-pthread',
    `-L${torch.lib}`,
    `-Wl,-rpath,${torch.lib}`,
    '-Wl,--no-as-needed',
    ...libNames.map((l) => `-l${l}`),
    '-Wl,--as-needed',
  ];

  const sources = fs
    .readdirSync(srcDir)
    .filter((f) => f.endsWith('.cc'))
    .sort();
  const headers = fs.readdirSync(srcDir).filter((f) => f.endsWith('.h'));
  // Objects depend on the compiler flags; the link (below) also on the linker's.
  const config = JSON.stringify({ cxx, cflags });
  const linkHash = crypto.createHash('sha256').update(JSON.stringify(ldflags)).digest('hex').slice(0, 16);
  const linkStamp = path.join(objDir, 'link-hash');
  const sameLink = fs.existsSync(linkStamp) && fs.readFileSync(linkStamp, 'utf8') === linkHash;
  const configHash = crypto.createHash('sha256').update(config).digest('hex').slice(0, 16);
  const headerTime = Math.max(...headers.map((h) => fs.statSync(path.join(srcDir, h)).mtimeMs));

  fs.mkdirSync(objDir, { recursive: true });
  fs.mkdirSync(outDir, { recursive: true });
  const stampFile = path.join(objDir, 'config-hash');
  const sameConfig = fs.existsSync(stampFile) && fs.readFileSync(stampFile, 'utf8') === configHash;

  const jobs = Number(process.env.JOBS) || Math.max(1, Math.min(os.cpus().length, 8));
  const pending = sources.filter((src) => {
    const obj = path.join(objDir, src.replace(/\.cc$/, '.o'));
    if (!sameConfig || !fs.existsSync(obj)) return true;
    const t = fs.statSync(obj).mtimeMs;
    return t < fs.statSync(path.join(srcDir, src)).mtimeMs || t < headerTime;
  });
  console.log(
    `build-addon: libtorch from ${torch.source}; compiling ${pending.length} of ${sources.length} files with ${jobs} jobs`,
  );
  const queue = [...pending];
  async function worker() {
    while (queue.length) {
      const src = queue.shift();
      const obj = path.join(objDir, src.replace(/\.cc$/, '.o'));
      const started = Date.now();
      await run(cxx, [...cflags, '-c', path.join(srcDir, src), '-o', obj]);
      console.log(`  ${src} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
    }
  }
  try {
    await Promise.all(Array.from({ length: jobs }, worker));
  } catch (e) {
    fail(`compilation failed: ${e.message}`);
  }
  fs.writeFileSync(stampFile, configHash);

  const out = path.join(outDir, 'alexnet_native.node');
  const objs = sources.map((s) => path.join(objDir, s.replace(/\.cc$/, '.o')));
  const newestObj = Math.max(...objs.map((o) => fs.statSync(o).mtimeMs));
  if (pending.length || !sameLink || !fs.existsSync(out) || fs.statSync(out).mtimeMs < newestObj) {
    await run(cxx, [...objs, '-o', out, ...ldflags]).catch((e) => fail(`link failed: ${e.message}`));
    fs.writeFileSync(linkStamp, linkHash);
  }
  const info = {
    source: torch.source,
    libDir: torch.lib,
    cuda: libNames.includes('torch_cuda'),
    cudaGraphs: Boolean(cudaHeaders),
    c10d: c10d.cflags.length > 0,
    onednn: onednn.cflags.length > 0,
    turbojpeg: jpeg.libs.includes('turbojpeg'),
    jpegRegion: jpeg.libs.includes('jpeg'),
    abi: torch.abi,
    builtAt: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(outDir, 'build-info.json'), JSON.stringify(info, null, 2) + '\n');
  console.log(
    `build-addon: wrote ${path.relative(root, out)} (${info.cuda ? `CUDA build${info.cudaGraphs ? ' with CUDA graphs' : ''}` : 'CPU build'})`,
  );
}

main().catch((e) => fail(e.stack || String(e)));
