// Shared by the data-parallel tests: the tiny run they all train and checkpoint comparison.
import assert from 'node:assert/strict';
import { loadCheckpoint } from '../../src/persist/checkpoint';

/**
 * d2l at 65×65 with narrow convolutions (19 M parameters, most in its 4096-wide classifier) on 64 Fashion-MNIST
 * images (4 global steps of 16), float32, dropout off so that runs can be compared. Add --epochs and --batch-size.
 */
export const DDP_TINY = [
  'train',
  '--model',
  'alexnet-d2l',
  '--widths',
  '16-32-32-32-32',
  '--input-size',
  '65',
  '--train-limit',
  '64',
  '--test-limit',
  '40',
  '--eval-batch-size',
  '8',
  '--dropout',
  '0',
  '--seed',
  '5',
  '--precision',
  'fp32',
  '--lr',
  '0.05',
];

/** The largest absolute difference between two checkpoints' model tensors, the largest magnitude, count, bytes. */
export function compareWeights(a: string, b: string): { diff: number; scale: number; keys: number; bytes: number } {
  const ca = loadCheckpoint(a);
  const cb = loadCheckpoint(b);
  try {
    const w = { diff: 0, scale: 0, keys: 0, bytes: 0 };
    for (const [k, t] of ca.tensors) {
      if (!k.startsWith('model.')) continue;
      const u = cb.tensors.get(k);
      assert.ok(u, `${k} is missing from ${b}`);
      const x = t.toArray();
      const y = u.toArray();
      for (let i = 0; i < x.length; i++) {
        w.diff = Math.max(w.diff, Math.abs(x[i] - y[i]));
        w.scale = Math.max(w.scale, Math.abs(x[i]));
      }
      w.keys++;
      w.bytes += 4 * x.length;
    }
    return w;
  } finally {
    for (const t of [...ca.tensors.values(), ...cb.tensors.values()]) t.dispose();
  }
}
