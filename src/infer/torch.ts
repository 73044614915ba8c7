// The libtorch backend: a model loaded from any supported weights file, on the chosen device, in eval mode.
import { preprocessBatch } from '../data/loader';
import { AlexNet } from '../models/alexnet';
import { loadModel } from '../persist/load';
import { ModelRecord } from '../persist/record';
import { DeviceRequest, prepareModel, resolveDevice } from '../runtime/device';
import { InferenceRunner } from '../runtime/inference';
import { Device } from '../tensor/dtype';
import { noGrad, tensor, tidy } from '../tensor/tensor';
import { InputGeometry, inputGeometry, Predictor } from './predictor';

export class TorchPredictor implements Predictor {
  readonly runtime = 'libtorch';
  readonly geometry: InputGeometry;
  /** The forward pass: a oneDNN plan on the CPU, libtorch's ops elsewhere (src/runtime/inference.ts). */
  readonly runner: InferenceRunner;

  constructor(
    readonly model: AlexNet,
    readonly record: ModelRecord,
    readonly device: Device,
  ) {
    this.geometry = inputGeometry(record, model.inputShape);
    this.runner = new InferenceRunner(model, device, 'fp32');
  }

  /** Loads `weights` (checkpoint, weights file or state dict; `model` names the variant of a plain state dict). */
  static open(weights: string, o: { device?: DeviceRequest; model?: string } = {}): TorchPredictor {
    const device = resolveDevice(o.device ?? 'auto');
    const { model, record } = loadModel(weights, { model: o.model });
    return new TorchPredictor(prepareModel(model, device), record, device);
  }

  async logits(pixels: Uint8Array, n: number): Promise<Float32Array> {
    const { channels, height, width } = this.geometry;
    return noGrad(() =>
      tidy(() => {
        const x = preprocessBatch(
          tensor(pixels, [n, channels, height, width], 'uint8'),
          this.record.preprocess,
          this.device,
        );
        return this.runner.forward(x).to('cpu').data() as Float32Array;
      }),
    );
  }

  async close(): Promise<void> {
    this.runner.dispose();
    this.model.dispose();
  }
}
