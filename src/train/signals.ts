// Ctrl-C and SIGTERM during a run: the first asks the run to stop after the current step and save its
// checkpoint; a second quits at once (exit 130) without saving.
export interface StopSignals {
  /** True once SIGINT or SIGTERM arrived. */
  readonly requested: () => boolean;
  dispose(): void;
}

export const EXIT_INTERRUPTED = 130;

export function stopOnSignals(notice: (line: string) => void = (l) => process.stderr.write(l)): StopSignals {
  let stop = false;
  const handler = () => {
    if (stop) process.exit(EXIT_INTERRUPTED);
    stop = true;
    notice('\nstopping after this step (Ctrl-C again to quit without saving)…\n');
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    requested: () => stop,
    dispose: () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
