// IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or raw: a magic number (two zero bytes, a type
// byte, the number of dimensions), the dimensions as big-endian uint32, then the data. Everything is validated
// before a byte of data is used; errors name the file and what is wrong.
import * as zlib from 'node:zlib';
import { FormatError } from '../errors';
import { readInputFile } from '../util/files';

export interface IdxArray {
  file: string;
  dims: number[];
  data: Uint8Array;
}

const UBYTE = 0x08;

export function readIdx(file: string): IdxArray {
  const raw = readInputFile(file);
  let buf = raw;
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      buf = zlib.gunzipSync(raw);
    } catch (e) {
      throw new FormatError(`${file} is a damaged gzip file (${(e as Error).message}); download or copy it again`);
    }
  }
  if (buf.length < 4) throw new FormatError(`${file} is not an IDX file: only ${buf.length} bytes`);
  if (buf[0] !== 0 || buf[1] !== 0) {
    throw new FormatError(
      `${file} is not an IDX file: wrong magic number 0x${buf.readUInt32BE(0).toString(16).padStart(8, '0')} (expected 0x00000801 for labels or 0x00000803 for images)`,
    );
  }
  if (buf[2] !== UBYTE)
    throw new FormatError(
      `${file}: IDX element type 0x${buf[2].toString(16)} is not supported (expected 0x08, unsigned bytes)`,
    );
  const ndim = buf[3];
  if (ndim < 1 || ndim > 4) throw new FormatError(`${file}: IDX header claims ${ndim} dimensions (expected 1 to 4)`);
  if (buf.length < 4 + 4 * ndim) throw new FormatError(`${file} is truncated inside its header`);
  const dims = Array.from({ length: ndim }, (_, i) => buf.readUInt32BE(4 + 4 * i));
  const expected = dims.reduce((a, b) => a * b, 1);
  const have = buf.length - 4 - 4 * ndim;
  if (have < expected)
    throw new FormatError(
      `${file} is truncated: its header announces ${dims.join('×')} = ${expected} bytes of data but only ${have} are there`,
    );
  if (have > expected)
    throw new FormatError(
      `${file} has ${have - expected} bytes of trailing data after the ${dims.join('×')} values its header announces`,
    );
  return { file, dims, data: new Uint8Array(buf.buffer, buf.byteOffset + 4 + 4 * ndim, expected) };
}

/** Reads an images file (N, H, W) and its labels file (N), checking that they belong together. */
export function readIdxPair(
  imagesFile: string,
  labelsFile: string,
  numClasses?: number,
): { images: IdxArray; labels: IdxArray } {
  const images = readIdx(imagesFile);
  const labels = readIdx(labelsFile);
  if (images.dims.length !== 3)
    throw new FormatError(`${imagesFile}: expected images of shape N×H×W, the header says ${images.dims.join('×')}`);
  if (labels.dims.length !== 1)
    throw new FormatError(`${labelsFile}: expected a vector of labels, the header says ${labels.dims.join('×')}`);
  if (images.dims[0] !== labels.dims[0]) {
    throw new FormatError(`${imagesFile} has ${images.dims[0]} images but ${labelsFile} has ${labels.dims[0]} labels`);
  }
  if (numClasses !== undefined) {
    let max = 0;
    for (const v of labels.data) if (v > max) max = v;
    if (max >= numClasses)
      throw new FormatError(`${labelsFile} contains label ${max}, but the data set has ${numClasses} classes`);
  }
  return { images, labels };
}
