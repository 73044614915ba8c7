// The libtorch backend: a model loaded from any supported weights file, on the chosen device, in eval mode, in fp32
// or bf16; it can also look inside its model (the first convolution's filters, feature maps, the embedding).
import { preprocessBatch } from '../data/loader';
import { AlexNet } from '../models/alexnet';
import { loadModel } from '../persist/load';
import { ModelRecord } from '../persist/record';
import { DeviceRequest, prepareModel, resolveDevice } from '../runtime/device';
import { InferenceRunner } from '../runtime/inference';
import { autocast, Precision } from '../runtime/precision';
import { Device } from '../tensor/dtype';
import { noGrad, Tensor, tensor, tidy } from '../tensor/tensor';
import {
  embeddingLayer,
  featureMaps,
  firstConvolution,
  float32Data,
  hasBatchNorm,
  Insight,
  LayerOutput,
} from './introspect';
import { InputGeometry, inputGeometry, Predictor, tensorShape } from './predictor';

export interface TorchOptions {
  /** 'fp32' (default) or 'bf16'. */
  precision?: Precision;
  /** Pack the forward pass's weights now (at batch 1) rather than on the first call (a server's first answer). */
  prepare?: boolean;
}

export class TorchPredictor implements Predictor, Insight {
  readonly runtime = 'libtorch';
  readonly geometry: InputGeometry;
  readonly precision: Precision;
  /** The forward pass: a oneDNN plan on the CPU, libtorch's ops elsewhere (src/runtime/inference.ts). */
  readonly runner: InferenceRunner;
  /** The layer `embedding` reads: the last hidden layer. */
  readonly embeddingLayer: string;

  constructor(
    readonly model: AlexNet,
    readonly record: ModelRecord,
    readonly device: Device,
    o: TorchOptions = {},
  ) {
    this.precision = o.precision ?? 'fp32';
    this.geometry = inputGeometry(record, model.inputShape);
    this.embeddingLayer = embeddingLayer(model);
    this.runner = new InferenceRunner(model, device, this.precision);
    // The plan packs from the fp32 weights, so it is built before any cast below.
    if (o.prepare || this.precision === 'bf16') this.runner.prepare();
    // bf16 on the CPU: autocast casts every fp32 weight to bf16 on every forward pass (46M of them for AlexNet:
    // as long as the batch-1 forward itself); cast once here instead. Batch norm keeps its fp32 statistics, so
    // models with it cast under autocast as before.
    if (this.precision === 'bf16' && !hasBatchNorm(model)) model.to({ dtype: 'bfloat16' });
  }

  /**
   * Loads `weights` (checkpoint, weights file or state dict; `model` names the variant of a plain state dict) onto
   * `device` (a prepared one: threads are the caller's).
   */
  static open(weights: string, o: TorchOptions & { device?: DeviceRequest; model?: string } = {}): TorchPredictor {
    const device = resolveDevice(o.device ?? 'auto');
    const { model, record } = loadModel(weights, { model: o.model });
    return new TorchPredictor(prepareModel(model, device), record, device, o);
  }

  /** Planar uint8 images -> the model's float input on its device (resized and normalised as in training). */
  private input(pixels: Uint8Array, n: number): Tensor {
    const { channels, height, width } = this.geometry;
    return preprocessBatch(tensor(pixels, [n, channels, height, width], 'uint8'), this.record.preprocess, this.device);
  }

  /** Runs `fn` without gradients, in a scope, under the predictor's precision. */
  private run<T>(fn: () => T): T {
    return noGrad(() => tidy(() => autocast(this.device, this.precision, fn)));
  }

  async logits(pixels: Uint8Array, n: number): Promise<Float32Array> {
    return noGrad(() => tidy(() => float32Data(this.runner.forward(this.input(pixels, n)))));
  }

  /** Logits of N preprocessed inputs (float32 N × C × H × W at the model's input size). */
  async forward(input: Float32Array, n: number): Promise<Float32Array> {
    const x = () =>
      tensor(input, [n, ...tensorShape(this.record, this.geometry)], 'float32').to({ device: this.device });
    return noGrad(() => tidy(() => float32Data(this.runner.forward(x()))));
  }

  /** The first convolution's kernels, named by the layer. */
  async filters(): Promise<LayerOutput> {
    const conv = firstConvolution(this.model);
    if (!conv) throw new Error(`${this.record.model} has no convolution`);
    return noGrad(() =>
      tidy(() => ({ layer: conv.layer, shape: [...conv.weight.shape], data: float32Data(conv.weight) })),
    );
  }

  async featureMaps(pixels: Uint8Array): Promise<LayerOutput[]> {
    return this.run(() => featureMaps(this.model, this.input(pixels, 1)));
  }

  /** The output of `embeddingLayer` (flattened) for one image. */
  async embedding(pixels: Uint8Array): Promise<Float32Array> {
    return this.run(() => float32Data(this.model.forwardTo(this.input(pixels, 1), this.embeddingLayer).flatten(1)));
  }

  async close(): Promise<void> {
    this.runner.dispose();
    this.model.dispose();
  }
}
