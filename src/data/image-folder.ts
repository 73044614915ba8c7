// Image-folder data sets in torchvision's ImageFolder layout: one subfolder per class (class index = position in
// the sorted folder names), images anywhere below it, in the same order torchvision lists them. Either the root
// holds train/ and val/ (or test/) folders of that shape, or it holds the class folders and a seeded, per-class
// split keeps a fraction for validation.
//
// Links are followed only while they stay inside the data set's root; loops, broken links, links leading out and
// empty class folders are reported (and, with `strict`, refused) instead of hanging or crashing a run.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { UserError } from '../errors';
import { readInputFile } from '../util/files';
import { mulberry32 } from './sampler';

export const IMAGE_EXTENSIONS = ['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif'];

export interface Sample {
  file: string;
  label: number;
}

/** Something in the data set that was left out, and why. */
export interface Problem {
  file: string;
  reason: string;
}

export interface ImageFolder {
  root: string;
  /** Class folder names, sorted: the class index is the position here. */
  classIds: string[];
  /** Human-readable names (from a labels file), else the folder names. */
  classes: string[];
  train: Sample[];
  val: Sample[];
  /** 'folders': train/ and val/ came from the disk; 'split': val is a seeded share of each class. */
  layout: 'folders' | 'split';
  valFolder?: string;
  problems: Problem[];
}

export interface ScanOptions {
  /** Share of each class kept for validation when the root has no train/ and val/ folders (default 0.1). */
  valSplit?: number;
  seed?: number;
  /** Refuse the data set at the first problem instead of skipping it with a warning. */
  strict?: boolean;
  /** A labels file: "FOLDER NAME…" per line (ImageNet's synset mapping), or a JSON object {folder: name}. */
  labels?: string;
}

const isHidden = (name: string) => name.startsWith('.');

function isUnder(real: string, rootReal: string): boolean {
  const rel = path.relative(rootReal, real);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

class Scanner {
  readonly problems: Problem[] = [];
  readonly rootReal: string;
  /** The real path of the class folder being read: a link to it or to a folder above it is a loop. */
  #walkRoot = '';

  constructor(
    readonly root: string,
    readonly strict: boolean,
  ) {
    this.rootReal = fs.realpathSync(root);
  }

  problem(file: string, reason: string): void {
    if (this.strict)
      throw new UserError(
        `${file}: ${reason} (--strict refuses the data set; without it this would be skipped with a warning)`,
      );
    this.problems.push({ file, reason });
  }

  /** Follows `p` when it is a link: its kind, or undefined (after reporting) when it cannot be used. */
  kind(p: string, entry: fs.Dirent, visited: Set<string>): 'dir' | 'file' | undefined {
    if (entry.isDirectory()) return 'dir';
    if (entry.isFile()) return 'file';
    if (!entry.isSymbolicLink()) return undefined;
    let real: string;
    try {
      real = fs.realpathSync(p);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      this.problem(p, code === 'ELOOP' ? 'a symbolic link loop' : 'a broken symbolic link');
      return undefined;
    }
    if (!isUnder(real, this.rootReal)) {
      this.problem(p, `a link leading outside the data set (to ${real})`);
      return undefined;
    }
    const st = fs.statSync(real);
    if (st.isDirectory()) {
      if (visited.has(real) || isUnder(this.#walkRoot, real)) {
        this.problem(p, 'a symbolic link loop (leads back to a folder already read)');
        return undefined;
      }
      return 'dir';
    }
    return st.isFile() ? 'file' : undefined;
  }

  /** The image files below `dir`, in torchvision's order: folders sorted by path, files sorted in each. */
  images(dir: string): string[] {
    const groups: { dir: string; files: string[] }[] = [];
    const visited = new Set<string>();
    this.#walkRoot = fs.realpathSync(dir);
    const walk = (d: string) => {
      const real = fs.realpathSync(d);
      visited.add(real);
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(d, { withFileTypes: true });
      } catch (e) {
        this.problem(d, `cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        return;
      }
      const files: string[] = [];
      for (const e of entries) {
        if (isHidden(e.name)) continue;
        const p = path.join(d, e.name);
        const k = this.kind(p, e, visited);
        if (k === 'dir') walk(p);
        else if (k === 'file' && IMAGE_EXTENSIONS.includes(path.extname(e.name).toLowerCase())) files.push(e.name);
      }
      groups.push({ dir: d, files: files.sort() });
    };
    walk(dir);
    groups.sort((a, b) => (a.dir < b.dir ? -1 : a.dir > b.dir ? 1 : 0));
    return groups.flatMap((g) => g.files.map((f) => path.join(g.dir, f)));
  }

  /** Class folders of `dir`, sorted. */
  classFolders(dir: string): string[] {
    const out: string[] = [];
    const visited = new Set([fs.realpathSync(dir)]);
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (isHidden(e.name)) continue;
      if (this.kind(path.join(dir, e.name), e, visited) === 'dir') out.push(e.name);
    }
    return out.sort();
  }

  samples(dir: string, classIds: string[]): Sample[] {
    const out: Sample[] = [];
    classIds.forEach((c, label) => {
      const classDir = path.join(dir, c);
      if (!fs.existsSync(classDir)) return;
      const files = this.images(classDir);
      if (!files.length) this.problem(classDir, `class folder '${c}' has no images (${IMAGE_EXTENSIONS.join(', ')})`);
      for (const file of files) out.push({ file, label });
    });
    return out;
  }
}

/** Reads a labels file: lines "FOLDER NAME…" (e.g. "n01440764 tench, Tinca tinca") or a JSON object. */
export function readLabels(file: string, classIds: string[]): string[] {
  const text = readInputFile(file, '--labels').toString('utf8');
  const map = new Map<string, string>();
  if (text.trimStart().startsWith('{')) {
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new UserError(`${file} is not valid JSON (${(e as Error).message})`);
    }
    for (const [k, v] of Object.entries(obj as Record<string, unknown>)) map.set(k, String(v));
  } else {
    for (const line of text.split(/\r?\n/)) {
      const m = /^\s*(\S+)[\s,:]+(.+?)\s*$/.exec(line);
      if (m) map.set(m[1], m[2]);
    }
  }
  const missing = classIds.filter((c) => !map.has(c));
  if (missing.length === classIds.length)
    throw new UserError(
      `${file} names none of the class folders (e.g. '${classIds[0]}'): expected lines 'FOLDER NAME' or a JSON object {"FOLDER": "NAME"}`,
    );
  if (missing.length)
    throw new UserError(
      `${file} has no name for ${missing.length} class folder(s): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
    );
  return classIds.map((c) => map.get(c)!);
}

/** A seeded split of each class: round(share × count) of its images to validation (at least one when it has two). */
export function splitPerClass(samples: Sample[], share: number, seed: number): { train: Sample[]; val: Sample[] } {
  const byClass = new Map<number, Sample[]>();
  for (const s of samples) {
    if (!byClass.has(s.label)) byClass.set(s.label, []);
    byClass.get(s.label)!.push(s);
  }
  const valSet = new Set<Sample>();
  for (const [label, list] of byClass) {
    let k = Math.round(share * list.length);
    if (share > 0 && k === 0 && list.length >= 2) k = 1;
    const rand = mulberry32((seed ^ Math.imul(label + 1, 0x9e3779b1)) >>> 0);
    const idx = list.map((_, i) => i);
    for (let i = idx.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [idx[i], idx[j]] = [idx[j], idx[i]];
    }
    for (const i of idx.slice(0, k)) valSet.add(list[i]);
  }
  // Both keep the on-disk order.
  return { train: samples.filter((s) => !valSet.has(s)), val: samples.filter((s) => valSet.has(s)) };
}

const VAL_NAMES = ['val', 'validation', 'test'];

/** Scans an image-folder data set. Throws a UserError when there is nothing to train on. */
export function scanImageFolder(rootIn: string, o: ScanOptions = {}): ImageFolder {
  const root = path.resolve(rootIn);
  let st: fs.Stats;
  try {
    st = fs.statSync(root);
  } catch {
    throw new UserError(`data set folder ${rootIn} does not exist`);
  }
  if (!st.isDirectory())
    throw new UserError(`${rootIn} is not a folder (expected one subfolder per class, or train/ and val/ folders)`);
  const scan = new Scanner(root, !!o.strict);
  const top = scan.classFolders(root);
  const valFolder = top.includes('train') ? VAL_NAMES.find((v) => top.includes(v)) : undefined;
  let folder: ImageFolder;
  if (valFolder) {
    const trainDir = path.join(root, 'train');
    const classIds = scan.classFolders(trainDir);
    if (!classIds.length) throw new UserError(`${trainDir} has no class folders (expected one subfolder per class)`);
    const extra = scan.classFolders(path.join(root, valFolder)).filter((c) => !classIds.includes(c));
    if (extra.length)
      throw new UserError(
        `${path.join(root, valFolder)} has class folders that train/ lacks: ${extra.slice(0, 5).join(', ')}`,
      );
    folder = {
      root,
      classIds,
      classes: classIds,
      train: scan.samples(trainDir, classIds),
      val: scan.samples(path.join(root, valFolder), classIds),
      layout: 'folders',
      valFolder,
      problems: scan.problems,
    };
  } else {
    const classIds = top;
    if (!classIds.length)
      throw new UserError(
        `${root} has no class folders (expected one subfolder per class, e.g. cats/ and dogs/, or train/ and val/ folders holding them)`,
      );
    if (classIds.length === 1)
      throw new UserError(`${root} has a single class folder ('${classIds[0]}'): classification needs at least two`);
    const share = o.valSplit ?? 0.1;
    if (!(share >= 0 && share < 1)) throw new UserError(`--val-split must be in [0, 1), got ${share}`);
    const all = scan.samples(root, classIds);
    const { train, val } = splitPerClass(all, share, o.seed ?? 0);
    folder = { root, classIds, classes: classIds, train, val, layout: 'split', problems: scan.problems };
  }
  if (!folder.train.length)
    throw new UserError(`${root} has no training images (${IMAGE_EXTENSIONS.join(', ')} files in the class folders)`);
  if (o.labels) folder.classes = readLabels(o.labels, folder.classIds);
  return folder;
}

/** "folder:PATH" -> PATH; anything else -> undefined. */
export function folderPath(dataset: string | undefined): string | undefined {
  return dataset?.startsWith('folder:') ? dataset.slice('folder:'.length) : undefined;
}
