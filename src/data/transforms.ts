// Image transforms for photo data sets, as geometry: where to resize, where to crop, whether to flip. The pixels
// are then produced by sharp (libvips) in the decode workers, and the colour work (PCA noise, normalisation) runs
// in the engine on whole batches. Every random choice comes from a per-image seed derived from (seed, epoch,
// image), so a batch is the same whichever worker made it, and a resumed run sees the same images.
import { UserError } from '../errors';
import { mulberry32 } from './sampler';

/** ImageNet's channel statistics on [0, 1] pixels (torchvision's Normalize values). */
export const IMAGENET_MEAN = [0.485, 0.456, 0.406];
export const IMAGENET_STD = [0.229, 0.224, 0.225];
/**
 * ImageNet's RGB covariance eigen-decomposition on [0, 1] pixels, as used for the paper's "fancy PCA" colour
 * augmentation by fb.resnet.torch and most re-implementations: eigenvalues (descending) and unit eigenvectors
 * as columns (EIGVEC[row][column]).
 */
export const IMAGENET_EIGVAL = [0.2175, 0.0188, 0.0045];
export const IMAGENET_EIGVEC = [
  [-0.5675, 0.7192, 0.4009],
  [-0.5808, -0.0045, -0.814],
  [-0.5836, -0.6948, 0.4203],
];

/** How training images are cropped: the paper's, torchvision's, or none (the evaluation crop). */
export type Augment = 'paper' | 'torchvision' | 'none';
export const AUGMENTS: Augment[] = ['paper', 'torchvision', 'none'];

export interface PhotoTransform {
  augment: Augment;
  /** Model input: crops are size×size. */
  size: number;
  /** The short side images are resized to before cropping (the paper: 256 for 224 crops). */
  shortSide: number;
  /** Horizontal flips with probability 1/2 in training. */
  flip: boolean;
  /** Standard deviation of the PCA colour noise's α (the paper: 0.1); 0 for none. */
  pcaStd: number;
  /** Eigenvalues and eigenvectors (columns) of the RGB covariance the noise follows. */
  eigval: number[];
  eigvec: number[][];
  mean: number[];
  std: number[];
  /** 3 (RGB) or 1 (grayscale). */
  channels: number;
}

/** The short side that keeps the paper's ratio of 256 to 224 (224 -> 256, 227 -> 259: the same 32-pixel margin). */
export function defaultShortSide(size: number): number {
  return Math.round((size * 8) / 7);
}

/** The paper's pipeline and torchvision's, as complete transforms for a model input size. */
export function presetTransform(augment: Augment, size: number, o: Partial<PhotoTransform> = {}): PhotoTransform {
  const t: PhotoTransform = {
    augment,
    size,
    shortSide: defaultShortSide(size),
    flip: augment !== 'none',
    pcaStd: augment === 'paper' ? 0.1 : 0,
    eigval: IMAGENET_EIGVAL,
    eigvec: IMAGENET_EIGVEC,
    mean: IMAGENET_MEAN,
    std: IMAGENET_STD,
    channels: 3,
  };
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (t as unknown as Record<string, unknown>)[k] = v;
  if (t.shortSide < t.size)
    throw new UserError(`the short side (${t.shortSide}) must be at least the crop size (${t.size})`);
  return t;
}

/**
 * What to do to one decoded image (after EXIF rotation), in order: resize the whole image to resizeW×resizeH,
 * cut out `crops` (each width×height at left, top), resize each cut to outW×outH when it differs. (Flips are
 * made in the engine, on the whole batch.)
 */
export interface Plan {
  resizeW: number;
  resizeH: number;
  crops: { left: number; top: number; width: number; height: number }[];
  outW: number;
  outH: number;
}

/** Seed of one image in one epoch: a hash of (seed, epoch, index), so results do not depend on who computes them. */
export function imageSeed(seed: number, epoch: number, index: number): number {
  let h =
    Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^
    Math.imul(epoch + 0x632be5ab, 0xc2b2ae35) ^
    Math.imul(index + 0x165667b1, 0x27d4eb2f);
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** torchvision's Resize(int): the short side becomes `shortSide`, the long side int(shortSide · long / short). */
function shortSideResize(w: number, h: number, shortSide: number): [number, number] {
  const long = Math.floor((shortSide * Math.max(w, h)) / Math.min(w, h));
  return w <= h ? [shortSide, long] : [long, shortSide];
}

/** Python's round(): halves go to the even neighbour (torchvision's centre-crop offsets use it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Uniform integer in [0, n) from a [0, 1) draw. */
const pick = (rand: () => number, n: number) => Math.min(n - 1, Math.floor(rand() * n));

/** Evaluation: resize the short side, take the centre size×size crop (torchvision's Resize + CenterCrop). */
export function planCenter(w: number, h: number, t: Pick<PhotoTransform, 'size' | 'shortSide'>): Plan {
  const [rw, rh] = shortSideResize(w, h, t.shortSide);
  return {
    resizeW: rw,
    resizeH: rh,
    outW: t.size,
    outH: t.size,
    crops: [
      { left: roundHalfEven((rw - t.size) / 2), top: roundHalfEven((rh - t.size) / 2), width: t.size, height: t.size },
    ],
  };
}

/**
 * Ten-crop testing (torchvision's TenCrop): the four corner crops and the centre crop (top-left, top-right,
 * bottom-left, bottom-right, centre), then the same five of the mirrored image. The mirrored image's corners are
 * the mirrored corners in swapped order; its centre crop is the mirror of the region just as far from the right
 * edge, which is a sixth crop when the margin is odd. So the plan has six crops: the five, and that region; the
 * engine mirrors and orders them. The paper takes the crops from the 256×256 centre square; torchvision from the
 * whole resized image.
 */
export function planTenCrop(w: number, h: number, t: Pick<PhotoTransform, 'size' | 'shortSide' | 'augment'>): Plan {
  const [rw, rh] = shortSideResize(w, h, t.shortSide);
  const s = t.size;
  // The region the crops come from.
  const [bw, bh] = t.augment === 'paper' ? [t.shortSide, t.shortSide] : [rw, rh];
  const bl = roundHalfEven((rw - bw) / 2);
  const bt = roundHalfEven((rh - bh) / 2);
  const at = (left: number, top: number) => ({ left: bl + left, top: bt + top, width: s, height: s });
  const cl = roundHalfEven((bw - s) / 2);
  const ct = roundHalfEven((bh - s) / 2);
  return {
    resizeW: rw,
    resizeH: rh,
    outW: s,
    outH: s,
    crops: [at(0, 0), at(bw - s, 0), at(0, bh - s), at(bw - s, bh - s), at(cl, ct), at(bw - s - cl, ct)],
  };
}

/** Where the mirrored image's five crops come from, as indices into planTenCrop's six (each is then mirrored). */
export const TEN_CROP_MIRRORED = [1, 0, 3, 2, 5];

/**
 * torchvision's RandomResizedCrop parameters (scale 0.08–1, aspect ratio 3/4–4/3, ten tries, then the centre
 * crop clamped to the ratio range): a region of the original w×h image.
 */
export function randomResizedCrop(
  w: number,
  h: number,
  rand: () => number,
  scale: [number, number] = [0.08, 1],
  ratio: [number, number] = [3 / 4, 4 / 3],
): Plan['crops'][0] {
  const area = w * h;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let i = 0; i < 10; i++) {
    const target = area * (scale[0] + rand() * (scale[1] - scale[0]));
    const aspect = Math.exp(logLo + rand() * (logHi - logLo));
    const cw = Math.round(Math.sqrt(target * aspect));
    const ch = Math.round(Math.sqrt(target / aspect));
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      return { top: pick(rand, h - ch + 1), left: pick(rand, w - cw + 1), width: cw, height: ch };
    }
  }
  const inRatio = w / h;
  let cw = w;
  let ch = h;
  if (inRatio < ratio[0]) ch = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) cw = Math.round(h * ratio[1]);
  return { top: Math.floor((h - ch) / 2), left: Math.floor((w - cw) / 2), width: cw, height: ch };
}

/** Training: one random crop of a w×h image (after EXIF rotation) as the transform's augmentation says. */
export function planTrain(w: number, h: number, t: PhotoTransform, seed: number): Plan {
  const rand = mulberry32(seed);
  if (t.augment === 'none') return planCenter(w, h, t);
  if (t.augment === 'paper') {
    // Resize the short side, keep the centre shortSide×shortSide square, take a random size×size crop of it.
    const [rw, rh] = shortSideResize(w, h, t.shortSide);
    const room = t.shortSide - t.size + 1;
    const left = roundHalfEven((rw - t.shortSide) / 2) + pick(rand, room);
    const top = roundHalfEven((rh - t.shortSide) / 2) + pick(rand, room);
    return {
      resizeW: rw,
      resizeH: rh,
      outW: t.size,
      outH: t.size,
      crops: [{ left, top, width: t.size, height: t.size }],
    };
  }
  return { resizeW: w, resizeH: h, outW: t.size, outH: t.size, crops: [randomResizedCrop(w, h, rand)] };
}

/** Whether training flips this image: its own stream, so it is known without the image's size. */
export function trainFlip(seed: number, t: Pick<PhotoTransform, 'flip' | 'augment'>): boolean {
  return t.flip && t.augment !== 'none' && mulberry32(seed ^ 0x27d4eb2f)() < 0.5;
}

/** Three N(0, std²) draws for one image's PCA noise, from its own stream (independent of the crop's). */
export function pcaAlphas(seed: number, std: number): [number, number, number] {
  const rand = mulberry32(seed ^ 0x5bd1e995);
  const normal = () => {
    const u = 1 - rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rand());
  };
  return [normal() * std, normal() * std, normal() * std];
}

/** The paper's colour shift for one image: Σ_i p_i α_i λ_i, added to every RGB pixel. */
export function pcaShift(alphas: number[], eigval: number[], eigvec: number[][]): [number, number, number] {
  const out: [number, number, number] = [0, 0, 0];
  for (let r = 0; r < 3; r++) for (let i = 0; i < 3; i++) out[r] += eigvec[r][i] * alphas[i] * eigval[i];
  return out;
}

/**
 * The to-float step and normalisation of one image as one multiply and one add per channel: pixel v (0–255) becomes
 * v · scale[c] + bias[c] = (v/255 + shift[c] − mean[c]) / std[c], with scale = 1/(255·std) and bias = (shift −
 * mean)/std, both rounded to float32 as the engine holds them. Empty mean/std: none (0 and 1); no shift: 0.
 */
export function pixelAffine(
  mean: number[],
  std: number[],
  channels: number,
  shift?: number[],
): { scale: number[]; bias: number[] } {
  const m = mean.length ? mean : new Array<number>(channels).fill(0);
  const s = std.length ? std : new Array<number>(channels).fill(1);
  return {
    scale: s.map((v) => Math.fround(1 / (255 * v))),
    bias: s.map((v, c) => Math.fround(((shift?.[c] ?? 0) - m[c]) / v)),
  };
}

/** One training image's PCA colour shift (zero vector when the transform adds none). */
export function imageShift(t: PhotoTransform, seed: number): number[] | undefined {
  return t.pcaStd > 0 && t.channels === 3 ? pcaShift(pcaAlphas(seed, t.pcaStd), t.eigval, t.eigvec) : undefined;
}
