// A read-only view of an image's file tree: a real directory, or a squashfs file read with
// unsquashfs (no mount). Symlinks are followed inside the view: absolute targets start at the
// image root, `..` stops at the root, and loops fail after MAX_SYMLINK_HOPS.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import picomatch from "picomatch";
import type { Exec } from "../../src/exec.ts";
import { pidAlive } from "../../src/processes.ts";

export type EntryType = "file" | "dir" | "symlink" | "other";

export interface EntryInfo {
  type: EntryType;
  /** Bytes for files; the target's length for symlinks. */
  size: number;
}

export type TreePathErrorCode = "ENOENT" | "ENOTDIR" | "ELOOP" | "EINVAL";

export class TreePathError extends Error {
  constructor(
    message: string,
    readonly code: TreePathErrorCode,
    readonly path: string,
  ) {
    super(message);
    this.name = "TreePathError";
  }
}

/** Same limit as Linux's path walk. */
export const MAX_SYMLINK_HOPS = 40;

function components(rel: string): string[] {
  return rel.split("/").filter((part) => part !== "" && part !== ".");
}

function isMissing(error: unknown): boolean {
  return error instanceof TreePathError && (error.code === "ENOENT" || error.code === "ENOTDIR");
}

/**
 * Paths given to the public methods are relative to the image root (a leading `/` is allowed and
 * means the same). Paths given to the `*Real` primitives are normalised and contain no symlink
 * before their last component, so an implementation can look them up directly.
 */
export abstract class TreeView {
  /** Names the tree in messages (an image file, a chroot directory). */
  abstract readonly description: string;

  protected abstract lstatReal(real: string): Promise<EntryInfo | undefined>;
  protected abstract readlinkReal(real: string): Promise<string>;
  protected abstract listReal(real: string): Promise<string[]>;
  /** Copies a regular file's content to `destPath`, keeping its modification time. */
  protected abstract copyOutReal(real: string, destPath: string): Promise<void>;

  /** Type and size of `rel` itself (a final symlink is not followed); undefined if missing. */
  async lstat(rel: string): Promise<EntryInfo | undefined> {
    try {
      return (await this.walk(rel, false)).info;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  /** Type and size of what `rel` resolves to; undefined if missing or dangling. Throws on loops. */
  async stat(rel: string): Promise<EntryInfo | undefined> {
    try {
      return (await this.walk(rel, true)).info;
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  async readlink(rel: string): Promise<string> {
    const { real, info } = await this.walk(rel, false);
    if (info?.type !== "symlink") {
      throw new TreePathError(`${rel} is not a symlink in ${this.description}`, "EINVAL", rel);
    }
    return this.readlinkReal(real);
  }

  /** Names in a directory (symlinks to directories are followed). */
  async list(dirRel: string): Promise<string[]> {
    const real = await this.resolve(dirRel);
    const info = await this.lstatReal(real);
    if (info?.type !== "dir") {
      throw new TreePathError(`${dirRel || "/"} is not a directory in ${this.description}`, "ENOTDIR", dirRel);
    }
    return this.listReal(real);
  }

  /** Writes the content of the regular file `rel` resolves to at `destPath`, keeping its mtime. */
  async copyOut(rel: string, destPath: string): Promise<void> {
    await this.copyOutMany([[rel, destPath]]);
  }

  /** copyOut for several files; a view may read them all in one pass. */
  async copyOutMany(pairs: ReadonlyArray<readonly [rel: string, destPath: string]>): Promise<void> {
    const reals: Array<[string, string]> = [];
    for (const [rel, destPath] of pairs) {
      const real = await this.resolve(rel);
      const info = await this.lstatReal(real);
      if (info?.type !== "file") {
        throw new TreePathError(`${rel} is not a regular file in ${this.description}`, "EINVAL", rel);
      }
      reals.push([real, destPath]);
    }
    await this.copyOutRealMany(reals);
  }

  protected async copyOutRealMany(pairs: ReadonlyArray<readonly [real: string, destPath: string]>): Promise<void> {
    for (const [real, destPath] of pairs) await this.copyOutReal(real, destPath);
  }

  /** The path `rel` points to once every symlink is followed inside the view. It must exist. */
  async resolve(rel: string): Promise<string> {
    const { real, info } = await this.walk(rel, true);
    if (!info) throw new TreePathError(`${rel} does not exist in ${this.description}`, "ENOENT", rel);
    return real;
  }

  /**
   * Walks `rel` one component at a time. Only the last component may be missing (info is then
   * undefined); a missing or non-directory component before it throws.
   */
  private async walk(rel: string, followLast: boolean): Promise<{ real: string; info: EntryInfo | undefined }> {
    const pending = components(rel).reverse();
    let done: string[] = [];
    let info: EntryInfo | undefined = await this.lstatReal("");
    const hops: string[] = [];
    while (pending.length > 0) {
      const name = pending.pop() as string;
      if (name === ".") continue;
      if (name === "..") {
        done.pop();
        info = await this.lstatReal(done.join("/"));
        continue;
      }
      const candidate = [...done, name].join("/");
      const isLast = pending.length === 0;
      info = await this.lstatReal(candidate);
      if (!info) {
        if (isLast) return { real: candidate, info: undefined };
        throw new TreePathError(`${candidate} does not exist in ${this.description} (resolving ${rel})`, "ENOENT", rel);
      }
      if (info.type === "symlink" && (followLast || !isLast)) {
        const target = await this.readlinkReal(candidate);
        hops.push(`${candidate} -> ${target}`);
        if (hops.length > MAX_SYMLINK_HOPS) {
          const chain = hops.slice(0, 4).join(", ");
          throw new TreePathError(
            `Symlink loop while resolving ${rel} in ${this.description}: more than ${MAX_SYMLINK_HOPS} symlinks followed (${chain}, …). Fix or remove the looping symlink in the image.`,
            "ELOOP",
            rel,
          );
        }
        if (target.startsWith("/")) done = [];
        pending.push(...components(target).reverse());
        if (pending.length === 0) info = await this.lstatReal(done.join("/"));
        continue;
      }
      if (!isLast && info.type !== "dir") {
        throw new TreePathError(`${candidate} is not a directory in ${this.description} (resolving ${rel})`, "ENOTDIR", rel);
      }
      done.push(name);
    }
    return { real: done.join("/"), info };
  }
}

function entryType(stats: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): EntryType {
  if (stats.isFile()) return "file";
  if (stats.isDirectory()) return "dir";
  if (stats.isSymbolicLink()) return "symlink";
  return "other";
}

/** A real directory: a chroot, or a mounted disk or overlay. */
export class DirView extends TreeView {
  readonly description: string;

  constructor(
    readonly root: string,
    label?: string,
  ) {
    super();
    this.description = label ?? root;
  }

  private hostPath(real: string): string {
    return real === "" ? this.root : path.join(this.root, real);
  }

  protected async lstatReal(real: string): Promise<EntryInfo | undefined> {
    try {
      const stats = await fs.lstat(this.hostPath(real));
      return { type: entryType(stats), size: stats.size };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") return undefined;
      throw error;
    }
  }

  protected readlinkReal(real: string): Promise<string> {
    return fs.readlink(this.hostPath(real));
  }

  protected listReal(real: string): Promise<string[]> {
    return fs.readdir(this.hostPath(real));
  }

  protected async copyOutReal(real: string, destPath: string): Promise<void> {
    const source = this.hostPath(real);
    await fs.copyFile(source, destPath);
    const stats = await fs.stat(source);
    await fs.utimes(destPath, stats.atimeMs / 1000, stats.mtimeMs / 1000);
  }
}

export interface ListedEntry extends EntryInfo {
  /** Symlink target, for symlinks. */
  target?: string;
}

const LISTING_LINE =
  /^([-dlcbps])[-rwxsStT]{9} \S+\/\S+ +(\d+|\d+, *\d+) \d{4}-\d\d-\d\d \d\d:\d\d squashfs-root(.*)$/s;
const LINK_ARROW = " -> ";

function listedType(letter: string): EntryType {
  if (letter === "-") return "file";
  if (letter === "d") return "dir";
  if (letter === "l") return "symlink";
  return "other";
}

/**
 * Parses `unsquashfs -lln` output (given as raw bytes). Keys are paths relative to the root
 * ("" is the root). A line that does not start like an entry continues the previous entry's
 * name (names may contain newlines). A symlink's target is the last `size` bytes of the line,
 * so names containing " -> " are handled.
 */
export function parseUnsquashfsListing(output: Buffer): Map<string, ListedEntry> {
  // latin1 keeps one character per byte, so byte counts can be applied to the strings.
  const lines = output.toString("latin1").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  const records: string[] = [];
  for (const line of lines) {
    if (LISTING_LINE.test(line) || records.length === 0) records.push(line);
    else records[records.length - 1] += `\n${line}`;
  }
  const entries = new Map<string, ListedEntry>();
  for (const record of records) {
    const match = LISTING_LINE.exec(record);
    if (!match) throw new Error(`Unexpected unsquashfs listing line: ${JSON.stringify(record.slice(0, 200))}`);
    const type = listedType(match[1] as string);
    const sizeText = match[2] as string;
    const size = sizeText.includes(",") ? 0 : Number(sizeText);
    let name = match[3] as string;
    let target: string | undefined;
    if (type === "symlink") {
      const arrowAt = name.length - size - LINK_ARROW.length;
      if (arrowAt < 0 || name.slice(arrowAt, arrowAt + LINK_ARROW.length) !== LINK_ARROW) {
        throw new Error(`Unexpected unsquashfs symlink line: ${JSON.stringify(record.slice(0, 200))}`);
      }
      target = Buffer.from(name.slice(arrowAt + LINK_ARROW.length), "latin1").toString("utf8");
      name = name.slice(0, arrowAt);
    }
    const rel = Buffer.from(name.replace(/^\//, ""), "latin1").toString("utf8");
    entries.set(rel, target === undefined ? { type, size } : { type, size, target });
  }
  if (entries.get("")?.type !== "dir") throw new Error("unsquashfs listing has no root directory");
  return entries;
}

/** A squashfs image, listed once with `unsquashfs -lln` and read by extracting single files. */
export class SquashfsView extends TreeView {
  readonly description: string;
  private entries: Promise<{ byPath: Map<string, ListedEntry>; children: Map<string, string[]> }> | undefined;

  constructor(
    readonly imagePath: string,
    private readonly exec: Exec,
  ) {
    super();
    this.description = imagePath;
  }

  private load() {
    this.entries ??= (async () => {
      const { stdout } = await this.exec("unsquashfs", ["-lln", this.imagePath], { binary: true });
      const byPath = parseUnsquashfsListing(stdout);
      const children = new Map<string, string[]>();
      for (const rel of byPath.keys()) {
        if (rel === "") continue;
        const slash = rel.lastIndexOf("/");
        const parent = slash < 0 ? "" : rel.slice(0, slash);
        const names = children.get(parent) ?? [];
        names.push(rel.slice(slash + 1));
        children.set(parent, names);
      }
      return { byPath, children };
    })();
    return this.entries;
  }

  protected async lstatReal(real: string): Promise<EntryInfo | undefined> {
    const entry = (await this.load()).byPath.get(real);
    return entry && { type: entry.type, size: entry.size };
  }

  protected async readlinkReal(real: string): Promise<string> {
    const target = (await this.load()).byPath.get(real)?.target;
    if (target === undefined) throw new TreePathError(`${real} is not a symlink in ${this.description}`, "EINVAL", real);
    return target;
  }

  protected async listReal(real: string): Promise<string[]> {
    return [...((await this.load()).children.get(real) ?? [])];
  }

  protected async copyOutReal(real: string, destPath: string): Promise<void> {
    await this.copyOutRealMany([[real, destPath]]);
  }

  /** One unsquashfs for the files that go to one directory (the image's tables are read once). */
  protected override async copyOutRealMany(pairs: ReadonlyArray<readonly [real: string, destPath: string]>): Promise<void> {
    // Groups of distinct source files with one destination directory.
    const groups: Array<{ dir: string; pairs: Array<readonly [string, string]> }> = [];
    for (const pair of pairs) {
      const dir = path.dirname(pair[1]);
      const group = groups.find((g) => g.dir === dir && !g.pairs.some(([real]) => real === pair[0]));
      if (group) group.pairs.push(pair);
      else groups.push({ dir, pairs: [pair] });
    }
    for (const { dir, pairs: group } of groups) {
      // Extract next to the destinations, so the final step is a rename on the same filesystem.
      // The scratch name carries our PID: what a killed run left is removed here by the next one.
      await removeDeadScratch(dir);
      const scratch = await fs.mkdtemp(path.join(dir, `${SCRATCH_PREFIX}${process.pid}-`));
      try {
        const into = path.join(scratch, "root");
        await this.exec("unsquashfs", ["-q", "-n", "-no-xattrs", "-no-wildcards", "-d", into, this.imagePath, ...group.map(([real]) => real)]);
        for (const [real, destPath] of group) {
          const extracted = path.join(into, real);
          const stats = await fs.lstat(extracted).catch(() => undefined);
          if (!stats?.isFile()) {
            throw new Error(`unsquashfs did not extract ${real} from ${this.imagePath}; is the image damaged?`);
          }
          await fs.rename(extracted, destPath);
        }
      } finally {
        await fs.rm(scratch, { recursive: true, force: true });
      }
    }
  }
}

const SCRATCH_PREFIX = ".unsquashfs-";

/** Scratch directories of extractions whose process is gone (a killed run). */
async function removeDeadScratch(dir: string): Promise<void> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(SCRATCH_PREFIX)) continue;
    const pid = Number(name.slice(SCRATCH_PREFIX.length).split("-")[0]);
    // Older names had no PID: nothing can be using them across runs either.
    if (!Number.isInteger(pid) || pid <= 0 || (pid !== process.pid && !pidAlive(pid))) {
      await fs.rm(path.join(dir, name), { recursive: true, force: true });
    }
  }
}

/**
 * Expands a shell-like glob relative to the view's root: `*`, `?` and `[…]` within one path
 * component (never across `/`), no match for names starting with a dot unless spelled out.
 * Returns the matching paths as spelled by the pattern (symlinks in them are not resolved);
 * literal components are kept without checking that they exist.
 */
export async function globView(view: TreeView, pattern: string): Promise<string[]> {
  let paths = [""];
  for (const segment of components(pattern)) {
    if (!picomatch.scan(segment).isGlob) {
      paths = paths.map((p) => (p === "" ? segment : `${p}/${segment}`));
      continue;
    }
    const matches = picomatch(segment, { dot: false, nobrace: true, noextglob: true });
    const next: string[] = [];
    for (const dir of paths) {
      if ((await view.stat(dir))?.type !== "dir") continue;
      for (const name of (await view.list(dir)).sort()) {
        if (matches(name)) next.push(dir === "" ? name : `${dir}/${name}`);
      }
    }
    paths = next;
  }
  return paths;
}

/** A temporary name in the same directory as `finalPath`, for write-then-rename. */
