// File operations confined to an image root. Symbolic links inside the image are followed the
// way the image itself would see them once booted: an absolute target starts again at the
// image root and ".." stops there, so no path can reach the host's files. The last component of
// a path is never followed by the operations that change it: they act on the link itself.
// The image is not being changed by anything else while it is cleaned, so checking a path and
// then using it is safe.
import { constants, type Stats } from "node:fs";
import { lstat, mkdir, open, readdir, readlink, realpath, rename, rm, stat, symlink, unlink } from "node:fs/promises";
import path from "node:path";

const MAX_LINK_HOPS = 40;

export interface FileOwnership {
  mode: number;
  uid: number;
  gid: number;
}

export class ImageRoot {
  private constructor(readonly root: string) {}

  /** Opens a root directory; refuses the host's own root, which cleaning would ruin. */
  static async open(root: string): Promise<ImageRoot> {
    let real: string;
    try {
      real = await realpath(root);
    } catch {
      throw new Error(`The image root ${root} does not exist; mount or create it first.`);
    }
    const [info, hostRoot] = await Promise.all([stat(real), stat("/")]);
    if (!info.isDirectory()) throw new Error(`The image root ${root} is not a directory.`);
    if (real === "/" || (info.dev === hostRoot.dev && info.ino === hostRoot.ino)) {
      throw new Error(`Refusing to modify ${root}: it is the host's own root. Work on an overlay of it instead.`);
    }
    return new ImageRoot(real);
  }

  /**
   * The host path of `rel`, with every directory on the way resolved inside the root. The last
   * component is resolved too when `followLast` is set. Undefined when a directory on the way
   * does not exist or is not a directory.
   */
  async resolve(rel: string, followLast = false): Promise<string | undefined> {
    const pending = components(rel);
    const done: string[] = [];
    let hops = 0;
    while (pending.length > 0) {
      const name = pending.shift() as string;
      if (name === "..") {
        done.pop();
        continue;
      }
      const isLast = pending.length === 0;
      const candidate = path.join(this.root, ...done, name);
      if (isLast && !followLast) {
        done.push(name);
        break;
      }
      const info = await lstat(candidate).catch(() => undefined);
      if (!info) {
        if (isLast) {
          done.push(name);
          break;
        }
        return undefined;
      }
      if (info.isSymbolicLink()) {
        if (++hops > MAX_LINK_HOPS) throw new Error(`Too many symbolic links while resolving ${rel} in ${this.root}; the image has a link loop.`);
        const target = await readlink(candidate);
        if (target.startsWith("/")) done.length = 0;
        pending.unshift(...components(target));
        continue;
      }
      if (!isLast && !info.isDirectory()) return undefined;
      done.push(name);
    }
    const resolved = path.join(this.root, ...done);
    if (resolved !== this.root && !resolved.startsWith(this.root + path.sep)) {
      throw new Error(`Internal error: ${rel} resolved outside ${this.root}.`);
    }
    return resolved;
  }

  /** The entry itself (a link is not followed). */
  async lstat(rel: string): Promise<Stats | undefined> {
    const where = await this.resolve(rel);
    return where === undefined ? undefined : lstat(where).catch(() => undefined);
  }

  /** What the entry is once links are followed inside the root. */
  async stat(rel: string): Promise<Stats | undefined> {
    const where = await this.resolve(rel, true);
    return where === undefined ? undefined : lstat(where).catch(() => undefined);
  }

  /** The content of a regular file, links followed inside the root; undefined if there is none. */
  async readText(rel: string): Promise<string | undefined> {
    const where = await this.resolve(rel, true);
    if (where === undefined) return undefined;
    const info = await lstat(where).catch(() => undefined);
    if (!info?.isFile()) return undefined;
    const handle = await open(where, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      return await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  }

  /** Entries of a directory, links followed inside the root; empty if there is no such directory. */
  async list(rel: string): Promise<string[]> {
    const where = await this.resolve(rel, true);
    if (where === undefined) return [];
    const info = await lstat(where).catch(() => undefined);
    if (!info?.isDirectory()) return [];
    return readdir(where);
  }

  /**
   * Replace the entry with a new regular file, written beside it and renamed over it, so a link
   * at that place is replaced, not followed.
   */
  async replaceFile(rel: string, content: string | Buffer, owner: FileOwnership): Promise<void> {
    const where = await this.requireParent(rel);
    const existing = await lstat(where).catch(() => undefined);
    if (existing?.isDirectory()) throw new Error(`Cannot replace ${rel} in ${this.root}: it is a directory.`);
    const temporary = path.join(path.dirname(where), `.${path.basename(where)}.ltsp-make-${process.pid}`);
    await rm(temporary, { force: true });
    const handle = await open(temporary, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await handle.writeFile(content);
      await handle.chown(owner.uid, owner.gid);
      await handle.chmod(owner.mode & 0o7777);
    } catch (error) {
      await handle.close();
      await rm(temporary, { force: true });
      throw error;
    }
    await handle.close();
    await rename(temporary, where);
  }

  /**
   * Empty a regular file. It is opened with O_TRUNC and written, not truncate(2)d, which
   * overlayfs has mishandled; a file with other hard links is replaced instead, so the other
   * names keep their content. A link or anything but a regular file is left alone.
   */
  async empty(rel: string): Promise<boolean> {
    const where = await this.resolve(rel);
    if (where === undefined) return false;
    const info = await lstat(where).catch(() => undefined);
    if (!info?.isFile()) return false;
    if (info.nlink > 1) {
      await this.replaceFile(rel, "", info);
      return true;
    }
    const handle = await open(where, constants.O_WRONLY | constants.O_TRUNC | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      const opened = await handle.stat();
      if (!opened.isFile() || opened.ino !== info.ino || opened.dev !== info.dev) {
        throw new Error(`${rel} in ${this.root} changed while it was being emptied; run the cleanup again.`);
      }
      await handle.write(Buffer.alloc(0));
    } finally {
      await handle.close();
    }
    return true;
  }

  /** Set mode and owner of a regular file (never through a link). */
  async setOwnership(rel: string, owner: FileOwnership): Promise<void> {
    const where = await this.resolve(rel);
    if (where === undefined) throw new Error(`${rel} does not exist in ${this.root}.`);
    const handle = await open(where, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    try {
      if (!(await handle.stat()).isFile()) throw new Error(`${rel} in ${this.root} is not a regular file.`);
      await handle.chown(owner.uid, owner.gid);
      await handle.chmod(owner.mode & 0o7777);
    } finally {
      await handle.close();
    }
  }

  /** Remove an entry that is not a directory (a link is removed, not its target). */
  async remove(rel: string): Promise<boolean> {
    const where = await this.resolve(rel);
    if (where === undefined) return false;
    const info = await lstat(where).catch(() => undefined);
    if (!info || info.isDirectory()) return false;
    await unlink(where);
    return true;
  }

  /** Make `rel` a symbolic link to `target`, replacing an entry that is not a directory. */
  async symlink(rel: string, target: string): Promise<void> {
    const where = await this.requireParent(rel);
    const info = await lstat(where).catch(() => undefined);
    if (info?.isDirectory()) throw new Error(`Cannot make ${rel} in ${this.root} a symbolic link: it is a directory.`);
    if (info) await unlink(where);
    await symlink(target, where);
  }

  /**
   * Create a directory and its parents inside the root, following links inside the root. Each
   * level is created alone: a resolved path's parent is always a directory checked on the way.
   */
  async mkdir(rel: string, mode = 0o755): Promise<string> {
    let current = "";
    for (const name of components(rel)) {
      current = current ? `${current}/${name}` : name;
      const where = await this.resolve(current, true);
      if (where === undefined) throw new Error(`Cannot create ${rel} in ${this.root}: ${current} does not lead to a directory inside the image.`);
      const info = await lstat(where).catch(() => undefined);
      if (!info) await mkdir(where, { mode });
      else if (!info.isDirectory()) throw new Error(`Cannot create ${rel} in ${this.root}: ${current} is not a directory.`);
    }
    return (await this.resolve(rel, true)) as string;
  }

  /**
   * A host path for a program to create `rel` at. The directory is resolved inside the root and
   * nothing may exist at that name yet, so the program cannot be led outside by a link.
   */
  async pathForNewFile(rel: string): Promise<string> {
    const where = await this.requireParent(rel);
    if (await lstat(where).catch(() => undefined)) throw new Error(`Internal error: ${rel} in ${this.root} exists already.`);
    return where;
  }

  private async requireParent(rel: string): Promise<string> {
    const where = await this.resolve(rel);
    const parent = where === undefined ? undefined : await lstat(path.dirname(where)).catch(() => undefined);
    if (where === undefined || !parent?.isDirectory()) {
      throw new Error(`Cannot write ${rel} in ${this.root}: its directory does not exist.`);
    }
    return where;
  }
}

function components(rel: string): string[] {
  return rel.split("/").filter((name) => name !== "" && name !== ".");
}
