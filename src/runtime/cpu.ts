// The CPU the engine runs on: its name, its AMD generation where that decides the kernels (Zen 4: AVX-512 on 256-bit
// halves with native bfloat16; Zen 5: full 512-bit units), and the instruction set oneDNN will use — the best the
// CPU has, capped by DNNL_MAX_CPU_ISA / ONEDNN_MAX_CPU_ISA as oneDNN caps itself. Read from /proc/cpuinfo (the
// tests check the result against oneDNN's own verbose report). `nativeBf16` is what `--precision auto` decides by.
import * as fs from 'node:fs';
import * as os from 'node:os';

/** oneDNN's names for its CPU instruction sets, lowest first (the ones an x86 CPU of the last decade can have). */
export const ISAS = [
  'sse41',
  'avx',
  'avx2',
  'avx2_vnni',
  'avx512_core',
  'avx512_core_vnni',
  'avx512_core_bf16',
  'avx512_core_amx',
] as const;
export type Isa = (typeof ISAS)[number] | 'unknown';

/** How oneDNN 2.x–3.x names each set in its verbose output (`onednn_verbose,info,cpu,isa:…`). */
export const ONEDNN_ISA_NAMES: Record<Exclude<Isa, 'unknown'>, RegExp> = {
  sse41: /^Intel SSE4\.1$/,
  avx: /^Intel AVX$/,
  avx2: /^Intel AVX2$/,
  avx2_vnni: /^Intel AVX2 with Intel DL Boost$/,
  avx512_core: /^Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions$/,
  avx512_core_vnni: /^Intel AVX-512 with Intel DL Boost$/,
  avx512_core_bf16: /^Intel AVX-512 with Intel DL Boost and bfloat16 support$/,
  avx512_core_amx: /AMX/,
};

export interface CpuInfo {
  model: string;
  /** 'Zen 3', 'Zen 4', 'Zen 5' for AMD's recent families; undefined otherwise. */
  generation?: string;
  /** What the hardware offers. */
  hardwareIsa: Isa;
  /** What oneDNN will use: the hardware's, capped by the environment. */
  isa: Isa;
  /** The environment variable that capped it, e.g. 'DNNL_MAX_CPU_ISA=AVX2'. */
  cappedBy?: string;
  /** Native bfloat16 dot products (AVX-512 BF16 or AMX): bf16 autocast runs at about twice fp32's speed. */
  nativeBf16: boolean;
}

const rank = (i: Isa) => ISAS.indexOf(i as (typeof ISAS)[number]);

function isaFromFlags(flags: Set<string>): Isa {
  const has = (...f: string[]) => f.every((x) => flags.has(x));
  if (flags.size === 0) return 'unknown';
  const core = has('avx512f', 'avx512bw', 'avx512vl', 'avx512dq');
  if (core && has('amx_bf16', 'amx_tile', 'amx_int8', 'avx512_bf16')) return 'avx512_core_amx';
  if (core && has('avx512_bf16')) return 'avx512_core_bf16';
  if (core && has('avx512_vnni')) return 'avx512_core_vnni';
  if (core) return 'avx512_core';
  if (has('avx2', 'avx_vnni')) return 'avx2_vnni';
  if (has('avx2')) return 'avx2';
  if (has('avx')) return 'avx';
  return has('sse4_1') ? 'sse41' : 'unknown';
}

function amdGeneration(family: number, hasAvx512: boolean): string | undefined {
  if (family === 26) return 'Zen 5';
  if (family === 25) return hasAvx512 ? 'Zen 4' : 'Zen 3';
  if (family === 23) return 'Zen/Zen 2';
  return undefined;
}

/** The CPU described by a /proc/cpuinfo text and an environment (exported for tests). */
export function parseCpu(cpuinfo: string, env: NodeJS.ProcessEnv = process.env): CpuInfo {
  const first = cpuinfo.split(/\n\s*\n/)[0] ?? '';
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(first)?.[1]?.trim();
  const flags = new Set((field('flags') ?? '').split(/\s+/).filter(Boolean));
  const model = field('model name') ?? os.cpus()[0]?.model ?? 'unknown CPU';
  const hardwareIsa = isaFromFlags(flags);
  const family = Number(field('cpu family'));
  const generation = field('vendor_id') === 'AuthenticAMD' ? amdGeneration(family, flags.has('avx512f')) : undefined;
  let isa = hardwareIsa;
  let cappedBy: string | undefined;
  for (const name of ['ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA']) {
    const cap = env[name]?.trim().toLowerCase();
    if (!cap || cap === 'all') continue;
    // AVX512_CORE_FP16 sits between bf16 and AMX in oneDNN's order; this list has no fp16 step, so it caps at bf16.
    const capIsa = (cap === 'avx512_core_fp16' ? 'avx512_core_bf16' : cap) as Isa;
    if (rank(capIsa) >= 0 && rank(capIsa) < rank(isa)) {
      isa = capIsa;
      cappedBy = `${name}=${env[name]}`;
    }
    break;
  }
  return { model, generation, hardwareIsa, isa, cappedBy, nativeBf16: rank(isa) >= rank('avx512_core_bf16') };
}

let cached: CpuInfo | undefined;

/** This machine's CPU (read once). */
export function cpuInfo(): CpuInfo {
  if (!cached) {
    let text = '';
    try {
      text = fs.readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      /* not Linux: the ISA stays unknown */
    }
    cached = parseCpu(text);
  }
  return cached;
}

/** One line for logs and reports: "AMD EPYC 9R14 (Zen 4), avx512_core_bf16 (native bf16)". */
export function describeCpu(c: CpuInfo = cpuInfo()): string {
  const gen = c.generation ? ` (${c.generation})` : '';
  const cap = c.cappedBy ? `, capped by ${c.cappedBy} from ${c.hardwareIsa}` : '';
  return `${c.model}${gen}, ${c.isa}${c.nativeBf16 ? ' (native bf16)' : ''}${cap}`;
}
