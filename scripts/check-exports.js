#!/usr/bin/env node
// npm run lint's "exports" step: the addon's export tables (native/*.cc) against its typed surface (the `Native`
// interface in src/tensor/binding.ts), which is written by hand. Every name the C++ registers — `Export(env,
// exports, "name", Fn)` and `exports.Set("name", …)`, in every branch of every #if, stub branches included — must
// be a member of `Native`, and every member must be registered somewhere. A name registered only under a
// preprocessor condition (CUDA graphs, c10d, oneDNN) may be missing at run time, so its member must be optional
// (`name?:`); a name registered unconditionally must not be.
//
// Exported for test/check-exports.test.ts: checkExports({ sources: { 'x.cc': text }, binding: text }) -> problems.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

/** C++ text without comments (string literals kept: the export names are in them). */
function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*|"(?:\\.|[^"\\\n])*"/g, (m) => (m.startsWith('"') ? m : ' '));
}

/**
 * The names a C++ file registers: name -> whether some registration of it is outside every #if. Only literal
 * names count (common.cc's `exports.Set(name, …)` inside Export itself is the mechanism, not an export).
 */
function cppExports(text) {
  const found = new Map();
  let depth = 0;
  for (const line of stripComments(text).split('\n')) {
    const directive = line.match(/^\s*#\s*(if|ifdef|ifndef|endif)\b/);
    if (directive) depth += directive[1] === 'endif' ? -1 : 1;
    for (const m of line.matchAll(/\bExport\(\s*env\s*,\s*exports\s*,\s*"([^"]+)"|\bexports\.Set\(\s*"([^"]+)"/g)) {
      const name = m[1] ?? m[2];
      found.set(name, (found.get(name) ?? false) || depth === 0);
    }
  }
  return found;
}

/** The members of `interface Native` in binding.ts: name -> optional. */
function nativeMembers(bindingText) {
  const ts = require('typescript');
  const file = ts.createSourceFile('binding.ts', bindingText, ts.ScriptTarget.ES2022, true);
  const native = file.statements.find((s) => ts.isInterfaceDeclaration(s) && s.name.text === 'Native');
  if (!native) return undefined;
  const members = new Map();
  for (const m of native.members) {
    if (m.name && (ts.isIdentifier(m.name) || ts.isStringLiteral(m.name))) members.set(m.name.text, !!m.questionToken);
  }
  return members;
}

/** Every mismatch between the C++ export tables (`sources`: file name -> text) and binding.ts, one line each. */
function checkExports({ sources, binding }) {
  const exported = new Map(); // name -> { unconditional, files }
  for (const [file, text] of Object.entries(sources)) {
    for (const [name, unconditional] of cppExports(text)) {
      const e = exported.get(name) ?? { unconditional: false, files: [] };
      e.unconditional ||= unconditional;
      e.files.push(file);
      exported.set(name, e);
    }
  }
  const members = nativeMembers(binding);
  if (!members) return ['src/tensor/binding.ts has no `interface Native`'];
  const problems = [];
  for (const [name, e] of exported) {
    const where = e.files.join(', ');
    if (!members.has(name)) problems.push(`${name} (${where}) is exported but not declared in Native`);
    else if (e.unconditional && members.get(name))
      problems.push(`${name} (${where}) is always exported but declared optional in Native: drop the '?'`);
    else if (!e.unconditional && !members.get(name))
      problems.push(`${name} (${where}) is exported only under an #if but declared required in Native: add '?'`);
  }
  for (const name of members.keys()) {
    if (!exported.has(name)) problems.push(`${name} is declared in Native but no native/*.cc file exports it`);
  }
  return problems;
}

function main() {
  const root = path.resolve(__dirname, '..');
  const dir = path.join(root, 'native');
  const sources = {};
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.cc'))) {
    sources[`native/${f}`] = fs.readFileSync(path.join(dir, f), 'utf8');
  }
  const binding = fs.readFileSync(path.join(root, 'src', 'tensor', 'binding.ts'), 'utf8');
  const problems = checkExports({ sources, binding });
  for (const p of problems) console.error(`exports: ${p}`);
  if (problems.length) {
    console.error(`exports: ${problems.length} mismatch(es) between native/*.cc and src/tensor/binding.ts's Native`);
    process.exit(1);
  }
  console.log(`exports: ${cppExportCount(sources)} native exports match src/tensor/binding.ts`);
}

function cppExportCount(sources) {
  return new Set(Object.values(sources).flatMap((t) => [...cppExports(t).keys()])).size;
}

module.exports = { checkExports, cppExports, nativeMembers };
if (require.main === module) main();
