// Checks for values read from files (model metadata in safetensors and ONNX files, checkpoints): a file is never
// trusted. Each check names the file, the field and what was expected, and bounds every size before anything is
// allocated from it.
import { FormatError } from '../errors';

export class FieldReader {
  constructor(readonly file: string) {}

  fail(field: string, expected: string, got: unknown): never {
    const shown = JSON.stringify(got);
    const brief = shown === undefined ? 'nothing' : shown.length > 60 ? `${shown.slice(0, 57)}…` : shown;
    throw new FormatError(`${this.file}: metadata '${field}' must be ${expected}, got ${brief}`);
  }

  int(field: string, v: unknown, min: number, max: number): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      this.fail(field, `an integer in [${min}, ${max}]`, v);
    return v;
  }

  num(field: string, v: unknown, min: number, max: number, o: { exclusiveMin?: boolean } = {}): number {
    const below = o.exclusiveMin ? (v as number) <= min : (v as number) < min;
    if (typeof v !== 'number' || !Number.isFinite(v) || below || v > max) {
      this.fail(field, `a number in ${o.exclusiveMin ? '(' : '['}${min}, ${max}]`, v);
    }
    return v;
  }

  str(field: string, v: unknown, maxLength = 4096): string {
    if (typeof v !== 'string' || v.length > maxLength)
      this.fail(field, `a string of at most ${maxLength} characters`, v);
    return v;
  }

  bool(field: string, v: unknown): boolean {
    if (typeof v !== 'boolean') this.fail(field, 'true or false', v);
    return v;
  }

  oneOf<T extends string>(field: string, v: unknown, choices: readonly T[]): T {
    if (!choices.includes(v as T)) this.fail(field, `one of ${choices.join(', ')}`, v);
    return v as T;
  }

  array<T>(field: string, v: unknown, min: number, max: number, item: (x: unknown, i: number) => T): T[] {
    if (!Array.isArray(v) || v.length < min || v.length > max) this.fail(field, `a list of ${min} to ${max} items`, v);
    return v.map(item);
  }

  object(field: string, v: unknown): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, 'an object', v);
    return v as Record<string, unknown>;
  }

  /** Parses a JSON-valued metadata entry. */
  json(field: string, text: string | undefined): unknown {
    if (text === undefined)
      throw new FormatError(`${this.file} lacks '${field}' in its metadata: it was not written by alexnet-ts`);
    try {
      return JSON.parse(text);
    } catch {
      throw new FormatError(`${this.file}: metadata '${field}' is not valid JSON`);
    }
  }
}
