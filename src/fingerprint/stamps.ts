// The stamp cache (design rule 3): (dev, inode, size, mtime, ctime) → content hash, so an unchanged
// file is never read twice. A stamp recorded while the file could still change within the same
// timestamp tick is "racy" and is not trusted: the file is hashed again next time.
import { statSync, type Stats } from "node:fs";
import { hashFileSync } from "../hash.ts";

/** How close to the moment of hashing a change must be to leave the stamp untrusted. */
export const RACY_WINDOW_MS = 50;

/**
 * One entry, kept as a single string so the state file stays small and quick to parse:
 * "STAMP HASH GENERATION" plus " racy" when the stamp is not to be trusted.
 * STAMP is dev:ino:size:mtimeMs:ctimeMs; GENERATION is the run number that last used it.
 */
export type StampEntry = string;

export function stampOf(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

export function isRacy(st: Stats, hashedAt: number): boolean {
  return Math.max(st.mtimeMs, st.ctimeMs) >= hashedAt - RACY_WINDOW_MS;
}

const HASH_LENGTH = 16;

/** The hash an entry holds for `stamp`, if it holds one for that stamp and it is trusted. */
function trustedHash(entry: StampEntry | undefined, stamp: string): string | undefined {
  if (typeof entry !== "string" || !entry.startsWith(stamp) || entry.charCodeAt(stamp.length) !== 32) return undefined;
  if (entry.endsWith(" racy")) return undefined;
  return entry.slice(stamp.length + 1, stamp.length + 1 + HASH_LENGTH);
}

function generationOf(entry: StampEntry): number {
  return typeof entry === "string" ? Number(entry.split(" ")[2]) : -Infinity;
}

export class StampCache {
  readonly stats = { hits: 0, hashed: 0, bytes: 0 };
  changed = false;
  private readonly used = new Set<string>();

  constructor(
    private readonly entries: Record<string, StampEntry> = {},
    private readonly generation = 0,
  ) {}

  /** Content hash of a regular file, from the cache when its stamp is unchanged and trusted. */
  hash(path: string, st: Stats = statSync(path)): string {
    const cached = this.known(path, st);
    if (cached !== undefined) return cached;
    const hashedAt = Date.now();
    const h = hashFileSync(path);
    this.remember(path, st, h, isRacy(st, hashedAt));
    return h;
  }

  /** The cached content hash for this stamp, without reading the file. */
  known(path: string, st: Stats): string | undefined {
    const cached = trustedHash(this.entries[path], stampOf(st));
    if (cached !== undefined) {
      this.stats.hits++;
      this.used.add(path);
    }
    return cached;
  }

  /** Record a content hash read from a file whose stamp was `st` while it was read. */
  remember(path: string, st: Stats, hash: string, racy: boolean): void {
    this.stats.hashed++;
    this.stats.bytes += st.size;
    this.entries[path] = `${stampOf(st)} ${hash} ${this.generation}${racy ? " racy" : ""}`;
    this.changed = true;
  }

  /** Entries to keep: used in the last `keepGenerations` runs that saved state. */
  toJSON(keepGenerations = 10): Record<string, StampEntry> {
    const out: Record<string, StampEntry> = {};
    for (const [path, entry] of Object.entries(this.entries)) {
      if (this.used.has(path)) {
        const parts = entry.split(" ");
        parts[2] = String(this.generation);
        out[path] = parts.join(" ");
      } else if (this.generation - generationOf(entry) < keepGenerations) {
        out[path] = entry;
      }
    }
    return out;
  }
}
