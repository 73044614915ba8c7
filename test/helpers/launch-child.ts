// A stand-in for `alexnet` in the launcher's tests, in two roles. Without RANK it is the launcher: it runs
// launch() with the options in LAUNCH_TEST_OPTIONS (JSON) on its own command line, with itself as every rank's
// script, and exits with launch()'s code. With RANK it is a rank: it prints its environment as one JSON line on
// stdout and a line on stderr, then does what LAUNCH_TEST_ACTIONS (JSON: rank or "*" → action) says:
//   exit:N          exit with code N at once
//   exit-after:MS:N exit with code N after MS milliseconds
//   hang            ignore SIGINT and SIGTERM, print "ready" and never exit (a rank stuck in a collective)
//   save            print "ready"; print "got <signal>" for every SIGINT or SIGTERM, and 300 ms after the first
//                   print "saved <signal>" and exit 0
//   stuck           print "ready"; print "got <signal>" for every signal and never exit (needs the second Ctrl-C)
//   die:SIGNAL      kill itself with SIGNAL
//   watch           print "ready"; once its launcher is gone (watchLauncher), write a file named after the rank
//                   in LAUNCH_TEST_DIR and exit
//   blocked         watchLauncher as a rank does, print "ready", then block the JS thread for good (a rank stuck
//                   in a native call): only the watcher's own thread can end it
//   (none)          print "bye" without a newline and exit 0
import * as fs from 'node:fs';
import * as path from 'node:path';
import { watchLauncher } from '../../src/distributed/env';
import { launch, LaunchOptions } from '../../src/distributed/launch';
import { UserError } from '../../src/errors';

const KEYS = ['RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'GROUP_RANK', 'MASTER_ADDR', 'MASTER_PORT'];
const MORE = ['OMP_NUM_THREADS', 'UV_THREADPOOL_SIZE', 'ALEXNET_LAUNCHER_PID'];

async function asLauncher(): Promise<void> {
  const options = JSON.parse(process.env.LAUNCH_TEST_OPTIONS ?? '{}') as Partial<LaunchOptions>;
  try {
    process.exitCode = await launch({ nproc: 1, ...options, argv: process.argv.slice(2), bin: __filename });
  } catch (e) {
    if (!(e instanceof UserError)) throw e;
    process.stderr.write(`${e.message}\n`);
    process.exitCode = 2;
  }
}

function asRank(): void {
  const rank = process.env.RANK!;
  const env = Object.fromEntries([...KEYS, ...MORE].map((k) => [k, process.env[k]]));
  process.stdout.write(
    `${JSON.stringify({ ...env, argv: process.argv.slice(2), pid: process.pid, ppid: process.ppid })}\n`,
  );
  process.stderr.write(`rank ${rank} writes to stderr\n`);
  const actions = JSON.parse(process.env.LAUNCH_TEST_ACTIONS ?? '{}') as Record<string, string>;
  const [what, a, b] = (actions[rank] ?? actions['*'] ?? '').split(':');
  const keepAlive = () => setInterval(() => {}, 1000);
  if (what === 'exit') process.exit(Number(a));
  else if (what === 'die') process.kill(process.pid, a as NodeJS.Signals);
  else if (what === 'exit-after') setTimeout(() => process.exit(Number(b)), Number(a));
  else if (what === 'hang') {
    process.on('SIGINT', () => {});
    process.on('SIGTERM', () => {});
    keepAlive();
    console.log('ready');
  } else if (what === 'save' || what === 'stuck') {
    const timer = keepAlive();
    let stopping = false;
    const onSignal = (s: NodeJS.Signals) => {
      console.log(`got ${s}`);
      if (what === 'stuck' || stopping) return;
      stopping = true;
      // As a rank finishing its step and saving: a second signal in this time would be seen.
      setTimeout(() => {
        console.log(`saved ${s}`);
        clearInterval(timer);
      }, 300);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    console.log('ready');
  } else if (what === 'watch') {
    keepAlive();
    watchLauncher(
      () => {
        fs.writeFileSync(path.join(process.env.LAUNCH_TEST_DIR!, `rank-${rank}`), String(process.ppid));
        process.exit(0);
      },
      { intervalMs: 50 },
    );
    console.log('ready');
  } else if (what === 'blocked') {
    process.on('SIGINT', () => {});
    process.on('SIGTERM', () => {});
    watchLauncher(() => process.exit(1), { intervalMs: 50, killAfterMs: 500 });
    console.log('ready');
    // Once stdout has taken the line: then nothing on this thread runs again.
    setTimeout(() => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0), 100);
  } else process.stdout.write('bye');
}

if (process.env.RANK === undefined) void asLauncher();
else asRank();
