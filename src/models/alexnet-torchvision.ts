// torchvision's AlexNet (models/alexnet.py, the "one weird trick" variant): 64-192-384-256-256 kernels,
// conv1 padding 2, no LRN, adaptive average pooling to 6×6, dropout before FC6 and FC7, 4096-4096-1000,
// PyTorch's default initialisation. Parameter names match torchvision's state_dict, so its weights load as is.
import { AdaptiveAvgPool2d, Conv2d, Dropout, Linear, MaxPool2d, ReLU, Sequential } from '../nn';
import { AlexNet, AlexNetOptions, resolveOptions } from './alexnet';

export function alexnetTorchvision(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('alexnet-torchvision', options, { numClasses: 1000, inChannels: 3, dropout: 0.5, inputSize: 224 });
  const pool = () => new MaxPool2d(3, { stride: 2 });
  return new AlexNet({
    name: 'alexnet-torchvision',
    input: [o.inChannels, o.h, o.w],
    features: new Sequential(
      new Conv2d(o.inChannels, 64, 11, { stride: 4, padding: 2 }), new ReLU(true), pool(),
      new Conv2d(64, 192, 5, { padding: 2 }), new ReLU(true), pool(),
      new Conv2d(192, 384, 3, { padding: 1 }), new ReLU(true),
      new Conv2d(384, 256, 3, { padding: 1 }), new ReLU(true),
      new Conv2d(256, 256, 3, { padding: 1 }), new ReLU(true), pool(),
    ),
    avgpool: new AdaptiveAvgPool2d(6),
    classifier: (n) => new Sequential(
      new Dropout(o.dropout), new Linear(n, 4096), new ReLU(true),
      new Dropout(o.dropout), new Linear(4096, 4096), new ReLU(true),
      new Linear(4096, o.numClasses),
    ),
  });
}
