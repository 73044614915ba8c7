// Progress display: a bar with rate and ETA on a terminal, plain lines otherwise (logs, CI, pipes).
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return '?';
  s = Math.round(s);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  return h ? `${h}h${String(m).padStart(2, '0')}m` : m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

export class ProgressBar {
  readonly #tty: boolean;
  #last = 0;
  #lastPlainPct = -1;
  readonly #started = Date.now();

  constructor(
    readonly label: string,
    readonly total: number,
    readonly stream: NodeJS.WriteStream = process.stderr,
    readonly startAt = 0,
  ) {
    this.#tty = !!stream.isTTY && !process.env.CI;
  }

  update(done: number, info = ''): void {
    const now = Date.now();
    const elapsed = (now - this.#started) / 1000;
    const rate = (done - this.startAt) / Math.max(elapsed, 1e-9);
    const eta = rate > 0 ? (this.total - done) / rate : NaN;
    const pct = Math.floor((100 * done) / this.total);
    if (this.#tty) {
      if (now - this.#last < 100 && done < this.total) return;
      this.#last = now;
      const width = 24;
      const filled = Math.round((width * done) / this.total);
      const bar = '█'.repeat(filled) + '░'.repeat(width - filled);
      this.stream.write(
        `\r\x1b[2K${this.label} ${bar} ${String(pct).padStart(3)}% ${done}/${this.total} ${info} ETA ${formatDuration(eta)}`,
      );
    } else if (pct >= this.#lastPlainPct + 25 || done === this.total) {
      // At most five plain lines per bar.
      this.#lastPlainPct = pct;
      this.stream.write(`${this.label} ${pct}% (${done}/${this.total}) ${info} ETA ${formatDuration(eta)}\n`);
    }
  }

  done(): void {
    if (this.#tty) this.stream.write('\r\x1b[2K');
  }
}
