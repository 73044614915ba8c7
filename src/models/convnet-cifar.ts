// The four-layer CIFAR-10 network of the paper's Figure 1 and of Section 3.3's CIFAR-10 LRN result: cuda-convnet's
// published example layer definitions (Krizhevsky's cuda-convnet, example-layers/, read from the copy in
// github.com/dnouri/cuda-convnet):
//
// - layers-18pct.cfg ("18% error on CIFAR-10 in 20 minutes") with layer-params-18pct.cfg:
//     conv1  filters=32 filterSize=5 padding=2 stride=1 channels=3  initW=0.0001 (no neuron)
//     pool1  pool=max sizeX=3 stride=2 start=0 outputsX=0 neuron=relu
//     rnorm1 type=rnorm size=3 (params: scale=0.00005 pow=.75)
//     conv2  filters=32 filterSize=5 padding=2 stride=1 neuron=relu initW=0.01
//     pool2  pool=avg sizeX=3 stride=2
//     rnorm2 type=rnorm size=3 (params: scale=0.00005 pow=.75)
//     conv3  filters=64 filterSize=5 padding=2 stride=1 neuron=relu initW=0.01
//     pool3  pool=avg sizeX=3 stride=2
//     fc10   outputs=10 initW=0.01, softmax, cost.logreg
// - layers-80sec.cfg ("26% error on CIFAR-10 in 80 seconds"): the same without rnorm1 and rnorm2, and with a
//   64-unit ReLU layer (fc64, initW=0.1) before fc10 (initW=0.1). This model leaves fc64 out, so that LRN on/off
//   varies the normalisation alone: `lrn: 'none'` is layers-18pct.cfg without its rnorm layers.
//
// cuda-convnet's pieces, as its code computes them:
// - rnorm is normalisation within each map over a size×size neighbourhood (cmrnorm is the across-maps kind):
//   layer.py divides the configured scale by size² for rnorm (by size for cmrnorm), and the kernel computes
//   b = a · (1 + (scale/size²) · Σ a²)^(−pow), the sum over the size×size window centred on the pixel and clipped
//   at the border. Here: size 3, scale 5e-5, pow 0.75, so b = a · (1 + 5e-5/9 · Σ₃ₓ₃ a²)^(−0.75).
// - pooling with outputsX=0 covers the whole map: DIVUP(32 − 3, 2) + 1 = 16 windows, the last one running past the
//   edge (PyTorch's ceil_mode); average pooling divides by the pixels inside the map, not by 9. 32 → 16 → 8 → 4.
// - "neuron=relu" on pool1 applies the activation after max pooling (the same values as before it, ReLU and tanh
//   being monotone); conv1 has no neuron of its own.
// - weights N(0, initW²), biases 0.
// cuda-convnet fed CIFAR-10 as 0–255 pixels minus the per-pixel mean of the training set, which is what makes
// scale 5e-5 act: the data side (the cifar10 reader) does that, not the model.
import { UserError } from '../errors';
import { Conv2d, F, init, Linear, MaxPool2d, Module, Sequential } from '../nn';
import { expectRank, LayerShapeError } from '../nn/module';
import { Tensor, tidy } from '../tensor/tensor';
import { AlexNet, AlexNetOptions, resolveOptions } from './alexnet';

const poolOut = (x: number, k: number, s: number) => {
  const out = Math.ceil((x - k) / s) + 1;
  return (out - 1) * s >= x ? out - 1 : out;
};

/**
 * cuda-convnet's rnorm: b = a · (1 + (scale/size²) · Σ a²)^(−pow) over a size×size window of the same map
 * (zero outside the map). `scale` as written in layer-params (divided by size² here, as layer.py does).
 */
export class CudaConvnetResponseNorm extends Module {
  constructor(
    readonly size: number,
    readonly scale: number,
    readonly pow: number,
  ) {
    super();
    if (size % 2 !== 1) throw new UserError(`CudaConvnetResponseNorm: size must be odd, got ${size}`);
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const k = this.size;
      // Σ over the window = the window's mean with zero padding counted, times its k² pixels.
      const sum = F.avgPool2d(x.square(), k, 1, (k - 1) / 2, false, true).mul(k * k);
      return x.mul(
        sum
          .mul(this.scale / (k * k))
          .add(1)
          .pow(-this.pow),
      );
    });
  }
  override outputShape(input: number[]): number[] {
    expectRank('CudaConvnetResponseNorm', input, 3);
    return input;
  }
  override describe(): string {
    return `CudaConvnetResponseNorm(size=${this.size}, scale=${this.scale}, pow=${this.pow})`;
  }
}

/** Average pooling as cuda-convnet's: windows cover the whole map (ceil mode), each divided by its pixels inside. */
export class CeilAvgPool2d extends Module {
  constructor(
    readonly kernel: number,
    readonly stride: number,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.avgPool2d(x, this.kernel, this.stride, 0, true, false);
  }
  override outputShape(input: number[]): number[] {
    expectRank('CeilAvgPool2d', input, 3);
    const [c, h, w] = input;
    const [ho, wo] = [poolOut(h, this.kernel, this.stride), poolOut(w, this.kernel, this.stride)];
    if (ho < 1 || wo < 1) throw new LayerShapeError(`CeilAvgPool2d with kernel ${this.kernel} cannot take ${h}×${w}`);
    return [c, ho, wo];
  }
  override describe(): string {
    return `CeilAvgPool2d(kernel=${this.kernel}, stride=${this.stride})`;
  }
}

/** layer-params-18pct.cfg's rnorm: size 3, scale 0.00005, pow 0.75. */
export const RNORM_18PCT = { size: 3, scale: 5e-5, pow: 0.75 };

/**
 * The network from its configuration: widths (the first three are conv1–conv3's filters; default 32-32-64),
 * pool [kernel, stride] for all three poolings (default [3, 2]), activation, lrn ('none': no rnorm layers; any
 * other value: cuda-convnet's rnorm after pool1 and pool2; default on, as layers-18pct.cfg), 3 channels, 32×32,
 * 10 classes, no dropout.
 */
export function convnetCifar(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('convnet-cifar', options, {
    numClasses: 10,
    inChannels: 3,
    dropout: 0,
    inputSize: 32,
    widths: [32, 32, 64, 64, 64],
    lrn: 'paper',
  });
  if (o.groups !== 1) throw new UserError(`convnet-cifar: groups must be 1 (one GPU's network), got ${o.groups}`);
  const [w1, w2, w3] = o.widths;
  const [k, s] = options.pool ?? [3, 2];
  const withRnorm = (options.lrn ?? 'paper') !== 'none';
  const rnorm = () =>
    withRnorm ? [new CudaConvnetResponseNorm(RNORM_18PCT.size, RNORM_18PCT.scale, RNORM_18PCT.pow)] : [];
  return new AlexNet({
    name: 'convnet-cifar',
    input: [o.inChannels, o.h, o.w],
    features: new Sequential(
      new Conv2d(o.inChannels, w1, 5, { padding: 2 }),
      new MaxPool2d(k, { stride: s, ceilMode: true }),
      o.act(),
      ...rnorm(),
      new Conv2d(w1, w2, 5, { padding: 2 }),
      o.act(),
      new CeilAvgPool2d(k, s),
      ...rnorm(),
      new Conv2d(w2, w3, 5, { padding: 2 }),
      o.act(),
      new CeilAvgPool2d(k, s),
    ),
    classifier: (n) => new Sequential(new Linear(n, o.numClasses)),
    init: (model) => {
      const std = [1e-4, 0.01, 0.01, 0.01];
      const layers = [...model.features.namedChildren(), ...model.classifier.namedChildren()]
        .map(([, m]) => m)
        .filter((m): m is Conv2d | Linear => m instanceof Conv2d || m instanceof Linear);
      layers.forEach((m, i) => {
        init.normal_(m.weight, 0, std[i]);
        if (m.bias) init.zeros_(m.bias);
      });
    },
  });
}
