// Content hashes a task that must run anyway (never built, or forced) can take while it runs
// instead of before: its key is only needed to record the result. The walk before the run keeps
// each file's stamp; the file is hashed later only if its stamp is still the same, so the hash is
// the content the walk saw. A file that changed in between leaves its input marked as changed
// while the task ran, and the next run builds again. Each file is still read once (rule 3).
import { closeSync, fstatSync, openSync, type Stats } from "node:fs";
import { open } from "node:fs/promises";
import { createByteHasher, hashFdSync } from "../hash.ts";
import { isRacy, stampOf, type StampCache } from "./stamps.ts";

/** The fingerprint of an input whose content changed between the walk and the hashing. */
export const CHANGED_WHILE_RUNNING = "changed while the task ran";

export interface DeferredFile {
  readonly path: string;
  readonly st: Stats;
  hash?: string;
}

/** Files above this size are read asynchronously, so a large disk image never blocks the run. */
const ASYNC_FILE_BYTES = 8 * 1024 * 1024;
/** Hashing in the background yields to the event loop after this much work. */
const SLICE_MS = 10;
const CHUNK = 4 * 1024 * 1024;

export class DeferredHashes {
  private readonly files: DeferredFile[] = [];
  private next = 0;

  constructor(private readonly stamps: StampCache) {}

  get size(): number {
    return this.files.length;
  }

  /**
   * The file's hash now if its stamp is known or could still change unseen (racy); otherwise a
   * handle whose hash is filled in later.
   */
  content(path: string, st: Stats): string | DeferredFile {
    const known = this.stamps.known(path, st);
    if (known !== undefined) return known;
    if (isRacy(st, Date.now())) return this.stamps.hash(path, st);
    const file: DeferredFile = { path, st };
    this.files.push(file);
    return file;
  }

  /** Hash what is left, a slice at a time, while the task runs. Stops early when aborted. */
  async prefetch(signal: AbortSignal): Promise<void> {
    let sliceStart = performance.now();
    while (this.next < this.files.length && !signal.aborted) {
      const file = this.files[this.next++]!;
      if (file.st.size > ASYNC_FILE_BYTES) await this.hashLarge(file, signal);
      else this.hashNow(file);
      if (performance.now() - sliceStart > SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
  }

  /** Hash everything not hashed yet. */
  finish(): void {
    while (this.next < this.files.length) this.hashNow(this.files[this.next++]!);
    for (const file of this.files) if (file.hash === undefined) this.hashNow(file);
  }

  private hashNow(file: DeferredFile): void {
    let fd: number;
    try {
      fd = openSync(file.path, "r");
    } catch {
      file.hash = CHANGED_WHILE_RUNNING;
      return;
    }
    try {
      if (stampOf(fstatSync(fd)) !== stampOf(file.st)) file.hash = CHANGED_WHILE_RUNNING;
      else this.record(file, hashFdSync(fd));
    } finally {
      closeSync(fd);
    }
  }

  private async hashLarge(file: DeferredFile, signal: AbortSignal): Promise<void> {
    let handle;
    try {
      handle = await open(file.path, "r");
    } catch {
      file.hash = CHANGED_WHILE_RUNNING;
      return;
    }
    try {
      if (stampOf(await handle.stat()) !== stampOf(file.st)) {
        file.hash = CHANGED_WHILE_RUNNING;
        return;
      }
      const hasher = createByteHasher();
      const buffer = Buffer.allocUnsafe(CHUNK);
      for (;;) {
        if (signal.aborted) return; // left for finish()
        const { bytesRead } = await handle.read(buffer, 0, CHUNK, null);
        if (bytesRead === 0) break;
        hasher.update(buffer.subarray(0, bytesRead));
      }
      this.record(file, hasher.digest());
    } finally {
      await handle.close();
    }
  }

  private record(file: DeferredFile, hash: string): void {
    file.hash = hash;
    this.stamps.remember(file.path, file.st, hash, false);
  }
}

/** Read a deferred file's hash after `finish()`. */
export function hashOf(content: string | DeferredFile): string {
  if (typeof content === "string") return content;
  if (content.hash === undefined) throw new Error(`internal error: ${content.path} was not hashed`);
  return content.hash;
}
