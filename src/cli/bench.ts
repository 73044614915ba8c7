// alexnet bench [--pipeline]: training and inference speed of a model here, and how fast the photo input pipeline
// feeds it. (`npm run bench` compares the engine with PyTorch side by side.)
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import { folderPath, scanImageFolder, Sample } from '../data/image-folder';
import { DecodePool, defaultWorkers, FolderSource } from '../data/pipeline';
import { writeNoisePhotos } from '../data/synthetic';
import { Augment, AUGMENTS } from '../data/transforms';
import { getModel } from '../models/registry';
import { AlexNet } from '../models/alexnet';
import { crossEntropy } from '../nn/functional';
import { Adam } from '../optim/optimizer';
import { Device } from '../tensor/dtype';
import { noGrad, randint, randn, setNumThreads, Tensor, tidy } from '../tensor/tensor';
import { folderTransform } from '../train/data';
import { resolveDevice } from '../train/trainer';
import { intOption, parse } from './args';

export const HELP = `Usage: alexnet bench [--pipeline] [options]

Measures a model's training and inference speed (images/s) on this machine with synthetic input, and with
--pipeline the photo input pipeline: decoding, cropping and augmentation alone (no model), and training fed
by it. The pipeline is not the limit when its rate is well above the training rate. For a comparison with
PyTorch on the same machine, run 'npm run bench'.

Options:
  --pipeline          also measure the input pipeline
  --data folder:PATH  photos for the pipeline (default: 512 generated 500×375 JPEGs, like ImageNet's)
  --model NAME        (default alexnet-bn)
  --batch-size N      (default 64)
  --steps N           timed training steps (default 8; 3 more warm up)
  --augment A         paper (default), torchvision or none
  --workers N         decoding threads (default: cores − 1, at most 8)
  --device D          auto (default), cpu, cuda
  --threads N         CPU threads (default: all cores)
  --json              machine-readable output
  -h, --help          this help`;

function sync(t: Tensor): void {
  t.item();
}

/** Images/s of `steps` training steps (after `warmup`) with batches from `next`. */
async function timeTraining(model: AlexNet, next: () => Promise<{ x: Tensor; y: Tensor } | undefined>, steps: number, warmup: number): Promise<number> {
  const opt = new Adam(model.parameters(), { lr: 1e-5 });
  model.train();
  let images = 0;
  let start = 0;
  for (let i = 0; i < warmup + steps; i++) {
    if (i === warmup) start = Date.now();
    const b = await next();
    if (!b) break;
    const loss = tidy(() => {
      const l = crossEntropy(model.forward(b.x), b.y);
      l.backward();
      return l.detach();
    });
    opt.step();
    opt.zeroGrad();
    sync(loss);
    loss.dispose();
    if (i >= warmup) images += b.y.size(0);
    b.x.dispose();
    b.y.dispose();
  }
  for (const [, t] of opt.stateTensors()) t.dispose();
  return images / ((Date.now() - start) / 1000);
}

function timeInference(model: AlexNet, x: Tensor, steps: number): number {
  model.eval();
  const run = () => noGrad(() => tidy(() => sync(model.forward(x).sum())));
  run();
  const start = Date.now();
  for (let i = 0; i < steps; i++) run();
  return (steps * x.size(0)) / ((Date.now() - start) / 1000);
}

export async function benchCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, {
    pipeline: { type: 'boolean' }, data: { type: 'string' }, model: { type: 'string' }, 'batch-size': { type: 'string' }, steps: { type: 'string' },
    augment: { type: 'string' }, workers: { type: 'string' }, device: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' },
  }, 'bench');
  if (values.help) return console.log(HELP);
  const threads = intOption(values.threads as string | undefined, 'threads', { min: 1, fallback: os.cpus().length })!;
  setNumThreads(threads);
  const device: Device = resolveDevice(((values.device as string | undefined) ?? 'auto') as 'auto');
  const batch = intOption(values['batch-size'] as string | undefined, 'batch-size', { min: 1, fallback: 64 })!;
  const steps = intOption(values.steps as string | undefined, 'steps', { min: 1, fallback: 8 })!;
  const workers = intOption(values.workers as string | undefined, 'workers', { min: 1, fallback: defaultWorkers() })!;
  const augment = ((values.augment as string | undefined) ?? 'paper') as Augment;
  if (!AUGMENTS.includes(augment)) throw new UserError(`--augment must be ${AUGMENTS.join(', ')}, got '${augment}'`);
  const modelName = (values.model as string | undefined) ?? 'alexnet-bn';
  const log = values.json ? () => {} : (s: string) => console.log(s);

  const model = getModel(modelName);
  if (device !== 'cpu') model.to(device);
  const [c, h, w] = model.inputShape;
  // Two classes of labels: valid for every model's classifier.
  const classes = 2;
  log(`${modelName}, batch ${batch}, input ${c}×${h}×${w}, ${device}${device === 'cpu' ? ` (${threads} threads)` : ''}`);
  const x = randn([batch, c, h, w], { device });
  const y = randint(0, classes, [batch], { device });
  const result: Record<string, number | string> = { model: modelName, batch, device, threads };
  try {
    result.train_images_per_sec = await timeTraining(model, async () => ({ x: x.clone(), y: y.clone() }), steps, 3);
    log(`  training, synthetic input:   ${(result.train_images_per_sec as number).toFixed(1)} img/s`);
    result.infer_images_per_sec = timeInference(model, x, steps);
    log(`  inference, synthetic input:  ${(result.infer_images_per_sec as number).toFixed(1)} img/s`);
  } finally {
    x.dispose();
    y.dispose();
  }
  if (values.pipeline) {
    let root = folderPath(values.data as string | undefined);
    if (values.data && root === undefined) throw new UserError(`--data must be folder:PATH, got '${values.data}'`);
    let tmp: string | undefined;
    if (!root) {
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-bench-photos-'));
      log('  writing 512 photo-sized JPEGs (500×375) to read…');
      await writeNoisePhotos(tmp, { classes: 2, perClass: 256 });
      root = tmp;
    }
    const pool = new DecodePool(workers);
    try {
      const folder = scanImageFolder(root, { valSplit: 0 });
      const samples: Sample[] = folder.train.map((s) => ({ file: s.file, label: s.label % classes }));
      const transform = folderTransform({ valSplit: 0, augment }, model.inputShape);
      const source = new FolderSource(samples, folder.classes, { batchSize: batch, shuffle: true, seed: 0, mode: 'train', transform, device, pool });
      // Endless batches over as many epochs as needed.
      const endless = async function* () {
        for (let epoch = 0; ; epoch++) yield* source.batches(epoch);
      };
      let it = endless();
      const next = async () => (await it.next()).value ?? undefined;
      // Pipeline alone: batches made and finished on the device, nothing computed with them.
      const first = await next();
      first?.x.dispose();
      first?.y.dispose();
      const pipeSteps = Math.max(steps, Math.ceil(512 / batch));
      const start = Date.now();
      let images = 0;
      for (let i = 0; i < pipeSteps; i++) {
        const b = (await next())!;
        sync(b.x.sum());
        images += b.y.size(0);
        b.x.dispose();
        b.y.dispose();
      }
      result.pipeline_images_per_sec = images / ((Date.now() - start) / 1000);
      result.workers = workers;
      result.augment = augment;
      log(`  input pipeline alone:        ${(result.pipeline_images_per_sec as number).toFixed(1)} img/s (${workers} decoding threads, ${augment} augmentation, ${samples.length} images from ${tmp ? 'generated JPEGs' : root})`);
      await it.return(undefined as never);
      it = endless();
      result.train_pipeline_images_per_sec = await timeTraining(model, next, steps, 3);
      await it.return(undefined as never);
      log(`  training fed by the pipeline: ${(result.train_pipeline_images_per_sec as number).toFixed(1)} img/s`);
      const ratio = (result.pipeline_images_per_sec as number) / (result.train_images_per_sec as number);
      const fed = (result.train_pipeline_images_per_sec as number) / (result.train_images_per_sec as number);
      result.pipeline_over_training = ratio;
      log(`  the pipeline makes ${ratio.toFixed(1)}× the images training consumes; fed by it, training runs at ${(100 * fed).toFixed(0)}% of its synthetic-input speed`);
    } finally {
      await pool.close();
      if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  model.dispose();
  if (values.json) console.log(JSON.stringify(result, null, 2));
}
