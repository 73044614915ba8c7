// Looking inside a model: the layers the page's views and `alexnet features` pick by rule (the first convolution,
// the last hidden layer), each convolution's feature maps, and whether batch norm is there. Layers are told apart
// by their spec's kind (`Module.spec()`), as the ONNX writer and the plan builder do.
import { AlexNet } from '../models/alexnet';
import { Module } from '../nn/module';
import { Tensor } from '../tensor/tensor';

/** One named layer's output for one image (C × H × W, or D), row-major. */
export interface LayerOutput {
  layer: string;
  shape: number[];
  data: Float32Array;
}

/** A weight tensor, row-major. */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** What a predictor that can look inside its model offers (libtorch does, onnxruntime does not). */
export interface Insight {
  /** The first convolution's kernels: out × in × kh × kw (the paper's Figure 3). */
  filters(): Promise<TensorData>;
  /** Every convolution's output (after its activation) for one planar uint8 image of the predictor's geometry. */
  featureMaps(pixels: Uint8Array): Promise<LayerOutput[]>;
  /** The last hidden layer's output (the 4096-d embedding of the paper's Figure 4) for one image. */
  embedding(pixels: Uint8Array): Promise<Float32Array>;
}

/** A tensor's numbers as float32 on the CPU, in a buffer of their own. */
export function float32Data(t: Tensor): Float32Array {
  return t.float().to('cpu').contiguous().data() as Float32Array;
}

/**
 * The last hidden layer: the classifier's last ReLU (the 4096 numbers the paper's Figure 4 compares), else the
 * layer before the last. `alexnet features` writes it by default and the page's neighbours search it.
 */
export function embeddingLayer(model: AlexNet): string {
  const layers = model.layers();
  const relus = layers.filter(([n, m]) => n.startsWith('classifier.') && m.spec().kind === 'relu').map(([n]) => n);
  return relus[relus.length - 1] ?? layers[layers.length - 2][0];
}

/** The first convolution's name and kernels (out × in × kh × kw); undefined for a model without one. */
export function firstConvolution(model: AlexNet): { layer: string; weight: Tensor } | undefined {
  const found = model.layers().find(([, m]) => m.spec().kind === 'conv2d');
  return found && { layer: found[0], weight: weightOf(found[1]) };
}

/** Whether the model normalises with batch norm (whose statistics stay fp32 when the weights are cast to bf16). */
export function hasBatchNorm(model: AlexNet): boolean {
  return model.layers().some(([, m]) => m.spec().kind === 'batchNorm2d');
}

/**
 * Each convolution's output after its activation, named by the convolution, for a batch of one image `x` (already
 * preprocessed): the feature extractor's layers run one by one, the classifier not at all. Call it inside a scope.
 */
export function featureMaps(model: AlexNet, x: Tensor): LayerOutput[] {
  const outs: LayerOutput[] = [];
  let h = x;
  let conv: string | undefined;
  for (const [name, layer] of model.layers()) {
    if (name === 'flatten') break;
    h = layer.forward(h);
    const kind = layer.spec().kind;
    if (kind === 'conv2d') conv = name;
    else if (conv && (kind === 'relu' || kind === 'tanh')) {
      outs.push({ layer: conv, shape: h.shape.slice(1), data: float32Data(h) });
      conv = undefined;
    }
  }
  return outs;
}

/** A layer's `weight` parameter, by its PyTorch key. */
function weightOf(m: Module): Tensor {
  const w = m.namedParameters().find(([n]) => n === 'weight');
  if (!w) throw new Error(`a convolution without a weight parameter`);
  return w[1];
}
