// The image exclude list: what mksquashfs leaves out of an image, and a matcher that gives the
// same verdict as `mksquashfs -wildcards -ef FILE` for any path, so a tree can be fingerprinted
// without walking what the image will not contain.
import { readFileSync, statSync } from "node:fs";
import { rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { checkPattern, createExcludeMatcher, LEADING_SPACE } from "../../src/fingerprint/patterns.ts";

export { createExcludeMatcher };

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

function sortUnique(lines: readonly string[]): string[] {
  return [...new Set(lines)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}
