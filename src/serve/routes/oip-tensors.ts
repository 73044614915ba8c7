// The Open Inference Protocol's tensors on the wire: the JSON `$inference_request` (KServe's required_api.md) and
// Triton's binary tensor data extension (extension_binary_data.md: the JSON header of Inference-Header-Content-
// Length bytes, then each tensor's bytes in order, little-endian, row-major; a BYTES element is a 4-byte length and
// its bytes).
// Parsing checks the request's form only (400 bad_inference_request); what the model takes is the route's to check.
import * as os from 'node:os';
import { ServeError } from '../errors';

export type Parameters = Record<string, string | number | boolean>;

export interface RequestInput {
  name: string;
  shape: number[];
  datatype: string;
  parameters?: Parameters;
  data?: unknown;
}

export interface RequestOutput {
  name: string;
  parameters?: Parameters;
}

export interface InferenceRequest {
  id?: string;
  parameters?: Parameters;
  inputs: RequestInput[];
  outputs?: RequestOutput[];
}

/** A parsed request: its JSON, and each input's binary data (in the inputs' order; undefined for JSON data). */
export interface ParsedRequest {
  request: InferenceRequest;
  binary: (Buffer | undefined)[];
}

/** The header that gives the JSON's length in a binary-form body. */
export const HEADER_LENGTH = 'inference-header-content-length';

const bad = (message: string) => new ServeError('bad_inference_request', message);
const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

/** `parameters`, when present, is an object of strings, numbers and booleans. */
function checkParameters(p: unknown, where: string): void {
  if (p === undefined) return;
  if (!isObject(p)) throw bad(`${where}.parameters must be an object, got ${JSON.stringify(p)}`);
  for (const [k, v] of Object.entries(p))
    if (!['string', 'number', 'boolean'].includes(typeof v))
      throw bad(`${where}.parameters.${k} must be a string, number or boolean`);
}

/** Throws unless `x` has the `$inference_request` form. */
function checkRequest(x: unknown): asserts x is InferenceRequest {
  if (!isObject(x)) throw bad('the body must be a JSON object with "inputs" (an $inference_request)');
  if (x.id !== undefined && typeof x.id !== 'string') throw bad(`"id" must be a string, got ${JSON.stringify(x.id)}`);
  checkParameters(x.parameters, 'the request');
  if (!Array.isArray(x.inputs) || !x.inputs.length) throw bad('"inputs" must be a non-empty array of tensors');
  x.inputs.forEach((t: unknown, i) => {
    const at = `inputs[${i}]`;
    if (!isObject(t)) throw bad(`${at} must be an object with name, shape, datatype and data`);
    if (typeof t.name !== 'string') throw bad(`${at}.name must be a string`);
    if (typeof t.datatype !== 'string') throw bad(`${at}.datatype must be a string`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
      throw bad(`${at}.shape must be an array of whole numbers of at least 0, got ${JSON.stringify(t.shape)}`);
    checkParameters(t.parameters, at);
  });
  if (x.outputs === undefined) return;
  if (!Array.isArray(x.outputs)) throw bad('"outputs" must be an array of {name, parameters}');
  x.outputs.forEach((o: unknown, i) => {
    if (!isObject(o) || typeof o.name !== 'string') throw bad(`outputs[${i}] must be an object with a string name`);
    checkParameters(o.parameters, `outputs[${i}]`);
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw bad(`the request is not JSON: ${(e as Error).message}`);
  }
}

/**
 * A request body: JSON alone (`headerLength` undefined), or the binary form: `headerLength` bytes of JSON, then the
 * data of every input whose parameters give a `binary_data_size`, in the inputs' order, filling the rest exactly.
 */
export function parseInferenceRequest(body: Buffer, headerLength?: string): ParsedRequest {
  if (headerLength === undefined) {
    const request = parseJson(body.toString('utf8'));
    checkRequest(request);
    const sized = request.inputs.find((t) => t.parameters?.binary_data_size !== undefined);
    if (sized)
      throw bad(`input '${sized.name}' has a binary_data_size but the request has no Inference-Header-Content-Length`);
    return { request, binary: request.inputs.map(() => undefined) };
  }
  const h = Number(headerLength);
  if (!/^\d+$/.test(headerLength.trim()) || h < 1 || h > body.length)
    throw bad(`Inference-Header-Content-Length must be the JSON's length, 1 to ${body.length}, got '${headerLength}'`);
  const request = parseJson(body.subarray(0, h).toString('utf8'));
  checkRequest(request);
  let at = h;
  const binary = request.inputs.map((t) => {
    const size = t.parameters?.binary_data_size;
    if (size === undefined) return undefined;
    if (!Number.isSafeInteger(size) || (size as number) < 0)
      throw bad(`input '${t.name}': binary_data_size must be a whole number of bytes, got ${JSON.stringify(size)}`);
    if (at + (size as number) > body.length)
      throw bad(
        `input '${t.name}': binary_data_size ${size} runs past the body's end (${body.length - at} bytes left)`,
      );
    const b = body.subarray(at, at + (size as number));
    at += size as number;
    return b;
  });
  if (at !== body.length)
    throw bad(`the body has ${body.length - at} bytes after the JSON and the binary_data_size of every input`);
  return { request, binary };
}

/** The number of elements of a shape. */
export const elements = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** JSON tensor data, nested (row-major) or flat, as one flat array. */
function flatten(data: unknown, name: string): unknown[] {
  if (!Array.isArray(data)) throw bad(`input '${name}' needs "data" (a JSON array) or a binary_data_size`);
  return data.flat(Infinity);
}

/** Throws unless `count` values fill `shape`. */
function checkCount(name: string, count: number, shape: number[], unit = 'values'): void {
  if (count !== elements(shape))
    throw new ServeError(
      'bad_shape',
      `input '${name}' has ${count} ${unit} but its shape [${shape.join(', ')}] needs ${elements(shape)}`,
    );
}

/** An FP32 input's values: JSON numbers, or its binary data (4 bytes each, little-endian). */
export function fp32Values(t: RequestInput, binary: Buffer | undefined): Float32Array {
  if (binary) {
    if (binary.length % 4) throw new ServeError('bad_shape', `input '${t.name}': ${binary.length} bytes of FP32`);
    checkCount(t.name, binary.length / 4, t.shape);
    const out = new Float32Array(binary.length / 4);
    if (os.endianness() === 'LE') new Uint8Array(out.buffer).set(binary);
    else for (let i = 0; i < out.length; i++) out[i] = binary.readFloatLE(i * 4);
    return out;
  }
  const flat = flatten(t.data, t.name);
  checkCount(t.name, flat.length, t.shape);
  const out = new Float32Array(flat.length);
  for (let i = 0; i < flat.length; i++) {
    const v = flat[i];
    if (typeof v !== 'number') throw bad(`input '${t.name}' is FP32 but element ${i} is ${JSON.stringify(v)}`);
    out[i] = v;
  }
  return out;
}

/**
 * A BYTES input's elements: JSON strings in base64 (an encoded image is not text), or its binary data (each element
 * a 4-byte little-endian length and its bytes).
 */
export function bytesValues(t: RequestInput, binary: Buffer | undefined): Buffer[] {
  const out: Buffer[] = [];
  if (binary) {
    for (let at = 0; at < binary.length;) {
      if (at + 4 > binary.length) throw bad(`input '${t.name}': a BYTES element's 4-byte length is cut short`);
      const n = binary.readUInt32LE(at);
      if (at + 4 + n > binary.length) throw bad(`input '${t.name}': a BYTES element of ${n} bytes is cut short`);
      out.push(binary.subarray(at + 4, at + 4 + n));
      at += 4 + n;
    }
  } else {
    flatten(t.data, t.name).forEach((v, i) => {
      if (typeof v !== 'string' || !/^[A-Za-z0-9+/\s]*={0,2}\s*$/.test(v))
        throw bad(`input '${t.name}' is BYTES: element ${i} must be a base64 string`);
      out.push(Buffer.from(v, 'base64'));
    });
  }
  checkCount(t.name, out.length, t.shape, 'elements');
  return out;
}

/** A response tensor: FP32 values or BYTES strings, sent as JSON data or as binary data. */
export interface OutputTensor {
  name: string;
  datatype: 'FP32' | 'BYTES';
  shape: number[];
  data: Float32Array | string[];
  binary: boolean;
}

/** A tensor's binary data: FP32 little-endian, BYTES each with its 4-byte length. */
function binaryOf(t: OutputTensor): Buffer {
  if (t.data instanceof Float32Array) {
    if (os.endianness() === 'LE') return Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const b = Buffer.alloc(t.data.length * 4);
    t.data.forEach((v, i) => b.writeFloatLE(v, i * 4));
    return b;
  }
  return Buffer.concat(
    t.data.flatMap((s) => {
      const len = Buffer.alloc(4);
      const bytes = Buffer.from(s, 'utf8');
      len.writeUInt32LE(bytes.length);
      return [len, bytes];
    }),
  );
}

/**
 * The `$inference_response`: all JSON, or (when an output is binary) the JSON header followed by the binary outputs'
 * data in order, with the header's length to send as Inference-Header-Content-Length.
 */
export function encodeResponse(
  head: Record<string, unknown>,
  outputs: OutputTensor[],
): { json: Record<string, unknown> } | { body: Buffer; headerLength: number } {
  const binaries: Buffer[] = [];
  const described = outputs.map((t) => {
    const meta = { name: t.name, datatype: t.datatype, shape: t.shape };
    if (!t.binary) return { ...meta, data: t.data instanceof Float32Array ? Array.from(t.data) : t.data };
    const b = binaryOf(t);
    binaries.push(b);
    return { ...meta, parameters: { binary_data_size: b.length } };
  });
  const json = { ...head, outputs: described };
  if (!binaries.length) return { json };
  const header = Buffer.from(JSON.stringify(json), 'utf8');
  return { body: Buffer.concat([header, ...binaries]), headerLength: header.length };
}
