// Exclude patterns with mksquashfs `-wildcards` semantics, so a tree is fingerprinted exactly as
// mksquashfs will read it, and excluded paths are never walked.
import { compileComponent, isLiteralComponent } from "./fnmatch.ts";

export type PathMatcher = (relPath: string) => boolean;

// mksquashfs reads an exclude file line by line, skips leading white space (C isspace), then
// ignores empty lines and lines starting with "#". Trailing white space stays in the pattern.
export const LEADING_SPACE = /^[ \t\n\v\f\r]+/;
const STICKY_PREFIX = "... ";

export function checkPattern(pattern: string): void {
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


export function compileExcludes(patterns: readonly string[]): PathMatcher {
  return patterns.length ? createExcludeMatcher(patterns) : () => false;
}
