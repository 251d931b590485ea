// Directory tree fingerprints: sorted entries with type, mode, owner, size, symlink target and
// content hash. Excluded paths are never walked. Like an overlay mount, the walk stays on the
// tree's own filesystem: a mount point inside it counts as an empty directory.
import { lstatSync, readdirSync, readlinkSync, type Stats } from "node:fs";
import { createHasher } from "../hash.ts";
import type { PathMatcher } from "./patterns.ts";
import type { StampCache } from "./stamps.ts";

export interface TreeFingerprint {
  hash: string;
  entries: number;
  /** Hash per top-level entry, so `explain` can say where a tree changed. */
  parts: Record<string, string>;
}

function typeOf(st: Stats): string {
  if (st.isFile()) return "f";
  if (st.isDirectory()) return "d";
  if (st.isSymbolicLink()) return "l";
  if (st.isCharacterDevice()) return "c";
  if (st.isBlockDevice()) return "b";
  if (st.isFIFO()) return "p";
  return "s";
}

function byBytes(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export function fingerprintTree(root: string, exclude: PathMatcher, stamps: StampCache): TreeFingerprint | undefined {
  let rootStat: Stats;
  try {
    rootStat = lstatSync(root);
  } catch {
    return undefined;
  }
  const rootDev = rootStat.dev;
  const parts: Record<string, string> = {};
  let entries = 0;

  const describe = (path: string, st: Stats): string => {
    const base = `${typeOf(st)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    if (st.isFile()) return `${base} ${st.size} ${stamps.hash(path, st)}`;
    if (st.isSymbolicLink()) return `${base} ${readlinkSync(path)}`;
    if (st.isCharacterDevice() || st.isBlockDevice()) return `${base} ${st.rdev}`;
    return base;
  };

  const walk = (dir: string, rel: string, hasher: ReturnType<typeof createHasher>): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (error) {
      throw new Error(`cannot read directory ${dir}: ${(error as Error).message}`);
    }
    names.sort(byBytes);
    for (const name of names) {
      const childRel = rel ? `${rel}/${name}` : name;
      if (exclude(childRel)) continue;
      const path = `${dir}/${name}`;
      const st = lstatSync(path);
      entries++;
      hasher.update(`${childRel}\0${describe(path, st)}\n`);
      if (st.isDirectory() && st.dev === rootDev) walk(path, childRel, hasher);
    }
  };

  if (!rootStat.isDirectory()) {
    const hasher = createHasher();
    hasher.update(describe(root, rootStat));
    return { hash: hasher.digest(), entries: 1, parts: {} };
  }

  const top = createHasher();
  top.update(`. ${describe(root, rootStat)}\n`);
  const names = readdirSync(root).sort(byBytes);
  for (const name of names) {
    if (exclude(name)) continue;
    const path = `${root === "/" ? "" : root}/${name}`;
    const st = lstatSync(path);
    entries++;
    const hasher = createHasher();
    hasher.update(`${name}\0${describe(path, st)}\n`);
    if (st.isDirectory() && st.dev === rootDev) walk(path, name, hasher);
    const partHash = hasher.digest();
    parts[name] = partHash;
    top.update(`${name} ${partHash}\n`);
  }
  return { hash: top.digest(), entries, parts };
}
