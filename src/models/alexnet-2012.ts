// The paper: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural Networks"
// (NIPS 2012). 96-256-384-384-256 kernels; conv2, conv4 and conv5 see only their own GPU's half (groups = 2);
// then LRN (k = 2, n = 5, α = 1e-4, β = 0.75) after conv1 and conv2; overlapping 3×3/2 max pooling;
// dropout 0.5 on FC6 and FC7; 4096-4096-1000. Weights N(0, 0.01²); biases 1 in conv2, conv4, conv5 and the
// hidden FC layers, 0 elsewhere. 227×227 input (the arithmetic of the paper's "224").
import { Conv2d, Dropout, init, Linear, LocalResponseNorm, MaxPool2d, Sequential } from '../nn';
import { AlexNet, AlexNetOptions, resolveOptions } from './alexnet';

export function alexnet2012(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('alexnet-2012', options, { numClasses: 1000, inChannels: 3, dropout: 0.5, inputSize: 227 });
  const lrn = () => new LocalResponseNorm({ convention: 'paper', n: 5, k: 2, alpha: 1e-4, beta: 0.75 });
  const pool = () => new MaxPool2d(3, { stride: 2 });
  const conv = [
    new Conv2d(o.inChannels, 96, 11, { stride: 4 }),
    new Conv2d(96, 256, 5, { padding: 2, groups: 2 }),
    new Conv2d(256, 384, 3, { padding: 1 }),
    new Conv2d(384, 384, 3, { padding: 1, groups: 2 }),
    new Conv2d(384, 256, 3, { padding: 1, groups: 2 }),
  ];
  const features = new Sequential(
    conv[0],
    o.act(),
    lrn(),
    pool(),
    conv[1],
    o.act(),
    lrn(),
    pool(),
    conv[2],
    o.act(),
    conv[3],
    o.act(),
    conv[4],
    o.act(),
    pool(),
  );
  const fc: Linear[] = [];
  return new AlexNet({
    name: 'alexnet-2012',
    input: [o.inChannels, o.h, o.w],
    features,
    classifier: (n) => {
      fc.push(new Linear(n, 4096), new Linear(4096, 4096), new Linear(4096, o.numClasses));
      return new Sequential(new Dropout(o.dropout), fc[0], o.act(), new Dropout(o.dropout), fc[1], o.act(), fc[2]);
    },
    init: () => {
      for (const layer of [...conv, ...fc]) init.normal_(layer.weight, 0, 0.01);
      const biasOne = new Set<unknown>([conv[1], conv[3], conv[4], fc[0], fc[1]]);
      for (const layer of [...conv, ...fc]) init.constant_(layer.bias!, biasOne.has(layer) ? 1 : 0);
    },
  });
}
