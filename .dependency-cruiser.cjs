// The import rules of alexnet-ts (checked by `npm run lint` over src/ and bench/): each layer imports only the
// layers below it, nothing has cycles, no command imports another, and only src/tensor (and nn/functional.ts)
// opens the native binding. The order is DESIGN.md's:
//   util → tensor → nn → models → io → data → persist → optim → runtime → train | infer → distributed → experiments
//   → serve → cli
const LAYERS = [
  ['util'],
  ['tensor'],
  ['nn'],
  ['models'],
  ['io'],
  ['data'],
  ['persist'],
  ['optim'],
  ['runtime'],
  ['train', 'infer'],
  ['distributed'],
  ['experiments'],
  ['serve'],
  ['cli'],
];

const upward = LAYERS.flatMap((group, i) => {
  const above = LAYERS.slice(i + 1).flat();
  // Layers of the same rank (train and infer) do not import each other either.
  const siblings = group.length > 1 ? group : [];
  return group.map((name) => ({
    name: `${name}-imports-upward`,
    comment: `src/${name} may import only the layers below it (${LAYERS.slice(0, i).flat().join(', ') || 'none'}) and src/errors.ts`,
    severity: 'error',
    from: { path: `^src/${name}/` },
    to: { path: `^src/(${[...above, ...siblings.filter((s) => s !== name)].join('|')})/|^src/index\\.ts$` },
  }));
});

module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'no import cycles', from: {}, to: { circular: true } },
    ...upward,
    {
      name: 'no-command-imports-another',
      comment: 'a CLI command file imports the shared cli helpers (options, format), never another command',
      severity: 'error',
      from: { path: '^src/cli/', pathNot: '^src/cli/main\\.ts$' },
      to: { path: '^src/cli/', pathNot: '^src/cli/(options|format)\\.ts$' },
    },
    {
      name: 'only-tensor-opens-the-binding',
      comment:
        "src/tensor/binding.ts is the addon's one door: only src/tensor/* and nn's functional layer " +
        '(src/nn/functional.ts) import it; everything else, bench/ included, calls their typed wrappers',
      severity: 'error',
      from: { path: '^(src|bench)/', pathNot: '^src/tensor/|^src/nn/functional\\.ts$' },
      to: { path: '^src/tensor/binding\\.ts$' },
    },
    {
      name: 'io-reads-layer-specs-only',
      comment:
        'src/io (file formats) is given layer specs (the types in src/nn/spec.ts), never a layer class or a model',
      severity: 'error',
      from: { path: '^src/io/' },
      to: { path: '^src/(nn|models)/', pathNot: '^src/nn/spec\\.ts$' },
    },
    {
      name: 'tests-and-benches-stay-out-of-src',
      severity: 'error',
      from: { path: '^src/' },
      to: { path: '^(test|bench)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|build|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
