// The inverse of Module.spec(): a fresh layer (its parameters initialised as the constructor does) for a spec.
import { UserError } from '../errors';
import { Dropout, Flatten, ReLU, Tanh } from './basic';
import { BatchNorm2d } from './batchnorm';
import { Conv2d } from './conv2d';
import { Linear } from './linear';
import { LocalResponseNorm, LrnOptions } from './lrn';
import { Module } from './module';
import { AdaptiveAvgPool2d, MaxPool2d } from './pooling';
import { Sequential } from './sequential';
import type { LayerSpec, LrnSpec } from './spec';

/**
 * A new layer with the hyper-parameters of `spec` (weights freshly initialised: copy them by state-dict key).
 * A 'container' (a model, a user's module) has no constructor to call: that is a UserError.
 */
export function layerFromSpec(spec: LayerSpec): Module {
  switch (spec.kind) {
    case 'conv2d': {
      const { stride, padding, dilation, groups, bias } = spec;
      return new Conv2d(spec.inChannels, spec.outChannels, spec.kernel, { stride, padding, dilation, groups, bias });
    }
    case 'linear':
      return new Linear(spec.inFeatures, spec.outFeatures, { bias: spec.bias });
    case 'relu':
      return new ReLU(spec.inplace);
    case 'tanh':
      return new Tanh();
    case 'dropout':
      return new Dropout(spec.p);
    case 'flatten':
      return new Flatten();
    case 'maxPool2d':
      return new MaxPool2d(spec.kernel, { stride: spec.stride, padding: spec.padding, ceilMode: spec.ceilMode });
    case 'adaptiveAvgPool2d':
      return new AdaptiveAvgPool2d(spec.size);
    case 'lrn':
      return new LocalResponseNorm(lrnOptions(spec));
    case 'batchNorm2d':
      return new BatchNorm2d(spec.numFeatures, { eps: spec.eps, momentum: spec.momentum, affine: spec.affine });
    case 'sequential':
      return new Sequential(...spec.children.map(layerFromSpec));
    case 'container':
      throw new UserError(`a ${spec.type} cannot be built from its spec (only layers and Sequential can)`);
    default: {
      const unknown: never = spec;
      throw new UserError(`unknown layer kind '${(unknown as { kind: string }).kind}'`);
    }
  }
}

/** The LRN's options in its own convention's names. */
function lrnOptions(s: LrnSpec): LrnOptions {
  const { alpha, beta, groups } = s;
  switch (s.convention) {
    case 'pytorch':
      return { convention: 'pytorch', size: s.size, alpha, beta, k: s.k, groups };
    case 'tensorflow':
      return { convention: 'tensorflow', depthRadius: (s.size - 1) / 2, bias: s.k, alpha, beta, groups };
    case 'paper':
      return { convention: 'paper', n: s.size, k: s.k, alpha, beta, groups };
  }
}
