// Dive into Deep Learning's AlexNet for Fashion-MNIST (section 8.1): one input channel, 96(stride 4, pad 1)-256-
// 384-384-256 kernels, no LRN, 6400-4096-4096-10 with dropout 0.5 after FC6 and FC7, inputs resized to 224×224.
// d2l's training loop initialises Conv2d and Linear weights with Xavier uniform (biases keep PyTorch's default).
import { Conv2d, Dropout, init, Linear, MaxPool2d, ReLU, Sequential } from '../nn';
import { noGrad } from '../tensor/tensor';
import { AlexNet, AlexNetOptions, resolveOptions } from './alexnet';

export function alexnetD2l(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('alexnet-d2l', options, { numClasses: 10, inChannels: 1, dropout: 0.5, inputSize: 224 });
  const pool = () => new MaxPool2d(3, { stride: 2 });
  const model = new AlexNet({
    name: 'alexnet-d2l',
    input: [o.inChannels, o.h, o.w],
    features: new Sequential(
      new Conv2d(o.inChannels, 96, 11, { stride: 4, padding: 1 }), new ReLU(true), pool(),
      new Conv2d(96, 256, 5, { padding: 2 }), new ReLU(true), pool(),
      new Conv2d(256, 384, 3, { padding: 1 }), new ReLU(true),
      new Conv2d(384, 384, 3, { padding: 1 }), new ReLU(true),
      new Conv2d(384, 256, 3, { padding: 1 }), new ReLU(true), pool(),
    ),
    classifier: (n) => new Sequential(
      new Linear(n, 4096), new ReLU(true), new Dropout(o.dropout),
      new Linear(4096, 4096), new ReLU(true), new Dropout(o.dropout),
      new Linear(4096, o.numClasses),
    ),
  });
  noGrad(() => {
    for (const [, m] of model.namedModules()) if (m instanceof Conv2d || m instanceof Linear) init.xavierUniform_(m.weight);
  });
  return model;
}
