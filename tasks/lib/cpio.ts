// A deterministic writer for the uncompressed "newc" cpio format (magic 070701), the format the
// Linux kernel unpacks into its rootfs and initramfs-tools produces.
//
// Layout of one entry: a 110-byte ASCII header, the NUL-terminated name, zero padding up to a
// multiple of 4 (counted from the start of the header), the data, zero padding up to a multiple
// of 4. A `TRAILER!!!` entry ends the archive, and the whole archive is padded to 512 bytes as
// GNU cpio does, so it can be concatenated with other initrds.
import { open, readFile } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";

interface EntryBase {
  /** Path inside the archive, relative, without a leading `./`: `usr/share/ltsp`, or `.` for the root. */
  path: string;
  uid?: number;
  gid?: number;
  /** Seconds since the epoch; defaults to the archive's `mtime`. */
  mtime?: number;
}

export interface CpioDirectory extends EntryBase {
  type: "directory";
  /** Permission bits (0o7777 mask). */
  mode: number;
}

export interface CpioFile extends EntryBase {
  type: "file";
  /** Permission bits (0o7777 mask). */
  mode: number;
  /** The data, or a file whose data is read while the archive is written. */
  content: Buffer | string | { sourcePath: string };
}

export interface CpioSymlink extends EntryBase {
  type: "symlink";
  target: string;
}

export type CpioEntry = CpioDirectory | CpioFile | CpioSymlink;

export interface CpioWriteOptions {
  /** Default modification time of every entry, in seconds since the epoch (default 0). */
  mtime?: number;
  /**
   * Emit names as `./path` instead of `path` (default false). GNU cpio strips a leading `./` from
   * the names `find .` prints, so `find . | cpio -o` gives `.` for the root and `usr/...` for the
   * rest; the kernel and `cpio -i` accept both forms.
   */
  leadingDotSlash?: boolean;
}

export interface CpioWriteResult {
  entries: number;
  bytes: number;
}

const MAGIC = "070701";
const HEADER_SIZE = 110;
const TRAILER = "TRAILER!!!";
const BLOCK_SIZE = 512;
const MAX_FIELD = 0xffffffff;
const FLUSH_BYTES = 1 << 20;

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

function hex8(value: number, field: string, name: string): string {
  if (!Number.isInteger(value) || value < 0 || value > MAX_FIELD) {
    throw new Error(`cpio: ${field} ${value} of ${name} does not fit the newc format (0..${MAX_FIELD})`);
  }
  return value.toString(16).padStart(8, "0").toUpperCase();
}

interface HeaderFields {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  fileSize: number;
  nameSize: number;
}

function header(f: HeaderFields, name: string): Buffer {
  const text =
    MAGIC +
    hex8(f.ino, "inode", name) +
    hex8(f.mode, "mode", name) +
    hex8(f.uid, "uid", name) +
    hex8(f.gid, "gid", name) +
    hex8(f.nlink, "link count", name) +
    hex8(f.mtime, "mtime", name) +
    hex8(f.fileSize, "size", name) +
    "00000000" + // dev major
    "00000000" + // dev minor
    "00000000" + // rdev major
    "00000000" + // rdev minor
    hex8(f.nameSize, "name size", name) +
    "00000000"; // check, always 0 for 070701
  return Buffer.from(text, "ascii");
}

function padding(length: number, alignment: number): Buffer {
  const rest = length % alignment;
  return Buffer.alloc(rest === 0 ? 0 : alignment - rest);
}

/** Validates a relative archive path and returns it normalised (no `./`, no trailing `/`). */
export function normaliseArchivePath(path: string): string {
  let p = path;
  while (p.startsWith("./")) p = p.slice(2);
  if (p.length > 1) p = p.replace(/\/+$/, "");
  if (p === "" || p === ".") return ".";
  if (p.startsWith("/") || p.includes("\0") || p.split("/").some((c) => c === "" || c === "." || c === "..")) {
    throw new Error(`cpio: invalid archive path ${JSON.stringify(path)}: it must be relative, without '.', '..' or empty components`);
  }
  return p;
}

function parentOf(path: string): string | undefined {
  if (path === ".") return undefined;
  const slash = path.lastIndexOf("/");
  return slash < 0 ? undefined : path.slice(0, slash);
}

function archiveName(path: string, leadingDotSlash: boolean): string {
  if (path === ".") return ".";
  return leadingDotSlash ? `./${path}` : path;
}

/** Buffers small writes into large ones. */
class Output {
  private chunks: Buffer[] = [];
  private pending = 0;
  written = 0;

  constructor(private readonly handle: FileHandle) {}

  async push(chunk: Buffer): Promise<void> {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.pending += chunk.length;
    this.written += chunk.length;
    if (this.pending >= FLUSH_BYTES) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.pending === 0) return;
    const data = Buffer.concat(this.chunks, this.pending);
    this.chunks = [];
    this.pending = 0;
    let offset = 0;
    while (offset < data.length) {
      const { bytesWritten } = await this.handle.write(data, offset, data.length - offset);
      offset += bytesWritten;
    }
  }
}

interface Prepared {
  entry: CpioEntry;
  path: string;
  name: string;
  nameBytes: Buffer;
  sortKey: Buffer;
}

/**
 * Sorts and validates the entries. The order is by the bytes of `./path` whatever the names
 * look like: the root first, every directory before its contents (a prefix sorts first), and
 * independent of locale.
 */
function prepare(entries: Iterable<CpioEntry>, leadingDotSlash: boolean): Prepared[] {
  const byPath = new Map<string, Prepared>();
  for (const entry of entries) {
    const path = normaliseArchivePath(entry.path);
    if (byPath.has(path)) throw new Error(`cpio: ${path} is in the archive twice`);
    if (path === "." && entry.type !== "directory") throw new Error("cpio: the root entry '.' must be a directory");
    const name = archiveName(path, leadingDotSlash);
    const sortKey = Buffer.from(archiveName(path, true), "utf8");
    byPath.set(path, { entry, path, name, nameBytes: Buffer.from(`${name}\0`, "utf8"), sortKey });
  }
  for (const { path } of byPath.values()) {
    const parent = parentOf(path);
    if (parent === undefined) continue;
    const p = byPath.get(parent);
    // The kernel creates no missing parents: a file under an absent directory is silently lost.
    if (!p) throw new Error(`cpio: ${path} has no entry for its directory ${parent}`);
    if (p.entry.type !== "directory") throw new Error(`cpio: ${path} is below ${parent}, which is not a directory`);
  }
  return [...byPath.values()].sort((a, b) => Buffer.compare(a.sortKey, b.sortKey));
}

function subdirectoryCounts(prepared: Prepared[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { entry, path } of prepared) {
    if (entry.type !== "directory") continue;
    const parent = parentOf(path) ?? (path === "." ? undefined : ".");
    if (parent !== undefined) counts.set(parent, (counts.get(parent) ?? 0) + 1);
  }
  return counts;
}

async function contentOf(entry: CpioFile): Promise<Buffer> {
  const c = entry.content;
  if (Buffer.isBuffer(c)) return c;
  if (typeof c === "string") return Buffer.from(c, "utf8");
  return readFile(c.sourcePath);
}

/**
 * Writes `entries` as a newc archive to `outPath` (created or truncated). The same entries always
 * give the same bytes: sorted names, inode numbers counted from 0 in that order, no device numbers,
 * times and owners only from the entries and options. This is byte for byte what
 * `find . | LC_ALL=C sort | cpio -o -H newc --reproducible` writes for the same tree.
 */
export async function writeCpioArchive(
  outPath: string,
  entries: Iterable<CpioEntry>,
  options: CpioWriteOptions = {},
): Promise<CpioWriteResult> {
  const defaultMtime = options.mtime ?? 0;
  const prepared = prepare(entries, options.leadingDotSlash ?? false);
  const subdirs = subdirectoryCounts(prepared);
  const handle = await open(outPath, "w", 0o644);
  try {
    const out = new Output(handle);
    let ino = 0;
    for (const item of prepared) {
      const { entry, name, nameBytes } = item;
      let typeBits: number;
      let permissions: number;
      let data: Buffer;
      let nlink = 1;
      if (entry.type === "directory") {
        typeBits = S_IFDIR;
        permissions = entry.mode;
        data = Buffer.alloc(0);
        nlink = 2 + (subdirs.get(item.path) ?? 0);
      } else if (entry.type === "file") {
        typeBits = S_IFREG;
        permissions = entry.mode;
        data = await contentOf(entry);
      } else {
        typeBits = S_IFLNK;
        permissions = 0o777;
        if (entry.target === "" || entry.target.includes("\0")) throw new Error(`cpio: symlink ${name} has an invalid target`);
        data = Buffer.from(entry.target, "utf8");
      }
      if (!Number.isInteger(permissions) || permissions < 0 || permissions > 0o7777) {
        throw new Error(`cpio: mode ${permissions} of ${name} is not a set of permission bits`);
      }
      const head = header(
        {
          ino: ino++,
          mode: typeBits | permissions,
          uid: entry.uid ?? 0,
          gid: entry.gid ?? 0,
          nlink,
          mtime: entry.mtime ?? defaultMtime,
          fileSize: data.length,
          nameSize: nameBytes.length,
        },
        name,
      );
      await out.push(head);
      await out.push(nameBytes);
      await out.push(padding(HEADER_SIZE + nameBytes.length, 4));
      await out.push(data);
      await out.push(padding(data.length, 4));
    }
    const trailerName = Buffer.from(`${TRAILER}\0`, "ascii");
    await out.push(
      header({ ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, fileSize: 0, nameSize: trailerName.length }, TRAILER),
    );
    await out.push(trailerName);
    await out.push(padding(HEADER_SIZE + trailerName.length, 4));
    await out.push(padding(out.written, BLOCK_SIZE));
    await out.flush();
    return { entries: prepared.length, bytes: out.written };
  } finally {
    await handle.close();
  }
}
