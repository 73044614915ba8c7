// alexnet predict --weights PATH IMAGE…
import * as os from 'node:os';
import { UserError } from '../errors';
import type { Predictor, PredictResult } from '../infer/predictor';
import { choice, COMMON, int, optionHelp, parseCommand, refuse, text, withHelp } from './options';

const OPTIONS = {
  weights: COMMON.weights,
  model: withHelp(
    COMMON.model,
    'the variant of a plain PyTorch state dict, when its keys do not tell (alexnet-ts files\nknow their own: a different name is an error)',
  ),
  runtime: choice('R', 'libtorch (default) or onnx: runs an exported ONNX model with onnxruntime-node alone', [
    'libtorch',
    'onnx',
  ] as const),
  modelFile: text('F', 'the .onnx file for --runtime onnx (written by alexnet export --format onnx)'),
  top: int('K', 'how many classes to show (default 5)', { min: 1, max: 100_000 }),
  batchSize: withHelp(COMMON.batchSize, 'images per forward pass (default 16): memory stays flat however many files'),
  device: withHelp(COMMON.device, `${COMMON.device.help}; libtorch only`),
  threads: withHelp(COMMON.threads, `the engine's CPU threads (default: all ${os.availableParallelism()} cores)`),
  decodeThreads: int(
    'N',
    'images decoded at once, in a worker thread, while the engine runs the batch before; 0: decoding\nand the engine take turns, each batch decoded on all cores after the forward pass before it (default:\n0 when libtorch runs on the CPU with every core, as the server does; else 1)',
    { min: 0, max: 64 },
  ),
  json: withHelp(COMMON.json, 'machine-readable output: a JSON array, written as results come'),
};

export const HELP = `Usage: alexnet predict --weights PATH [--top K] [--json] IMAGE…
       alexnet predict --runtime onnx --model-file MODEL.onnx IMAGE…

Classifies images with a trained model: prints the top K classes (default 5) with their probabilities, each
image's as soon as its batch is done. Each image (JPEG, PNG, WebP, GIF or TIFF; SVG is refused, as the server
does) is converted the way the training data was: to the model's channels (grayscale for Fashion-MNIST models),
to the data set's image size (28×28), then resized and normalised as in training. Fashion-MNIST shows light
garments on a black background: photos of dark objects on white backgrounds need inverting first.

Weights can be an alexnet-ts checkpoint or weights file, or a PyTorch state dict saved with torch.save
(e.g. torchvision's alexnet-owt-7be5be79.pth): its variant is recognised from its keys, and 1000-class RGB
models get ImageNet's class names and preprocessing (short side 256, centre crop 224, ImageNet mean/std).

Options:
${optionHelp(OPTIONS)}

An image that cannot be read is reported on stderr and the others are still classified; the exit code is
then 1. Exit codes: 0 all classified, 1 some image failed, 2 usage or input error.`;

async function openPredictor(v: {
  runtime?: string;
  modelFile?: string;
  weights?: string;
  model?: string;
  device?: import('../runtime/device').DeviceRequest;
  threads?: number;
}): Promise<Predictor> {
  if (v.runtime === 'onnx') {
    refuse(
      v,
      ['weights', 'model', 'device'],
      'is for the libtorch runtime: --runtime onnx takes the model from --model-file alone',
    );
    if (!v.modelFile)
      throw new UserError(
        '--runtime onnx needs --model-file MODEL.onnx (write one with: alexnet export --format onnx)',
      );
    return (await import('../infer/onnx')).OnnxPredictor.open(v.modelFile, { threads: v.threads });
  }
  refuse(v, ['modelFile'], 'is for --runtime onnx');
  if (!v.weights)
    throw new UserError("--weights PATH is required (a checkpoint from 'alexnet train --save', or a .pth state dict)");
  // Always, as the other commands do: libtorch left to its own thread defaults ran predict's forward passes 25%
  // slower here (60 against 81 img/s over 320 JPEGs on 2 cores) than with the same count set explicitly.
  (await import('../runtime/device')).prepareDevice(v.device, v.threads);
  return (await import('../infer/torch')).TorchPredictor.open(v.weights, { device: v.device, model: v.model });
}

function printResult(r: PredictResult, json: boolean, first: boolean): void {
  if (r.error) {
    console.error(`alexnet: error: ${r.error.message}`);
    if (json) process.stdout.write(`${first ? '' : ',\n'}${JSON.stringify({ file: r.file, error: r.error.message })}`);
    return;
  }
  if (json) {
    process.stdout.write(`${first ? '' : ',\n'}${JSON.stringify(r.prediction)}`);
    return;
  }
  console.log(r.file);
  for (const t of r.prediction.top) console.log(`  ${(100 * t.probability).toFixed(1).padStart(5)}%  ${t.class}`);
}

/**
 * Decode lanes by default: none (decoding and the engine take turns, each on every core, as the server's do) when
 * libtorch runs on the CPU with every core; one worker decoding beside the engine otherwise (a GPU, onnxruntime's
 * own threads, or --threads leaving cores free). Measured on 2 cores over 320 JPEGs: 138–141 img/s taking turns,
 * 128–134 beside.
 */
function defaultLanes(p: Predictor, v: { threads?: number }): number {
  const cpu = p.runtime === 'libtorch' && (p as { device?: string }).device === 'cpu';
  return cpu && (v.threads ?? os.availableParallelism()) >= os.availableParallelism() ? 0 : 1;
}

export async function predictCommand(argv: string[]): Promise<void> {
  const { values: v, positionals, help } = parseCommand('predict', argv, OPTIONS, { positionals: true });
  if (help) return console.log(HELP);
  if (!positionals.length) throw new UserError('give at least one image file to classify');
  const predictor = await openPredictor(v);
  const { predictStream } = await import('../infer/predictor');
  let failed = 0;
  let n = 0;
  if (v.json) process.stdout.write('[\n');
  try {
    const o = {
      k: v.top ?? 5,
      batchSize: v.batchSize ?? 16,
      decodeLanes: v.decodeThreads ?? defaultLanes(predictor, v),
    };
    for await (const r of predictStream(predictor, positionals, o)) {
      printResult(r, v.json, n++ === 0);
      if (r.error) failed++;
    }
  } finally {
    if (v.json) process.stdout.write('\n]\n');
    await predictor.close();
  }
  if (failed) {
    if (positionals.length > 1)
      console.error(`alexnet: ${failed} of ${positionals.length} images could not be classified`);
    process.exitCode = 1;
  }
}
