// Fingerprints of a task's declared inputs, as key-document fields.
import { lstatSync, readlinkSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import type { InputSpec, Json } from "../types.ts";
import { canonicalJson, hashString } from "../hash.ts";
import { compileExcludes } from "./patterns.ts";
import type { StampCache } from "./stamps.ts";
import { fingerprintTree } from "./tree.ts";

// Loaded on first use: only glob inputs need it.
const require = createRequire(import.meta.url);
let fastGlob: typeof import("fast-glob") | undefined;

/** Globs with more matches than this are recorded as one hash instead of file by file. */
const GLOB_DETAIL_LIMIT = 200;

export function inputLabel(spec: InputSpec): string {
  if ("file" in spec) return `file:${spec.file}`;
  if ("glob" in spec) {
    const patterns = Array.isArray(spec.glob) ? spec.glob.join("|") : spec.glob;
    return `glob:${spec.cwd}:${patterns}${spec.ignore?.length ? `!${spec.ignore.join("|")}` : ""}`;
  }
  const excluded = spec.exclude?.length ? `!${hashString(spec.exclude.join("\n"))}` : "";
  return `tree:${spec.tree}${spec.under ? `@${spec.under}` : ""}${excluded}`;
}

export function fileFingerprint(path: string, stamps: StampCache): string {
  let st;
  try {
    st = statSync(path, { throwIfNoEntry: false });
  } catch {
    return "missing";
  }
  if (!st) return "missing";
  if (st.isDirectory()) return "directory";
  if (!st.isFile()) return "special";
  return stamps.hash(path, st);
}

/** Like fileFingerprint, but a symlink is recorded by its target: globs often look inside images. */
function entryFingerprint(path: string, stamps: StampCache): string {
  try {
    const st = lstatSync(path);
    if (st.isSymbolicLink()) return `link:${readlinkSync(path)}`;
    if (st.isFile()) return stamps.hash(path, st);
  } catch {
    return "missing";
  }
  return fileFingerprint(path, stamps);
}

export function fingerprintInput(spec: InputSpec, stamps: StampCache): Json {
  if ("file" in spec) return fileFingerprint(spec.file, stamps);
  if ("glob" in spec) {
    fastGlob ??= require("fast-glob") as typeof import("fast-glob");
    const files = fastGlob
      .sync(spec.glob, { cwd: spec.cwd, dot: true, onlyFiles: true, followSymbolicLinks: false, ignore: spec.ignore ?? [] })
      .sort();
    const detail: Record<string, string> = {};
    for (const rel of files) detail[rel] = entryFingerprint(`${spec.cwd}/${rel}`, stamps);
    if (files.length <= GLOB_DETAIL_LIMIT) return detail;
    return { files: files.length, hash: hashString(canonicalJson(detail)) };
  }
  const matcher = compileExcludes(spec.exclude ?? []);
  const under = spec.under?.replace(/^\/+|\/+$/g, "");
  const tree = fingerprintTree(spec.tree, under ? (rel) => matcher(`${under}/${rel}`) : matcher, stamps);
  if (!tree) return "missing";
  return { hash: tree.hash, entries: tree.entries, parts: tree.parts };
}
