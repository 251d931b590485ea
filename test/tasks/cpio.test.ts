import { randomBytes } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { standaloneExec } from "../../src/exec.ts";
import { writeCpioArchive } from "../../tasks/lib/cpio.ts";
import type { CpioEntry } from "../../tasks/lib/cpio.ts";
import { readNewc } from "./newc-reader.ts";

const exec = standaloneExec();
let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-"));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function sampleEntries(bigFile: string): CpioEntry[] {
  return [
    { path: ".", type: "directory", mode: 0o755 },
    { path: "bin", type: "directory", mode: 0o755 },
    { path: "bin/tool", type: "file", mode: 0o755, content: "#!/bin/sh\necho hi\n" },
    { path: "data", type: "directory", mode: 0o700 },
    // Sizes around every padding case.
    ...[0, 1, 2, 3, 4, 5].map((n): CpioEntry => ({ path: `data/size${n}`, type: "file", mode: 0o600, content: Buffer.alloc(n, 0x41 + n) })),
    { path: "data/big", type: "file", mode: 0o644, content: { sourcePath: bigFile } },
    { path: "data/é-ünïcode", type: "file", mode: 0o644, content: "utf-8 name\n" },
    { path: "conf", type: "directory", mode: 0o755 },
    { path: "conf/link", type: "symlink", target: "../bin/tool" },
    { path: "conf/abs", type: "symlink", target: "/nowhere/at/all" },
  ];
}

async function cpioList(archive: string): Promise<{ names: string[]; stderr: string }> {
  const { stdout, stderr } = await exec("cpio", ["-t"], { input: fs.readFileSync(archive) });
  return { names: stdout.split("\n").filter((l) => l !== ""), stderr };
}

describe("writeCpioArchive", () => {
  it("writes a newc archive that follows the kernel's layout rules", async () => {
    const big = path.join(tmp, "big.bin");
    fs.writeFileSync(big, randomBytes(3 * 1024 * 1024 + 7));
    const out = path.join(tmp, "a.cpio");
    const result = await writeCpioArchive(out, sampleEntries(big), { mtime: 1700000000 });
    const archive = fs.readFileSync(out);
    expect(result.bytes).toBe(archive.length);
    expect(archive.length % 512).toBe(0);
    expect(archive.subarray(0, 6).toString("ascii")).toBe("070701");

    const entries = readNewc(archive);
    expect(result.entries).toBe(entries.length);
    expect(entries.map((e) => e.name)).toEqual([
      ".",
      "bin",
      "bin/tool",
      "conf",
      "conf/abs",
      "conf/link",
      "data",
      "data/big",
      "data/size0",
      "data/size1",
      "data/size2",
      "data/size3",
      "data/size4",
      "data/size5",
      "data/é-ünïcode",
    ]);
    const byName = new Map(entries.map((e) => [e.name, e]));
    expect(byName.get(".")?.mode).toBe(0o040755);
    expect(byName.get("data")?.mode).toBe(0o040700);
    expect(byName.get("bin/tool")?.mode).toBe(0o100755);
    expect(byName.get("conf/link")?.mode).toBe(0o120777);
    expect(byName.get("conf/link")?.data.toString()).toBe("../bin/tool");
    expect(byName.get("data/big")?.data.equals(fs.readFileSync(big))).toBe(true);
    expect(byName.get("data/size3")?.data.toString()).toBe("DDD");
    // Directory link counts: 2 plus subdirectories.
    expect(byName.get(".")?.nlink).toBe(5);
    expect(byName.get("data")?.nlink).toBe(2);
    for (const e of entries) {
      expect(e.mtime).toBe(1700000000);
      expect([e.uid, e.gid, e.devMajor, e.devMinor, e.rdevMajor, e.rdevMinor, e.check]).toEqual([0, 0, 0, 0, 0, 0, 0]);
    }
    const inodes = entries.map((e) => e.ino);
    expect(new Set(inodes).size).toBe(inodes.length);
    expect(inodes).toEqual(entries.map((_, i) => i));
  });

  it("is read by GNU cpio without warnings and extracts contents, modes, links and times", async () => {
    const big = path.join(tmp, "big.bin");
    fs.writeFileSync(big, randomBytes(100_000));
    const out = path.join(tmp, "a.cpio");
    await writeCpioArchive(out, sampleEntries(big), { mtime: 1600000000 });

    const { names, stderr } = await cpioList(out);
    expect(stderr).toMatch(/^\d+ blocks?\n$/);
    expect(names).toContain("data/é-ünïcode");
    expect(names).toContain("conf/link");
    expect(names[0]).toBe(".");

    const dest = path.join(tmp, "x");
    fs.mkdirSync(dest);
    const extracted = await exec("cpio", ["-idm", "--quiet"], { cwd: dest, input: fs.readFileSync(out) });
    expect(extracted.stderr).toBe("");
    expect(fs.readFileSync(path.join(dest, "bin/tool"), "utf8")).toBe("#!/bin/sh\necho hi\n");
    expect(fs.statSync(path.join(dest, "bin/tool")).mode & 0o7777).toBe(0o755);
    expect(fs.statSync(path.join(dest, "data")).mode & 0o7777).toBe(0o700);
    expect(fs.statSync(path.join(dest, "data/size0")).mode & 0o7777).toBe(0o600);
    expect(fs.readFileSync(path.join(dest, "data/size5"), "utf8")).toBe("FFFFF");
    expect(fs.readFileSync(path.join(dest, "data/big")).equals(fs.readFileSync(big))).toBe(true);
    expect(fs.readlinkSync(path.join(dest, "conf/link"))).toBe("../bin/tool");
    expect(fs.readlinkSync(path.join(dest, "conf/abs"))).toBe("/nowhere/at/all");
    expect(fs.readFileSync(path.join(dest, "conf/link"), "utf8")).toBe("#!/bin/sh\necho hi\n");
    expect(fs.statSync(path.join(dest, "bin/tool")).mtimeMs).toBe(1600000000 * 1000);
  });

  it("gives the same bytes for the same entries in any order, and different bytes for different content", async () => {
    const big = path.join(tmp, "big.bin");
    fs.writeFileSync(big, randomBytes(5000));
    const a = path.join(tmp, "a.cpio");
    const b = path.join(tmp, "b.cpio");
    const c = path.join(tmp, "c.cpio");
    const entries = sampleEntries(big);
    await writeCpioArchive(a, entries);
    await writeCpioArchive(b, [...entries].reverse());
    expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(true);
    fs.utimesSync(big, new Date(0), new Date(5_000_000));
    await writeCpioArchive(b, entries);
    expect(fs.readFileSync(a).equals(fs.readFileSync(b))).toBe(true);
    const changed = entries.map((e) => (e.path === "bin/tool" ? { ...e, content: "#!/bin/sh\necho bye\n" } : e));
    await writeCpioArchive(c, changed);
    expect(fs.readFileSync(a).equals(fs.readFileSync(c))).toBe(false);
  });

  it("can prefix names with ./, keeping the root first", async () => {
    const out = path.join(tmp, "a.cpio");
    const entries: CpioEntry[] = [
      { path: ".", type: "directory", mode: 0o755 },
      { path: "etc", type: "directory", mode: 0o755 },
      { path: "etc/x", type: "file", mode: 0o644, content: "x" },
      { path: "-dash", type: "file", mode: 0o644, content: "" },
    ];
    await writeCpioArchive(out, entries, { leadingDotSlash: true });
    expect(readNewc(fs.readFileSync(out)).map((e) => e.name)).toEqual([".", "./-dash", "./etc", "./etc/x"]);
    expect((await cpioList(out)).names).toEqual([".", "./-dash", "./etc", "./etc/x"]);
    await writeCpioArchive(out, entries);
    expect(readNewc(fs.readFileSync(out)).map((e) => e.name)).toEqual([".", "-dash", "etc", "etc/x"]);
  });

  it("writes the same bytes as GNU cpio --reproducible for the same tree", async () => {
    const tree = path.join(tmp, "tree");
    fs.mkdirSync(path.join(tree, "a/b/c"), { recursive: true });
    fs.mkdirSync(path.join(tree, "a-b"));
    fs.writeFileSync(path.join(tree, "a/f1"), "1");
    fs.writeFileSync(path.join(tree, "a/b/f22"), "22");
    fs.writeFileSync(path.join(tree, "a/b/c/f333"), "333");
    fs.writeFileSync(path.join(tree, "a-b/empty"), "");
    fs.writeFileSync(path.join(tree, "a-b/big"), randomBytes(70_001));
    fs.writeFileSync(path.join(tree, "ünï"), "u\n");
    fs.symlinkSync("../a/f1", path.join(tree, "a-b/link"));
    fs.chmodSync(path.join(tree, "a/b"), 0o700);
    fs.chmodSync(path.join(tree, "a/f1"), 0o755);
    fs.chmodSync(path.join(tree, "a-b/big"), 0o600);
    const mtime = 1234567890;
    await exec("sh", ["-c", `find . -exec touch -h -d @${mtime} {} +`], { cwd: tree });

    const entries: CpioEntry[] = [];
    const walk = (rel: string) => {
      const abs = path.join(tree, rel);
      const st = fs.lstatSync(abs);
      if (st.isDirectory()) {
        entries.push({ path: rel, type: "directory", mode: st.mode & 0o7777 });
        for (const name of fs.readdirSync(abs)) walk(rel === "." ? name : `${rel}/${name}`);
      } else if (st.isSymbolicLink()) {
        entries.push({ path: rel, type: "symlink", target: fs.readlinkSync(abs) });
      } else {
        entries.push({ path: rel, type: "file", mode: st.mode & 0o7777, content: { sourcePath: abs } });
      }
    };
    walk(".");
    const ours = path.join(tmp, "ours.cpio");
    await writeCpioArchive(ours, entries, { mtime });
    const { stdout: gnu } = await exec("sh", ["-c", "find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet"], { cwd: tree, binary: true });
    expect(gnu.length).toBeGreaterThan(70_000);
    expect(readNewc(fs.readFileSync(ours)).map((e) => e.name)).toEqual(readNewc(gnu).map((e) => e.name));
    expect(fs.readFileSync(ours).equals(gnu)).toBe(true);
  });

  it("refuses entries the kernel would lose or misplace", async () => {
    const out = path.join(tmp, "a.cpio");
    await expect(writeCpioArchive(out, [{ path: "a/b", type: "file", mode: 0o644, content: "" }])).rejects.toThrow(/no entry for its directory a/);
    await expect(
      writeCpioArchive(out, [
        { path: "a", type: "file", mode: 0o644, content: "" },
        { path: "a/b", type: "file", mode: 0o644, content: "" },
      ]),
    ).rejects.toThrow(/not a directory/);
    await expect(
      writeCpioArchive(out, [
        { path: "a", type: "directory", mode: 0o755 },
        { path: "./a/", type: "directory", mode: 0o755 },
      ]),
    ).rejects.toThrow(/twice/);
    await expect(writeCpioArchive(out, [{ path: "../x", type: "file", mode: 0o644, content: "" }])).rejects.toThrow(/invalid archive path/);
    await expect(writeCpioArchive(out, [{ path: "/x", type: "file", mode: 0o644, content: "" }])).rejects.toThrow(/invalid archive path/);
    await expect(writeCpioArchive(out, [{ path: "x", type: "file", mode: 0o100644, content: "" }])).rejects.toThrow(/permission bits/);
  });
});
