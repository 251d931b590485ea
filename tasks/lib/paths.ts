// What is at a path. Anything that cannot be looked at (missing, a file where a directory was
// expected, no permission) counts as not there.
import { lstatSync, statSync, type Stats } from "node:fs";

function look(stat: (path: string) => Stats, path: string): Stats | undefined {
  try {
    return stat(path);
  } catch {
    return undefined;
  }
}

/** A directory, following symlinks. */
export function isDirectory(path: string): boolean {
  return look(statSync, path)?.isDirectory() ?? false;
}

/** A regular file, following symlinks. */
export function isFile(path: string): boolean {
  return look(statSync, path)?.isFile() ?? false;
}

/** Anything at all, a dangling symlink included. */
export function existsNoFollow(path: string): boolean {
  return look(lstatSync, path) !== undefined;
}

/** The path's status, following symlinks, or undefined. */
export function statOrUndefined(path: string): Stats | undefined {
  return look(statSync, path);
}
