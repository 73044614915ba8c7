// A child process's output stream as text as it comes, with a wait for the first match of a pattern.

/** `defaultMs`: how long `wait` waits when not told (then it rejects, quoting the text so far). */
export function lines(stream: NodeJS.ReadableStream, defaultMs: number) {
  let text = '';
  const waiters: [RegExp, (m: RegExpMatchArray) => void][] = [];
  stream.on('data', (d) => {
    text += d;
    for (const [re, f] of waiters.splice(0)) {
      const m = text.match(re);
      if (m) f(m);
      else waiters.push([re, f]);
    }
  });
  return {
    text: () => text,
    wait: (re: RegExp, ms = defaultMs) =>
      new Promise<RegExpMatchArray>((resolve, reject) => {
        const m = text.match(re);
        if (m) return resolve(m);
        const t = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms in: ${text}`)), ms);
        waiters.push([re, (x) => (clearTimeout(t), resolve(x))]);
      }),
  };
}
