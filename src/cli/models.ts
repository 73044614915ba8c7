// alexnet models / alexnet info
import { listModels } from '../models/registry';
import { cpuInfo } from '../runtime/cpu';
import { blasImplementation, blasWarning } from '../tensor/blas';
import { onednnAvailable } from '../tensor/runtime';
import { runtimeInfo } from '../tensor/tensor';
import { optionHelp, parseCommand } from './options';

export const MODELS_HELP = `Usage: alexnet models\n\nLists the AlexNet variants and where each comes from.\n\nOptions:\n${optionHelp({})}`;
export const INFO_HELP = `Usage: alexnet info\n\nThe engine: libtorch version, CPU threads, CUDA devices, the BLAS in use, whether oneDNN inference plans are built in, and the CPU: its generation, the\ninstruction set oneDNN uses (capped by DNNL_MAX_CPU_ISA) and whether it has native bf16 (JSON).\n\nOptions:\n${optionHelp({})}`;

export function modelsCommand(argv: string[], out: (s: string) => void = console.log): void {
  if (parseCommand('models', argv, {}).help) return out(MODELS_HELP);
  const models = listModels();
  const w = Math.max(...models.map((m) => m.name.length));
  for (const m of models) out(`${m.name.padEnd(w)}  ${m.description}`);
}

export function infoCommand(argv: string[], out: (s: string) => void = console.log): void {
  if (parseCommand('info', argv, {}).help) return out(INFO_HELP);
  const blas = blasImplementation();
  out(
    JSON.stringify(
      {
        ...runtimeInfo(),
        blas: blas?.path ?? 'unknown',
        referenceBlas: blas?.reference ?? false,
        // Inference plans and float32 linear layers on oneDNN directly (native/onednn.cc; libdnnl-dev at build).
        onednnPlans: onednnAvailable(),
        cpu: cpuInfo(),
      },
      null,
      2,
    ),
  );
  const w = blasWarning();
  if (w) console.error(w);
}
