// The public API of alexnet-ts.
export * from './errors';
export * from './tensor/tensor';
export type { DType, Device } from './tensor/dtype';
export * as nn from './nn';
export { AlexNet } from './models/alexnet';
export type { AlexNetOptions, LayerRow } from './models/alexnet';
export { getModel, listModels } from './models/registry';
