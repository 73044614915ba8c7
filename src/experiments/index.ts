// The experiments `alexnet experiment NAME` runs: the paper's claims, one each, and bf16 against fp32.
import { bf16, dropout, lrn, overlappingPooling, pcaNoise, twoTower } from './ablations';
import { ensemble } from './ensemble';
import { reluVsTanh } from './relu-vs-tanh';
import { tenCrop } from './ten-crop';
import { Experiment } from './types';

export const EXPERIMENTS: Experiment[] = [
  reluVsTanh,
  lrn,
  overlappingPooling,
  dropout,
  twoTower,
  pcaNoise,
  tenCrop,
  ensemble,
  bf16,
];

export { Experiment, ExperimentOptions, ExperimentResult } from './types';
