#!/usr/bin/env node
'use strict';
const path = require('node:path');
const fs = require('node:fs');
// sharp decodes images on libuv's threadpool (4 threads by default): one per core, before anything uses it.
if (!process.env.UV_THREADPOOL_SIZE)
  process.env.UV_THREADPOOL_SIZE = String(Math.max(4, require('node:os').cpus().length));
const entry = path.join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
if (!fs.existsSync(entry)) {
  console.error("alexnet: the TypeScript sources are not built: run 'npm run build' (or scripts/setup.sh) first");
  process.exit(2);
}
require(entry)
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
