// AlexNet with batch normalisation after every convolution (before the ReLU), as in the cats-vs-dogs recipes:
// 96-256-384-384-256 kernels on 227×227 input, 4096-4096 classifier with dropout, two classes by default;
// trained with Adam. PyTorch's default initialisation.
import { Dropout, Linear, Sequential } from '../nn';
import { AlexNet, AlexNetOptions, featureStack, resolveOptions } from './alexnet';

export function alexnetBn(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('alexnet-bn', options, {
    numClasses: 2,
    inChannels: 3,
    dropout: 0.5,
    inputSize: 227,
    widths: [96, 256, 384, 384, 256],
  });
  return new AlexNet({
    name: 'alexnet-bn',
    input: [o.inChannels, o.h, o.w],
    features: featureStack(o, { stride: 4, padding: 0 }, true),
    classifier: (n) =>
      new Sequential(
        new Dropout(o.dropout),
        new Linear(n, 4096),
        o.act(),
        new Dropout(o.dropout),
        new Linear(4096, 4096),
        o.act(),
        new Linear(4096, o.numClasses),
      ),
  });
}
