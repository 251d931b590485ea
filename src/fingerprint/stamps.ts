// The stamp cache (design rule 3): (dev, inode, size, mtime, ctime) → content hash, so an unchanged
// file is never read twice. A stamp recorded while the file could still change within the same
// timestamp tick is "racy" and is not trusted: the file is hashed again next time.
import { statSync, type Stats } from "node:fs";
import { hashFileSync } from "../hash.ts";

/** How close to the moment of hashing a change must be to leave the stamp untrusted. */
export const RACY_WINDOW_MS = 50;

export interface StampEntry {
  /** dev:ino:size:mtimeMs:ctimeMs */
  s: string;
  /** content hash */
  h: string;
  /** the stamp was taken too close to the hash to be trusted */
  r?: 1;
  /** generation (run number) that last used the entry */
  g: number;
}

export function stampOf(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export function isRacy(st: Stats, hashedAt: number): boolean {
  return Math.max(st.mtimeMs, st.ctimeMs) >= hashedAt - RACY_WINDOW_MS;
}

export class StampCache {
  private readonly entries: Map<string, StampEntry>;
  readonly stats = { hits: 0, hashed: 0, bytes: 0 };
  changed = false;

  constructor(
    initial: Record<string, StampEntry> = {},
    private readonly generation = 0,
  ) {
    this.entries = new Map(Object.entries(initial));
  }

  /** Content hash of a regular file, from the cache when its stamp is unchanged and trusted. */
  hash(path: string, st: Stats = statSync(path)): string {
    const stamp = stampOf(st);
    const entry = this.entries.get(path);
    if (entry && entry.s === stamp && !entry.r) {
      this.stats.hits++;
      // Not a change worth a write: the mark is saved when something else is.
      entry.g = this.generation;
      return entry.h;
    }
    const hashedAt = Date.now();
    const h = hashFileSync(path);
    this.stats.hashed++;
    this.stats.bytes += st.size;
    const fresh: StampEntry = { s: stamp, h, g: this.generation };
    if (isRacy(st, hashedAt)) fresh.r = 1;
    this.entries.set(path, fresh);
    this.changed = true;
    return h;
  }

  /** Recorded hash for a stamp, without reading the file (undefined if unknown or racy). */
  peek(path: string, st: Stats): string | undefined {
    const entry = this.entries.get(path);
    return entry && entry.s === stampOf(st) && !entry.r ? entry.h : undefined;
  }

  /** Entries to keep: used in the last `keepGenerations` runs. */
  toJSON(keepGenerations = 10): Record<string, StampEntry> {
    const out: Record<string, StampEntry> = {};
    for (const [path, entry] of this.entries) {
      if (this.generation - entry.g < keepGenerations) out[path] = entry;
    }
    return out;
  }
}
