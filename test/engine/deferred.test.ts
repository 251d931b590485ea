// Hashing deferred to while a task runs: a task that runs anyway (never built) walks its inputs
// before it starts and hashes the files it had not seen while it runs.
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CHANGED_WHILE_RUNNING, DeferredHashes, hashOf } from "../../src/fingerprint/deferred.ts";
import { StampCache } from "../../src/fingerprint/stamps.ts";
import { fingerprintTree, type PendingTree, type TreeFingerprint } from "../../src/fingerprint/tree.ts";
import { hashFileSync, initHash } from "../../src/hash.ts";
import { MINE, planJson, makeTempDir, useProjects, verdict } from "./helpers.ts";

const nothing = () => false;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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

/** A file whose stamp is already past the racy window. */
async function oldFile(rel: string, content: string): Promise<string> {
  const file = path.join(tmp, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  const past = new Date(Date.now() - 3_600_000);
  fs.utimesSync(file, past, past);
  await sleep(80); // utimes sets ctime to now
  return file;
}

describe("DeferredHashes", () => {
  it("leaves unseen files for later, answers known and racy ones at once, and hashes what the walk saw", async () => {
    const unseen = await oldFile("unseen", "unseen content\n");
    const known = await oldFile("known", "known content\n");
    const stamps = new StampCache({}, 1);
    const knownHash = stamps.hash(known);
    const racy = path.join(tmp, "racy");
    fs.writeFileSync(racy, "just written\n");

    const defer = new DeferredHashes(stamps);
    const later = defer.content(unseen, fs.statSync(unseen));
    expect(typeof later).not.toBe("string");
    expect(defer.content(known, fs.statSync(known))).toBe(knownHash);
    expect(defer.content(racy, fs.statSync(racy))).toBe(hashFileSync(racy));
    expect(defer.size).toBe(1);

    await defer.prefetch(new AbortController().signal);
    defer.finish();
    expect(hashOf(later)).toBe(hashFileSync(unseen));
    // The hash went into the stamp cache: the next walk reads nothing.
    expect(stamps.known(unseen, fs.statSync(unseen))).toBe(hashFileSync(unseen));
  });

  it("marks a file that changed between the walk and the hashing", async () => {
    const file = await oldFile("moving", "before\n");
    const defer = new DeferredHashes(new StampCache({}, 1));
    const later = defer.content(file, fs.statSync(file));
    fs.writeFileSync(file, "after, and longer\n");
    defer.finish();
    expect(hashOf(later)).toBe(CHANGED_WHILE_RUNNING);
  });

  it("gives a tree the fingerprint it gets when hashed at once", async () => {
    for (const rel of ["etc/hostname", "usr/bin/tool", "usr/lib/big"]) await oldFile(`tree/${rel}`, `${rel}\n`.repeat(rel.endsWith("big") ? 300_000 : 1));
    fs.symlinkSync("../usr/bin/tool", path.join(tmp, "tree/etc/link"));
    const root = path.join(tmp, "tree");
    await sleep(80);
    const direct = fingerprintTree(root, nothing, new StampCache({}, 1))!;

    const defer = new DeferredHashes(new StampCache({}, 1));
    const pending = fingerprintTree(root, nothing, new StampCache({}, 1), defer) as PendingTree;
    expect("finish" in pending).toBe(true);
    expect(defer.size).toBe(3);
    await defer.prefetch(new AbortController().signal);
    defer.finish();
    expect(pending.finish()).toEqual(direct);

    const known = new StampCache({}, 1);
    fingerprintTree(root, nothing, known);
    const again = fingerprintTree(root, nothing, known, new DeferredHashes(known)) as TreeFingerprint;
    expect(again).toEqual(direct); // everything known: nothing deferred
  });
});

describe("a first build", () => {
  const newProject = useProjects();

  it("records the key a later plan finds current, and a file changed while the task ran makes the next run build again", async () => {
    const p = newProject();
    // Hashed first, asynchronously (it is large): the task runs meanwhile and edits b.txt
    // before the hashing reaches it.
    p.write("src/0-large.bin", Buffer.alloc(16 * 1024 * 1024, 7));
    p.write("src/a.txt", "a\n");
    p.write("src/b.txt", "b\n");
    const past = new Date(Date.now() - 3_600_000);
    for (const rel of ["src/0-large.bin", "src/a.txt", "src/b.txt"]) fs.utimesSync(p.path(rel), past, past);
    p.write("edit-while-running", "");
    await sleep(80);
    p.writeConfig(`
export default defineConfig({
  tasks: [
    task({
      id: "pack",
      inputs: [{ tree: at("src") }],
      outputs: [at("out/pack.txt")],
      run: async (ctx) => {
        bump("pack");
        const text = readFileSync(at("src/a.txt"), "utf8") + readFileSync(at("src/b.txt"), "utf8");
        await ctx.writeFile(at("out/pack.txt"), text);
        // Someone edits the source while the task runs, after it was read.
        if (existsSync(at("edit-while-running"))) {
          rmSync(at("edit-while-running"));
          writeFileSync(at("src/b.txt"), "b, edited\\n");
        }
      },
    }),
  ],
});
`);
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(p.read("out/pack.txt")).toBe("a\nb\n");
    await sleep(80);
    const plan = verdict(await planJson(p, [MINE]), "pack");
    expect(plan.status).toBe("stale");
    expect(plan.reasons.join("\n")).toContain(`input tree:${p.path("src")} changed while the last run read it`);

    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(p.count("pack")).toBe(2);
    expect(p.read("out/pack.txt")).toBe("a\nb, edited\n");
    await sleep(80);
    expect(verdict(await planJson(p, [MINE]), "pack").status).toBe("fresh");

    // A forced run hashes nothing it knows and stays current afterwards.
    expect((await p.cli(["--force=pack", MINE])).exitCode).toBe(0);
    expect(p.count("pack")).toBe(3);
    await sleep(80);
    expect(verdict(await planJson(p, [MINE]), "pack").status).toBe("fresh");
  });
});
