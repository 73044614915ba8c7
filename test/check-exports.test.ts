// scripts/check-exports.js (npm run lint's "exports" step): the addon's C++ export tables against binding.ts's
// Native interface, on this tree and on small made-up sources with each kind of mismatch.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(__dirname, '..', '..');
const { checkExports } = require(path.join(ROOT, 'scripts', 'check-exports.js')) as {
  checkExports(o: { sources: Record<string, string>; binding: string }): string[];
};

test("this tree's native/*.cc export exactly what src/tensor/binding.ts declares", () => {
  const dir = path.join(ROOT, 'native');
  const sources = Object.fromEntries(
    fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.cc'))
      .map((f) => [f, fs.readFileSync(path.join(dir, f), 'utf8')]),
  );
  const binding = fs.readFileSync(path.join(ROOT, 'src', 'tensor', 'binding.ts'), 'utf8');
  assert.deepEqual(checkExports({ sources, binding }), []);
});

const CC = `
void RegisterA(Napi::Env env, Napi::Object exports) {
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  Export(env, exports, "always", Always);
  // Export(env, exports, "commentedOut", X);
  /* Export(env, exports, "alsoCommentedOut", X); */
}
#ifdef WITH_GRAPHS
void RegisterB(Napi::Env env, Napi::Object exports) {
  Export(env, exports, "graphBegin", Begin);
#if NESTED
  Export(env, exports, "nested", Nested);
#endif
}
#else
void RegisterB(Napi::Env env, Napi::Object exports) { exports.Set("graphsUnavailable", Napi::String::New(env, "no")); }
#endif
`;

test('matching declarations pass: conditional exports optional, unconditional ones required, comments ignored', () => {
  const binding = `export interface Native {
    abiVersion: number;
    always(): void;
    graphBegin?(): number;
    nested?(): void;
    graphsUnavailable?: string;
  }`;
  assert.deepEqual(checkExports({ sources: { 'a.cc': CC }, binding }), []);
});

test('each kind of mismatch is named: undeclared, never exported, optional where always there, required where not', () => {
  const binding = `export interface Native {
    abiVersion?: number;
    graphBegin(): number;
    nested?(): void;
    graphsUnavailable?: string;
    gone(): void;
  }`;
  assert.deepEqual(checkExports({ sources: { 'a.cc': CC }, binding }).sort(), [
    "abiVersion (a.cc) is always exported but declared optional in Native: drop the '?'",
    'always (a.cc) is exported but not declared in Native',
    'gone is declared in Native but no native/*.cc file exports it',
    "graphBegin (a.cc) is exported only under an #if but declared required in Native: add '?'",
  ]);
  assert.deepEqual(checkExports({ sources: {}, binding: 'export interface Other {}' }), [
    'src/tensor/binding.ts has no `interface Native`',
  ]);
});
