// The command-line options: one table of the options several commands share (one validator and one help line
// each), small constructors for a command's own options, typed parsing, and help text made from the table.
import * as os from 'node:os';
import { parseArgs } from 'node:util';
import { UserError } from '../errors';
import { ACTIVATIONS, AlexNetOptions, LRN_CHOICES, OPTION_LIMITS, Widths } from '../models/alexnet';
import { DEVICE_CHOICES, DeviceRequest, parseDevice } from '../runtime/device';

type Raw = string | boolean | undefined;

export interface Opt<T> {
  type: 'string' | 'boolean';
  /** The value's name in help, e.g. N or PATH. */
  value?: string;
  help: string;
  short?: string;
  parse(raw: Raw, flag: string): T;
}

export type Options = Record<string, Opt<unknown>>;
export type Values<S extends Options> = { [K in keyof S]: S[K] extends Opt<infer T> ? T : never };

/** The flag of an option key: batchSize -> --batch-size. */
export const flagOf = (key: string): string => `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

export function text(value: string, help: string, short?: string): Opt<string | undefined> {
  return { type: 'string', value, help, short, parse: (raw) => raw as string | undefined };
}

export function flag(help: string): Opt<boolean> {
  return { type: 'boolean', help, parse: (raw) => raw === true };
}

function number(v: string, flag: string, o: { min?: number; max?: number; integer?: boolean }): number {
  const n = v.trim() === '' ? NaN : Number(v);
  const ok = o.integer ? Number.isInteger(n) : Number.isFinite(n);
  if (!ok || n < (o.min ?? -Infinity) || n > (o.max ?? Infinity)) {
    const range = `${o.min !== undefined ? ` >= ${o.min}` : ''}${o.min !== undefined && o.max !== undefined ? ' and' : ''}${o.max !== undefined ? ` <= ${o.max}` : ''}`;
    throw new UserError(`${flag} must be ${o.integer ? 'an integer' : 'a number'}${range}, got '${v}'`);
  }
  return n;
}

export function int(value: string, help: string, o: { min?: number; max?: number } = {}): Opt<number | undefined> {
  return {
    type: 'string',
    value,
    help,
    parse: (raw, f) => (raw === undefined ? undefined : number(raw as string, f, { ...o, integer: true })),
  };
}

export function num(value: string, help: string, o: { min?: number; max?: number } = {}): Opt<number | undefined> {
  return {
    type: 'string',
    value,
    help,
    parse: (raw, f) => (raw === undefined ? undefined : number(raw as string, f, o)),
  };
}

export function choice<T extends string>(value: string, help: string, choices: readonly T[]): Opt<T | undefined> {
  return {
    type: 'string',
    value,
    help,
    parse: (raw, f) => {
      if (raw === undefined) return undefined;
      if (!choices.includes(raw as T)) throw new UserError(`${f} must be ${choices.join(', ')}, got '${raw}'`);
      return raw as T;
    },
  };
}

/** A copy of `o` with another help line (a command's own default, say). */
export const withHelp = <T>(o: Opt<T>, help: string): Opt<T> => ({ ...o, help });

/** Sizes that would not fit any machine are usage errors here, before anything is allocated. */
export const LIMITS = { batch: 65_536, threads: 1024, workers: 64, imageSide: OPTION_LIMITS.inputSize } as const;

/** Options several commands share: one validator and one help line each. */
export const COMMON = {
  device: {
    type: 'string',
    value: 'D',
    help: `${DEVICE_CHOICES} (default auto: cuda when available)`,
    parse: (raw, f) => (raw === undefined ? undefined : parseDevice(raw as string, f)),
  } as Opt<DeviceRequest | undefined>,
  threads: int('N', `CPU threads (default: all ${os.cpus().length} cores)`, { min: 1, max: LIMITS.threads }),
  workers: int('N', 'image decoding threads (default: cores − 1, at most 8)', { min: 1, max: LIMITS.workers }),
  batchSize: int('N', 'images per batch', { min: 1, max: LIMITS.batch }),
  json: flag('machine-readable output'),
  weights: text('PATH', 'a checkpoint or weights file (.safetensors) or a PyTorch state dict (.pth/.pt)', 'w'),
  model: text('NAME', 'the variant (alexnet models lists them)', 'm'),
  strict: flag('stop at the first unreadable image, naming it (default: skip it with a warning and count it)'),
  limit: int('N', 'use the first N images only', { min: 1 }),
} satisfies Options;

export interface Parsed<S extends Options> {
  values: Values<S>;
  positionals: string[];
  help: boolean;
}

/** Parses `argv` for `command` against `spec`; every mistake is one UserError naming the flag. */
export function parseCommand<S extends Options>(
  command: string,
  argv: string[],
  spec: S,
  o: { positionals?: boolean } = {},
): Parsed<S> {
  const config: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [k, v] of Object.entries(spec))
    config[flagOf(k).slice(2)] = { type: v.type, ...(v.short ? { short: v.short } : {}) };
  let r: { values: Record<string, Raw>; positionals: string[] };
  try {
    r = parseArgs({ args: argv, options: config, allowPositionals: !!o.positionals, strict: true }) as typeof r;
  } catch (e) {
    const msg = (e as Error).message.replace(/\. To specify a positional argument.*$/s, '');
    throw new UserError(`${msg} (see 'alexnet ${command} --help')`);
  }
  const values = {} as Record<string, unknown>;
  for (const [k, v] of Object.entries(spec)) values[k] = v.parse(r.values[flagOf(k).slice(2)], flagOf(k));
  return { values: values as Values<S>, positionals: r.positionals, help: r.values.help === true };
}

/** The help lines of `spec`, aligned: "  --batch-size N    images per batch". */
export function optionHelp(spec: Options, o: { helpRow?: boolean; width?: number } = {}): string {
  const rows = Object.entries(spec).map(([k, v]) => [
    `${v.short ? `-${v.short}, ` : ''}${flagOf(k)}${v.value ? ` ${v.value}` : ''}`,
    v.help,
  ]);
  if (o.helpRow !== false) rows.push(['-h, --help', 'this help']);
  const w = o.width ?? Math.max(...rows.map((r) => r[0].length)) + 2;
  const wrap = (s: string) => s.split('\n').join(`\n  ${' '.repeat(w)}`);
  return rows.map(([a, b]) => `  ${a.padEnd(w)}${wrap(b)}`).join('\n');
}

/** Options a command does not take with the ones given: a usage error naming the first. */
export function refuse(given: Record<string, unknown>, keys: string[], why: string): void {
  const k = keys.find((key) => given[key] !== undefined && given[key] !== false);
  if (k) throw new UserError(`${flagOf(k)} ${why}`);
}

/** Parses "CxHxW" (or "HxW" with the model's channels, or "S" for a square). */
export function parseInputShape(v: string, channels: number): [number, number, number] {
  const parts = v
    .toLowerCase()
    .split(/[x×,]/)
    .map((p) => Number(p.trim()));
  if (parts.some((p) => !Number.isInteger(p) || p <= 0) || parts.length < 1 || parts.length > 3) {
    throw new UserError(`--input must look like CxHxW (e.g. 3x224x224), HxW or S, got '${v}'`);
  }
  if (parts.length === 1) return [channels, parts[0], parts[0]];
  if (parts.length === 2) return [channels, parts[0], parts[1]];
  return parts as [number, number, number];
}

export const thousands = (n: number): string => n.toLocaleString('en-US');

/** Positive integers joined by `sep` ("3/2", "96-256-384-384-256"), exactly `count` of them, each at most `max`. */
function integers(value: string, help: string, sep: string, count: number, max: number): Opt<number[] | undefined> {
  return {
    type: 'string',
    value,
    help,
    parse: (raw, f) => {
      if (raw === undefined) return undefined;
      const parts = (raw as string).split(sep);
      const ok = parts.length === count && parts.every((p) => /^\d+$/.test(p) && +p >= 1 && +p <= max);
      if (!ok) throw new UserError(`${f} must be ${value} (${count} positive integers, at most ${max}), got '${raw}'`);
      return parts.map(Number);
    },
  };
}

/**
 * The architecture's knobs (the paper's ablations), for commands that build a model: each is an option of every
 * variant (AlexNetOptions); unset, the variant's own choice stands.
 */
export const ARCHITECTURE = {
  activation: choice('A', "relu (default) or tanh (the paper's Figure 1 comparison)", ACTIVATIONS),
  lrn: choice(
    'L',
    "local response normalisation after conv1 and conv2: paper (k 2, n 5, α 1e-4, β 0.75), pytorch\n(the same numbers, α divided by n) or none (default: the variant's; paper for alexnet-2012)",
    LRN_CHOICES,
  ),
  pool: integers(
    'K/S',
    "max pooling kernel/stride (default 3/2: overlapping; 2/2 is the paper's comparison)",
    '/',
    2,
    OPTION_LIMITS.pool,
  ),
  groups: int('G', "2: conv2, conv4, conv5 split in two (the paper's two GPUs); 1: not (default: the variant's)", {
    min: 1,
    max: 2,
  }),
  widths: integers(
    'A-B-C-D-E',
    "the five convolutions' kernel counts (default: the variant's, e.g. 96-256-384-384-256)",
    '-',
    5,
    OPTION_LIMITS.width,
  ),
};

/** The model options the architecture flags ask for (only those given). */
export function architectureOf(v: Values<typeof ARCHITECTURE>): AlexNetOptions {
  const o: AlexNetOptions = {};
  if (v.activation) o.activation = v.activation;
  if (v.lrn) o.lrn = v.lrn;
  if (v.pool) o.pool = v.pool as [number, number];
  if (v.groups) o.groups = v.groups as 1 | 2;
  if (v.widths) o.widths = v.widths as Widths;
  return o;
}
