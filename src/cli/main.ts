// The alexnet command: dispatches to one file per subcommand; user mistakes print one line, never a stack.
import { AlexnetError, EngineError, UserError } from '../errors';
import { RankError } from '../distributed/group';

type Command = { summary: string; run: (argv: string[]) => Promise<void> | void };

const COMMANDS: Record<string, Command> = {
  demo: {
    summary: 'the main job: train on Fashion-MNIST, evaluate, save, predict',
    run: async (a) => (await import('./demo')).demoCommand(a),
  },
  summary: {
    summary: 'layer table of a model: shapes, parameters, MACs',
    run: async (a) => (await import('./summary')).summaryCommand(a),
  },
  train: {
    summary: 'train on Fashion-MNIST, MNIST or a folder of photos',
    run: async (a) => (await import('./train')).trainCommand(a),
  },
  eval: {
    summary: 'evaluate a trained model: top-1, top-5, per class, confusion matrix',
    run: async (a) => (await import('./eval')).evalCommand(a),
  },
  experiment: {
    summary: "one of the paper's claims run here over seeds: report and plot",
    run: async (a) => (await import('./experiment')).experimentCommand(a),
  },
  features: {
    summary: "one layer's outputs for every image of a data set (embeddings), with labels and files",
    run: async (a) => (await import('./features')).featuresCommand(a),
  },
  predict: {
    summary: 'classify image files with a trained model',
    run: async (a) => (await import('./predict')).predictCommand(a),
  },
  export: {
    summary: 'write weights as safetensors or ONNX',
    run: async (a) => (await import('./export')).exportCommand(a),
  },
  stats: {
    summary: "an image folder's mean, std and colour eigenvectors (for --stats)",
    run: async (a) => (await import('./stats')).statsCommand(a),
  },
  bench: {
    summary: 'training and inference speed here; --pipeline: the photo input pipeline',
    run: async (a) => (await import('./bench')).benchCommand(a),
  },
  report: {
    summary: "a run's curves, filters and evaluation as one self-contained HTML file",
    run: async (a) => (await import('./report')).reportCommand(a),
  },
  serve: {
    summary: 'an HTTP inference server with a page that shows the model and its training runs',
    run: async (a) => (await import('./serve')).serveCommand(a),
  },
  models: { summary: 'list the AlexNet variants', run: async (a) => (await import('./models')).modelsCommand(a) },
  info: {
    summary: 'the engine: libtorch version, threads, CUDA',
    run: async (a) => (await import('./models')).infoCommand(a),
  },
};

function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    'Usage: alexnet <command> [options]',
    '',
    'AlexNet in TypeScript over libtorch. Commands:',
    ...Object.entries(COMMANDS).map(([k, c]) => `  ${k.padEnd(width)}  ${c.summary}`),
    '',
    "Run 'alexnet <command> --help' for a command's options.",
  ].join('\n');
}

export function registerCommand(name: string, c: Command): void {
  COMMANDS[name] = c;
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(usage());
    return 0;
  }
  if (cmd === '--version') {
    console.log(require('../../../package.json').version);
    return 0;
  }
  const c = COMMANDS[cmd];
  if (!c) {
    console.error(`alexnet: unknown command '${cmd}' (commands: ${Object.keys(COMMANDS).join(', ')})`);
    return 2;
  }
  try {
    await c.run(rest);
    // A command that finished but did not do everything asked (130 interrupted, 1 some inputs failed) says so here.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    return reportError(e);
  }
}

export function reportError(e: unknown): number {
  const debug = !!process.env.ALEXNET_DEBUG;
  if (e instanceof UserError) {
    console.error(`alexnet: error: ${e.message}`);
    if (debug) console.error(e.stack);
    return 2;
  }
  // Another rank stopped or stopped answering: not the user's mistake (exit 1), but no trace to read either.
  if (e instanceof RankError) {
    console.error(`alexnet: error: ${e.message}`);
    if (debug) console.error(e.stack);
    return 1;
  }
  if (e instanceof EngineError || e instanceof AlexnetError) {
    console.error(`alexnet: engine error: ${e.message}`);
    if (debug) console.error(e.stack);
    else console.error('(set ALEXNET_DEBUG=1 for the stack trace)');
    return 1;
  }
  console.error(`alexnet: internal error: ${(e as Error)?.message ?? e}`);
  console.error(debug ? (e as Error)?.stack : '(set ALEXNET_DEBUG=1 for the stack trace; please report it)');
  return 1;
}
