// alexnet export --weights W --format safetensors|onnx --out FILE
import * as path from 'node:path';
import { UserError } from '../errors';
import { exportOnnx } from '../io/onnx';
import { saveWeights } from '../persist/checkpoint';
import { loadModel } from '../persist/load';
import { recordMetadata } from '../persist/record';
import { checkInputFile, writeFileAtomic } from '../util/files';
import { planOutputs } from '../util/outputs';
import { choice, COMMON, flag, optionHelp, parseCommand, text, withHelp } from './options';

const OPTIONS = {
  weights: withHelp(COMMON.weights, 'input: a checkpoint, a weights file, or a PyTorch state dict (.pth/.pt)'),
  format: choice('F', 'safetensors or onnx (default: from the --out extension)', ['safetensors', 'onnx'] as const),
  out: text('FILE', 'output file (checked before anything is loaded; never the --weights file itself)', 'o'),
  overwrite: flag('replace an existing --out file'),
  model: withHelp(COMMON.model, 'the variant, when it cannot be recognised from the weights'),
};

export const HELP = `Usage: alexnet export --weights PATH --format safetensors|onnx --out FILE [--model NAME]

Writes a model's weights for use elsewhere:
  safetensors   the state dict under torchvision-style keys (features.0.weight, …), dtypes kept, with metadata
                (model, options, class names, preprocessing); loads in PyTorch with safetensors.torch.load_file
  onnx          an ONNX graph (opset 13, dynamic batch size, dropout removed, LRN with ONNX's α convention)
                with the same metadata; runs in onnxruntime (alexnet predict --runtime onnx --model-file FILE)

Options:
${optionHelp(OPTIONS)}`;

export async function exportCommand(argv: string[]): Promise<void> {
  const { values: v, help } = parseCommand('export', argv, OPTIONS);
  if (help) return console.log(HELP);
  if (!v.weights) throw new UserError('--weights PATH is required');
  if (!v.out) throw new UserError('--out FILE is required');
  const out = v.out;
  const format =
    v.format ?? (out.endsWith('.onnx') ? 'onnx' : out.endsWith('.safetensors') ? 'safetensors' : undefined);
  if (!format)
    throw new UserError(
      `--format must be safetensors or onnx (or give --out a .safetensors or .onnx name), got '${path.extname(out) || out}'`,
    );
  const input = checkInputFile(v.weights, '--weights');
  const outputs = planOutputs([
    {
      option: '--out',
      path: out,
      kind: 'file',
      policy: 'refuse',
      overwrite: v.overwrite,
      expectedBytes: input.size,
      inputs: [{ option: '--weights', path: v.weights }],
    },
  ]);
  try {
    const { model, record } = loadModel(v.weights, { model: v.model });
    try {
      if (format === 'safetensors') {
        saveWeights(out, model, record, '--out');
      } else {
        const { bytes, nodes } = exportOnnx(model, recordMetadata(record));
        writeFileAtomic(out, bytes, { what: '--out' });
        console.log(
          `${nodes} ONNX nodes (opset 13), input "input" [batch, ${model.inputShape.join(', ')}], output "logits" [batch, ${record.classes.length}]`,
        );
      }
      console.log(`wrote ${out} (${record.model}, ${record.classes.length} classes)`);
    } finally {
      model.dispose();
    }
  } finally {
    outputs.release();
  }
}
