// The paper: Krizhevsky, Sutskever, Hinton, "ImageNet Classification with Deep Convolutional Neural Networks"
// (NIPS 2012). 96-256-384-384-256 kernels; conv2, conv4 and conv5 see only their own GPU's half (groups = 2);
// then LRN (k = 2, n = 5, α = 1e-4, β = 0.75) after conv1 and conv2, per GPU as in the authors' two-GPU
// configuration (cuda-convnet2 layers-imagenet-2gpu-model.cfg: rnorm1a/b over 48 maps, rnorm2a/b over 128), so the
// window never crosses the tower boundary; overlapping 3×3/2 max pooling;
// dropout 0.5 on FC6 and FC7; 4096-4096-1000. Weights N(0, 0.01²); biases 1 in conv2, conv4, conv5 and the
// hidden FC layers, 0 elsewhere. 227×227 input (the arithmetic of the paper's "224").
import { Conv2d, Dropout, init, Linear, Sequential } from '../nn';
import { AlexNet, AlexNetOptions, featureStack, resolveOptions } from './alexnet';

export function alexnet2012(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('alexnet-2012', options, {
    numClasses: 1000,
    inChannels: 3,
    dropout: 0.5,
    inputSize: 227,
    widths: [96, 256, 384, 384, 256],
    lrn: 'paper',
    groups: 2,
  });
  const fc: Linear[] = [];
  return new AlexNet({
    name: 'alexnet-2012',
    input: [o.inChannels, o.h, o.w],
    features: featureStack(o, { stride: 4, padding: 0 }),
    classifier: (n) => {
      fc.push(new Linear(n, 4096), new Linear(4096, 4096), new Linear(4096, o.numClasses));
      return new Sequential(new Dropout(o.dropout), fc[0], o.act(), new Dropout(o.dropout), fc[1], o.act(), fc[2]);
    },
    init: (model) => {
      const conv = model.features.namedChildren().flatMap(([, m]) => (m instanceof Conv2d ? [m] : []));
      for (const layer of [...conv, ...fc]) init.normal_(layer.weight, 0, 0.01);
      const biasOne = new Set<unknown>([conv[1], conv[3], conv[4], fc[0], fc[1]]);
      for (const layer of [...conv, ...fc]) init.constant_(layer.bias!, biasOne.has(layer) ? 1 : 0);
    },
  });
}
