// The image source syntax: a chain of entries separated by ",,", each `PATH[,option…]`.
//   /,,/boot,subdir=boot
//   name,partition=2
//   image.iso,fstype=iso9660,,casper/filesystem.squashfs,fstype=squashfs
// Leading `fstype=`, `partition=` and `subdir=` options (in any order) are ours; the first other
// option and everything after it go to `mount -o`.

export interface SourceEntry {
  /** The path, or for the first entry possibly a NAME under the base directory. */
  path: string;
  /** Filesystem type to mount a file with, instead of probing it. */
  fstype?: string;
  /** 1-based partition number of a disk, instead of looking for the root partition. */
  partition?: number;
  /** Where to mount the entry, relative to the root ("" for the root itself). */
  subdir: string;
  /** Options for `mount -o`; ignored for directories. */
  options: string[];
}

function specError(spec: string, problem: string, fix: string): Error {
  return new Error(`Invalid image source ${JSON.stringify(spec)}: ${problem}. ${fix}`);
}

function parseSubdir(spec: string, value: string): string {
  if (value.startsWith("/")) {
    throw specError(spec, `subdir=${value} is absolute`, `Write it relative to the image root, e.g. subdir=${value.replace(/^\/+/, "")}.`);
  }
  const parts = value.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.includes("..")) {
    throw specError(spec, `subdir=${value} contains ".."`, "It must stay inside the image root, e.g. subdir=boot/efi.");
  }
  return parts.join("/");
}

function parsePartition(spec: string, value: string): number {
  if (!/^[1-9][0-9]*$/.test(value)) {
    throw specError(spec, `partition=${value} is not a partition number`, "Use a positive integer as in sfdisk's listing, e.g. partition=2.");
  }
  return Number(value);
}

function parseEntry(spec: string, text: string): SourceEntry {
  const [path = "", ...options] = text.split(",");
  if (path === "") {
    throw specError(spec, `the entry ${JSON.stringify(text)} has no path`, 'Write each entry as PATH[,option…] and separate entries with ",,".');
  }
  const entry: SourceEntry = { path, subdir: "", options: [] };
  const seen = new Set<string>();
  while (options.length > 0) {
    const option = options[0] ?? "";
    const match = /^(fstype|partition|subdir)=(.*)$/.exec(option);
    if (!match) break;
    options.shift();
    const key = match[1] ?? "";
    const value = match[2] ?? "";
    if (seen.has(key)) throw specError(spec, `${key}= is given twice for ${path}`, "Give it once.");
    seen.add(key);
    if (key === "fstype") {
      if (!/^[A-Za-z0-9._+-]+$/.test(value)) {
        throw specError(spec, `fstype=${value} is not a filesystem type`, "Use a type mount(8) knows, e.g. fstype=ext4 or fstype=squashfs.");
      }
      entry.fstype = value;
    } else if (key === "partition") {
      entry.partition = parsePartition(spec, value);
    } else {
      entry.subdir = parseSubdir(spec, value);
    }
  }
  if (options.some((option) => option === "")) {
    throw specError(spec, `the entry for ${path} has an empty mount option`, 'Separate entries with exactly ",," and options with ",".');
  }
  for (const option of options) {
    const special = /^(fstype|partition|subdir)=/.exec(option);
    if (special) {
      throw specError(
        spec,
        `${special[1]}= comes after the mount option ${JSON.stringify(options[0])}`,
        `Put fstype=, partition= and subdir= right after the path, before other mount options.`,
      );
    }
  }
  entry.options = options;
  return entry;
}

/** Parses `ENTRY[,,ENTRY…]`; throws an error naming the problem and the fix. */
export function parseSourceSpec(spec: string): SourceEntry[] {
  if (spec.trim() === "") throw specError(spec, "it is empty", "Give an image NAME or a path, e.g. /srv/ltsp/debian or /,,/boot,subdir=boot.");
  if (/[\n\r\0]/.test(spec)) throw specError(spec, "it contains a line break or NUL", "Remove it.");
  return spec.split(",,").map((text) => parseEntry(spec, text));
}

/** The canonical text of a parsed chain, so equal sources compare equal (e.g. in a task's key). */
export function formatSourceSpec(entries: readonly SourceEntry[]): string {
  return entries
    .map((entry) => {
      const parts = [entry.path];
      if (entry.fstype !== undefined) parts.push(`fstype=${entry.fstype}`);
      if (entry.partition !== undefined) parts.push(`partition=${entry.partition}`);
      if (entry.subdir !== "") parts.push(`subdir=${entry.subdir}`);
      return [...parts, ...entry.options].join(",");
    })
    .join(",,");
}
