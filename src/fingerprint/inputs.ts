// Fingerprints of a task's declared inputs, as key-document fields.
import { lstatSync, readlinkSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import type { InputSpec, Json } from "../types.ts";
import { canonicalJson, hashString } from "../hash.ts";
import { compileExcludes } from "./patterns.ts";
import type { StampCache } from "./stamps.ts";
import { CHANGED_WHILE_RUNNING, hashOf, type DeferredHashes } from "./deferred.ts";
import { fingerprintTree, type TreeFingerprint } from "./tree.ts";

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

export function fileFingerprint(path: string, stamps: StampCache): string;
export function fileFingerprint(path: string, stamps: StampCache, defer: DeferredHashes | undefined): string | PendingInput;
export function fileFingerprint(path: string, stamps: StampCache, defer?: DeferredHashes): string | PendingInput {
  let st;
  try {
    st = statSync(path, { throwIfNoEntry: false });
  } catch {
    return "missing";
  }
  if (!st) return "missing";
  if (st.isDirectory()) return "directory";
  if (!st.isFile()) return "special";
  if (!defer) return stamps.hash(path, st);
  const content = defer.content(path, st);
  return typeof content === "string" ? content : { finish: () => hashOf(content) };
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

/** An input fingerprint that waits for file hashes taken while its task runs (see deferred.ts). */
export interface PendingInput {
  finish(): Json;
}

export function isPending(value: Json | PendingInput): value is PendingInput {
  return typeof value === "object" && value !== null && typeof (value as Partial<PendingInput>).finish === "function";
}

/**
 * The input's fingerprint. With `defer`, file and tree inputs may leave the hashing of files not
 * seen before for later and return a pending fingerprint.
 */
export function fingerprintInput(spec: InputSpec, stamps: StampCache, defer?: DeferredHashes): Json | PendingInput {
  if ("file" in spec) return fileFingerprint(spec.file, stamps, defer);
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
  const exclude = under ? (rel: string) => matcher(`${under}/${rel}`) : matcher;
  const tree = defer ? fingerprintTree(spec.tree, exclude, stamps, defer) : fingerprintTree(spec.tree, exclude, stamps);
  if (!tree) return "missing";
  const asJson = (t: TreeFingerprint | typeof CHANGED_WHILE_RUNNING): Json => (typeof t === "string" ? t : { hash: t.hash, entries: t.entries, parts: t.parts });
  return "finish" in tree ? { finish: () => asJson(tree.finish()) } : asJson(tree);
}
