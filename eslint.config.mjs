// ESLint for the TypeScript sources, the scripts and the page (typescript-eslint's recommended rules; formatting is
// Prettier's job), and the project's size limits, stated here and nowhere else (DEVELOPERS.md points here).
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';

// Lines of one function in src/ and web/, blank lines and comments not counted, as Prettier prints the code (one
// property per line for long calls and object literals). A longer function says why in an eslint-disable comment.
const FUNCTION_LINES = 80;
// Lines of one source file (src/, web/, bench/, scripts/, bin/; tests aside), blank lines and comments not counted.
const FILE_LINES = 500;

// What web/*.js may use without defining it (no `globals` package here: the list is short and checked by no-undef).
const BROWSER_GLOBALS = [
  ...['window', 'document', 'globalThis', 'console', 'location', 'history', 'fetch', 'URL', 'atob', 'ImageData'],
  ...['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'],
];

export default tseslint.config(
  { ignores: ['dist/**', 'build/**', 'node_modules/**', '.node/**', 'runs/**', 'bench/results/**'] },
  ...tseslint.configs.recommended,
  prettier,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      // The addon and optional engines are loaded lazily with require (binding.ts, onnxruntime, sharp).
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
  {
    // The page: classic browser scripts (no modules, no build step), each wrapped in a function of its own; the
    // globals are the browser APIs they use and the scripts' own window.* names.
    files: ['web/**/*.js'],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: 'script',
      globals: Object.fromEntries(BROWSER_GLOBALS.map((g) => [g, 'readonly'])),
    },
    rules: {
      'no-undef': 'error',
    },
  },
  {
    files: ['src/**/*.ts', 'web/**/*.js'],
    rules: {
      'max-lines-per-function': ['error', { max: FUNCTION_LINES, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    files: ['src/**/*.ts', 'web/**/*.js', 'bench/**/*.ts', 'scripts/**/*.js', 'bin/**/*.js'],
    rules: {
      'max-lines': ['error', { max: FILE_LINES, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    // The file-size budget's exceptions. The Tensor class holds every op's method: one class, one file.
    files: ['src/tensor/tensor.ts'],
    rules: { 'max-lines': 'off' },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
      'max-len': [
        'error',
        { code: 120, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true, ignoreUrls: true },
      ],
    },
  },
  {
    // Type-checked, for the server only: a promise nobody awaits or catches is a failure nobody sees.
    files: ['src/serve/**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: { '@typescript-eslint/no-floating-promises': 'error' },
  },
);
