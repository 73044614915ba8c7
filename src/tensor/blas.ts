// Which BLAS libtorch will use on Debian: libtorch-dev links libblas.so.3, an alternative that defaults to the
// reference implementation (its fully connected layers run ~25× slower than OpenBLAS's).
import * as fs from 'node:fs';

export function blasImplementation(): { path: string; reference: boolean } | undefined {
  for (const p of [
    '/usr/lib/x86_64-linux-gnu/libblas.so.3',
    '/usr/lib/aarch64-linux-gnu/libblas.so.3',
    '/usr/lib/libblas.so.3',
  ]) {
    try {
      const real = fs.realpathSync(p);
      return { path: real, reference: /\/blas\/libblas\.so/.test(real) };
    } catch {
      /* not this one */
    }
  }
  return undefined;
}

export function blasWarning(): string | undefined {
  const b = blasImplementation();
  if (b?.reference) {
    return `warning: libtorch is using the reference BLAS (${b.path}): fully connected layers run ~25× slower. Install OpenBLAS: apt-get install libopenblas0-pthread`;
  }
  return undefined;
}
