// The image exclude list: what mksquashfs leaves out of an image, and a matcher that gives the
// same verdict as `mksquashfs -wildcards -ef FILE` for any path, so a tree can be fingerprinted
// without walking what the image will not contain.
import { readFileSync, statSync } from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { compileComponent, isLiteralComponent } from "./fnmatch.ts";

/** The built-in list, by what it keeps out of the image. Patterns are relative to the image root. */
export const BUILTIN_EXCLUDE_GROUPS: Readonly<Record<string, readonly string[]>> = {
  "virtual and runtime filesystems": ["dev/*", "proc/*", "sys/*", "run/*", "tmp/*", "tmp/.*", "var/tmp/*", "var/tmp/.*", "lost+found/*"],
  "removable media and mount points": ["cdrom/*", "cdrom/.*", "media/*", "mnt/*"],
  "user and root data": ["home/*", "root/*", "root/.*", "srv/*"],
  "secrets and host identity": [
    "etc/ssh/ssh_host_*",
    "etc/epoptes/server.key",
    "etc/mysql/debian.cnf",
    "etc/NetworkManager/system-connections/*",
    "etc/udev/rules.d/??-persistent-*.rules",
  ],
  // Version-control and etckeeper metadata; etc/.java holds system-wide Java preferences.
  "hidden entries in etc except .java": ["etc/.!(java)"],
  "LTSP leftovers": ["opt/ltsp*"],
  swap: ["swapfile", "var/swap"],
  "caches and state": [
    "var/backups/*",
    "var/crash/*",
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/archives/partial/*",
    "var/cache/apt-xapian-index/*",
    "var/cache/lightdm/dmrc/*",
    "var/cache/squid-deb-proxy/*",
    "var/lib/apt/lists/*",
    "var/lib/lightdm/*",
    "var/lib/lightdm/.*",
    "var/lib/mysql/*",
    "var/lib/sudo/*",
    "var/lib/systemd/linger/*",
  ],
  // Rotated and compressed logs, and everything in log subdirectories; cleanup empties the rest.
  logs: ["var/log/*.[1-9]", "var/log/*.gz", "var/log/*.old", "var/log/*/*"],
  "mail and spools": ["var/mail/*", "var/spool/cron/*/*", "var/spool/cups/*", "var/spool/squid/*", "var/spool/squid3/*"],
};

/** The built-in list as one sorted list. `snap/` is deliberately absent: snaps must keep working. */
export const BUILTIN_EXCLUDES: readonly string[] = sortUnique(Object.values(BUILTIN_EXCLUDE_GROUPS).flat());

export interface ExcludeListOptions {
  /** Replaces the built-in list (like a server-side `/etc/ltsp/image.excludes`). */
  base?: readonly string[];
  /** Lines added (ADD_IMAGE_EXCLUDES). */
  add?: readonly string[];
  /** Lines removed from the base list, compared as whole lines (OMIT_IMAGE_EXCLUDES). */
  omit?: readonly string[];
}

/**
 * The exclude list an image is built with: the base list minus `omit` (exact lines), plus `add`,
 * without `#` comment lines and blank lines, sorted and de-duplicated. Sorting compares code
 * units, i.e. the C locale, so the result does not depend on the environment.
 */
export function effectiveExcludes(options: ExcludeListOptions = {}): string[] {
  const omitted = new Set(options.omit ?? []);
  const lines = (options.base ?? BUILTIN_EXCLUDES).filter((line) => !omitted.has(line)).concat(options.add ?? []);
  const kept = lines.filter((line) => !line.startsWith("#") && line.trim() !== "");
  for (const line of kept) checkPattern(line.replace(LEADING_SPACE, ""));
  return sortUnique(kept);
}

/**
 * The lines of an ADD/OMIT setting, which is either the path of a file or the text itself
 * (a value naming an existing regular file is read, as upstream does).
 */
export function excludeSettingLines(value: string): string[] {
  let text = value;
  if (value !== "" && !value.includes("\n") && statSync(value, { throwIfNoEntry: false })?.isFile()) {
    text = readFileSync(value, "utf8");
  }
  return text.split("\n").filter((line) => line !== "");
}

/** Write an exclude file for `mksquashfs -ef`: one pattern a line, written atomically. */
export async function writeExcludesFile(file: string, patterns: readonly string[]): Promise<void> {
  for (const line of patterns) {
    if (line.includes("\n")) throw new Error(`Exclude pattern ${JSON.stringify(line)} contains a line break; give one pattern per entry.`);
  }
  const temporary = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  try {
    await writeFile(temporary, patterns.length ? `${patterns.join("\n")}\n` : "", { mode: 0o644 });
    await rename(temporary, file);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

// mksquashfs reads an exclude file line by line, skips leading white space (C isspace), then
// ignores empty lines and lines starting with "#". Trailing white space stays in the pattern.
const LEADING_SPACE = /^[ \t\n\v\f\r]+/;
const STICKY_PREFIX = "... ";

function checkPattern(pattern: string): void {
  if (pattern.startsWith("/") || pattern.startsWith("./") || pattern.startsWith("../")) {
    const relative = pattern.replace(/^(\.{0,2}\/+)+/, "");
    throw new Error(
      `Exclude pattern ${JSON.stringify(pattern)} starts with "/", "./" or "../", which mksquashfs -wildcards rejects; ` +
        `patterns are relative to the image root: write ${JSON.stringify(relative)}.`,
    );
  }
}

type ComponentTest = (name: string) => boolean;

/**
 * A predicate telling whether mksquashfs excludes a path, given relative to the image root
 * ("etc/.git", "var/log/apt/history.log"). `patterns` are exclude-file lines.
 *
 * mksquashfs matches a pattern one component at a time, each with glibc fnmatch and
 * FNM_PATHNAME|FNM_PERIOD|FNM_EXTMATCH, and an entry matching a whole pattern is left out
 * with everything under it. The predicate is true for such an entry and for all its
 * descendants, so it can be used during a walk (skip a directory it accepts) or on a flat list.
 * A pattern starting with "... " matches at any depth; like mksquashfs, only its first
 * component counts.
 */
export function createExcludeMatcher(patterns: readonly string[]): (relPath: string) => boolean {
  // Patterns whose first component is a plain name are looked up by that name.
  const byFirstName = new Map<string, ComponentTest[][]>();
  const wildFirst: ComponentTest[][] = [];
  const anyDepth: ComponentTest[] = [];
  for (const raw of patterns) {
    const line = raw.replace(LEADING_SPACE, "");
    if (line === "" || line.startsWith("#")) continue;
    checkPattern(line);
    if (line.startsWith(STICKY_PREFIX)) {
      const first = line.slice(STICKY_PREFIX.length).split("/").find((part) => part !== "");
      if (first !== undefined) anyDepth.push(compileComponent(first));
      continue;
    }
    const parts = line.split("/").filter((part) => part !== "");
    const first = parts[0];
    if (first === undefined) continue;
    if (isLiteralComponent(first)) {
      const list = byFirstName.get(first) ?? [];
      list.push(parts.slice(1).map(compileComponent));
      byFirstName.set(first, list);
    } else {
      wildFirst.push(parts.map(compileComponent));
    }
  }
  const matchesFrom = (candidates: readonly ComponentTest[][], names: readonly string[], offset: number) =>
    candidates.some((tests) => tests.length <= names.length - offset && tests.every((test, i) => test(names[i + offset] as string)));
  return (relPath: string) => {
    const names = relPath.split("/").filter((part) => part !== "" && part !== ".");
    const first = names[0];
    if (first === undefined) return false;
    const literal = byFirstName.get(first);
    if (literal && matchesFrom(literal, names, 1)) return true;
    if (matchesFrom(wildFirst, names, 0)) return true;
    return anyDepth.length > 0 && names.some((name) => anyDepth.some((test) => test(name)));
  };
}

function sortUnique(lines: readonly string[]): string[] {
  return [...new Set(lines)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
