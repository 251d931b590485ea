// Exclude patterns with mksquashfs `-wildcards` semantics: each pattern is matched against the
// whole path relative to the tree root; `*`, `?` and `[...]` never cross `/`; a leading dot in a
// component is matched only explicitly; extended globs such as `!(java)` work. A pattern that
// matches a directory excludes everything below it.
import picomatch from "picomatch";

export type PathMatcher = (relPath: string) => boolean;

export function compileExcludes(patterns: readonly string[]): PathMatcher {
  const cleaned = patterns.map((p) => p.trim().replace(/^\/+/, "")).filter((p) => p && !p.startsWith("#"));
  if (cleaned.length === 0) return () => false;
  const match = picomatch(cleaned, { dot: false, noglobstar: true, strictSlashes: true });
  return (relPath) => match(relPath);
}
