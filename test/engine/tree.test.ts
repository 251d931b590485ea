import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { initHash } from "../../src/hash.ts";
import { compileExcludes } from "../../src/fingerprint/patterns.ts";
import { StampCache } from "../../src/fingerprint/stamps.ts";
import { fingerprintTree } from "../../src/fingerprint/tree.ts";
import { makeTempDir } from "./helpers.ts";

const EXCLUDES = ["tmp/*", "home/*", "var/log/*/*"];

let tmp: string;
let root: string;
beforeAll(async () => {
  await initHash();
});
beforeEach(() => {
  tmp = makeTempDir();
  root = path.join(tmp, "root");
});
afterEach(() => {
  // rm copes with paths longer than PATH_MAX (see the deep tree below); fs.rmSync does not.
  execFileSync("rm", ["-rf", tmp]);
});

function put(rel: string, content: string): void {
  const file = path.join(root, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
}

function makeImageTree(): void {
  put("etc/hostname", "client\n");
  put("etc/fstab", "# empty\n");
  put("usr/bin/tool", "#!/bin/sh\n");
  put("tmp/scratch", "temporary\n");
  put("home/alice/notes.txt", "alice's notes\n");
  put("var/log/syslog", "boot\n");
  put("var/log/apt/history.log", "install foo\n");
  fs.symlinkSync("../usr/bin/tool", path.join(root, "etc/tool-link"));
}

/** A directory whose walk fails with ENAMETOOLONG: nested deeper than PATH_MAX (4096). */
function makeUnwalkableDir(rel: string): void {
  const segment = "d".repeat(250);
  const half = Array.from({ length: 10 }, () => segment).join("/");
  const top = path.join(root, rel);
  const spare = path.join(tmp, "spare");
  fs.mkdirSync(path.join(top, half), { recursive: true });
  fs.mkdirSync(path.join(spare, half), { recursive: true });
  fs.writeFileSync(path.join(spare, half, "file"), "x\n");
  // Each path named here is shorter than PATH_MAX; the tree they make is deeper.
  fs.renameSync(path.join(spare, segment), path.join(top, half, segment));
}

describe("fingerprintTree with excludes", () => {
  const fp = (exclude = compileExcludes(EXCLUDES), stamps = new StampCache()) => {
    const result = fingerprintTree(root, exclude, stamps);
    if (!result) throw new Error("tree is missing");
    return result;
  };

  it("matches mksquashfs -wildcards semantics for the patterns", () => {
    const excluded = compileExcludes(EXCLUDES);
    expect(excluded("tmp/scratch")).toBe(true);
    expect(excluded("tmp")).toBe(false);
    expect(excluded("home/alice")).toBe(true);
    expect(excluded("home/alice/notes.txt")).toBe(true); // below an excluded entry
    expect(excluded("var/log/apt/history.log")).toBe(true);
    expect(excluded("var/log/apt")).toBe(false);
    expect(excluded("var/log/syslog")).toBe(false);
    expect(excluded("etc/hostname")).toBe(false);
  });

  it("ignores changes to excluded files and sees changes to included ones", () => {
    makeImageTree();
    const base = fp().hash;

    put("tmp/scratch", "something else entirely\n");
    put("tmp/new-file", "new\n");
    put("home/alice/notes.txt", "edited notes\n");
    put("home/bob/.bashrc", "alias ll='ls -l'\n");
    put("var/log/apt/history.log", "install bar\n");
    put("var/log/apt/term.log", "more\n");
    fs.rmSync(path.join(root, "home/alice"), { recursive: true });
    expect(fp().hash).toBe(base);

    put("var/log/syslog", "boot\nshutdown\n");
    const afterSyslog = fp();
    expect(afterSyslog.hash).not.toBe(base);

    put("etc/hostname", "other\n");
    const afterHostname = fp();
    expect(afterHostname.hash).not.toBe(afterSyslog.hash);
    // The per-top-level parts say where the tree changed.
    expect(afterHostname.parts.etc).not.toBe(afterSyslog.parts.etc);
    expect(afterHostname.parts.var).toBe(afterSyslog.parts.var);
  });

  it("sees metadata changes of included entries: mode, symlink target, a new file", () => {
    makeImageTree();
    let last = fp().hash;
    const changes: Array<() => void> = [
      () => fs.chmodSync(path.join(root, "usr/bin/tool"), 0o755),
      () => {
        fs.unlinkSync(path.join(root, "etc/tool-link"));
        fs.symlinkSync("/usr/bin/tool", path.join(root, "etc/tool-link"));
      },
      () => put("etc/motd", ""),
      () => fs.mkdirSync(path.join(root, "tmp/subdir-is-excluded-but-tmp-mode-is-not"), { recursive: true }),
      () => fs.chmodSync(path.join(root, "tmp"), 0o1777),
    ];
    const hashes = changes.map((change) => {
      change();
      const now = fp().hash;
      const changed = now !== last;
      last = now;
      return changed;
    });
    expect(hashes).toEqual([true, true, true, false, true]);
  });

  it("never walks excluded directories: an unreadable one and a huge file below them are not touched", () => {
    makeImageTree();
    makeUnwalkableDir("home/carol");
    expect(fs.existsSync(path.join(root, "home/carol"))).toBe(true);
    // A 1 TiB sparse file: reading it would take hours.
    fs.mkdirSync(path.join(root, "var/log/journal"), { recursive: true });
    fs.writeFileSync(path.join(root, "var/log/journal/system.journal"), "");
    fs.truncateSync(path.join(root, "var/log/journal/system.journal"), 1024 ** 4);

    // The control: walking what the excludes protect really fails.
    expect(() => fp(compileExcludes(["var/log/*/*"]))).toThrow(/cannot read directory|ENAMETOOLONG/);

    const stamps = new StampCache();
    const result = fp(compileExcludes(EXCLUDES), stamps);
    const includedFiles = ["etc/hostname", "etc/fstab", "usr/bin/tool", "var/log/syslog"];
    const includedBytes = includedFiles.reduce((sum, rel) => sum + fs.statSync(path.join(root, rel)).size, 0);
    expect(stamps.stats.hashed).toBe(includedFiles.length);
    expect(stamps.stats.bytes).toBe(includedBytes);
    // etc home tmp usr var, etc/{fstab,hostname,tool-link}, usr/bin{,/tool}, var/log{,/apt,/journal,/syslog}
    expect(result.entries).toBe(14);
  });

  it("gives the same hash for the same tree, whatever the creation order", () => {
    makeImageTree();
    const first = fp().hash;
    const other = path.join(tmp, "other");
    fs.mkdirSync(other);
    // Same content, created in reverse order and with the same modes.
    for (const rel of ["var/log/apt/history.log", "var/log/syslog", "home/alice/notes.txt", "tmp/scratch", "usr/bin/tool", "etc/fstab", "etc/hostname"]) {
      const file = path.join(other, rel);
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.copyFileSync(path.join(root, rel), file);
    }
    fs.symlinkSync("../usr/bin/tool", path.join(other, "etc/tool-link"));
    execFileSync("sh", ["-c", `cd ${root} && find . ! -type l -exec stat -c '%a %n' {} + | while read m n; do chmod "$m" "${other}/$n"; done`]);
    const again = fingerprintTree(other, compileExcludes(EXCLUDES), new StampCache());
    expect(again?.hash).toBe(first);
  });
});
