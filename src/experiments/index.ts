// The experiments `alexnet experiment NAME` runs, and the paper's other claims that are not built yet.
import { reluVsTanh } from './relu-vs-tanh';
import { Experiment } from './types';

export const EXPERIMENTS: Experiment[] = [reluVsTanh];

/** Claims from the paper that have no experiment here yet (named so that asking for one says so). */
export const PLANNED = ['lrn', 'overlapping-pooling', 'dropout', 'two-tower', 'pca-noise', 'ten-crop', 'ensemble'];

export { Experiment, ExperimentOptions, ExperimentResult } from './types';
