import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { hashFileSync, initHash } from "../../src/hash.ts";
import { RACY_WINDOW_MS, StampCache, stampOf } from "../../src/fingerprint/stamps.ts";
import { makeTempDir } from "./helpers.ts";

let tmp: string;
beforeAll(async () => {
  await initHash();
});
beforeEach(() => {
  tmp = makeTempDir();
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const HOUR_AGO = () => new Date(Date.now() - 3600_000);

/** Write a file whose mtime is an hour old and whose ctime is old enough to be outside the racy window. */
async function settledFile(name: string, content: string): Promise<string> {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, content);
  fs.utimesSync(file, HOUR_AGO(), HOUR_AGO());
  // utimes itself sets ctime to now: wait until that is outside the racy window too.
  await sleep(80);
  return file;
}

/**
 * Write a file and hash it at once, as a task's output is hashed right after the task wrote it.
 * On a busy machine the two steps can end up further apart than the racy window; then this was
 * not the case under test, and it is tried again.
 */
function writeAndHashAtOnce(file: string, content: string, cache: StampCache): string {
  for (let attempt = 0; ; attempt++) {
    const began = Date.now();
    fs.writeFileSync(file, content);
    const hash = cache.hash(file);
    if (Date.now() - began < RACY_WINDOW_MS / 2 || attempt === 20) return hash;
  }
}

describe("StampCache", () => {
  it("serves a settled file from the cache without reading it", async () => {
    const file = await settledFile("settled.txt", "hello\n");
    const first = new StampCache({}, 1);
    const hash = first.hash(file);
    expect(hash).toBe(hashFileSync(file));
    expect(first.stats).toMatchObject({ hits: 0, hashed: 1, bytes: 6 });
    const saved = first.toJSON();
    expect(saved[file]?.endsWith(" racy")).toBe(false);

    // A later run with the saved entries: a hit, nothing read.
    const second = new StampCache(saved, 2);
    expect(second.hash(file)).toBe(hash);
    expect(second.stats).toMatchObject({ hits: 1, hashed: 0, bytes: 0 });

    // Proof that the answer came from the entry and not from the file: a trusted entry with a
    // made-up hash for the same stamp is returned as is.
    const st = fs.statSync(file);
    const planted = new StampCache({ [file]: `${stampOf(st)} feedfacefeedface 1` }, 2);
    expect(planted.hash(file, st)).toBe("feedfacefeedface");
    expect(planted.stats.hashed).toBe(0);
  });

  it("marks a file hashed right after it was written as racy and rehashes it next time", async () => {
    const file = path.join(tmp, "racy.txt");
    const first = new StampCache({}, 1);
    const hashA = writeAndHashAtOnce(file, "version A\n", first);
    const saved = first.toJSON();
    expect(saved[file]?.endsWith(" racy")).toBe(true);

    // Same tick: the content changes, same size, and the mtime is put back as it was. The recorded
    // entry claims "version A" for a stamp that may now belong to other content.
    // (touch -r copies the nanoseconds exactly; fs.utimes would round them.)
    const before = fs.statSync(file);
    const reference = path.join(tmp, "reference");
    fs.writeFileSync(reference, "");
    execFileSync("touch", ["-r", file, reference]);
    fs.writeFileSync(file, "version B\n");
    execFileSync("touch", ["-r", reference, file]);
    expect(fs.statSync(file).mtimeMs).toBe(before.mtimeMs);
    expect(fs.statSync(file).size).toBe(before.size);

    const second = new StampCache(saved, 2);
    const hashB = second.hash(file);
    expect(hashB).not.toBe(hashA);
    expect(hashB).toBe(hashFileSync(file));
    expect(second.stats).toMatchObject({ hits: 0, hashed: 1 });
  });

  it("does not trust a racy entry even when the stamp is exactly the recorded one", async () => {
    const file = path.join(tmp, "same-stamp.txt");
    fs.writeFileSync(file, "real content\n");
    const st = fs.statSync(file);
    // The kernel's ctime cannot be put back, so plant an entry with the file's current stamp, as a
    // run that hashed it within the same tick would have left it.
    const racy = new StampCache({ [file]: `${stampOf(st)} 0000000000000000 1 racy` }, 2);
    expect(racy.hash(file, st)).toBe(hashFileSync(file));
    expect(racy.stats).toMatchObject({ hits: 0, hashed: 1 });

    // The same entry without the racy mark is trusted (the contrast that makes the rule matter).
    const trusted = new StampCache({ [file]: `${stampOf(st)} 0000000000000000 1` }, 2);
    expect(trusted.hash(file, st)).toBe("0000000000000000");
    expect(trusted.stats).toMatchObject({ hits: 1, hashed: 0 });
  });

  it("becomes trusted once the file has settled, and then hits", async () => {
    const file = path.join(tmp, "settles.txt");
    const first = new StampCache({}, 1);
    writeAndHashAtOnce(file, "x".repeat(1000), first);
    expect(first.toJSON()[file]?.endsWith(" racy")).toBe(true);
    await sleep(80);
    const second = new StampCache(first.toJSON(), 2);
    second.hash(file);
    expect(second.stats.hashed).toBe(1);
    expect(second.toJSON()[file]?.endsWith(" racy")).toBe(false);
    const third = new StampCache(second.toJSON(), 3);
    third.hash(file);
    expect(third.stats).toMatchObject({ hits: 1, hashed: 0, bytes: 0 });
  });

  it("rehashes a settled file whose content changed", async () => {
    const file = await settledFile("changes.txt", "one\n");
    const first = new StampCache({}, 1);
    const h1 = first.hash(file);
    fs.writeFileSync(file, "two\n");
    const second = new StampCache(first.toJSON(), 2);
    const h2 = second.hash(file);
    expect(h2).not.toBe(h1);
    expect(second.stats.hashed).toBe(1);
  });

  it("drops entries not used for many generations", async () => {
    const file = await settledFile("old.txt", "old\n");
    const cache = new StampCache({}, 1);
    cache.hash(file);
    expect(Object.keys(new StampCache(cache.toJSON(), 5).toJSON())).toEqual([file]);
    expect(Object.keys(new StampCache(cache.toJSON(), 11).toJSON())).toEqual([]);
  });
});
