// src/util/files.ts against the real file system: atomic writes that fail cleanly (read-only, full, too large,
// killed), temporaries of dead runs cleaned, inputs that are not regular files refused without hanging.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import {
  appendLine,
  checkInputFile,
  cleanStaleTemps,
  describeFsError,
  HOST_TAG,
  openInputFile,
  parseTempName,
  readInputFile,
  tempPath,
  writeFileAtomic,
} from '../src/util/files';
import { bindReadOnly, mountSkip, mountTmpfs, unmountAll } from './helpers/mounts';
import { userError } from './helpers/errors';
import { stopDuringWrite } from './helpers/mid-write';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-files-'));
const FILES = path.resolve(__dirname, '..', 'src', 'util', 'files.js');
after(() => {
  unmountAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

const temps = (d: string) => fs.readdirSync(d).filter((n) => n.endsWith('.tmp'));
/** Runs `code` in a child node with `files` bound to src/util/files; returns its exit, output and whether it timed out. */
function child(code: string, o: { timeout?: number; uid?: number; shell?: string } = {}) {
  const js = `const files = require(${JSON.stringify(FILES)}); ${code}`;
  const r = o.shell
    ? spawnSync('bash', ['-c', `${o.shell}; exec "$0" -e "$1"`, process.execPath, js], {
        encoding: 'utf8',
        timeout: o.timeout ?? 20_000,
      })
    : spawnSync(process.execPath, ['-e', js], {
        encoding: 'utf8',
        timeout: o.timeout ?? 20_000,
        uid: o.uid,
        gid: o.uid,
      });
  return {
    code: r.status,
    stdout: r.stdout,
    stderr: r.stderr,
    timedOut: (r.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT',
  };
}

test('an atomic write replaces the file, keeps its mode and a symbolic link to it, and leaves no temporary', () => {
  const f = path.join(dir, 'plain', 'a.bin');
  writeFileAtomic(f, Buffer.from('one'));
  fs.chmodSync(f, 0o640);
  writeFileAtomic(f, [Buffer.from('tw'), Buffer.from('o')]);
  assert.equal(fs.readFileSync(f, 'utf8'), 'two');
  assert.equal(fs.statSync(f).mode & 0o777, 0o640);
  const link = path.join(dir, 'plain', 'link.bin');
  fs.symlinkSync(f, link);
  writeFileAtomic(link, (fd) => fs.writeSync(fd, 'three'));
  assert.ok(fs.lstatSync(link).isSymbolicLink(), 'the link is kept');
  assert.equal(fs.readFileSync(f, 'utf8'), 'three');
  assert.deepEqual(temps(path.dirname(f)), []);
});

test('temporary names carry the PID and host, and are recognised only for their own target', () => {
  const t = path.basename(tempPath('/x/model.safetensors', 4242));
  assert.match(t, /^\.model\.safetensors\.4242\.[0-9a-f]{8}\.[0-9a-f]{8}\.tmp$/);
  assert.deepEqual(parseTempName(t, 'model.safetensors'), { pid: 4242, host: HOST_TAG });
  assert.deepEqual(
    parseTempName('.model.safetensors.17.tmp', 'model.safetensors'),
    { pid: 17, host: HOST_TAG },
    'the older name',
  );
  assert.equal(parseTempName(t, 'model'), undefined);
  assert.equal(parseTempName('.model.safetensors.lock.17.aaaaaaaa.bb.tmp', 'model.safetensors'), undefined);
});

test('a writer that throws its own error gets it back unchanged and leaves no temporary', () => {
  const d = path.join(dir, 'throws');
  assert.throws(
    () =>
      writeFileAtomic(path.join(d, 'f'), () => {
        throw new RangeError('engine failed');
      }),
    RangeError,
  );
  assert.deepEqual(temps(d), []);
});

test(
  'writing into a read-only file system fails in one line naming the file and leaves nothing behind',
  { skip: mountSkip },
  () => {
    const ro = path.join(dir, 'ro-tmpfs');
    mountTmpfs(ro, 'ro,size=1m');
    assert.throws(
      () => writeFileAtomic(path.join(ro, 'x.safetensors'), Buffer.alloc(10), { what: '--save' }),
      userError(/^--save: cannot write .*ro-tmpfs\/x\.safetensors: read-only file system$/),
    );
    const bound = path.join(dir, 'ro-bind');
    fs.mkdirSync(bound);
    fs.writeFileSync(path.join(bound, 'old'), 'kept');
    bindReadOnly(bound);
    assert.throws(
      () => writeFileAtomic(path.join(bound, 'old'), Buffer.from('new')),
      userError(/cannot write .*old: read-only file system/),
    );
    assert.throws(
      () => writeFileAtomic(path.join(bound, 'sub', 'new'), Buffer.from('new')),
      userError(/cannot create .*sub: read-only file system/),
    );
    assert.equal(fs.readFileSync(path.join(bound, 'old'), 'utf8'), 'kept');
    assert.deepEqual(temps(bound), []);
  },
);

test(
  'a full disk mid-write says "no space left" with the bytes needed, keeps the old file and leaves no temporary',
  { skip: mountSkip },
  () => {
    const small = path.join(dir, 'small');
    mountTmpfs(small, 'size=64k');
    const f = path.join(small, 'ckpt');
    writeFileAtomic(f, Buffer.alloc(20_000, 1));
    assert.throws(
      () => writeFileAtomic(f, Buffer.alloc(200_000, 2), { what: '--save' }),
      userError(/^--save: cannot write .*ckpt: no space left on device \(needs 200 kB, \d+(\.\d+)? kB free\)$/),
    );
    assert.deepEqual(temps(small), []);
    assert.ok(fs.readFileSync(f).equals(Buffer.alloc(20_000, 1)), 'the previous file is intact');
    // An append that does not fit is cut back: no half record.
    const log = path.join(small, 'metrics.jsonl');
    appendLine(log, '{"epoch":1}');
    assert.throws(
      () => appendLine(log, 'x'.repeat(100_000), { what: '--metrics' }),
      userError(/^--metrics: cannot write .*metrics\.jsonl: no space left on device/),
    );
    assert.equal(fs.readFileSync(log, 'utf8'), '{"epoch":1}\n');
  },
);

test('a file-size limit hit mid-write (EFBIG) leaves no temporary and the old file intact', () => {
  const d = path.join(dir, 'fsize');
  fs.mkdirSync(d);
  const f = path.join(d, 'big');
  fs.writeFileSync(f, 'old');
  const r = child(
    `try { files.writeFileAtomic(${JSON.stringify(f)}, Buffer.alloc(1 << 20)); } catch (e) { console.log(e.constructor.name + ': ' + e.message); }`,
    { shell: 'ulimit -f 64' },
  );
  assert.match(r.stdout, /^UserError: cannot write .*big: file too large/);
  assert.deepEqual(temps(d), []);
  assert.equal(fs.readFileSync(f, 'utf8'), 'old');
});

test('a process killed in the middle of a write leaves the previous file intact; its temporary goes once it is dead', async () => {
  const d = path.join(dir, 'killed');
  fs.mkdirSync(d);
  const f = path.join(d, 'model.safetensors');
  fs.writeFileSync(f, 'previous');
  // The child's writer writes half and then waits forever: a slow disk, seen from outside.
  const c = spawn(
    process.execPath,
    [
      '-e',
      `require(${JSON.stringify(FILES)}).writeFileAtomic(${JSON.stringify(f)}, (fd) => {
    require('fs').writeSync(fd, Buffer.alloc(4096, 7)); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); })`,
    ],
    { stdio: 'ignore' },
  );
  const deadline = Date.now() + 20_000;
  while (!temps(d).some((n) => fs.statSync(path.join(d, n)).size > 0) && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 20));
  const [tmp] = temps(d);
  assert.ok(tmp, 'the write started');
  assert.deepEqual(cleanStaleTemps(d, 'model.safetensors'), [], "a live writer's temporary is kept");
  c.kill('SIGKILL');
  await new Promise((r) => c.on('exit', r));
  assert.equal(fs.readFileSync(f, 'utf8'), 'previous');
  assert.deepEqual(cleanStaleTemps(d, 'model.safetensors'), [path.join(d, tmp)]);
  assert.deepEqual(temps(d), []);
});

test('a real write caught by SIGSTOP as its temporary appears and then SIGKILLed leaves the previous file loadable', async () => {
  const d = path.join(dir, 'stopped');
  fs.mkdirSync(d);
  const f = path.join(d, 'big.bin');
  fs.writeFileSync(f, Buffer.alloc(1000, 9));
  // No hooks: the child writes 32 MB files in a loop; the helper stops it during one of them.
  const c = spawn(
    process.execPath,
    [
      '-e',
      `const w = require(${JSON.stringify(FILES)}).writeFileAtomic; const b = Buffer.alloc(32 << 20, 3);
    for (let i = 0; i < 50; i++) w(${JSON.stringify(f)}, b);`,
    ],
    { stdio: 'ignore' },
  );
  const tmp = await stopDuringWrite(c, d, 'big.bin', { timeoutMs: 60_000 });
  c.kill('SIGKILL');
  await new Promise((r) => c.on('exit', r));
  const size = fs.statSync(f).size;
  assert.ok(size === 1000 || size === 32 << 20, `the target is whole (${size} bytes)`);
  assert.deepEqual(cleanStaleTemps(d, 'big.bin'), [tmp]);
});

test("temporaries of live processes and other hosts' recent ones are kept; dead and old ones are removed", async () => {
  const d = path.join(dir, 'stale');
  fs.mkdirSync(d);
  const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 1e5)'], { stdio: 'ignore' });
  const dead = spawnSync(process.execPath, ['-e', '0']).pid;
  const f = path.join(d, 'x.safetensors');
  const mine = tempPath(f, live.pid!);
  const gone = tempPath(f, dead);
  const legacy = path.join(d, `.x.safetensors.${dead}.tmp`);
  const otherNew = path.join(d, `.x.safetensors.${dead}.0000beef.01.tmp`);
  const otherOld = path.join(d, `.x.safetensors.${dead}.0000beef.02.tmp`);
  const unrelated = tempPath(path.join(d, 'y.safetensors'), dead);
  for (const p of [mine, gone, legacy, otherNew, otherOld, unrelated]) fs.writeFileSync(p, 'partial');
  const old = new Date(Date.now() - 2 * 86_400_000);
  fs.utimesSync(otherOld, old, old);
  try {
    assert.deepEqual(cleanStaleTemps(d, 'x.safetensors').sort(), [gone, legacy, otherOld].sort());
    assert.deepEqual(fs.readdirSync(d).sort(), [mine, otherNew, unrelated].map((p) => path.basename(p)).sort());
  } finally {
    live.kill('SIGKILL');
  }
});

test('a directory or a FIFO as the target of a write is refused and left alone; a path under a regular file names the file', () => {
  const d = path.join(dir, 'targets');
  fs.mkdirSync(path.join(d, 'adir'), { recursive: true });
  assert.throws(
    () => writeFileAtomic(path.join(d, 'adir'), Buffer.from('x'), { what: '--out' }),
    userError(/^--out: cannot write .*adir: it is a directory, expected a regular file or a new name$/),
  );
  execFileSync('mkfifo', [path.join(d, 'fifo')]);
  assert.throws(
    () => writeFileAtomic(path.join(d, 'fifo'), Buffer.from('x')),
    userError(/fifo: it is a FIFO \(named pipe\)/),
  );
  assert.ok(fs.statSync(path.join(d, 'fifo')).isFIFO());
  fs.writeFileSync(path.join(d, 'plain'), '');
  assert.throws(
    () => writeFileAtomic(path.join(d, 'plain', 'sub', 'x'), Buffer.from('x')),
    userError(/cannot create .*plain\/sub: .*targets\/plain is a file, not a directory$/),
  );
  assert.deepEqual(temps(d), []);
});

test('inputs that are not regular files are refused in one line, a FIFO without hanging', () => {
  const d = path.join(dir, 'inputs');
  fs.mkdirSync(d);
  const fifo = path.join(d, 'weights.fifo');
  execFileSync('mkfifo', [fifo]);
  // In a child with a timeout: a blocking open of a FIFO with no writer would hang the test runner itself.
  for (const call of ['checkInputFile', 'openInputFile', 'readInputFile']) {
    const r = child(
      `try { files.${call}(${JSON.stringify(fifo)}, '--weights'); } catch (e) { console.log(e.message); }`,
      { timeout: 10_000 },
    );
    assert.equal(r.timedOut, false, `${call} hung on a FIFO`);
    assert.equal(r.stdout.trim(), `--weights: ${fifo} is a FIFO (named pipe), expected a regular file`);
  }
  assert.throws(
    () => checkInputFile('/dev/zero', '--resume'),
    userError(/^--resume: \/dev\/zero is a character device, expected a regular file$/),
  );
  assert.throws(() => readInputFile('/dev/zero', '--resume'), userError(/character device/));
  assert.throws(
    () => checkInputFile(d, '--weights'),
    userError(/^--weights: .*inputs is a directory, expected a regular file$/),
  );
  assert.throws(
    () => checkInputFile(path.join(d, 'none'), '--weights'),
    userError(/^--weights: cannot read .*none: no such file$/),
  );
  fs.symlinkSync(path.join(d, 'gone'), path.join(d, 'dangling'));
  assert.throws(
    () => checkInputFile(path.join(d, 'dangling')),
    userError(/^cannot read .*dangling: no such file \(it is a symbolic link to .*gone, which does not exist\)$/),
  );
  fs.writeFileSync(path.join(d, 'w'), 'abc');
  assert.equal(checkInputFile(path.join(d, 'w')).size, 3);
  assert.equal(readInputFile(path.join(d, 'w')).toString(), 'abc');
  assert.throws(
    () => readInputFile(path.join(d, 'w'), '--weights', { maxBytes: 2 }),
    userError(/is 3 bytes, more than the 2 bytes allowed/),
  );
  const { fd, stat } = openInputFile(path.join(d, 'w'));
  fs.closeSync(fd);
  assert.equal(stat.size, 3);
});

test(
  'an unreadable input says "permission denied" to a user who is not root',
  { skip: process.getuid?.() !== 0 ? 'needs root to switch to nobody' : false },
  () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'alexnet-perm-'));
    try {
      fs.chmodSync(d, 0o755);
      const f = path.join(d, 'secret.safetensors');
      fs.writeFileSync(f, 'x', { mode: 0o600 });
      const r = child(
        `try { files.checkInputFile(${JSON.stringify(f)}, '--weights'); } catch (e) { console.log(e.message); }
      try { files.writeFileAtomic(${JSON.stringify(path.join(d, 'out'))}, Buffer.from('x')); } catch (e) { console.log(e.message); }`,
        { uid: 65534 },
      );
      assert.equal(
        r.stdout,
        `--weights: cannot read ${f}: permission denied\ncannot write ${path.join(d, 'out')}: permission denied\n`,
        r.stderr,
      );
    } finally {
      fs.rmSync(d, { recursive: true, force: true });
    }
  },
);

test('file-system errors are described in words', () => {
  const err = (code: string, message = `${code}: something, open '/x'`) => Object.assign(new Error(message), { code });
  assert.equal(describeFsError(err('EROFS')), 'read-only file system');
  assert.equal(describeFsError(err('EACCES')), 'permission denied');
  assert.equal(describeFsError(err('EISDIR')), 'is a directory');
  assert.equal(describeFsError(err('ENOTDIR')), 'a parent in the path is not a directory');
  assert.equal(describeFsError(err('ENOSPC')), 'no space left on device');
  assert.equal(describeFsError(err('ENOSPC'), { needed: 370e6 }), 'no space left on device (needs 370 MB)');
  assert.equal(describeFsError(err('EWEIRD', "EWEIRD: odd thing happened, open '/x'")), 'odd thing happened');
});
