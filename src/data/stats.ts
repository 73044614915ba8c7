// Channel statistics of an image data set, on [0, 1] pixels: mean, standard deviation, and the RGB covariance's
// eigen-decomposition for the paper's PCA colour augmentation. Each image counts with all its pixels after being
// shrunk (if needed) so that its short side is at most 256, as the training crops see it.
import { UserError } from '../errors';
import { readInputFile } from '../util/files';
import { tensor, Tensor, tidy, zeros } from '../tensor/tensor';
import { ImageError, imageSize, renderPlan } from './image';
import { Problem } from './image-folder';

export interface ImageStats {
  images: number;
  pixels: number;
  mean: number[];
  std: number[];
  /** RGB covariance (3×3; 1×1 for grayscale), population form. */
  covariance: number[][];
  /** Its eigenvalues, descending, and unit eigenvectors as columns (eigvec[row][column]). */
  eigval: number[];
  eigvec: number[][];
}

/** Eigen-decomposition of a symmetric matrix by cyclic Jacobi rotations: eigenvalues descending, vectors as columns. */
export function symmetricEigen(m: number[][]): { values: number[]; vectors: number[][] } {
  const n = m.length;
  const a = m.map((r) => r.slice());
  const v: number[][] = Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += a[p][q] * a[p][q];
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        if (Math.abs(a[p][q]) < 1e-300) continue;
        const theta = (a[q][q] - a[p][p]) / (2 * a[p][q]);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = a[k][p];
          const akq = a[k][q];
          a[k][p] = c * akp - s * akq;
          a[k][q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = a[p][k];
          const aqk = a[q][k];
          a[p][k] = c * apk - s * aqk;
          a[q][k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = a.map((_, i) => i).sort((i, j) => a[j][j] - a[i][i]);
  return { values: order.map((i) => a[i][i]), vectors: v.map((row) => order.map((i) => row[i])) };
}

/** Mean, std, covariance and its eigen-decomposition from per-channel sums (Σx, Σxxᵀ) over `pixels` pixels. */
export function statsFromSums(sum: number[], outer: number[][], pixels: number, images: number): ImageStats {
  const c = sum.length;
  const mean = sum.map((s) => s / pixels);
  const covariance = Array.from({ length: c }, (_, i) =>
    Array.from({ length: c }, (_, j) => outer[i][j] / pixels - mean[i] * mean[j]),
  );
  const { values, vectors } = symmetricEigen(covariance);
  return {
    images,
    pixels,
    mean,
    std: covariance.map((r, i) => Math.sqrt(Math.max(0, r[i]))),
    covariance,
    eigval: values,
    eigvec: vectors,
  };
}

/** Computes the statistics of `files` (RGB unless channels is 1). Unreadable images are reported and left out. */
export async function computeStats(
  files: string[],
  o: {
    channels?: number;
    maxShortSide?: number;
    onProblem?: (p: Problem) => void;
    onProgress?: (done: number) => void;
    strict?: boolean;
  } = {},
): Promise<ImageStats> {
  const channels = o.channels ?? 3;
  const maxShort = o.maxShortSide ?? 256;
  let sum = zeros([channels], { dtype: 'float64' });
  let outer = zeros([channels, channels], { dtype: 'float64' });
  let pixels = 0;
  let images = 0;
  let done = 0;
  let next = 0;
  const add = (px: Buffer) => {
    const n = px.length / channels;
    const [s, m] = tidy(() => {
      const x = tensor(px, [n, channels], 'uint8').to('float64').div(255);
      return [sum.add(x.sum(0)), outer.add(x.transpose(0, 1).matmul(x))] as [Tensor, Tensor];
    });
    sum.dispose();
    outer.dispose();
    [sum, outer] = [s, m];
    pixels += n;
    images++;
  };
  const lane = async () => {
    while (next < files.length) {
      const file = files[next++];
      try {
        // The whole image, shrunk when its short side is over the limit: one plan for the decoder training uses.
        const size = await imageSize(file);
        const scale = Math.min(1, maxShort / Math.min(size.width, size.height));
        const w = Math.round(size.width * scale);
        const h = Math.round(size.height * scale);
        add(
          await renderPlan(
            file,
            { resizeW: w, resizeH: h, outW: w, outH: h, crops: [{ left: 0, top: 0, width: w, height: h }] },
            channels,
            size,
          ),
        );
      } catch (e) {
        const reason = e instanceof ImageError ? e.reason : String((e as Error).message);
        if (o.strict) throw new UserError(`${file}: ${reason}`);
        o.onProblem?.({ file, reason });
      }
      o.onProgress?.(++done);
    }
  };
  try {
    await Promise.all(Array.from({ length: 4 }, lane));
    if (!images) throw new UserError('no readable images to compute statistics from');
    const s = sum.toArray();
    const m = outer.toArray();
    return statsFromSums(
      s,
      Array.from({ length: channels }, (_, i) => m.slice(i * channels, (i + 1) * channels)),
      pixels,
      images,
    );
  } finally {
    sum.dispose();
    outer.dispose();
  }
}

/** Reads a statistics file written by `alexnet stats` (JSON). */
export function readStats(file: string): ImageStats {
  const text = readInputFile(file, '--stats').toString('utf8');
  let s: ImageStats;
  try {
    s = JSON.parse(text) as ImageStats;
  } catch (e) {
    throw new UserError(
      `cannot read statistics from ${file} (${(e as Error).message}); write it with: alexnet stats --dataset folder:PATH --out ${file}`,
    );
  }
  const ok = (a: unknown, n: number) => Array.isArray(a) && a.length === n && a.every((x) => Number.isFinite(x));
  const c = s.mean?.length;
  if (
    !(c === 1 || c === 3) ||
    !ok(s.mean, c) ||
    !ok(s.std, c) ||
    !ok(s.eigval, c) ||
    !Array.isArray(s.eigvec) ||
    !s.eigvec.every((r) => ok(r, c))
  ) {
    throw new UserError(`${file} is not a statistics file from 'alexnet stats' (needs mean, std, eigval and eigvec)`);
  }
  return s;
}
