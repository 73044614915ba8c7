// AlexNet with batch normalisation after every convolution (before the ReLU), as in the cats-vs-dogs recipes:
// 96-256-384-384-256 kernels on 227×227 input, 4096-4096 classifier with dropout, two classes by default;
// trained with Adam. PyTorch's default initialisation.
import { BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, Sequential } from '../nn';
import { AlexNet, AlexNetOptions, resolveOptions } from './alexnet';

export function alexnetBn(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('alexnet-bn', options, { numClasses: 2, inChannels: 3, dropout: 0.5, inputSize: 227 });
  const pool = () => new MaxPool2d(3, { stride: 2 });
  const block = (cin: number, cout: number, k: number, opts: { stride?: number; padding?: number }) => [
    new Conv2d(cin, cout, k, opts),
    new BatchNorm2d(cout),
    o.act(),
  ];
  return new AlexNet({
    name: 'alexnet-bn',
    input: [o.inChannels, o.h, o.w],
    features: new Sequential(
      ...block(o.inChannels, 96, 11, { stride: 4 }),
      pool(),
      ...block(96, 256, 5, { padding: 2 }),
      pool(),
      ...block(256, 384, 3, { padding: 1 }),
      ...block(384, 384, 3, { padding: 1 }),
      ...block(384, 256, 3, { padding: 1 }),
      pool(),
    ),
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
