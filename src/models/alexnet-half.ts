// The common "half classifier" AlexNet of many tutorials: 96(stride 4, pad 2)-256-384-384-256 kernels without
// LRN, a 2048-2048 classifier with dropout; conv weights Kaiming normal (fan_out, ReLU) with zero biases,
// linear weights N(0, 0.01) with zero biases.
import { Conv2d, Dropout, init, Linear, Sequential } from '../nn';
import { AlexNet, AlexNetOptions, featureStack, resolveOptions } from './alexnet';

export function alexnetHalf(options: AlexNetOptions = {}): AlexNet {
  const o = resolveOptions('alexnet-half', options, {
    numClasses: 1000,
    inChannels: 3,
    dropout: 0.5,
    inputSize: 224,
    widths: [96, 256, 384, 384, 256],
  });
  return new AlexNet({
    name: 'alexnet-half',
    input: [o.inChannels, o.h, o.w],
    features: featureStack(o, { stride: 4, padding: 2 }),
    classifier: (n) =>
      new Sequential(
        new Dropout(o.dropout),
        new Linear(n, 2048),
        o.act(),
        new Dropout(o.dropout),
        new Linear(2048, 2048),
        o.act(),
        new Linear(2048, o.numClasses),
      ),
    init: (model) => {
      for (const [, m] of model.namedModules()) {
        if (m instanceof Conv2d) {
          init.kaimingNormal_(m.weight, { mode: 'fan_out', nonlinearity: 'relu' });
          init.zeros_(m.bias!);
        } else if (m instanceof Linear) {
          init.normal_(m.weight, 0, 0.01);
          init.zeros_(m.bias!);
        }
      }
    },
  });
}
