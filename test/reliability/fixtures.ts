// Small data for reliability tests.
import { createHash } from "node:crypto";

/** Incompressible bytes, the same every time. */
export function fakeBinaryFiles(size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash("sha256").update("seed").digest();
  for (let i = 0; i < size; i += block.length) {
    block = createHash("sha256").update(block).digest();
    block.copy(out, i);
  }
  return out;
}
