// Content hashing with xxhash64 (xxhash-wasm). Hashes are 16 lowercase hex digits.
import { closeSync, openSync, readSync } from "node:fs";
import xxhash from "xxhash-wasm";

type Api = Awaited<ReturnType<typeof xxhash>>;
let api: Api | undefined;

export async function initHash(): Promise<void> {
  api ??= await xxhash();
}

function ready(): Api {
  if (!api) throw new Error("initHash() must be awaited before hashing");
  return api;
}

function hex(value: bigint): string {
  return value.toString(16).padStart(16, "0");
}

export function hashString(text: string): string {
  return hex(ready().h64(text));
}

export function hashBytes(bytes: Uint8Array): string {
  return hex(ready().h64Raw(bytes));
}

/** Incremental hasher for documents built piece by piece (trees, output sets). */
export function createHasher(): { update(text: string): void; digest(): string } {
  const state = ready().create64();
  return {
    update(text: string) {
      state.update(text);
    },
    digest() {
      return hex(state.digest());
    },
  };
}

const CHUNK = 4 * 1024 * 1024;
let chunk: Buffer | undefined;

/** Hash a file's content, reading it in chunks so large disk images never sit in memory. */
export function hashFileSync(path: string): string {
  const fd = openSync(path, "r");
  try {
    chunk ??= Buffer.allocUnsafe(CHUNK);
    const first = readSync(fd, chunk, 0, CHUNK, null);
    if (first < CHUNK) return hashBytes(chunk.subarray(0, first));
    const state = ready().create64();
    state.update(chunk.subarray(0, first));
    for (;;) {
      const n = readSync(fd, chunk, 0, CHUNK, null);
      if (n === 0) break;
      state.update(chunk.subarray(0, n));
    }
    return hex(state.digest());
  } finally {
    closeSync(fd);
  }
}

/** Canonical JSON: object keys sorted, so equal documents give equal text. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}
