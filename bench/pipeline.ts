// npm run bench's photo-pipeline row: our input pipeline alone (decode workers, TurboJPEG or sharp, then the
// engine's flip and normalisation) against PyTorch's DataLoader over an ImageFolder (PIL) with the same
// augmentation, batch, number of workers and folder, in alternating rounds.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { folderPath, scanImageFolder } from '../src/data/image-folder';
import { JpegDecoder } from '../src/data/jpeg';
import { DecodePool, FolderSource } from '../src/data/pipeline';
import { writeNoisePhotos } from '../src/data/synthetic';
import { presetTransform } from '../src/data/transforms';
import { describeCpu } from '../src/runtime/cpu';

const ROOT = path.resolve(__dirname, '..', '..');
const PYTHON = process.env.ALEXNET_ORACLE_PYTHON || '/usr/bin/python3';
/** npm run bench's options for this row. */
export const PIPELINE_OPTIONS = {
  'no-pipeline': { type: 'boolean' },
  'pipeline-only': { type: 'boolean' },
  photos: { type: 'string' },
  workers: { type: 'string', default: '2' },
} as const;

interface Values {
  'no-pipeline'?: boolean;
  photos?: string;
  workers?: string;
  rounds?: string;
  out?: string;
}

/** The middle value (the upper one of an even count). */
export const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * The photo pipeline alone, ours: img/s of `batches` batches after one warm-up, over endless shuffled epochs, and
 * images per CPU-second (what one core delivers, however loaded the machine is).
 */
async function oursPipeline(root: string, workers: number, batch: number, batches: number, decoder: JpegDecoder) {
  const pool = new DecodePool(workers, 2, decoder);
  try {
    const folder = scanImageFolder(root, { valSplit: 0 });
    // torchvision's training transform: RandomResizedCrop(224), flips, ImageNet's normalisation (no PCA noise).
    const transform = presetTransform('torchvision', 224);
    const source = new FolderSource(folder.train, folder.classes, {
      batchSize: batch,
      shuffle: true,
      seed: 0,
      mode: 'train',
      transform,
      device: 'cpu',
      pool,
    });
    const it = (async function* () {
      for (let epoch = 0; ; epoch++) yield* source.batches(epoch);
    })();
    const take = async () => {
      const b = (await it.next()).value!;
      const n = b.y.size(0);
      b.x.dispose();
      b.y.dispose();
      return n;
    };
    await take();
    const cpu = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    };
    const t0 = performance.now();
    const c0 = cpu();
    let n = 0;
    for (let i = 0; i < batches; i++) n += await take();
    const ips = n / ((performance.now() - t0) / 1000);
    // Every thread of this process: decode workers, the main thread's batch assembly and the engine's normalisation.
    const perCpu = n / (cpu() - c0);
    await it.return(undefined as never);
    return { ips, perCpu };
  } finally {
    await pool.close();
  }
}

export interface PipelineRow {
  workers: number;
  batch: number;
  images: string;
  ours_turbojpeg_ips: number;
  ours_sharp_ips: number;
  torch_ips: number | null;
  ratio_vs_torch: number | null;
  /** Images per CPU-second (all threads and processes of each side). */
  ours_turbojpeg_ips_per_cpu: number;
  ours_sharp_ips_per_cpu: number;
  torch_ips_per_cpu: number | null;
  per_cpu_ratio_vs_torch: number | null;
}

export async function pipelineRow(photos: string | undefined, workers: number, rounds: number, haveTorch: boolean) {
  const batch = 64;
  const batches = 12;
  let root = folderPath(photos);
  if (photos && root === undefined) throw new Error(`--photos must be folder:PATH, got '${photos}'`);
  const tmp = root ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-bench-photos-'));
  try {
    if (tmp) {
      await writeNoisePhotos(tmp, { classes: 2, perClass: 256 });
      root = tmp;
    }
    type Run = { ips: number; perCpu: number };
    const runs: { turbo: Run[]; sharp: Run[]; torch: Run[] } = { turbo: [], sharp: [], torch: [] };
    const script = path.join(ROOT, 'bench', 'torch_bench.py');
    for (let r = 0; r < rounds; r++) {
      runs.turbo.push(await oursPipeline(root!, workers, batch, batches, 'turbojpeg'));
      runs.sharp.push(await oursPipeline(root!, workers, batch, batches, 'sharp'));
      if (haveTorch) {
        const args = [script, 'pipeline', root!, String(workers), String(batch), String(batches)];
        const p = spawnSync(PYTHON, args, { encoding: 'utf8' });
        if (p.status === 0) {
          const j = JSON.parse(p.stdout.trim().split('\n').pop()!);
          runs.torch.push({ ips: j.pipeline_ips, perCpu: j.pipeline_ips_per_cpu });
        } else console.error(`PyTorch pipeline run failed: ${(p.stderr || '').trim().split('\n').pop()}`);
      }
      const f = (x?: Run) => (x ? `${x.ips.toFixed(0)} img/s (${x.perCpu.toFixed(0)} per CPU-second)` : '–');
      console.log(
        `photo pipeline round ${r + 1}: ours ${f(runs.turbo[r])}, sharp alone ${f(runs.sharp[r])}, PyTorch DataLoader ${f(runs.torch[r])}`,
      );
    }
    const med = (xs: Run[], k: keyof Run) => (xs.length ? median(xs.map((x) => x[k])) : null);
    const torch = med(runs.torch, 'ips');
    const torchCpu = med(runs.torch, 'perCpu');
    return {
      workers,
      batch,
      images: tmp ? '512 generated 500×375 JPEGs' : root!,
      ours_turbojpeg_ips: med(runs.turbo, 'ips')!,
      ours_sharp_ips: med(runs.sharp, 'ips')!,
      torch_ips: torch,
      ratio_vs_torch: torch ? med(runs.turbo, 'ips')! / torch : null,
      ours_turbojpeg_ips_per_cpu: med(runs.turbo, 'perCpu')!,
      ours_sharp_ips_per_cpu: med(runs.sharp, 'perCpu')!,
      torch_ips_per_cpu: torchCpu,
      per_cpu_ratio_vs_torch: torchCpu ? med(runs.turbo, 'perCpu')! / torchCpu : null,
    };
  } finally {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export function pipelineMarkdown(p: PipelineRow): string {
  const f = (x: number | null, d = 0) => (x === null ? '–' : x.toFixed(d));
  return [
    `Photo pipeline alone (${p.images}; RandomResizedCrop(224), flip, normalise; batch ${p.batch}, ${p.workers} workers):`,
    '',
    '| | ours (TurboJPEG) | ours (sharp alone) | PyTorch DataLoader (PIL) | ours / PyTorch |',
    '|---|---|---|---|---|',
    `| img/s | ${f(p.ours_turbojpeg_ips)} | ${f(p.ours_sharp_ips)} | ${f(p.torch_ips)} | ${f(p.ratio_vs_torch, 2)} |`,
    `| img per CPU-second | ${f(p.ours_turbojpeg_ips_per_cpu)} | ${f(p.ours_sharp_ips_per_cpu)} | ${f(p.torch_ips_per_cpu)} | ${f(p.per_cpu_ratio_vs_torch, 2)} |`,
  ].join('\n');
}

/** The row and its markdown (after a blank line), unless --no-pipeline. */
export async function pipelineSection(values: Values, haveTorch: boolean) {
  if (values['no-pipeline']) return undefined;
  const row = await pipelineRow(values.photos, Number(values.workers), Number(values.rounds), haveTorch);
  return { row, md: '\n\n' + pipelineMarkdown(row) };
}

/** npm run bench -- --pipeline-only: this row alone, written to bench/results/ as the full bench does. */
export async function pipelineOnly(values: Values, haveTorch: boolean): Promise<void> {
  const { row, md } = (await pipelineSection({ ...values, 'no-pipeline': false }, haveTorch))!;
  const head = `${describeCpu()}, ${os.cpus().length} cores; medians of ${values.rounds} alternating rounds`;
  fs.mkdirSync(values.out!, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  fs.writeFileSync(
    path.join(values.out!, `pipeline-${stamp}.json`),
    JSON.stringify({ cpu: describeCpu(), ...row }, null, 2) + '\n',
  );
  fs.writeFileSync(path.join(values.out!, `pipeline-${stamp}.md`), head + md + '\n');
  console.log(
    '\n' + head + md + `\n\nwritten to ${path.relative(process.cwd(), values.out!)}/pipeline-${stamp}.{json,md}`,
  );
}
