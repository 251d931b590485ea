// Output content hashes: what dependents see (early cutoff, design rule 2) and what every plan
// verifies (design rule 4).
import { lstatSync, readlinkSync } from "node:fs";
import { canonicalJson, hashString } from "./hash.ts";
import type { StampCache } from "./fingerprint/stamps.ts";
import { fingerprintTree } from "./fingerprint/tree.ts";
import type { OutputRecord, TaskRecord } from "./state/store.ts";
import type { Json } from "./types.ts";

const nothingExcluded = () => false;

/** The current state of one output path, or undefined if it does not exist. */
export function observeOutput(path: string, stamps: StampCache): OutputRecord | undefined {
  let st;
  try {
    st = lstatSync(path, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
  if (!st) return undefined;
  if (st.isFile()) return stamps.hash(path, st);
  if (st.isSymbolicLink()) return hashString(`link:${readlinkSync(path)}`);
  if (st.isDirectory()) return fingerprintTree(path, nothingExcluded, stamps)!.hash;
  return "special";
}

/** Reasons a recorded task's outputs no longer match what it published. */
export function verifyOutputs(record: TaskRecord, stamps: StampCache): string[] {
  const reasons: string[] = [];
  for (const path in record.outputs) {
    const recorded = record.outputs[path];
    const now = observeOutput(path, stamps);
    if (!now) reasons.push(`output ${path} is missing`);
    else if (now !== recorded) reasons.push(`output ${path} was modified since it was built`);
  }
  return reasons;
}

export function outputHashOf(keyHash: string, outputs: Record<string, OutputRecord>, value: Json | undefined): string {
  const paths = Object.keys(outputs);
  if (paths.length === 0 && value === undefined) return keyHash;
  const hashes: Record<string, string> = {};
  for (const path of paths.sort()) hashes[path] = outputs[path]!;
  return hashString(canonicalJson({ outputs: hashes, value: value ?? null }));
}

/**
 * Re-read a recorded task's outputs after they were changed on purpose (e.g. an image reverted
 * to an older generation): the record keeps its key but now describes what is published, so
 * the task stays fresh and its dependents see the new content.
 */
export function adoptOutputs(record: TaskRecord, stamps: StampCache): TaskRecord {
  const outputs: Record<string, OutputRecord> = {};
  for (const path of Object.keys(record.outputs)) {
    const now = observeOutput(path, stamps);
    if (!now) throw new Error(`${path} does not exist`);
    outputs[path] = now;
  }
  return { ...record, outputs, outputHash: outputHashOf(record.keyHash, outputs, record.value), finishedAt: new Date().toISOString() };
}
