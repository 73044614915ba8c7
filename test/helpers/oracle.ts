// Runs the PyTorch oracle (test/golden/oracle.py with Debian's python3-torch) on a batch of cases.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { loadSafetensors, saveSafetensors } from '../../src/io/safetensors';
import { AlexNet } from '../../src/models/alexnet';
import { getModel } from '../../src/models/registry';
import { manualSeed, randint, randn, Tensor, tidy } from '../../src/tensor/tensor';

export const PYTHON = process.env.ALEXNET_ORACLE_PYTHON || '/usr/bin/python3';
const GOLDEN = path.resolve(__dirname, '..', '..', '..', 'test', 'golden');
// oracle.py's main_mapped: its main with fewer copies of the tensors (a full-size model's case moves ~1 GB).
const call = (fn: string) => `import sys; sys.path.insert(0, ${JSON.stringify(GOLDEN)}); import oracle; oracle.${fn}()`;
const MAIN = call('main_mapped');

let availability: string | undefined | null = null;

/** undefined when the oracle can run; otherwise why not. ALEXNET_REQUIRE_ORACLE=1 (CI) turns a skip into a failure. */
export function oracleMissing(): string | undefined {
  if (availability === null) {
    const r = spawnSync(PYTHON, ['-c', 'import torch, torchvision, onnx'], { encoding: 'utf8' });
    availability =
      r.status === 0
        ? undefined
        : `PyTorch oracle unavailable (${PYTHON} cannot import torch, torchvision or onnx: apt-get install python3-torch python3-torchvision python3-onnx)`;
    if (availability && process.env.ALEXNET_REQUIRE_ORACLE === '1') throw new Error(availability);
  }
  return availability;
}

/**
 * Why a test, or the part of one, that cannot depend on the CPU's kernels (a file format, a message, a process's
 * exit) skips itself in the second pass of scripts/run-tests.js --also-avx2 (ALEXNET_AVX2_PASS=1): the first pass
 * ran it on the same machine, and the AVX2 pass is for tolerances that hold only for some kernels. undefined
 * otherwise, so a run under DNNL_MAX_CPU_ISA=AVX2 by hand runs everything.
 */
export function firstPassOnly(what: string): string | undefined {
  return process.env.ALEXNET_AVX2_PASS === '1'
    ? `${what} does not depend on the kernels: checked in the first pass (this is the AVX2 repeat)`
    : undefined;
}

export interface Case {
  id: string;
  op: string;
  args?: Record<string, unknown>;
  tensors: Record<string, Tensor>;
}

export function runOracle(cases: Case[]): Map<string, Tensor> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-oracle-'));
  try {
    const input = path.join(dir, 'in.safetensors');
    const output = path.join(dir, 'out.safetensors');
    const entries: [string, Tensor][] = [];
    for (const c of cases) for (const [k, t] of Object.entries(c.tensors)) entries.push([`${c.id}.${k}`, t]);
    saveSafetensors(input, entries, {
      cases: JSON.stringify(cases.map(({ id, op, args }) => ({ id, op, args: args ?? {} }))),
    });
    // The oracle inherits our environment, so PyTorch picks the same kernels (DNNL_MAX_CPU_ISA, ATEN_CPU_CAPABILITY).
    const r = spawnSync(PYTHON, ['-B', '-c', MAIN, input, output], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
      env: process.env,
    });
    if (r.status !== 0) throw new Error(`oracle failed (${r.status}): ${r.stderr}`);
    return loadSafetensors(output).tensors;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export interface OnnxCheck {
  path: string;
  opset?: number;
  nodes?: number;
  /** onnx.checker's complaint */
  error?: string;
}

/**
 * An oracle process checking ONNX files with onnx.checker (oracle.py onnx_check_lines) while the test goes on:
 * `add` each file once written, then `done()` gives every file's opset and node count or error. `done()` also ends
 * the process when a test fails half-way (call it in a finally).
 */
export function onnxChecker(): { add: (file: string) => void; done: () => Promise<Map<string, OnnxCheck>> } {
  const child = spawn(PYTHON, ['-B', '-c', call('onnx_check_lines')], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  return {
    add: (file) => void child.stdin.write(`${file}\n`),
    done: async () => {
      child.stdin.end();
      const code = await exited;
      if (code !== 0) throw new Error(`the ONNX checker failed (${code}): ${err}`);
      const lines = out.split('\n').filter((l) => l.trim());
      return new Map(lines.map((l) => JSON.parse(l) as OnnxCheck).map((c) => [c.path, c]));
    },
  };
}

/** Largest absolute elementwise difference (computed by the engine, in float64). */
export function maxAbsDiff(a: Tensor, b: Tensor): number {
  if (a.shape.join() !== b.shape.join()) throw new Error(`shapes differ: [${a.shape}] vs [${b.shape}]`);
  return tidy(() => a.to('float64').sub(b.to('float64')).abs().max().item());
}

/** Largest magnitude in a tensor. */
export function maxAbs(a: Tensor): number {
  return tidy(() => a.to('float64').abs().max().item());
}

/** Largest absolute difference relative to the reference's largest magnitude (for gradients of big layers). */
export function relDiff(a: Tensor, ref: Tensor): number {
  return maxAbsDiff(a, ref) / Math.max(1e-12, maxAbs(ref));
}

/**
 * The precision tests' setting (CPU and GPU alike): torchvision's AlexNet at 127×127 from seed 11, two inputs and
 * their targets, and the oracle's float64 and bfloat16-autocast runs on those weights; `get('f64.y')`,
 * `get('bf16.grad.features.0.weight')`, … (a missing key fails the test). With `peerErrors` the bfloat16 run
 * comes back as its errors against the float64 one (norm metric, oracle.py peer_errors): `get('bf16.err.y')`.
 */
export function autocastReference(peerErrors = false): {
  model: AlexNet;
  x: Tensor;
  target: Tensor;
  get: (key: string) => Tensor;
} {
  manualSeed(11);
  const model = getModel('alexnet-torchvision', { inputSize: 127 }).eval();
  const x = randn([2, 3, 127, 127]);
  const target = randint(0, 1000, [2]);
  const tensors: Record<string, Tensor> = { x, target };
  for (const [k, t] of model.stateDict()) tensors[k] = t;
  const runs = [
    { name: 'bf16', autocast: 'bfloat16' },
    { name: 'f64', dtype: 'float64' },
  ];
  const args = peerErrors ? { runs, peer_errors: { ref: 'f64', metric: 'norm' } } : { runs };
  const ref = runOracle([{ id: 'a', op: 'model_torchvision', args, tensors }]);
  const get = (key: string) => ref.get(`a.${key}`) ?? assert.fail(`the oracle returned no ${key}`);
  return { model, x, target, get };
}
