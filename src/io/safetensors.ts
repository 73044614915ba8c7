// safetensors: 8-byte little-endian header length N, N bytes of JSON ({name: {dtype, shape, data_offsets}}, plus
// an optional "__metadata__" of string values), then the raw little-endian tensor bytes. Readers validate every
// field before allocating anything, so a hostile file gets a clear error rather than a huge allocation.
import * as fs from 'node:fs';
import { FormatError, UserError } from '../errors';
import { tensorBytes, tensorFromBytes } from '../tensor/bytes';
import { DType, DTYPE_SIZE } from '../tensor/dtype';
import { Tensor } from '../tensor/tensor';
import { openInputFile, readInputFile, writeFileAtomic } from '../util/files';

const TO_ST: Record<DType, string> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  float64: 'F64',
  uint8: 'U8',
  int32: 'I32',
  int64: 'I64',
  bool: 'BOOL',
};
const FROM_ST: Record<string, DType> = Object.fromEntries(Object.entries(TO_ST).map(([k, v]) => [v, k as DType]));

/** Largest header accepted (the format's reference implementation uses the same 100 MB limit). */
export const MAX_HEADER_BYTES = 100_000_000;

export type Metadata = Record<string, string>;

export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Parses and validates the header of a safetensors buffer. `fileSize`: the buffer holds only the start of a file of
 * that size (a header read alone); offsets are checked against the whole file.
 */
export function parseHeader(
  buf: Buffer,
  name = 'safetensors data',
  fileSize = buf.length,
): { entries: Map<string, SafetensorsEntry>; metadata: Metadata; dataStart: number } {
  const bad = (why: string) => new FormatError(`${name} is not a valid safetensors file: ${why}`);
  if (buf.length < 8) throw bad(`it is only ${buf.length} bytes long`);
  const n = buf.readBigUInt64LE(0);
  if (n > BigInt(MAX_HEADER_BYTES))
    throw bad(`the header claims ${n} bytes, more than the ${MAX_HEADER_BYTES}-byte limit`);
  if (Number(n) > buf.length - 8)
    throw bad(`the header claims ${n} bytes but the file has only ${buf.length - 8} after the length`);
  let header: unknown;
  try {
    header = JSON.parse(buf.toString('utf8', 8, 8 + Number(n)));
  } catch (e) {
    throw bad(`the header is not JSON (${(e as Error).message})`);
  }
  if (!header || typeof header !== 'object' || Array.isArray(header)) throw bad('the header is not a JSON object');
  const dataStart = 8 + Number(n);
  const dataLen = fileSize - dataStart;
  const entries = new Map<string, SafetensorsEntry>();
  let metadata: Metadata = {};
  for (const [key, v] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (!v || typeof v !== 'object' || Object.values(v).some((x) => typeof x !== 'string'))
        throw bad('__metadata__ must map names to strings');
      metadata = v as Metadata;
      continue;
    }
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== 'object') throw bad(`entry '${key}' is not an object`);
    const dtype = FROM_ST[String(e.dtype)];
    if (!dtype)
      throw bad(
        `tensor '${key}' has unsupported dtype '${String(e.dtype)}' (supported: ${Object.keys(FROM_ST).join(', ')})`,
      );
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw bad(`tensor '${key}' has an invalid shape`);
    const off = e.data_offsets;
    if (
      !Array.isArray(off) ||
      off.length !== 2 ||
      off.some((d) => !Number.isSafeInteger(d) || d < 0) ||
      off[0] > off[1]
    ) {
      throw bad(`tensor '${key}' has invalid data_offsets`);
    }
    const [begin, end] = off as [number, number];
    if (end > dataLen)
      throw bad(`tensor '${key}' runs past the end of the file (bytes ${begin}..${end} of ${dataLen})`);
    const numel = (e.shape as number[]).reduce((a, b) => a * b, 1);
    if (numel * DTYPE_SIZE[dtype] !== end - begin) {
      throw bad(
        `tensor '${key}' has ${end - begin} bytes but its shape [${(e.shape as number[]).join(', ')}] and dtype ${e.dtype} need ${numel * DTYPE_SIZE[dtype]}`,
      );
    }
    entries.set(key, { dtype, shape: e.shape as number[], begin, end });
  }
  // Tensors must not overlap (the format also requires them to cover the data without holes).
  const spans = [...entries].sort((a, b) => a[1].begin - b[1].begin || a[1].end - b[1].end);
  for (let i = 1; i < spans.length; i++) {
    const [pk, p] = spans[i - 1];
    const [ck, c] = spans[i];
    if (c.begin < p.end) throw bad(`tensors '${pk}' and '${ck}' overlap`);
  }
  return { entries, metadata, dataStart };
}

/** Decodes a safetensors buffer into CPU tensors. */
export function decodeSafetensors(buf: Buffer, name?: string): { tensors: Map<string, Tensor>; metadata: Metadata } {
  const { entries, metadata, dataStart } = parseHeader(buf, name);
  const tensors = new Map<string, Tensor>();
  for (const [key, e] of entries) {
    const view = new Uint8Array(buf.buffer, buf.byteOffset + dataStart + e.begin, e.end - e.begin);
    tensors.set(key, tensorFromBytes(view, e.shape, e.dtype));
  }
  return { tensors, metadata };
}

/** Reads a safetensors file; `what` (e.g. '--weights') names the argument in errors. */
export function loadSafetensors(file: string, what?: string): { tensors: Map<string, Tensor>; metadata: Metadata } {
  return decodeSafetensors(readInputFile(file, what), file);
}

/** The metadata of a safetensors file, from its header alone (the tensors are not read); undefined if it is not one. */
export function readSafetensorsMetadata(file: string): Metadata | undefined {
  const { fd, stat } = openInputFile(file);
  try {
    const len = Buffer.alloc(8);
    if (fs.readSync(fd, len, 0, 8, 0) !== 8) return undefined;
    const n = Number(len.readBigUInt64LE(0));
    if (n > MAX_HEADER_BYTES || 8 + n > stat.size) return undefined;
    const head = Buffer.alloc(8 + n);
    fs.readSync(fd, head, 0, 8 + n, 0);
    return parseHeader(head, file, stat.size).metadata;
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** Encodes tensors (copied to the CPU) and string metadata; keys are written in the given order. */
export function encodeSafetensors(tensors: Map<string, Tensor> | [string, Tensor][], metadata: Metadata = {}): Buffer {
  const list = tensors instanceof Map ? [...tensors] : tensors;
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [key, t] of list) {
    if (key === '__metadata__') throw new UserError("a tensor cannot be named '__metadata__'");
    const bytes = tensorBytes(t);
    header[key] = { dtype: TO_ST[t.dtype], shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    chunks.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces to a multiple of 8 bytes so the data is aligned, as the reference writer does.
  const pad = (8 - (Buffer.byteLength(json) % 8)) % 8;
  json += ' '.repeat(pad);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json, 'utf8'), ...chunks]);
}

/**
 * The size of a safetensors file holding tensors of `dataBytes` bytes in all, `tensorCount` of them, with
 * about `metadataBytes` of metadata: an estimate for planOutputs' `expectedBytes` (the header is a few kB; the
 * margin covers it).
 */
export function estimateSafetensorsBytes(dataBytes: number, tensorCount: number, metadataBytes = 0): number {
  return 8 + 1024 + tensorCount * 128 + metadataBytes + dataBytes;
}

export function saveSafetensors(
  file: string,
  tensors: Map<string, Tensor> | [string, Tensor][],
  metadata: Metadata = {},
  what?: string,
): void {
  writeFileAtomic(file, encodeSafetensors(tensors, metadata), { what });
}
