// Directory tree fingerprints: sorted entries with type, mode, owner, size, symlink target and
// content hash. Excluded paths are never walked. Like an overlay mount, the walk stays on the
// tree's own filesystem: a mount point inside it counts as an empty directory.
import { lstatSync, readdirSync, readlinkSync, type Stats } from "node:fs";
import { createHasher } from "../hash.ts";
import { CHANGED_WHILE_RUNNING, hashOf, type DeferredFile, type DeferredHashes } from "./deferred.ts";
import type { PathMatcher } from "./patterns.ts";
import type { StampCache } from "./stamps.ts";

export interface TreeFingerprint {
  hash: string;
  entries: number;
  /** Hash per top-level entry, so `explain` can say where a tree changed. */
  parts: Record<string, string>;
}

/** A walked tree whose fingerprint waits for file hashes taken later (see deferred.ts). */
export interface PendingTree {
  finish(): TreeFingerprint | typeof CHANGED_WHILE_RUNNING;
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

/** Text is hashed in pieces of about this size: one call into the hasher per piece, not per entry. */
const FLUSH_CHARS = 64 * 1024;

/** The hashed text of one part of a tree; streamed until a file's hash has to wait. */
class Part {
  private readonly hasher = createHasher();
  private buffered = "";
  private queued: Array<string | DeferredFile> | undefined;

  text(text: string): void {
    if (this.queued) this.queued.push(text);
    else {
      this.buffered += text;
      if (this.buffered.length > FLUSH_CHARS) {
        this.hasher.update(this.buffered);
        this.buffered = "";
      }
    }
  }

  content(content: string | DeferredFile): void {
    if (typeof content === "string") this.text(content);
    else (this.queued ??= []).push(content);
  }

  changed(): boolean {
    return this.queued?.some((piece) => typeof piece !== "string" && piece.hash === CHANGED_WHILE_RUNNING) ?? false;
  }

  digest(): string {
    let text = this.buffered;
    for (const piece of this.queued ?? []) text += hashOf(piece);
    if (text) this.hasher.update(text);
    return this.hasher.digest();
  }
}

export function fingerprintTree(root: string, exclude: PathMatcher, stamps: StampCache): TreeFingerprint | undefined;
export function fingerprintTree(root: string, exclude: PathMatcher, stamps: StampCache, defer: DeferredHashes): TreeFingerprint | PendingTree | undefined;
export function fingerprintTree(root: string, exclude: PathMatcher, stamps: StampCache, defer?: DeferredHashes): TreeFingerprint | PendingTree | undefined {
  let rootStat: Stats;
  try {
    rootStat = lstatSync(root);
  } catch {
    return undefined;
  }
  const rootDev = rootStat.dev;
  const deferredBefore = defer?.size ?? 0;
  let entries = 0;

  const describe = (part: Part, prefix: string, path: string, st: Stats): void => {
    const base = `${prefix}${typeOf(st)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    if (st.isFile()) {
      const content = defer ? defer.content(path, st) : stamps.hash(path, st);
      if (typeof content === "string") part.text(`${base} ${st.size} ${content}\n`);
      else {
        part.text(`${base} ${st.size} `);
        part.content(content);
        part.text("\n");
      }
    } else if (st.isSymbolicLink()) part.text(`${base} ${readlinkSync(path)}\n`);
    else if (st.isCharacterDevice() || st.isBlockDevice()) part.text(`${base} ${st.rdev}\n`);
    else part.text(`${base}\n`);
  };

  const walk = (dir: string, rel: string, part: Part): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (error) {
      throw new Error(`cannot read directory ${dir}: ${(error as Error).message}`);
    }
    names.sort();
    for (const name of names) {
      const childRel = rel ? `${rel}/${name}` : name;
      if (exclude(childRel)) continue;
      const path = `${dir}/${name}`;
      const st = lstatSync(path);
      entries++;
      describe(part, `${childRel}\0`, path, st);
      if (st.isDirectory() && st.dev === rootDev) walk(path, childRel, part);
    }
  };

  let assemble: () => TreeFingerprint | typeof CHANGED_WHILE_RUNNING;
  if (!rootStat.isDirectory()) {
    const part = new Part();
    describe(part, "", root, rootStat);
    assemble = () => (part.changed() ? CHANGED_WHILE_RUNNING : { hash: part.digest(), entries: 1, parts: {} });
  } else {
    const self = new Part();
    describe(self, ". ", root, rootStat);
    const children: Array<[string, Part]> = [];
    for (const name of readdirSync(root).sort()) {
      if (exclude(name)) continue;
      const path = `${root === "/" ? "" : root}/${name}`;
      const st = lstatSync(path);
      entries++;
      const part = new Part();
      describe(part, `${name}\0`, path, st);
      if (st.isDirectory() && st.dev === rootDev) walk(path, name, part);
      children.push([name, part]);
    }
    assemble = () => {
      if (self.changed() || children.some(([, part]) => part.changed())) return CHANGED_WHILE_RUNNING;
      const top = createHasher();
      top.update(self.digest());
      const parts: Record<string, string> = {};
      for (const [name, part] of children) {
        parts[name] = part.digest();
        top.update(`${name} ${parts[name]}\n`);
      }
      return { hash: top.digest(), entries, parts };
    };
  }
  if (!defer || defer.size === deferredBefore) return assemble() as TreeFingerprint;
  return { finish: assemble };
}
