// torchvision's AlexNet (models/alexnet.py, the "one weird trick" variant): 64-192-384-256-256 kernels,
// conv1 padding 2, no LRN, adaptive average pooling to 6×6, dropout before FC6 and FC7, 4096-4096-1000,
// PyTorch's default initialisation. Parameter names match torchvision's state_dict, so its weights load as is.
import { AdaptiveAvgPool2d, Dropout, Linear, Sequential } from '../nn';
import { AlexNet, AlexNetOptions, featureStack, resolveOptions } from './alexnet';

export function alexnetTorchvision(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('alexnet-torchvision', options, {
    numClasses: 1000,
    inChannels: 3,
    dropout: 0.5,
    inputSize: 224,
    widths: [64, 192, 384, 256, 256],
  });
  return new AlexNet({
    name: 'alexnet-torchvision',
    input: [o.inChannels, o.h, o.w],
    features: featureStack(o, { stride: 4, padding: 2 }),
    avgpool: new AdaptiveAvgPool2d(6),
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
