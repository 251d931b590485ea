// Image names and where an image's source lives under the base directory.
//
// Three kinds of images live under BASE: chroots (`BASE/NAME/` holding `proc/`), VM disks
// (`BASE/NAME.img`, usually a symlink to a raw disk) and exported images (`BASE/images/NAME.img`).
// A name ends up on kernel command lines (`nfsroot=…/NAME`), in NFS export lines and in paths, none
// of which can quote, so only a small, safe set of characters is allowed.
import { readdirSync } from "node:fs";
import { machine } from "node:os";
import { basename, join, resolve } from "node:path";
import { existsNoFollow, isDirectory, isFile, statOrUndefined } from "./paths.ts";

/**
 * - `chroot`: a directory holding `proc/`;
 * - `dir`: any other directory (`/`, a separate `/boot`, …);
 * - `vm-disk`: a file to mount (raw or partitioned disk, a filesystem image, qcow2, …);
 * - `image`: an exported image, `BASE/images/NAME.img`.
 */
export type SourceKind = "chroot" | "vm-disk" | "image" | "dir";

export interface ResolvedSource {
  name: string;
  /** The path to mount, as found (not resolved through symlinks). */
  path: string;
  kind: SourceKind;
}

const NAME_CHARACTERS = /^[A-Za-z0-9._+-]+$/;
const MAX_NAME_LENGTH = 200;

function describeCharacter(char: string): string {
  if (char === " ") return "a space";
  if (/\s/.test(char)) return "whitespace";
  if (char === ",") return 'a comma (commas separate mount options in a source, e.g. "NAME,partition=2")';
  if (char === "/") return 'a "/"';
  const code = char.codePointAt(0) ?? 0;
  if (code < 0x20 || code === 0x7f) return `a control character (0x${code.toString(16).padStart(2, "0")})`;
  return `"${char}"`;
}

/** Why `name` is not a valid image name, or undefined when it is. */
export function imageNameProblem(name: string): string | undefined {
  if (name === "") return "it is empty";
  if (name === "." || name === "..") return `"${name}" is not a name`;
  if (name.includes("..")) return 'it contains ".."';
  if (name.startsWith(".")) return 'it starts with "." (such arguments are taken as paths)';
  if (name.startsWith("-")) return 'it starts with "-" (it would look like a command-line option)';
  if (name.length > MAX_NAME_LENGTH) return `it is longer than ${MAX_NAME_LENGTH} characters`;
  if (!NAME_CHARACTERS.test(name)) {
    const bad = [...name].find((char) => !/[A-Za-z0-9._+-]/.test(char)) ?? "";
    return `it contains ${describeCharacter(bad)}`;
  }
  return undefined;
}

/** Returns `name` if it is a valid image name; throws an error naming the problem and the fix otherwise. */
export function validateImageName(name: string, origin?: string): string {
  const problem = imageNameProblem(name);
  if (problem === undefined) return name;
  const from = origin === undefined ? "" : ` (from ${JSON.stringify(origin)})`;
  throw new Error(
    `Invalid image name ${JSON.stringify(name)}${from}: ${problem}. Image names go on kernel command lines, ` +
      `NFS export lines and paths, so they may only use letters, digits, ".", "_", "+" and "-". ` +
      `Rename the chroot, VM disk or image, or give it a valid name with a symlink (ln -s SOURCE /srv/ltsp/NEWNAME).`,
  );
}

/** `uname -m`, with every `*86` mapped to `x86_32` so all 32-bit x86 variants share one name. */
export function architectureName(arch: string = machine()): string {
  return arch.endsWith("86") ? "x86_32" : arch;
}

/**
 * The image name a path gives: its basename, without `.img` for regular files. A path with no
 * basename (`/`, or anything ending in `/`) is named after the architecture. `.` and `..` are named
 * after the directory they stand for. Symlinks are not resolved, so `ln -s / ~/amd64` gives "amd64".
 */
export function nameFromPath(path: string, isFile: boolean): string {
  let name = path.endsWith("/") ? "" : basename(path);
  if (name === "." || name === "..") name = basename(resolve(path));
  if (name === "") return validateImageName(architectureName(), path);
  if (isFile && name.endsWith(".img")) name = name.slice(0, -".img".length);
  return validateImageName(name, path);
}

/** What kind of source an existing path is (see SourceKind). */
function kindOfPath(path: string, baseDir: string): SourceKind {
  const stats = statOrUndefined(path);
  if (stats === undefined) {
    throw new Error(`Image source ${path} does not exist (or is a broken symlink). Check the path, or create it first.`);
  }
  if (stats.isDirectory()) return isDirectory(join(path, "proc")) ? "chroot" : "dir";
  if (resolve(path, "..") === resolve(baseDir, "images") && path.endsWith(".img")) return "image";
  return "vm-disk";
}

/** `given` is the path as the user wrote it (it gives the name), `path` the same path made absolute. */
function fromPath(given: string, path: string, baseDir: string): ResolvedSource {
  const kind = kindOfPath(path, baseDir);
  const dots = !given.endsWith("/") && [".", ".."].includes(basename(given));
  return { name: nameFromPath(dots ? path : given, kind !== "chroot" && kind !== "dir"), path, kind };
}

/**
 * Maps a source argument (only the part before the first comma) to a path, a name and a kind.
 * Arguments starting with `/` or `.` are paths. Anything else is a NAME, looked up in this order:
 * `BASE/NAME/proc` (chroot), `BASE/NAME.img` (VM disk), `BASE/images/NAME.img` (exported image),
 * `BASE/NAME`, `./NAME`.
 */
export function resolveSource(arg: string, baseDir: string, cwd: string = process.cwd()): ResolvedSource {
  return resolveSourcePath(arg.split(",", 1)[0] ?? "", baseDir, cwd);
}

/** As `resolveSource`, for a path or NAME already split from its options (it may contain commas). */
export function resolveSourcePath(target: string, baseDir: string, cwd: string = process.cwd()): ResolvedSource {
  if (target === "") throw new Error(`Empty image source ${JSON.stringify(target)}: give a NAME under ${baseDir} or a path.`);
  if (target.startsWith("/") || target.startsWith(".")) return fromPath(target, resolve(cwd, target), baseDir);

  const chroot = join(baseDir, target);
  if (isDirectory(join(chroot, "proc"))) return { name: validateImageName(target), path: chroot, kind: "chroot" };
  const vmDisk = join(baseDir, `${target}.img`);
  if (isFile(vmDisk)) return { name: validateImageName(target), path: vmDisk, kind: "vm-disk" };
  const image = join(baseDir, "images", `${target}.img`);
  if (isFile(image)) return { name: validateImageName(target), path: image, kind: "image" };
  if (existsNoFollow(chroot)) return fromPath(target, chroot, baseDir);
  const local = resolve(cwd, target);
  if (existsNoFollow(local)) return fromPath(target, local, baseDir);
  throw new Error(
    `Image ${JSON.stringify(target)} does not exist. Looked for a chroot ${chroot}/proc, a VM disk ${vmDisk}, ` +
      `an exported image ${image}, then ${chroot} and ${local}. Create one of them, or give a path.`,
  );
}

function listNames(dir: string, keep: (entry: string) => string | undefined): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return [];
  }
  return entries.flatMap((entry) => {
    const name = keep(entry);
    return name === undefined ? [] : [name];
  });
}

/**
 * Every image under BASE: chroots (`BASE/NAME/proc`), VM disks (`BASE/NAME.img`) and exported
 * images (`BASE/images/NAME.img`), sorted by name, one entry per name, resolved with chroot > VM
 * disk > image priority.
 */
export function discoverImages(baseDir: string): ResolvedSource[] {
  const chroots = listNames(baseDir, (entry) => (isDirectory(join(baseDir, entry, "proc")) ? entry : undefined));
  const imgFile = (dir: string) => (entry: string) =>
    entry.endsWith(".img") && entry !== ".img" && isFile(join(dir, entry)) ? entry.slice(0, -".img".length) : undefined;
  const vmDisks = listNames(baseDir, imgFile(baseDir));
  const images = listNames(join(baseDir, "images"), imgFile(join(baseDir, "images")));
  const byName = new Map<string, ResolvedSource>();
  const add = (name: string, path: string, kind: SourceKind) => {
    validateImageName(name, path);
    if (!byName.has(name)) byName.set(name, { name, path, kind });
  };
  for (const name of chroots) add(name, join(baseDir, name), "chroot");
  for (const name of vmDisks) add(name, join(baseDir, `${name}.img`), "vm-disk");
  for (const name of images) add(name, join(baseDir, "images", `${name}.img`), "image");
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
