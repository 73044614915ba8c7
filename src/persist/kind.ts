// Which format a weights file holds, from its first bytes: safetensors or torch.save (its zip format, or its legacy
// format: a row of pickles).
import * as fs from 'node:fs';
import { FormatError } from '../errors';
import { isZip } from '../io/zip';
import { openInputFile } from '../util/files';

export type WeightsKind = 'safetensors' | 'pth';

/** Which format `file` holds, from its first bytes. */
export function weightsKind(file: string, what = '--weights'): WeightsKind {
  const { fd } = openInputFile(file, what);
  let head = Buffer.alloc(9);
  try {
    head = head.subarray(0, fs.readSync(fd, head, 0, 9, 0));
  } finally {
    fs.closeSync(fd);
  }
  if (head.length >= 4 && isZip(head)) return 'pth';
  if (head.length === 9 && head[8] === 0x7b /* '{' */) return 'safetensors';
  if (head.length >= 2 && head[0] === 0x80 && head[1] <= 5) return 'pth';
  throw new FormatError(`${file} is neither a safetensors file nor a PyTorch (torch.save) checkpoint`);
}
