// The rank environment (torchrun's variables and the launcher's flags) and the launcher itself, with real
// processes: test/helpers/launch-child.ts plays both the launcher and ranks that print their environment, fail,
// hang, or save on Ctrl-C.
import assert from 'node:assert/strict';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  DistEnv,
  DistFlags,
  distRole,
  ignoredOutputs,
  rankBanner,
  readDistEnv,
  settingsDifference,
} from '../src/distributed/env';
import {
  checkCapacity,
  freePort,
  launcherExitCode,
  planLaunch,
  rankBytes,
  stripLauncherFlags,
  threadsPerRank,
} from '../src/distributed/launch';
import { UserError } from '../src/errors';
import { BIN, TINY_TRAIN } from './helpers/cli';

const CHILD = path.join(__dirname, 'helpers', 'launch-child.js');

const TORCHRUN = {
  MASTER_ADDR: '10.0.0.7',
  MASTER_PORT: '29500',
  RANK: '5',
  WORLD_SIZE: '8',
  LOCAL_RANK: '1',
  LOCAL_WORLD_SIZE: '4',
};

test("torchrun's environment gives each rank its place; flags override the master", () => {
  const expected: DistEnv = {
    rank: 5,
    worldSize: 8,
    localRank: 1,
    localWorldSize: 4,
    nodeRank: 1,
    nnodes: 2,
    masterAddr: '10.0.0.7',
    masterPort: 29500,
  };
  assert.deepEqual(readDistEnv({}, TORCHRUN), expected);
  assert.deepEqual(distRole({}, TORCHRUN), { kind: 'rank', env: expected });
  const flags = { masterAddr: 'node0.example', masterPort: 1234 };
  assert.deepEqual(readDistEnv(flags, TORCHRUN), { ...expected, masterAddr: 'node0.example', masterPort: 1234 });
  // Without LOCAL_*: one machine, or the ranks spread evenly over --nnodes machines.
  const plain = { MASTER_ADDR: '::1', MASTER_PORT: '7', RANK: '3', WORLD_SIZE: '4' };
  assert.deepEqual(readDistEnv({}, plain), {
    ...{ rank: 3, worldSize: 4, localRank: 3, localWorldSize: 4, nodeRank: 0, nnodes: 1 },
    ...{ masterAddr: '::1', masterPort: 7 },
  });
  assert.deepEqual(readDistEnv({ nnodes: 2 }, { ...plain, MASTER_ADDR: '[fe80::1%eth0]' }), {
    ...{ rank: 3, worldSize: 4, localRank: 1, localWorldSize: 2, nodeRank: 1, nnodes: 2 },
    ...{ masterAddr: 'fe80::1%eth0', masterPort: 7 },
  });
  assert.equal(readDistEnv({}, {}), undefined);
  assert.deepEqual(distRole({}, {}), { kind: 'single' });
});

test('the launcher role: --nproc with its node, master from the flags or the environment', () => {
  assert.deepEqual(distRole({ nproc: 2 }, {}), {
    ...{ kind: 'launcher', nproc: 2, nnodes: 1, nodeRank: 0 },
    ...{ masterAddr: undefined, masterPort: undefined },
  });
  assert.deepEqual(distRole({ nproc: 4, nnodes: 2, nodeRank: 1, masterAddr: 'n0' }, { MASTER_PORT: '6000' }), {
    ...{ kind: 'launcher', nproc: 4, nnodes: 2, nodeRank: 1 },
    ...{ masterAddr: 'n0', masterPort: 6000 },
  });
  // Several machines without a port: torchrun's 29500, the same on every node.
  assert.equal((distRole({ nproc: 1, nnodes: 2, masterAddr: 'n0' }, {}) as { masterPort: number }).masterPort, 29500);
});

test('a mistake in the rank environment or the flags is one line saying what was expected and received', () => {
  const base = { MASTER_ADDR: '127.0.0.1', MASTER_PORT: '29500', RANK: '0', WORLD_SIZE: '2' };
  const cases: [Record<string, string | undefined>, DistFlags, string][] = [
    [{ ...base, RANK: '2' }, {}, 'RANK must be less than WORLD_SIZE (2), got 2'],
    [{ ...base, WORLD_SIZE: undefined }, {}, 'RANK is set but WORLD_SIZE is not: a rank needs both'],
    [{ ...base, RANK: undefined }, {}, 'WORLD_SIZE is set but RANK is not: a rank needs both'],
    [{ LOCAL_RANK: '0' }, {}, 'LOCAL_RANK is set but RANK and WORLD_SIZE are not: a rank needs all of them'],
    [{ ...base, RANK: '-1' }, {}, "RANK must be an integer ≥ 0, got '-1'"],
    [{ ...base, RANK: '1.0' }, {}, "RANK must be an integer ≥ 0, got '1.0'"],
    [{ ...base, WORLD_SIZE: '0' }, {}, "WORLD_SIZE must be an integer ≥ 1, got '0'"],
    [{ ...base, WORLD_SIZE: 'two' }, {}, "WORLD_SIZE must be an integer ≥ 1, got 'two'"],
    [{ ...base, MASTER_PORT: '0' }, {}, "MASTER_PORT must be a port number from 1 to 65535, got '0'"],
    [{ ...base, MASTER_PORT: '65536' }, {}, "MASTER_PORT must be a port number from 1 to 65535, got '65536'"],
    [base, { masterPort: 70000 }, '--master-port must be a port number from 1 to 65535, got 70000'],
    [{ ...base, MASTER_PORT: undefined }, {}, 'MASTER_PORT is not set: every rank needs the port rank 0 listens on'],
    [{ ...base, MASTER_ADDR: undefined }, {}, 'MASTER_ADDR is not set: every rank needs the address of rank 0'],
    [{ ...base, MASTER_ADDR: 'a b' }, {}, "MASTER_ADDR must be a host name or an IP address, got 'a b'"],
    [
      { ...base, LOCAL_RANK: '2', LOCAL_WORLD_SIZE: '2' },
      {},
      'LOCAL_RANK must be less than LOCAL_WORLD_SIZE (2), got 2',
    ],
    [{ ...base, LOCAL_WORLD_SIZE: '3' }, {}, 'LOCAL_WORLD_SIZE must be at most WORLD_SIZE (2), got 3'],
    [{ ...base, WORLD_SIZE: '3' }, { nnodes: 2 }, 'WORLD_SIZE (3) must be a multiple of --nnodes (2)'],
    [base, { nodeRank: 1 }, '--node-rank must be less than the number of nodes (1), got 1'],
    [base, { nproc: 2 }, '--nproc starts ranks itself, but this process already is one (RANK=0 is set)'],
    [{}, { nproc: 0 }, '--nproc must be an integer ≥ 1, got 0'],
    [{}, { nproc: 2, nnodes: 2, nodeRank: 2 }, '--node-rank must be less than --nnodes (2), got 2'],
    [{}, { nproc: 2, nnodes: 2 }, '--nnodes 2 needs --master-addr (or MASTER_ADDR): the address of node 0'],
    [{}, { masterPort: 29500 }, '--master-port is for distributed runs: add --nproc N to start N ranks here'],
    [{}, { nnodes: 2 }, '--nnodes is for distributed runs'],
  ];
  for (const [env, flags, message] of cases) {
    assert.throws(
      () => distRole(flags, env),
      (e: unknown) => e instanceof UserError && e.message.startsWith(message) && !e.message.includes('\n'),
      `${JSON.stringify(env)} ${JSON.stringify(flags)}: expected '${message}'`,
    );
  }
});

test('each rank announces who it is, where, and where the master is', () => {
  const d = readDistEnv({}, { ...TORCHRUN, RANK: '1', LOCAL_RANK: '1', WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2' })!;
  assert.equal(
    rankBanner({ ...d, masterAddr: '127.0.0.1' }, { pid: 1234, host: 'box' }),
    'rank 1/2 (local 1/2, node 0/1) pid 1234 on box, master 127.0.0.1:29500',
  );
  assert.match(
    rankBanner({ ...d, masterAddr: '::1' }),
    new RegExp(`pid ${process.pid} on .+, master \\[::1\\]:29500$`),
  );
});

test("the launcher's flags are removed from the ranks' command line, and the cores are shared out", async () => {
  const argv = ['train', '--nproc', '2', '--nnodes=1', '--epochs', '3', '--node-rank', '0', '--master-port', '9'];
  assert.deepEqual(stripLauncherFlags([...argv, '--master-addr=h', '--', '--nproc']), [
    ...['train', '--epochs', '3', '--', '--nproc'],
  ]);
  assert.deepEqual([threadsPerRank(16, 3), threadsPerRank(2, 2), threadsPerRank(2, 4)], [5, 1, 1]);
  const plan = await planLaunch({ nproc: 2, argv, cores: 7, env: {}, bin: 'x.js', masterPort: 4000 });
  assert.deepEqual(plan.ranks[1].args, ['x.js', 'train', '--epochs', '3', '--threads', '3']);
  assert.equal(plan.threads, 3);
  const given = await planLaunch({ nproc: 2, argv: ['train', '--threads=5'], env: {}, bin: 'x.js', masterPort: 4000 });
  assert.deepEqual(
    [given.threads, given.ranks[0].args, given.ranks[0].env.OMP_NUM_THREADS],
    [5, ['x.js', 'train', '--threads=5'], '5'],
  );
  await assert.rejects(
    planLaunch({ nproc: 2, nnodes: 2, argv: [] }),
    (e: unknown) => e instanceof UserError && /needs --master-addr and --master-port/.test(e.message),
  );
});

test('a port found for the store is free to bind', async () => {
  const port = await freePort();
  assert.ok(port > 0 && port < 65536);
  const net = await import('node:net');
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, resolve));
  await new Promise((resolve) => server.close(resolve));
});

interface Launched {
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; ms: number }>;
  /** Resolves once `re` has matched `count` times in stdout. */
  waitFor(re: RegExp, count: number): Promise<void>;
}

/** Runs the launcher (launch-child.ts without RANK) in its own process. */
function startLauncher(argv: string[], options: object, actions: Record<string, string> = {}, env = {}): Launched {
  const t0 = Date.now();
  const proc = spawn(process.execPath, [CHILD, ...argv], {
    env: {
      ...process.env,
      LAUNCH_TEST_OPTIONS: JSON.stringify(options),
      LAUNCH_TEST_ACTIONS: JSON.stringify(actions),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, as a command in a terminal: Ctrl-C can then be sent the terminal's way.
    detached: true,
  });
  let out = '';
  let err = '';
  const waiters: (() => void)[] = [];
  proc.stdout!.on('data', (d) => {
    out += d;
    waiters.forEach((w) => w());
  });
  proc.stderr!.on('data', (d) => (err += d));
  // A test that goes wrong ends within 20 s, launcher and ranks killed, instead of hanging the suite.
  const deadline = setTimeout(() => {
    err += '\n[test] killed the launcher and its ranks after 20 s\n';
    proc.kill('SIGKILL');
    cleanUp(out);
  }, 20_000);
  const exit = new Promise<{ code: number | null; ms: number }>((resolve) =>
    proc.on('close', (code) => {
      clearTimeout(deadline);
      resolve({ code, ms: Date.now() - t0 });
    }),
  );
  const waitFor = (re: RegExp, count: number) =>
    new Promise<void>((resolve, reject) => {
      const check = () => (out.match(new RegExp(re, `${re.flags}g`)) ?? []).length >= count && resolve();
      waiters.push(check);
      check();
      void exit.then(() => reject(new Error(`launcher exited before ${count}× ${re}: ${out}\n${err}`)));
    });
  return { proc, stdout: () => out, stderr: () => err, exit, waitFor };
}

/** The ranks' JSON lines, by rank, with the prefix each was printed with. */
function rankLines(stdout: string): Map<number, { prefix: string; env: Record<string, unknown> }> {
  const ranks = new Map<number, { prefix: string; env: Record<string, unknown> }>();
  for (const line of stdout.split('\n')) {
    const m = /^(\[rank \d+\] )?(\{.*\})$/.exec(line);
    if (!m) continue;
    const env = JSON.parse(m[2]) as Record<string, unknown>;
    ranks.set(Number(env.RANK), { prefix: m[1] ?? '', env });
  }
  return ranks;
}

/** Kills whatever rank a failed test left behind (ranks are detached from the launcher's process group). */
function cleanUp(stdout: string): void {
  for (const { env } of rankLines(stdout).values()) {
    try {
      process.kill(env.pid as number, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
}

test('the launcher gives each rank its RANK, WORLD_SIZE, LOCAL_*, MASTER_* and share of the cores', async () => {
  // Rank 0 ends its output with a newline: its bytes go straight to the launcher's stdout, and another rank's
  // relayed line would continue a line it left open.
  const l = startLauncher(['train', '--nproc', '3', '--epochs', '1'], { nproc: 3, cores: 7 }, { 0: 'exit:0' });
  try {
    const { code } = await l.exit;
    assert.equal(code, 0, l.stderr());
    const ranks = rankLines(l.stdout());
    assert.deepEqual([...ranks.keys()].sort(), [0, 1, 2]);
    const port = ranks.get(0)!.env.MASTER_PORT as string;
    assert.ok(Number(port) >= 1 && Number(port) <= 65535);
    for (const [r, { prefix, env }] of ranks) {
      assert.equal(prefix, r === 0 ? '' : `[rank ${r}] `, 'rank 0 unchanged, the others prefixed');
      assert.deepEqual(
        [env.WORLD_SIZE, env.LOCAL_RANK, env.LOCAL_WORLD_SIZE, env.GROUP_RANK, env.MASTER_ADDR, env.MASTER_PORT],
        ['3', String(r), '3', '0', '127.0.0.1', port],
      );
      assert.equal(env.OMP_NUM_THREADS, '2');
      assert.deepEqual(env.argv, ['train', '--epochs', '1', '--threads', '2']);
      assert.equal(env.ppid, l.proc.pid);
      assert.equal(env.ALEXNET_LAUNCHER_PID, String(l.proc.pid));
    }
    // stderr: rank 0's unchanged, the others' prefixed; a last line without a newline is still relayed.
    assert.match(l.stderr(), /^rank 0 writes to stderr$/m);
    assert.match(l.stderr(), /^\[rank 2\] rank 2 writes to stderr$/m);
    assert.match(l.stdout(), /^\[rank 1\] bye$/m);
  } finally {
    cleanUp(l.stdout());
  }
});

test('--nnodes 2 --node-rank 1 offsets the ranks; a given --threads and master are kept', async () => {
  const argv = [
    'train',
    '--nproc',
    '2',
    '--nnodes',
    '2',
    '--node-rank=1',
    '--master-addr',
    '10.9.8.7',
    '--threads',
    '3',
  ];
  const l = startLauncher(argv, { nproc: 2, nnodes: 2, nodeRank: 1, masterAddr: '10.9.8.7', masterPort: 29555 });
  try {
    assert.equal((await l.exit).code, 0, l.stderr());
    const ranks = rankLines(l.stdout());
    assert.deepEqual([...ranks.keys()].sort(), [2, 3]);
    for (const [r, { prefix, env }] of ranks) {
      assert.equal(prefix, `[rank ${r}] `, 'no rank on node 1 is rank 0: all are prefixed');
      assert.deepEqual(
        [env.WORLD_SIZE, env.LOCAL_RANK, env.LOCAL_WORLD_SIZE, env.GROUP_RANK, env.MASTER_ADDR, env.MASTER_PORT],
        ['4', String(r - 2), '2', '1', '10.9.8.7', '29555'],
      );
      assert.deepEqual([env.argv, env.OMP_NUM_THREADS], [['train', '--threads', '3'], '3']);
    }
  } finally {
    cleanUp(l.stdout());
  }
});

test('a failing rank is named, the others stop by themselves in the grace period, the launcher exits 1', async () => {
  const o = { nproc: 3, graceMs: 20_000, oversubscribe: true };
  const l = startLauncher(['train'], o, { 1: 'exit:3', '*': 'exit-after:400:0' });
  try {
    const { code, ms } = await l.exit;
    assert.equal(code, 1, 'a documented exit code: 1, a rank failed');
    assert.ok(ms < 10_000, `${ms} ms: the others stopped by themselves, long before the grace period ended`);
    assert.match(l.stderr(), /^\[launcher\] rank 1 exited with code 3; the other ranks get 20 s to stop/m);
    assert.doesNotMatch(l.stderr(), /killing/);
  } finally {
    cleanUp(l.stdout());
  }
});

test('ranks that hang after another fails are killed when the grace period ends', async () => {
  const l = startLauncher(['train'], { nproc: 3, graceMs: 600, oversubscribe: true }, { 2: 'exit:4', '*': 'hang' });
  try {
    const { code, ms } = await l.exit;
    assert.equal(code, 1);
    assert.ok(ms >= 600 && ms < 8000, `${ms} ms`);
    assert.match(l.stderr(), /rank 2 exited with code 4; the other ranks get 0\.6 s to stop, then they are killed/);
    assert.match(l.stderr(), /^\[launcher\] killing ranks 0, 1$/m);
  } finally {
    cleanUp(l.stdout());
  }
});

test('a usage error (2) reaches the launcher’s exit code; a rank killed by a signal makes it 1, naming both', async () => {
  const usage = startLauncher(['train'], { nproc: 2 }, { '*': 'exit:2' });
  const died = startLauncher(['train'], { nproc: 2, graceMs: 5000 }, { 0: 'die:SIGABRT', '*': 'exit-after:300:0' });
  try {
    assert.equal((await usage.exit).code, 2);
    assert.match(usage.stderr(), /^\[launcher\] rank [01] exited with code 2/m);
    assert.equal((await died.exit).code, 1);
    assert.match(died.stderr(), /^\[launcher\] rank 0 was killed by SIGABRT; the other ranks get 5 s/m);
  } finally {
    cleanUp(usage.stdout());
    cleanUp(died.stdout());
  }
});

test('Ctrl-C and SIGTERM on the launcher reach every rank once; they save and the launcher exits 130', async () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    const l = startLauncher(['train'], { nproc: 3, oversubscribe: true }, { '*': 'save' });
    try {
      await l.waitFor(/ready$/m, 3);
      // Ctrl-C as a terminal sends it, to the launcher's whole process group; SIGTERM as kill sends it.
      if (signal === 'SIGINT') process.kill(-l.proc.pid!, signal);
      else l.proc.kill(signal);
      const { code } = await l.exit;
      assert.equal(code, 130, l.stderr());
      // Each rank saw the signal exactly once (a second would have been "quit without saving").
      assert.equal(l.stdout().match(new RegExp(`got ${signal}$`, 'gm'))?.length, 3, l.stdout());
      assert.equal(l.stdout().match(new RegExp(`saved ${signal}$`, 'gm'))?.length, 3, l.stdout());
      assert.match(l.stderr(), new RegExp(`^\\[launcher\\] ${signal}: every rank stops after its current step`, 'm'));
      assert.doesNotMatch(l.stderr(), /exited with code|killed/);
    } finally {
      cleanUp(l.stdout());
    }
  }
});

test('a second Ctrl-C kills ranks that are still stopping', async () => {
  const l = startLauncher(['train'], { nproc: 2 }, { '*': 'stuck' });
  try {
    await l.waitFor(/ready$/m, 2);
    l.proc.kill('SIGINT');
    await l.waitFor(/got SIGINT$/m, 2);
    l.proc.kill('SIGINT');
    const { code } = await l.exit;
    assert.equal(code, 130);
    assert.match(l.stderr(), /^\[launcher\] killing every rank$/m);
  } finally {
    cleanUp(l.stdout());
  }
});

test('ranks notice when their launcher is killed outright (watchLauncher)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-launch-'));
  const l = startLauncher(['train'], { nproc: 2 }, { '*': 'watch' }, { LAUNCH_TEST_DIR: dir });
  try {
    await l.waitFor(/ready$/m, 2);
    l.proc.kill('SIGKILL');
    await l.exit;
    const deadline = Date.now() + 5000;
    const seen = () => fs.readdirSync(dir).sort();
    while (seen().length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(seen(), ['rank-0', 'rank-1']);
  } finally {
    cleanUp(l.stdout());
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** Whether `pid` is a process still running (not gone, not a zombie left for init to reap). */
function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\S+ \(.*\) Z /.test(stat);
  } catch {
    return false;
  }
}

/** The processes whose parent is `pid`, from /proc (each /proc/N/stat: "N (comm) state ppid …"). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** Waits up to `ms` for every pid to stop running; resolves to those still running. */
async function gone(pids: number[], ms: number): Promise<number[]> {
  const deadline = Date.now() + ms;
  while (pids.some(running) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  return pids.filter(running);
}

test('--nproc is bounded by the cores and the free memory, with --oversubscribe to override; one line', () => {
  const refused = (o: Parameters<typeof checkCapacity>[0], re: RegExp) =>
    assert.throws(
      () => checkCapacity(o),
      (e: unknown) => e instanceof UserError && re.test(e.message) && !e.message.includes('\n'),
    );
  const GB = 2 ** 30;
  const machine = { cores: 2, freeBytes: 16 * GB, rankBytes: GB };
  refused(
    { nproc: 1000, ...machine },
    /^--nproc 1000 is more ranks than this machine runs side by side: its 2 cores and 16 GB of free memory \(about 1 GB a rank\) allow at most 2; give --nproc 2 or fewer, or add --oversubscribe to start them anyway$/,
  );
  // Memory binds before the cores: 8 cores, 3.5 GB free, 1 GB a rank.
  refused({ nproc: 4, cores: 8, freeBytes: 3.5 * GB, rankBytes: GB }, /allow at most 3; give --nproc 3 or fewer/);
  checkCapacity({ nproc: 2, ...machine });
  checkCapacity({ nproc: 1000, ...machine, oversubscribe: true });
  // One rank always may (a machine short of memory is the one-process run's to report).
  checkCapacity({ nproc: 1, cores: 1, freeBytes: 0, rankBytes: GB });
  // A model of 60 M parameters: 400 MB for the process, 16 bytes a parameter (weights, gradients, 2 states).
  assert.equal(rankBytes(60e6), 400 * 2 ** 20 + 960e6);
  assert.deepEqual(stripLauncherFlags(['train', '--oversubscribe', '--nproc', '4', '--epochs', '1']), [
    ...['train', '--epochs', '1'],
  ]);
});

test('the launcher exits with the documented codes only: 0, 1, 2, 130', () => {
  const cases: [number | null, NodeJS.Signals | null, number][] = [
    [0, null, 0],
    [2, null, 2],
    [130, null, 130],
    [3, null, 1],
    [137, null, 1],
    [null, 'SIGKILL', 1],
    [null, 'SIGSEGV', 1],
  ];
  for (const [code, signal, want] of cases) assert.equal(launcherExitCode(code, signal), want, `${code} ${signal}`);
});

test('alexnet train --nproc 1000 is refused at once (exit 2, one line) and starts no rank', () => {
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [BIN, ...TINY_TRAIN, '--nproc', '1000'], { encoding: 'utf8' });
  assert.equal(r.status, 2, r.stderr);
  assert.match(
    r.stderr,
    /^alexnet: error: --nproc 1000 is more ranks than this machine runs side by side: its \d+ cores? and .* allow at most \d+; give --nproc \d+ or fewer, or add --oversubscribe to start them anyway\n$/,
  );
  assert.doesNotMatch(r.stdout + r.stderr, /rank 0\//);
  assert.ok(Date.now() - t0 < 15_000);
});

test('SIGTERM to the launcher: ranks that do not stop are killed when the grace period ends; none is left', async () => {
  const l = startLauncher(['train'], { nproc: 2, graceMs: 800 }, { '*': 'hang' });
  try {
    await l.waitFor(/ready$/m, 2);
    const ranks = childrenOf(l.proc.pid!);
    assert.equal(ranks.length, 2, `the launcher's children: ${ranks.join(' ')}`);
    l.proc.kill('SIGTERM');
    const sent = Date.now();
    const { code } = await l.exit;
    assert.equal(code, 130, l.stderr());
    assert.ok(Date.now() - sent < 800 + 4000, `${Date.now() - sent} ms after SIGTERM`);
    assert.match(
      l.stderr(),
      /^\[launcher\] SIGTERM: every rank stops after its current step .*still running in 0\.8 s get SIGKILL\)$/m,
    );
    assert.match(l.stderr(), /^\[launcher\] killing ranks 0, 1$/m);
    assert.deepEqual(await gone(ranks, 1000), [], 'no rank is left running');
  } finally {
    cleanUp(l.stdout());
  }
});

test('SIGKILL to the launcher: ranks blocked in a native call still exit by themselves within seconds', async () => {
  const l = startLauncher(['train'], { nproc: 2 }, { '*': 'blocked' });
  try {
    await l.waitFor(/ready$/m, 2);
    const ranks = childrenOf(l.proc.pid!);
    assert.equal(ranks.length, 2);
    // Their JS threads are stuck: only the watcher's thread sees the launcher go.
    await new Promise((r) => setTimeout(r, 300));
    l.proc.kill('SIGKILL');
    await l.exit;
    assert.deepEqual(await gone(ranks, 5000), [], 'the ranks outlived their launcher');
  } finally {
    cleanUp(l.stdout());
  }
});

test('a rank killed by a signal: the launcher names it and its signal, stops the others, exits 1', async () => {
  const l = startLauncher(['train'], { nproc: 2, graceMs: 1000 }, { 1: 'die:SIGKILL', '*': 'hang' });
  try {
    const { code } = await l.exit;
    assert.equal(code, 1);
    assert.match(l.stderr(), /^\[launcher\] rank 1 was killed by SIGKILL; the other ranks get 1 s to stop/m);
    const pids = [...rankLines(l.stdout()).values()].map(({ env }) => env.pid as number);
    assert.equal(pids.length, 2);
    assert.deepEqual(await gone(pids, 1000), []);
  } finally {
    cleanUp(l.stdout());
  }
});

test('ranks that differ: each differing field as "field: value here, value on rank N", no JSON cut', () => {
  const settings = (lr: number, root: string) => ({
    model: 'alexnet-d2l',
    'model options': { widths: [16, 32, 32, 32, 32], dropout: 0 },
    'data set': 'fashion-mnist',
    folder: root ? { root, valSplit: 0.1 } : undefined,
    optimisation: { epochs: 1, lr, momentum: 0.9, schedule: { kind: 'constant' } },
    precision: 'fp32',
    resume: undefined,
  });
  const long = `/data/${'x'.repeat(120)}`;
  assert.equal(
    settingsDifference(settings(0.01, ''), settings(0.5, ''), 0, 1),
    'the ranks were started with different settings: rank 0 and rank 1 differ in optimisation — lr: 0.01 here, ' +
      '0.5 on rank 1 (every rank must run the same command on the same data)',
  );
  assert.equal(
    settingsDifference(settings(0.5, long), settings(0.5, ''), 1, 0),
    'the ranks were started with different settings: rank 1 and rank 0 differ in folder — ' +
      `root: ${long} here, not set on rank 0; valSplit: 0.1 here, not set on rank 0 ` +
      '(every rank must run the same command on the same data)',
  );
  // Names two settings share are told apart by their parent's; past `most`, a count.
  const a = { x: { n: 1 }, y: { n: 1 }, z: [1, 2], w: 'a b' };
  const b = { x: { n: 2 }, y: { n: 3 }, z: Array.from({ length: 30 }, (_, i) => i), w: ' a b' };
  assert.equal(
    settingsDifference(a, b, 0, 2, { most: 3 }),
    'the ranks were started with different settings: rank 0 and rank 2 differ in x, y, z, w — x.n: 1 here, 2 on ' +
      'rank 2; y.n: 1 here, 3 on rank 2; z: [1, 2] here, [0, 1, 2, 3, … (30 values)] on rank 2; and 1 more ' +
      '(every rank must run the same command on the same data)',
  );
});

test('a hand-started rank other than 0 says its --save and --metrics are ignored; a launched one does not', () => {
  const d = readDistEnv({}, { MASTER_ADDR: 'h', MASTER_PORT: '1', RANK: '1', WORLD_SIZE: '2' })!;
  assert.equal(
    ignoredOutputs(d, { save: 'a.safetensors', metrics: 'm.jsonl' }, {}),
    'rank 1: --save a.safetensors and --metrics m.jsonl are ignored here: only rank 0 writes files (give them to rank 0)',
  );
  assert.equal(
    ignoredOutputs(d, { save: 'a.safetensors' }, {}),
    'rank 1: --save a.safetensors is ignored here: only rank 0 writes files (give them to rank 0)',
  );
  assert.equal(ignoredOutputs(d, {}, {}), undefined);
  assert.equal(ignoredOutputs(d, { save: 'a' }, { ALEXNET_LAUNCHER_PID: '7' }), undefined);
  assert.equal(ignoredOutputs({ ...d, rank: 0 }, { save: 'a' }, {}), undefined);
});

test('a lone rank 0 (its peers never started) stops within its timeout: exit 2, one line', async () => {
  const port = await freePort();
  const env = { ...process.env, RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
  const args = [BIN, ...TINY_TRAIN, '--threads', '1', '--dist-timeout', '2'];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', env, timeout: 30_000 });
  assert.equal(r.status, 2, r.stderr);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('alexnet: error'));
  assert.deepEqual(errors, [
    `alexnet: error: not every rank reached the master at 127.0.0.1:${port} within 2 s (world size 2): start all 2 ranks with the same master address and port`,
  ]);
  // The time from the banner to the error is the timeout's, not twice it (the process group waited again).
  assert.doesNotMatch(r.stderr, /process group/);
});
