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

/** The photo pipeline alone, ours: img/s of `batches` batches after one warm-up, over endless shuffled epochs. */
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
    const t0 = performance.now();
    let n = 0;
    for (let i = 0; i < batches; i++) n += await take();
    const ips = n / ((performance.now() - t0) / 1000);
    await it.return(undefined as never);
    return ips;
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
}

/**
 * The photo-pipeline row: ours with TurboJPEG, ours with sharp alone, and PyTorch's DataLoader (ImageFolder, PIL,
 * the same augmentation, the same number of workers) on the same folder, in alternating rounds; medians.
 */
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
    const runs: { turbo: number[]; sharp: number[]; torch: number[] } = { turbo: [], sharp: [], torch: [] };
    for (let r = 0; r < rounds; r++) {
      runs.turbo.push(await oursPipeline(root!, workers, batch, batches, 'turbojpeg'));
      runs.sharp.push(await oursPipeline(root!, workers, batch, batches, 'sharp'));
      if (haveTorch) {
        const p = spawnSync(
          PYTHON,
          [
            path.join(ROOT, 'bench', 'torch_bench.py'),
            'pipeline',
            root!,
            String(workers),
            String(batch),
            String(batches),
          ],
          { encoding: 'utf8' },
        );
        if (p.status === 0) runs.torch.push(JSON.parse(p.stdout.trim().split('\n').pop()!).pipeline_ips);
        else console.error(`PyTorch pipeline run failed: ${(p.stderr || '').trim().split('\n').pop()}`);
      }
      console.log(
        `photo pipeline round ${r + 1}: ours ${runs.turbo[r].toFixed(0)} img/s (sharp alone ${runs.sharp[r].toFixed(0)}), PyTorch DataLoader ${runs.torch[r]?.toFixed(0) ?? '–'}`,
      );
    }
    const torch = runs.torch.length ? median(runs.torch) : null;
    const row: PipelineRow = {
      workers,
      batch,
      images: tmp ? '512 generated 500×375 JPEGs' : root!,
      ours_turbojpeg_ips: median(runs.turbo),
      ours_sharp_ips: median(runs.sharp),
      torch_ips: torch,
      ratio_vs_torch: torch ? median(runs.turbo) / torch : null,
    };
    return row;
  } finally {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export function pipelineMarkdown(p: PipelineRow): string {
  const f = (x: number | null, d = 0) => (x === null ? '–' : x.toFixed(d));
  return [
    `Photo pipeline alone (${p.images}; RandomResizedCrop(224), flip, normalise; batch ${p.batch}, ${p.workers} workers), img/s:`,
    '',
    '| ours (TurboJPEG) | ours (sharp alone) | PyTorch DataLoader (PIL) | ours / PyTorch |',
    '|---|---|---|---|',
    `| ${f(p.ours_turbojpeg_ips)} | ${f(p.ours_sharp_ips)} | ${f(p.torch_ips)} | ${f(p.ratio_vs_torch, 2)} |`,
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
