// TorchServe's inference API as its documentation (pytorch/serve docs/inference_api.md, and the MMS/DJL pages it
// grew from) uses it: the curl lines run as written — real curl, a real `alexnet serve` process — with only the
// host, port, model name and version put in. Each answer must be the top 5 that /v1/predict gives for the same file.
import assert from 'node:assert/strict';
import { ChildProcess, execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { BIN, cli, TINY_TRAIN } from './helpers/cli';

const CURL = ['/usr/bin/curl', '/bin/curl'].find((f) => fs.existsSync(f));
const skip = CURL ? false : 'curl is not installed (scripts/setup.sh --test installs it)';

let dir = '';
let child: ChildProcess | undefined;
let base = '';

before(async () => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'torchserve-test-'));
  const ckpt = path.join(dir, 'ckpt.safetensors');
  const r = cli([...TINY_TRAIN, '--save', ckpt]);
  assert.equal(r.code, 0, r.stderr);
  // The documentation's file names: a JPEG (a light garment-like shape, as Fashion-MNIST's images) and a PNG.
  const svg = Buffer.from(
    '<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28"><rect width="28" height="28"/>' +
      '<path d="M8 4h12l5 6-4 2v14H7V12l-4-2z" fill="#ddd"/></svg>',
  );
  await sharp(svg).jpeg().toFile(path.join(dir, 'kitten_small.jpg'));
  fs.copyFileSync(path.join(dir, 'kitten_small.jpg'), path.join(dir, 'kitten.jpg'));
  await sharp(svg).png().toFile(path.join(dir, '0.png'));
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'not an image at all\n');
  child = spawn(process.execPath, [BIN, 'serve', '--weights', ckpt, '--port', '0', '--threads', '1'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  base = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    child!.stdout!.on('data', (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) resolve(m[1]);
    });
    child!.stderr!.on('data', (d) => (err += d));
    child!.on('exit', (code) => reject(new Error(`alexnet serve exited ${code}: ${err}`)));
  });
});

after(() => {
  child?.kill('SIGKILL');
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A documented command line run by the shell in the folder of the files, as a user types it. */
function sh(line: string): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('/bin/sh', ['-c', line], { cwd: dir }, (e, out, err) =>
      e ? reject(new Error(`${line}: ${e.message} ${err}`)) : resolve(out),
    ),
  );
}

/** What /v1/predict answers for a file, as TorchServe's {label: probability} of the top 5. */
async function expected(file: string): Promise<Record<string, number>> {
  const r = await fetch(`${base}/v1/predict?k=5`, {
    method: 'POST',
    body: fs.readFileSync(path.join(dir, file)),
    headers: { 'content-type': 'application/octet-stream' },
  });
  assert.equal(r.status, 200);
  const top = ((await r.json()) as { top: { label: string; prob: number }[] }).top;
  return Object.fromEntries(top.map((t) => [t.label, t.prob]));
}

test("TorchServe's documented curl lines: -T (PUT), -F data=@ (multipart), a version, POST -T", { skip }, async () => {
  const want = await expected('kitten_small.jpg');
  assert.equal(Object.keys(want).length, 5);
  const m = `${base}/predictions/alexnet-d2l`;
  for (const line of [
    // pytorch/serve docs/inference_api.md
    `curl ${m} -T kitten_small.jpg`,
    `curl ${m} -F "data=@kitten_small.jpg"`,
    `curl ${m}/1.0 -T kitten_small.jpg`,
    `curl ${m}/1.0 -F "data=@kitten_small.jpg"`,
    // the Multi Model Server's and DJL Serving's pages of the same API
    `curl -X POST ${m} -T kitten.jpg`,
    `curl -X POST ${m} -F "data=@kitten.jpg"`,
    // TorchServe's handlers read the field 'body' too; the model may be named "alexnet"
    `curl ${base}/predictions/alexnet -F "body=@kitten.jpg"`,
  ]) {
    const answer = JSON.parse(await sh(line));
    assert.deepEqual(answer, want, line);
  }
  const png = await expected('0.png');
  assert.deepEqual(JSON.parse(await sh(`curl ${m} -T 0.png`)), png);
});

test('a body whose Content-Type is missing or generic is judged by its bytes', { skip }, async () => {
  const want = await expected('kitten.jpg');
  const m = `${base}/predictions/alexnet-d2l`;
  for (const line of [
    `curl ${m} --data-binary @kitten.jpg`, // application/x-www-form-urlencoded
    `curl ${m} -H "Content-Type: text/plain" --data-binary @kitten.jpg`,
    `curl ${m} -H "Content-Type: application/octet-stream" --data-binary @kitten.jpg`,
    `curl ${m} -H "Content-Type:" --data-binary @kitten.jpg`, // no Content-Type at all
    `curl ${m} -H "Content-Type: image/png" --data-binary @kitten.jpg`, // a wrong image type: the bytes decide
  ])
    assert.deepEqual(JSON.parse(await sh(line)), want, line);
  // Bytes that are no image, under a generic type or none, are still refused by the allow-list; so is an unknown
  // version; and an empty body says so.
  const status = (line: string) => sh(`${line} -s -o answer.json -w '%{http_code}'`);
  const answer = () => JSON.parse(fs.readFileSync(path.join(dir, 'answer.json'), 'utf8'));
  for (const [line, code, error] of [
    [`curl ${m} --data-binary @notes.txt`, 'unsupported_format', /got text/],
    [`curl ${m} -T notes.txt`, 'unsupported_format', /got text/],
    [`curl ${m}/2.0 -T kitten.jpg`, 'unknown_model', /version 1\.0 of 'alexnet-d2l', not '2\.0'/],
    [`curl ${base}/predictions/resnet-18 -T kitten.jpg`, 'unknown_model', /not 'resnet-18'/],
    [`curl ${m} -F "data=somefield"`, 'missing_image', /as a file field/],
    [`curl -X POST ${m}`, 'empty_body', /no image/],
  ] as const) {
    const s = await status(line);
    assert.deepEqual(
      [answer().code, s],
      [code, code === 'unknown_model' ? '404' : code === 'unsupported_format' ? '415' : '400'],
      line,
    );
    assert.match(answer().error, error, line);
  }
  // The server's own route keeps its contract: a generic text body is not an image upload there.
  assert.equal(await status(`curl ${base}/v1/predict -H "Content-Type: text/plain" --data-binary @kitten.jpg`), '415');
});
