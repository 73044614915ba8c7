// alexnet bench [--pipeline]: this machine's training and inference speed with the same training step the
// trainer runs (precision included), and optionally the photo input pipeline.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { UserError } from '../errors';
import { folderPath, Sample, scanImageFolder } from '../data/image-folder';
import { DecodePool, defaultWorkers, FolderSource } from '../data/pipeline';
import { writeNoisePhotos } from '../data/synthetic';
import { Augment, AUGMENTS } from '../data/transforms';
import { AlexNet } from '../models/alexnet';
import { checkBatchFits } from '../models/budget';
import { getModel } from '../models/registry';
import { Adam } from '../optim/optimizer';
import { prepareDevice, prepareModel, synchronize } from '../runtime/device';
import { cpuInfo, describeCpu } from '../runtime/cpu';
import { Precision, PRECISIONS, resolvePrecision } from '../runtime/precision';
import { imagesPerSecondAsync, inferenceSpeed } from '../runtime/timing';
import { Device } from '../tensor/dtype';
import { randint, randn, Tensor } from '../tensor/tensor';
import { folderTransform } from '../train/data';
import { StepContext, trainStep } from '../train/step';
import { choice, COMMON, flag, int, optionHelp, parseCommand, refuse, text, withHelp } from './options';

const OPTIONS = {
  pipeline: flag('also measure the input pipeline'),
  data: text(
    'folder:PATH',
    "photos for the pipeline (default: 512 generated 500×375 JPEGs, like ImageNet's); needs --pipeline",
  ),
  model: withHelp(COMMON.model, 'the variant (default alexnet-bn)'),
  batchSize: withHelp(COMMON.batchSize, 'images per step (default 64)'),
  steps: int('N', 'timed training steps (default 8; 3 more warm up)', { min: 1, max: 10_000 }),
  precision: choice('P', 'auto (default: as training: bf16 on a GPU, fp32 on the CPU), fp32, bf16 or fp16', PRECISIONS),
  augment: choice('A', 'paper (default), torchvision or none', AUGMENTS),
  workers: COMMON.workers,
  device: COMMON.device,
  threads: COMMON.threads,
  json: COMMON.json,
};

export const HELP = `Usage: alexnet bench [--pipeline] [options]

Measures a model's training and inference speed (images/s) on this machine with synthetic input — with the
training step and precision 'alexnet train' uses — and with --pipeline the photo input pipeline: decoding,
cropping and augmentation alone (no model), and training fed by it. The pipeline is not the limit when its
rate is well above the training rate. For a comparison with PyTorch on the same machine, run 'npm run bench'.

Options:
${optionHelp(OPTIONS)}`;

/** Images/s of `steps` training steps (after `warmup`) with batches from `next`. */
async function timeTraining(
  model: AlexNet,
  device: Device,
  precision: Precision,
  next: () => Promise<{ x: Tensor; y: Tensor } | undefined>,
  steps: number,
  warmup: number,
): Promise<number> {
  const ctx: StepContext = { model, optimizer: new Adam(model.parameters(), { lr: 1e-5 }), device, precision };
  model.train();
  const rate = await imagesPerSecondAsync(device, warmup, steps, async () => {
    const b = await next();
    if (!b) return undefined;
    const n = b.y.size(0);
    try {
      trainStep(ctx, b.x, b.y);
      return n;
    } finally {
      b.x.dispose();
      b.y.dispose();
    }
  });
  for (const [, t] of ctx.optimizer.stateTensors()) t.dispose();
  return rate;
}

export async function benchCommand(argv: string[]): Promise<void> {
  const { values, help } = parseCommand('bench', argv, OPTIONS);
  if (help) return console.log(HELP);
  if (!values.pipeline) refuse(values, ['data', 'augment', 'workers'], 'is for the input pipeline: add --pipeline');
  const { device, threads } = prepareDevice(values.device, values.threads);
  const precision = resolvePrecision(values.precision, device);
  const batch = values.batchSize ?? 64;
  const steps = values.steps ?? 8;
  const workers = values.workers ?? defaultWorkers();
  const augment = values.augment ?? 'paper';
  const modelName = values.model ?? 'alexnet-bn';
  const log = values.json ? () => {} : (s: string) => console.log(s);

  const model = prepareModel(getModel(modelName), device);
  const bytesPerElement = precision === 'fp32' ? 4 : 2;
  for (const mode of ['train', 'eval'] as const) {
    const fit = checkBatchFits(model, batch, { mode, device, bytesPerElement });
    if (fit.warning) console.error(`warning: ${fit.warning}`);
  }
  const [c, h, w] = model.inputShape;
  // Two classes of labels: valid for every model's classifier.
  const classes = 2;
  log(
    `${modelName}, batch ${batch}, input ${c}×${h}×${w}, ${device}${device === 'cpu' ? ` (${threads} threads; ${describeCpu()})` : ''}, ${precision}`,
  );
  const x = randn([batch, c, h, w], { device });
  const y = randint(0, classes, [batch], { device });
  const result: Record<string, number | string> = {
    model: modelName,
    batch,
    device,
    threads,
    precision,
    cpu: describeCpu(),
    isa: cpuInfo().isa,
  };
  try {
    result.train_images_per_sec = await timeTraining(
      model,
      device,
      precision,
      async () => ({ x: x.clone(), y: y.clone() }),
      steps,
      3,
    );
    log(`  training, synthetic input:   ${(result.train_images_per_sec as number).toFixed(1)} img/s`);
    // Inference as predict, eval and serve run it: one warm-up pass, then `steps` timed ones.
    const infer = inferenceSpeed(model, device, precision, x, 1, steps);
    result.infer_images_per_sec = infer.imagesPerSecond;
    result.infer_engine = infer.engine;
    log(`  inference, synthetic input:  ${infer.imagesPerSecond.toFixed(1)} img/s (${infer.engine})`);
  } finally {
    x.dispose();
    y.dispose();
  }
  if (values.pipeline) {
    await benchPipeline({ model, device, precision, batch, steps, workers, augment, data: values.data, log, result });
  }
  model.dispose();
  if (values.json) console.log(JSON.stringify(result, null, 2));
}

interface PipelineBench {
  model: AlexNet;
  device: Device;
  precision: Precision;
  batch: number;
  steps: number;
  workers: number;
  augment: Augment;
  data?: string;
  log: (s: string) => void;
  result: Record<string, number | string>;
}

/** The photo pipeline alone (decode, crop, augment, finish on the device), then training fed by it. */
async function benchPipeline(b: PipelineBench): Promise<void> {
  const { model, device, precision, batch, steps, workers, augment, log, result } = b;
  const classes = 2;
  let root = folderPath(b.data);
  if (b.data && root === undefined) throw new UserError(`--data must be folder:PATH, got '${b.data}'`);
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
    const source = new FolderSource(samples, folder.classes, {
      batchSize: batch,
      shuffle: true,
      seed: 0,
      mode: 'train',
      transform,
      device,
      pool,
    });
    // Endless batches over as many epochs as needed.
    const endless = async function* () {
      for (let epoch = 0; ; epoch++) yield* source.batches(epoch);
    };
    let it = endless();
    const next = async () => (await it.next()).value ?? undefined;
    // Pipeline alone: batches made and finished on the device, nothing computed with them (one batch warms up).
    const pipeSteps = Math.max(steps, Math.ceil(512 / batch));
    const pipelineRate = await imagesPerSecondAsync(device, 1, pipeSteps, async () => {
      const b = (await next())!;
      synchronize(device);
      const n = b.y.size(0);
      b.x.dispose();
      b.y.dispose();
      return n;
    });
    // Per core: the cores the decoding threads can use (the main thread's share, batch assembly and normalisation,
    // included in the rate).
    const cores = Math.min(workers, os.cpus().length);
    result.pipeline_images_per_sec = pipelineRate;
    result.pipeline_images_per_sec_per_core = pipelineRate / cores;
    result.workers = workers;
    result.augment = augment;
    result.jpeg_decoder = pool.jpegDecoder;
    log(
      `  input pipeline alone:        ${pipelineRate.toFixed(1)} img/s, ${(pipelineRate / cores).toFixed(1)} per core (${workers} decoding threads on ${cores} of ${os.cpus().length} cores, JPEGs by ${pool.jpegDecoder}, ${augment} augmentation, ${samples.length} images from ${tmp ? 'generated JPEGs' : root})`,
    );
    await it.return(undefined as never);
    it = endless();
    result.train_pipeline_images_per_sec = await timeTraining(model, device, precision, next, steps, 3);
    await it.return(undefined as never);
    log(`  training fed by the pipeline: ${(result.train_pipeline_images_per_sec as number).toFixed(1)} img/s`);
    const ratio = (result.pipeline_images_per_sec as number) / (result.train_images_per_sec as number);
    const fed = (result.train_pipeline_images_per_sec as number) / (result.train_images_per_sec as number);
    result.pipeline_over_training = ratio;
    log(
      `  the pipeline makes ${ratio.toFixed(1)}× the images training consumes; fed by it, training runs at ${(100 * fed).toFixed(0)}% of its synthetic-input speed`,
    );
  } finally {
    await pool.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
}
