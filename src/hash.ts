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
    return hashFdSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Hash what is left to read of an open file. */
export function hashFdSync(fd: number): string {
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
}

/** Incremental hasher over raw bytes, for files read piece by piece. */
export function createByteHasher(): { update(bytes: Uint8Array): void; digest(): string } {
  const state = ready().create64();
  return {
    update(bytes: Uint8Array) {
      state.update(bytes);
    },
    digest() {
      return hex(state.digest());
    },
  };
}

/** Canonical JSON: object keys sorted, so equal documents give equal text. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, sortKeys) ?? "null";
}

/** JSON.stringify replacer: objects with their keys in sorted order (copied only when needed). */
function sortKeys(_key: string, value: unknown): unknown {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return value;
  const keys = Object.keys(value);
  let sorted = true;
  for (let i = 1; i < keys.length; i++) {
    if (keys[i - 1]! > keys[i]!) {
      sorted = false;
      break;
    }
  }
  if (sorted) return value;
  const copy: Record<string, unknown> = {};
  for (const key of keys.sort()) copy[key] = (value as Record<string, unknown>)[key];
  return copy;
}
