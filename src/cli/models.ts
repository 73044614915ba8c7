// alexnet models / alexnet info
import { listModels } from '../models/registry';
import { runtimeInfo } from '../tensor/tensor';

export function modelsCommand(out: (s: string) => void = console.log): void {
  const models = listModels();
  const w = Math.max(...models.map((m) => m.name.length));
  for (const m of models) out(`${m.name.padEnd(w)}  ${m.description}`);
}

export function infoCommand(out: (s: string) => void = console.log): void {
  out(JSON.stringify(runtimeInfo(), null, 2));
}
