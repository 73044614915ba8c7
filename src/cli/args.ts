// Argument parsing shared by the subcommands: node's parseArgs with one-line errors a user can act on.
import { parseArgs, ParseArgsConfig } from 'node:util';
import { UserError } from '../errors';

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: { [name: string]: string | boolean | string[] | undefined };
  positionals: string[];
}

export function parse(argv: string[], options: Options, command: string, allowPositionals = false): Parsed {
  try {
    const r = parseArgs({ args: argv, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals, strict: true });
    return { values: r.values as Parsed['values'], positionals: r.positionals };
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new UserError(`${msg} (see 'alexnet ${command} --help')`);
  }
}

export function intOption(v: string | undefined, name: string, o: { min?: number; fallback?: number } = {}): number | undefined {
  if (v === undefined) return o.fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < (o.min ?? -Infinity)) {
    throw new UserError(`--${name} must be an integer${o.min !== undefined ? ` >= ${o.min}` : ''}, got '${v}'`);
  }
  return n;
}

export function numOption(v: string | undefined, name: string, o: { min?: number; max?: number; fallback?: number } = {}): number | undefined {
  if (v === undefined) return o.fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < (o.min ?? -Infinity) || n > (o.max ?? Infinity)) {
    throw new UserError(`--${name} must be a number${o.min !== undefined ? ` >= ${o.min}` : ''}${o.max !== undefined ? ` <= ${o.max}` : ''}, got '${v}'`);
  }
  return n;
}

/** Parses "CxHxW" (or "HxW" with the model's channels, or "S" for a square). */
export function parseInputShape(v: string, channels: number): [number, number, number] {
  const parts = v.toLowerCase().split(/[x×,]/).map((p) => Number(p.trim()));
  if (parts.some((p) => !Number.isInteger(p) || p <= 0) || parts.length < 1 || parts.length > 3) {
    throw new UserError(`--input must look like CxHxW (e.g. 3x224x224), HxW or S, got '${v}'`);
  }
  if (parts.length === 1) return [channels, parts[0], parts[0]];
  if (parts.length === 2) return [channels, parts[0], parts[1]];
  return parts as [number, number, number];
}

export const thousands = (n: number): string => n.toLocaleString('en-US');
