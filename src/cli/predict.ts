// alexnet predict --weights PATH IMAGE…
import { UserError } from '../errors';
import { loadImageAs } from '../data/image';
import { preprocessBatch } from '../data/loader';
import { loadModel } from '../train/checkpoint';
import { resolveDevice } from '../train/trainer';
import { noGrad, tensor, tidy } from '../tensor/tensor';
import { intOption, parse } from './args';
import { predictWithOnnx } from '../io/onnx-runtime';

export const HELP = `Usage: alexnet predict --weights PATH [--top K] [--json] IMAGE…
       alexnet predict --runtime onnx --model-file MODEL.onnx IMAGE…

Classifies images with a trained model: prints the top K classes (default 5) with their probabilities.
Each image (PNG, JPEG, WebP, …) is converted the way the training data was: to the model's channels
(grayscale for Fashion-MNIST models), to the data set's image size (28×28), then resized and normalised
as in training. Fashion-MNIST shows light garments on a black background: photos of dark objects on
white backgrounds need inverting first.

Weights can be an alexnet-ts checkpoint or weights file, or a PyTorch state dict saved with torch.save
(e.g. torchvision's alexnet-owt-7be5be79.pth): its variant is recognised from its keys, and 1000-class RGB
models get ImageNet's class names and preprocessing (short side 256, centre crop 224, ImageNet mean/std).

Options:
  --weights PATH    a checkpoint, weights file (.safetensors) or PyTorch state dict (.pth/.pt)
  --model NAME      the variant, when it cannot be recognised from the weights
  --runtime R       libtorch (default) or onnx: runs an exported ONNX model with onnxruntime-node alone
  --model-file F    the .onnx file for --runtime onnx (written by alexnet export --format onnx)
  --top K           how many classes to show (default 5)
  --device D        auto (default), cpu, cuda
  --json            machine-readable output
  -h, --help        this help`;

export interface Prediction {
  file: string;
  top: { class: string; index: number; probability: number }[];
}

export async function predictFiles(weights: string, files: string[], k = 5, device: 'auto' | 'cpu' | 'cuda' = 'auto', modelName?: string): Promise<Prediction[]> {
  const dev = resolveDevice(device);
  const { model, record } = loadModel(weights, { model: modelName });
  if (dev !== 'cpu') model.to(dev);
  // Data-set models: the image is made like a data-set example; photo models: short side + centre crop.
  const [c, h, w] = record.sourceShape ?? model.inputShape;
  const pixels: Uint8Array[] = [];
  for (const f of files) pixels.push(await loadImageAs(f, c, h, w, record.sourceShape ? undefined : record.preprocess.shortSide));
  const flat = new Uint8Array(pixels.length * c * h * w);
  pixels.forEach((p, i) => flat.set(p, i * p.length));
  const top = Math.min(k, record.classes.length);
  const out = noGrad(() => tidy(() => {
    const x = preprocessBatch(tensor(flat, [files.length, c, h, w], 'uint8'), record.preprocess, dev);
    const probs = model.forward(x).softmax(1);
    const { values, indices } = probs.topk(top, 1);
    return { p: values.toArray(), i: indices.toArray() };
  }));
  model.dispose();
  return files.map((file, n) => ({
    file,
    top: Array.from({ length: top }, (_, j) => ({ class: record.classes[out.i[n * top + j]], index: out.i[n * top + j], probability: out.p[n * top + j] })),
  }));
}

export async function predictCommand(argv: string[]): Promise<void> {
  const { values, positionals } = parse(argv, { weights: { type: 'string', short: 'w' }, top: { type: 'string' }, json: { type: 'boolean' }, device: { type: 'string' }, runtime: { type: 'string' }, 'model-file': { type: 'string' }, model: { type: 'string' } }, 'predict', true);
  if (values.help) return console.log(HELP);
  if (!positionals.length) throw new UserError('give at least one image file to classify');
  const top = intOption(values.top as string | undefined, 'top', { min: 1, fallback: 5 });
  const runtime = (values.runtime as string | undefined) ?? 'libtorch';
  let preds: Prediction[];
  if (runtime === 'onnx') {
    if (!values['model-file']) throw new UserError('--runtime onnx needs --model-file MODEL.onnx (write one with: alexnet export --format onnx)');
    preds = await predictWithOnnx(values['model-file'] as string, positionals, top);
  } else if (runtime === 'libtorch') {
    if (!values.weights) throw new UserError("--weights PATH is required (a checkpoint from 'alexnet train --save', or a .pth state dict)");
    const device = (values.device as string | undefined) ?? 'auto';
    if (!['auto', 'cpu', 'cuda'].includes(device)) throw new UserError(`--device must be auto, cpu or cuda, got '${device}'`);
    preds = await predictFiles(values.weights as string, positionals, top, device as 'auto', values.model as string | undefined);
  } else {
    throw new UserError(`--runtime must be libtorch or onnx, got '${runtime}'`);
  }
  if (values.json) return console.log(JSON.stringify(preds, null, 2));
  for (const p of preds) {
    console.log(p.file);
    for (const t of p.top) console.log(`  ${(100 * t.probability).toFixed(1).padStart(5)}%  ${t.class}`);
  }
}
