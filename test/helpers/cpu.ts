// What this CPU's kernels can do, found by trying, for tests that need a capability some x86-64 CPUs lack.
import * as fs from 'node:fs';
import { conv2d } from '../../src/nn/functional';
import { ones, tidy } from '../../src/tensor/tensor';
import { autocast } from '../../src/runtime/precision';

let bf16: string | undefined | null = null;

/**
 * Why a bfloat16 convolution cannot run here, or undefined when it can (or should). oneDNN has bfloat16
 * convolutions from AVX-512 on (native with AVX512_BF16 or AMX, emulated with AVX512BW) and none on AVX2, which is
 * also what `DNNL_MAX_CPU_ISA=AVX2` gives on a newer CPU ("could not create a primitive descriptor iterator").
 * A failure counts as a reason to skip only where the ISA lacks AVX-512 (the CPU or DNNL_MAX_CPU_ISA); on an
 * AVX-512 CPU the answer is undefined, so the test runs and a broken bfloat16 path fails it instead of skipping.
 */
export function bf16ConvMissing(): string | undefined {
  if (bf16 !== null) return bf16;
  let error: string | undefined;
  try {
    tidy(() => autocast('cpu', 'bf16', () => conv2d(ones([1, 2, 6, 6]), ones([4, 2, 3, 3]), ones([4]))));
  } catch (e) {
    error = (e as Error).message.split('\n')[0];
  }
  bf16 = undefined;
  if (error !== undefined) {
    const cap = process.env.DNNL_MAX_CPU_ISA;
    const capped = cap !== undefined && cap !== '' && !/AVX512|AMX|ALL/i.test(cap);
    const flags = cpuFlags();
    const avx512 = flags.has('avx512bw') && flags.has('avx512vl') && flags.has('avx512dq');
    if (capped)
      bf16 = `no bfloat16 convolution under DNNL_MAX_CPU_ISA=${cap} (oneDNN has them from AVX-512 on): ${error}`;
    else if (!avx512)
      bf16 = `no bfloat16 convolution on this CPU (no AVX-512; oneDNN has them from AVX-512 on): ${error}`;
  }
  return bf16;
}

/** The x86 feature flags of the first CPU in /proc/cpuinfo (empty elsewhere). */
export function cpuFlags(): Set<string> {
  try {
    const m = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:\s*(.*)$/m);
    return new Set(m ? m[1].trim().split(/\s+/) : []);
  } catch {
    return new Set();
  }
}
