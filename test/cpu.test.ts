// The CPU and the instruction set oneDNN uses: parsed from /proc/cpuinfo texts written by hand, and on this machine
// checked against oneDNN's own report (its verbose mode names the ISA it dispatches to), under any
// DNNL_MAX_CPU_ISA cap the test process runs with (the AVX2 pass of `npm test -- --also-avx2` caps it).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import { autoPrecisionReason, resolvePrecision } from '../src/runtime/precision';
import { ONEDNN_ISA_NAMES, parseCpu } from '../src/runtime/cpu';

const cpuinfo = (vendor: string, family: number, flags: string) =>
  `processor\t: 0\nvendor_id\t: ${vendor}\ncpu family\t: ${family}\nmodel\t\t: 17\nmodel name\t: Test CPU\nflags\t\t: ${flags}\n\nprocessor\t: 1\n`;
const AVX2 = 'fpu sse4_1 sse4_2 avx fma avx2';
const AVX512 = `${AVX2} avx512f avx512dq avx512cd avx512bw avx512vl`;

test('the ISA, generation and native bf16 from /proc/cpuinfo, capped as oneDNN caps itself', () => {
  const zen4 = parseCpu(cpuinfo('AuthenticAMD', 25, `${AVX512} avx512_vnni avx512_bf16`), {});
  assert.deepEqual(
    { gen: zen4.generation, isa: zen4.isa, bf16: zen4.nativeBf16, model: zen4.model },
    { gen: 'Zen 4', isa: 'avx512_core_bf16', bf16: true, model: 'Test CPU' },
  );
  assert.equal(parseCpu(cpuinfo('AuthenticAMD', 26, `${AVX512} avx512_bf16`), {}).generation, 'Zen 5');
  const zen3 = parseCpu(cpuinfo('AuthenticAMD', 25, AVX2), {});
  assert.deepEqual([zen3.generation, zen3.isa, zen3.nativeBf16], ['Zen 3', 'avx2', false]);
  const skylake = parseCpu(cpuinfo('GenuineIntel', 6, AVX512), {});
  assert.deepEqual([skylake.generation, skylake.isa, skylake.nativeBf16], [undefined, 'avx512_core', false]);
  const sapphire = parseCpu(
    cpuinfo('GenuineIntel', 6, `${AVX512} avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8`),
    {},
  );
  assert.equal(sapphire.isa, 'avx512_core_amx');
  assert.equal(parseCpu(cpuinfo('GenuineIntel', 6, `${AVX2} avx_vnni`), {}).isa, 'avx2_vnni');
  const capped = parseCpu(cpuinfo('AuthenticAMD', 25, `${AVX512} avx512_bf16`), { DNNL_MAX_CPU_ISA: 'AVX2' });
  assert.deepEqual([capped.isa, capped.hardwareIsa, capped.nativeBf16], ['avx2', 'avx512_core_bf16', false]);
  assert.equal(capped.cappedBy, 'DNNL_MAX_CPU_ISA=AVX2');
  // ONEDNN_MAX_CPU_ISA is read first (oneDNN 3.x), a cap above the hardware changes nothing, ALL is no cap.
  const both = { ONEDNN_MAX_CPU_ISA: 'AVX512_CORE', DNNL_MAX_CPU_ISA: 'AVX2' };
  assert.equal(parseCpu(cpuinfo('AuthenticAMD', 25, `${AVX512} avx512_bf16`), both).isa, 'avx512_core');
  assert.equal(parseCpu(cpuinfo('GenuineIntel', 6, AVX2), { DNNL_MAX_CPU_ISA: 'AVX512_CORE_AMX' }).isa, 'avx2');
  assert.equal(parseCpu(cpuinfo('GenuineIntel', 6, AVX2), { DNNL_MAX_CPU_ISA: 'ALL' }).cappedBy, undefined);
  assert.equal(parseCpu('', {}).isa, 'unknown');
  // --precision auto: bf16 where the CPU has native bf16, fp32 elsewhere; asked-for precisions are kept.
  assert.equal(resolvePrecision('auto', 'cpu', zen4), 'bf16');
  assert.equal(resolvePrecision(undefined, 'cpu', capped), 'fp32');
  assert.equal(resolvePrecision('fp32', 'cpu', zen4), 'fp32');
  assert.equal(resolvePrecision('auto', 'cuda', zen3), 'bf16');
  assert.equal(autoPrecisionReason('bf16', 'cpu'), undefined);
  assert.match(autoPrecisionReason('auto', 'cpu')!, /^auto: /);
});

test("this machine's ISA as detected is the one oneDNN reports in its verbose mode", () => {
  const script = `
    const { cpuInfo } = require(${JSON.stringify(path.resolve(__dirname, '..', 'src', 'runtime', 'cpu.js'))});
    const t = require(${JSON.stringify(path.resolve(__dirname, '..', 'src', 'tensor', 'tensor.js'))});
    const { F } = require(${JSON.stringify(path.resolve(__dirname, '..', 'src', 'nn', 'index.js'))});
    F.conv2d(t.randn([8, 64, 28, 28]), t.randn([64, 64, 3, 3])).sum().item();
    console.log('detected ' + cpuInfo().isa);`;
  const r = spawnSync(process.execPath, ['-e', script], {
    encoding: 'utf8',
    env: { ...process.env, DNNL_VERBOSE: '1', ONEDNN_VERBOSE: '1' },
  });
  assert.equal(r.status, 0, r.stderr);
  const detected = /^detected (\S+)$/m.exec(r.stdout)?.[1] as keyof typeof ONEDNN_ISA_NAMES;
  const reported = /^onednn_verbose,(?:v\d+,)?(?:[^,]*,)?info,cpu,isa:(.*)$/m.exec(r.stdout)?.[1];
  assert.ok(reported, `oneDNN reported no ISA:\n${r.stdout.slice(0, 2000)}`);
  assert.ok(detected in ONEDNN_ISA_NAMES, `detected ${detected}`);
  assert.match(reported.trim(), ONEDNN_ISA_NAMES[detected], `detected ${detected}, oneDNN says '${reported}'`);
});
