// Dive into Deep Learning's AlexNet for Fashion-MNIST (section 8.1): one input channel, 96(stride 4, pad 1)-256-
// 384-384-256 kernels, no LRN, 6400-4096-4096-10 with dropout 0.5 after FC6 and FC7, inputs resized to 224×224.
// d2l's training loop initialises Conv2d and Linear weights with Xavier uniform (biases keep PyTorch's default).
import { Conv2d, Dropout, init, Linear, Sequential } from '../nn';
import { AlexNet, AlexNetOptions, featureStack, resolveOptions } from './alexnet';

export function alexnetD2l(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('alexnet-d2l', options, {
    numClasses: 10,
    inChannels: 1,
    dropout: 0.5,
    inputSize: 224,
    widths: [96, 256, 384, 384, 256],
  });
  return new AlexNet({
    name: 'alexnet-d2l',
    input: [o.inChannels, o.h, o.w],
    features: featureStack(o, { stride: 4, padding: 1 }),
    classifier: (n) =>
      new Sequential(
        new Linear(n, 4096),
        o.act(),
        new Dropout(o.dropout),
        new Linear(4096, 4096),
        o.act(),
        new Dropout(o.dropout),
        new Linear(4096, o.numClasses),
      ),
    init: (model) => {
      for (const [, m] of model.namedModules())
        if (m instanceof Conv2d || m instanceof Linear) init.xavierUniform_(m.weight);
    },
  });
}
