// alexnet export --weights W --format safetensors|onnx --out FILE
import * as path from 'node:path';
import { UserError } from '../errors';
import { exportOnnx } from '../io/onnx';
import { writeFileAtomic } from '../io/safetensors';
import { loadModel, recordMetadata, saveWeights } from '../train/checkpoint';
import { parse } from './args';

export const HELP = `Usage: alexnet export --weights PATH --format safetensors|onnx --out FILE [--model NAME]

Writes a model's weights for use elsewhere:
  safetensors   the state dict under torchvision-style keys (features.0.weight, …), dtypes kept, with metadata
                (model, options, class names, preprocessing); loads in PyTorch with safetensors.torch.load_file
  onnx          an ONNX graph (opset 13, dynamic batch size, dropout removed, LRN with ONNX's α convention)
                with the same metadata; runs in onnxruntime (alexnet predict --runtime onnx --model-file FILE)

PATH can be a checkpoint, a weights file, or a PyTorch state dict (.pth/.pt).

Options:
  --weights PATH   input weights
  --format F       safetensors or onnx (default: from the --out extension)
  --out FILE       output file
  --model NAME     the variant, when it cannot be recognised from the weights
  -h, --help       this help`;

export async function exportCommand(argv: string[]): Promise<void> {
  const { values } = parse(argv, { weights: { type: 'string', short: 'w' }, format: { type: 'string' }, out: { type: 'string', short: 'o' }, model: { type: 'string' } }, 'export');
  if (values.help) return console.log(HELP);
  if (!values.weights) throw new UserError('--weights PATH is required');
  if (!values.out) throw new UserError('--out FILE is required');
  const out = values.out as string;
  const format = (values.format as string | undefined) ?? (out.endsWith('.onnx') ? 'onnx' : out.endsWith('.safetensors') ? 'safetensors' : '');
  if (format !== 'onnx' && format !== 'safetensors') throw new UserError(`--format must be safetensors or onnx (or give --out a .safetensors or .onnx name), got '${format || path.extname(out)}'`);
  const { model, record } = loadModel(values.weights as string, { model: values.model as string | undefined });
  if (format === 'safetensors') {
    saveWeights(out, model, record);
  } else {
    const { bytes, nodes } = exportOnnx(model, recordMetadata(record));
    writeFileAtomic(out, bytes);
    console.log(`${nodes} ONNX nodes (opset 13), input "input" [batch, ${model.inputShape.join(', ')}], output "logits" [batch, ${record.classes.length}]`);
  }
  console.log(`wrote ${out} (${record.model}, ${record.classes.length} classes)`);
  model.dispose();
}
