// Runs the PyTorch oracle (test/golden/oracle.py with Debian's python3-torch) on a batch of cases.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import assert from 'node:assert/strict';
import { loadSafetensors, saveSafetensors } from '../../src/io/safetensors';
import { AlexNet } from '../../src/models/alexnet';
import { getModel } from '../../src/models/registry';
import { manualSeed, randint, randn, Tensor, tidy } from '../../src/tensor/tensor';

export const PYTHON = process.env.ALEXNET_ORACLE_PYTHON || '/usr/bin/python3';
const SCRIPT = path.resolve(__dirname, '..', '..', '..', 'test', 'golden', 'oracle.py');

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
    const r = spawnSync(PYTHON, [SCRIPT, input, output], { encoding: 'utf8', maxBuffer: 1 << 24, env: process.env });
    if (r.status !== 0) throw new Error(`oracle failed (${r.status}): ${r.stderr}`);
    return loadSafetensors(output).tensors;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
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
 * `get('bf16.grad.features.0.weight')`, … (a missing key fails the test).
 */
export function autocastReference(): { model: AlexNet; x: Tensor; target: Tensor; get: (key: string) => Tensor } {
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
  const ref = runOracle([{ id: 'a', op: 'model_torchvision', args: { runs }, tensors }]);
  const get = (key: string) => ref.get(`a.${key}`) ?? assert.fail(`the oracle returned no ${key}`);
  return { model, x, target, get };
}
