// alexnet models / alexnet info
import { listModels } from '../models/registry';
import { runtimeInfo } from '../tensor/tensor';
import { blasImplementation, blasWarning } from '../tensor/blas';

export function modelsCommand(out: (s: string) => void = console.log): void {
  const models = listModels();
  const w = Math.max(...models.map((m) => m.name.length));
  for (const m of models) out(`${m.name.padEnd(w)}  ${m.description}`);
}

export function infoCommand(out: (s: string) => void = console.log): void {
  const blas = blasImplementation();
  out(JSON.stringify({ ...runtimeInfo(), blas: blas?.path ?? 'unknown', referenceBlas: blas?.reference ?? false }, null, 2));
  const w = blasWarning();
  if (w) console.error(w);
}
