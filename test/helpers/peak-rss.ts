// Preloaded with `node -r` into a child process: prints its peak resident set size on exit, so a test can bound
// the memory a command used (see cliPeakRss in cli-rss.ts). VmHWM is this process image's own high-water mark;
// getrusage's maxRSS is not (Linux carries the parent's over fork and exec).
import * as fs from 'node:fs';

process.on('exit', () => {
  const kb = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
  process.stderr.write(`\npeak-rss-kb ${kb ?? process.resourceUsage().maxRSS}\n`);
});
