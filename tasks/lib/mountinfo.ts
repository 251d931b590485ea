// The kernel's mount table (/proc/self/mountinfo) and unmounting with a last-resort lazy umount.
import { readFileSync, realpathSync } from "node:fs";
import { CancelledError } from "../../src/exec.ts";
import type { Exec } from "../../src/exec.ts";

export interface MountEntry {
  id: number;
  parentId: number;
  /** Decoded: `\040` and friends turned back into the characters they stand for. */
  mountPoint: string;
  fsType: string;
  source: string;
}

/** Undoes the kernel's octal escapes in mountinfo paths (`\040` space, `\011` tab, `\012` newline, `\134` backslash). */
export function decodeMountPath(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Parses mountinfo text; entries stay in the kernel's order (a mount comes after its parent). */
export function parseMountInfo(text: string): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const fields = line.split(" ");
    const separator = fields.indexOf("-", 6);
    if (separator < 0) continue;
    entries.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      mountPoint: decodeMountPath(fields[4] ?? ""),
      fsType: fields[separator + 1] ?? "",
      source: decodeMountPath(fields[separator + 2] ?? ""),
    });
  }
  return entries;
}

export function readMountTable(): MountEntry[] {
  return parseMountInfo(readFileSync("/proc/self/mountinfo", "utf8"));
}

function canonical(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path.replace(/\/+$/, "") || "/";
  }
}

/** Mounts on `dir` itself or anywhere below it, in mount order. */
export function mountsBelow(dir: string, table: MountEntry[] = readMountTable()): MountEntry[] {
  const top = canonical(dir);
  const prefix = top === "/" ? "/" : `${top}/`;
  return table.filter((entry) => entry.mountPoint === top || entry.mountPoint.startsWith(prefix));
}

export function isMountPoint(path: string, table: MountEntry[] = readMountTable()): boolean {
  const target = canonical(path);
  return table.some((entry) => entry.mountPoint === target);
}

/**
 * Unmounts `path`. A busy mount gets a second chance after a short pause; only then is it
 * detached lazily (`umount -l`), with a warning, so the run can go on.
 */
export async function unmountPath(path: string, exec: Exec, log: (message: string) => void): Promise<void> {
  let lastError: unknown;
  for (const delayMs of [0, 300]) {
    if (delayMs > 0) await new Promise((done) => setTimeout(done, delayMs));
    try {
      await exec("umount", [path]);
      return;
    } catch (error) {
      if (error instanceof CancelledError) throw error;
      lastError = error;
      if (!isMountPoint(path)) return;
    }
  }
  log(`warning: ${path} is busy (${lastError instanceof Error ? lastError.message.split("\n").pop() : String(lastError)}); detaching it lazily`);
  await exec("umount", ["-l", path]);
}
