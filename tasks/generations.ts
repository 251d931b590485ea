// Image generations: every build is published under its own name (NAME.img.YYYYMMDD-HHMMSS) and
// the stable NAME.img is a relative symlink to the newest. Running clients keep reading the file
// they booted from; the oldest generations beyond the limit are removed, except files that a
// local process (nbd-server, a user-space NFS server) still has open.
import { existsSync, lstatSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { hashFileSync } from "../src/hash.ts";

const GENERATION = /^\.?(.+\.img)\.(\d{8}-\d{6})(?:-(\d+))?$/;

function stampName(date: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `${date.getUTCFullYear()}${p(date.getUTCMonth() + 1)}${p(date.getUTCDate())}-${p(date.getUTCHours())}${p(date.getUTCMinutes())}${p(date.getUTCSeconds())}`;
}

/** Generation files of `stable` (BASE/images/NAME.img), oldest first. */
export function generationsOf(stable: string): string[] {
  const dir = dirname(stable);
  const base = basename(stable);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => {
      const m = GENERATION.exec(n);
      return m !== null && m[1] === base && !n.startsWith(".");
    })
    .sort()
    .map((n) => join(dir, n));
}

/** The generation file the stable name points at (or the stable file itself, upstream style). */
export function currentGeneration(stable: string): string | undefined {
  let st;
  try {
    st = lstatSync(stable);
  } catch {
    return undefined;
  }
  if (st.isSymbolicLink()) return join(dirname(stable), readlinkSync(stable));
  return st.isFile() ? stable : undefined;
}

function pointAt(stable: string, generation: string): void {
  const link = join(dirname(stable), `.${basename(stable)}.link-${process.pid}`);
  rmSync(link, { force: true });
  symlinkSync(basename(generation), link);
  renameSync(link, stable);
}

/** Paths some local process has open (from /proc/PID/fd), to never delete an image in use. */
export function openFiles(): Set<string> {
  const open = new Set<string>();
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        open.add(readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        // closed meanwhile
      }
    }
  }
  return open;
}

export interface PublishResult {
  generation: string;
  /** The new build was byte-identical to the current generation, which was kept. */
  unchanged: boolean;
  removed: string[];
}

/**
 * Publish a finished temporary image as a new generation and point the stable name at it. An
 * upstream-style regular NAME.img is first renamed to a generation (same inode: clients reading
 * it are not disturbed).
 */
export function publishGeneration(stable: string, temp: string, keep: number, log: (m: string) => void): PublishResult {
  const current = currentGeneration(stable);
  if (current === stable) {
    const adopted = join(dirname(stable), `${basename(stable)}.${stampName(statSync(stable).mtime)}`);
    renameSync(stable, adopted);
    pointAt(stable, adopted);
    log(`kept the existing ${basename(stable)} as generation ${basename(adopted)}`);
  }
  const now = currentGeneration(stable);
  if (now && existsSync(now) && statSync(now).size === statSync(temp).size && hashFileSync(now) === hashFileSync(temp)) {
    rmSync(temp);
    return { generation: now, unchanged: true, removed: prune(stable, keep, log) };
  }
  let generation = join(dirname(stable), `${basename(stable)}.${stampName(new Date())}`);
  for (let i = 1; existsSync(generation); i++) generation = join(dirname(stable), `${basename(stable)}.${stampName(new Date())}-${i}`);
  renameSync(temp, generation);
  pointAt(stable, generation);
  return { generation, unchanged: false, removed: prune(stable, keep, log) };
}

function prune(stable: string, keep: number, log: (m: string) => void): string[] {
  const all = generationsOf(stable);
  const current = currentGeneration(stable);
  const excess = all.filter((g) => g !== current).slice(0, Math.max(0, all.length - Math.max(1, keep)));
  if (excess.length === 0) return [];
  const inUse = openFiles();
  const removed: string[] = [];
  for (const generation of excess) {
    if (inUse.has(generation)) {
      log(`keeping ${basename(generation)}: a process on this server still has it open`);
      continue;
    }
    rmSync(generation, { force: true });
    removed.push(generation);
  }
  return removed;
}

/** Point the stable name at the generation before the current one. Returns it. */
export function revertGeneration(stable: string): string {
  const all = generationsOf(stable);
  const current = currentGeneration(stable);
  if (!current) throw new Error(`${stable} does not exist: there is nothing to revert`);
  const index = all.indexOf(current);
  const previous = index > 0 ? all[index - 1] : index === -1 ? all[all.length - 1] : undefined;
  const legacyOld = `${stable}.old`;
  if (!previous) {
    if (existsSync(legacyOld) && current === stable) {
      // Upstream layout: swap NAME.img and NAME.img.old.
      const swap = `${stable}.swap-${process.pid}`;
      renameSync(stable, swap);
      renameSync(legacyOld, stable);
      renameSync(swap, legacyOld);
      return stable;
    }
    throw new Error(`${basename(stable)} has no older generation to revert to (found: ${all.map((g) => basename(g)).join(", ") || "none"})`);
  }
  pointAt(stable, previous);
  return previous;
}

