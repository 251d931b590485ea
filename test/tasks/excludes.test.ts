import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { standaloneExec } from "../../src/exec.ts";
import {
  BUILTIN_EXCLUDES,
  createExcludeMatcher,
  effectiveExcludes,
  excludeSettingLines,
  writeExcludesFile,
} from "../../tasks/lib/excludes.ts";

const exec = standaloneExec();
const UPSTREAM_LIST = "/usr/share/ltsp/server/image/image.excludes";

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-"));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("effectiveExcludes", () => {
  it("is the built-in list, sorted, by default", () => {
    const list = effectiveExcludes();
    expect(list).toEqual(BUILTIN_EXCLUDES);
    expect(list).toEqual([...list].sort());
    expect(list).toContain("etc/.!(java)");
    expect(list).toContain("var/log/*/*");
    expect(list.some((line) => line.startsWith("snap"))).toBe(false);
  });

  it.runIf(fs.existsSync(UPSTREAM_LIST))("has the same patterns as upstream's image.excludes", () => {
    const upstream = fs
      .readFileSync(UPSTREAM_LIST, "utf8")
      .split("\n")
      .filter((line) => line !== "" && !line.startsWith("#"));
    expect([...BUILTIN_EXCLUDES].sort()).toEqual([...new Set(upstream)].sort());
  });

  it("omits exact lines, adds lines, drops comments and blank lines, sorts and de-duplicates", () => {
    const list = effectiveExcludes({
      omit: ["home/*", "var/log/*", "# not there"],
      add: ["var/lib/flatpak/*", "# a comment", "", "   ", "dev/*", "opt/big/*", "opt/big/*"],
    });
    expect(list).not.toContain("home/*");
    expect(list).toContain("var/log/*.gz");
    expect(list).toContain("var/lib/flatpak/*");
    expect(list.filter((line) => line === "dev/*")).toHaveLength(1);
    expect(list.filter((line) => line === "opt/big/*")).toHaveLength(1);
    expect(list.some((line) => line.startsWith("#") || line.trim() === "")).toBe(false);
    expect(list).toEqual([...list].sort());
    expect(list).toHaveLength(BUILTIN_EXCLUDES.length - 1 + 2);
  });

  it("replaces the base list", () => {
    expect(effectiveExcludes({ base: ["b/*", "# c", "a/*"], add: ["c"], omit: ["b/*"] })).toEqual(["a/*", "c"]);
  });

  it("rejects absolute and ./ patterns with the fix", () => {
    expect(() => effectiveExcludes({ add: ["/home/*"] })).toThrow(/relative to the image root: write "home\/\*"/);
    expect(() => effectiveExcludes({ add: ["  ./tmp/x"] })).toThrow(/write "tmp\/x"/);
    expect(() => createExcludeMatcher(["../x"])).toThrow(/mksquashfs -wildcards rejects/);
  });
});

describe("excludeSettingLines and writeExcludesFile", () => {
  it("reads a setting from a file or takes it as text", () => {
    const file = path.join(tmp, "extra.excludes");
    fs.writeFileSync(file, "a/*\nb/*\n");
    expect(excludeSettingLines(file)).toEqual(["a/*", "b/*"]);
    expect(excludeSettingLines("x/*\ny/*")).toEqual(["x/*", "y/*"]);
    expect(excludeSettingLines(path.join(tmp, "missing"))).toEqual([path.join(tmp, "missing")]);
  });

  it("writes one pattern a line", async () => {
    const file = path.join(tmp, "image.excludes");
    await writeExcludesFile(file, ["a/*", "b"]);
    expect(fs.readFileSync(file, "utf8")).toBe("a/*\nb\n");
    expect(fs.readdirSync(tmp)).toEqual(["image.excludes"]);
    await expect(writeExcludesFile(file, ["a\nb"])).rejects.toThrow(/line break/);
  });
});

describe("createExcludeMatcher", () => {
  it("matches whole components and excludes what is under a match", () => {
    const excluded = createExcludeMatcher(["dev/*", "etc/.!(java)", "var/log/*/*", "swapfile", "# home/*", "  tmp/*"]);
    expect(excluded("dev")).toBe(false);
    expect(excluded("dev/null")).toBe(true);
    expect(excluded("dev/pts/0")).toBe(true);
    expect(excluded("etc/.git")).toBe(true);
    expect(excluded("etc/.git/config")).toBe(true);
    expect(excluded("etc/.java")).toBe(false);
    expect(excluded("etc/java")).toBe(false);
    expect(excluded("var/log/syslog")).toBe(false);
    expect(excluded("var/log/apt/history.log")).toBe(true);
    expect(excluded("swapfile")).toBe(true);
    expect(excluded("home/u")).toBe(false);
    expect(excluded("tmp/x")).toBe(true);
    expect(excluded("./tmp/x")).toBe(true);
    expect(excluded("")).toBe(false);
  });

  it("does not let * or ? match a leading dot", () => {
    const excluded = createExcludeMatcher(["tmp/*", "a/?x", "b/[.]x"]);
    expect(excluded("tmp/.x")).toBe(false);
    expect(excluded("a/.x")).toBe(false);
    expect(excluded("a/yx")).toBe(true);
    expect(excluded("b/.x")).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------
// Equivalence with mksquashfs: the matcher must leave out exactly what mksquashfs leaves out.

type Entry = { path: string; kind?: "dir" | "symlink" | "char" | "fifo"; target?: string };

function buildTree(root: string, entries: readonly Entry[]): void {
  for (const entry of entries) {
    const full = path.join(root, entry.path);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    if (entry.kind === "dir") fs.mkdirSync(full, { recursive: true });
    else if (entry.kind === "symlink") fs.symlinkSync(entry.target ?? "nowhere", full);
    else if (entry.kind === "char" || entry.kind === "fifo") continue;
    else fs.writeFileSync(full, entry.path);
  }
}

async function makeNodes(root: string, entries: readonly Entry[]): Promise<void> {
  for (const entry of entries) {
    const full = path.join(root, entry.path);
    if (entry.kind === "char") await exec("mknod", [full, "c", "1", "3"]);
    if (entry.kind === "fifo") await exec("mkfifo", [full]);
  }
}

function walk(root: string, rel = ""): string[] {
  const result: string[] = [];
  for (const dirent of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const child = rel ? `${rel}/${dirent.name}` : dirent.name;
    result.push(child);
    if (dirent.isDirectory()) result.push(...walk(root, child));
  }
  return result;
}

/** What mksquashfs puts into the image, as paths relative to the root. */
async function squashedPaths(source: string, excludeLines: readonly string[]): Promise<Set<string>> {
  const excludeFile = path.join(tmp, "excludes");
  fs.writeFileSync(excludeFile, excludeLines.map((line) => `${line}\n`).join(""));
  const image = path.join(tmp, "image.squashfs");
  await exec("mksquashfs", [source, image, "-noappend", "-wildcards", "-ef", excludeFile, "-quiet", "-no-progress"]);
  const { stdout } = await exec("unsquashfs", ["-l", "-d", "squashfs-root", image]);
  const kept = new Set<string>();
  for (const line of stdout.split("\n")) {
    if (line.startsWith("squashfs-root/")) kept.add(line.slice("squashfs-root/".length));
  }
  return kept;
}

async function expectSameVerdicts(source: string, excludeLines: readonly string[]): Promise<number> {
  const all = walk(source);
  const kept = await squashedPaths(source, excludeLines);
  const excluded = createExcludeMatcher(excludeLines);
  const disagreements = all
    .filter((rel) => excluded(rel) === kept.has(rel))
    .map((rel) => `${rel}: mksquashfs ${kept.has(rel) ? "keeps" : "drops"} it, the matcher ${excluded(rel) ? "drops" : "keeps"} it`);
  expect(disagreements).toEqual([]);
  // Every path mksquashfs listed exists in the tree, so the comparison covered the whole image.
  for (const rel of kept) expect(all).toContain(rel);
  return all.length - kept.size;
}

const IMAGE_TREE: Entry[] = [
  { path: "bin/sh" },
  { path: "dev/null", kind: "char" },
  { path: "dev/pts", kind: "dir" },
  { path: "dev/.udev/db" },
  { path: "proc/1/status" },
  { path: "sys/kernel/x" },
  { path: "run/lock", kind: "dir" },
  { path: "run/initctl", kind: "fifo" },
  { path: "tmp/.x" },
  { path: "tmp/.X11-unix/X0" },
  { path: "tmp/y" },
  { path: "tmp/link", kind: "symlink", target: "/etc/shadow" },
  { path: "var/tmp/.hidden" },
  { path: "var/tmp/z" },
  { path: "lost+found/#123" },
  { path: "cdrom/.disk/info" },
  { path: "media/usb/file" },
  { path: "mnt/x" },
  { path: "home/u/.bashrc" },
  { path: "home/u/Documents/a.txt" },
  { path: "root/.bashrc" },
  { path: "root/.ssh/id_rsa" },
  { path: "root/notes" },
  { path: "srv/tftp/x" },
  { path: "etc/passwd" },
  { path: "etc/.git/config" },
  { path: "etc/.etckeeper" },
  { path: "etc/.java/.systemPrefs/x" },
  { path: "etc/.javax" },
  { path: "etc/..hidden" },
  { path: "etc/.pwd.lock" },
  { path: "etc/java/conf" },
  { path: "etc/ssh/ssh_host_rsa_key" },
  { path: "etc/ssh/ssh_host_rsa_key.pub" },
  { path: "etc/ssh/ssh_host_ed25519_key" },
  { path: "etc/ssh/sshd_config" },
  { path: "etc/epoptes/server.key" },
  { path: "etc/epoptes/server.crt" },
  { path: "etc/mysql/debian.cnf" },
  { path: "etc/mysql/my.cnf" },
  { path: "etc/NetworkManager/system-connections/wifi.nmconnection" },
  { path: "etc/NetworkManager/NetworkManager.conf" },
  { path: "etc/udev/rules.d/70-persistent-net.rules" },
  { path: "etc/udev/rules.d/75-persistent-net-generator.rules" },
  { path: "etc/udev/rules.d/7-persistent-net.rules" },
  { path: "etc/udev/rules.d/99-custom.rules" },
  { path: "etc/mtab", kind: "symlink", target: "../proc/self/mounts" },
  { path: "opt/ltsp/x" },
  { path: "opt/ltsp-extra" },
  { path: "opt/LTSP" },
  { path: "opt/other/ltsp" },
  { path: "swapfile" },
  { path: "swapfile2" },
  { path: "var/swap" },
  { path: "var/backups/passwd.bak" },
  { path: "var/crash/core" },
  { path: "var/cache/apt/archives/x.deb" },
  { path: "var/cache/apt/archives/lock" },
  { path: "var/cache/apt/archives/partial/y.deb" },
  { path: "var/cache/apt/pkgcache.bin" },
  { path: "var/cache/lightdm/dmrc/u.dmrc" },
  { path: "var/lib/apt/lists/deb.debian.org_InRelease" },
  { path: "var/lib/apt/lists/partial", kind: "dir" },
  { path: "var/lib/lightdm/.cache/x" },
  { path: "var/lib/lightdm/data" },
  { path: "var/lib/systemd/linger/u" },
  { path: "var/lib/dpkg/status" },
  { path: "var/log/syslog" },
  { path: "var/log/syslog.1" },
  { path: "var/log/syslog.2.gz" },
  { path: "var/log/dpkg.log.old" },
  { path: "var/log/x.10" },
  { path: "var/log/.hidden.1" },
  { path: "var/log/apt/history.log" },
  { path: "var/log/apt/.keep" },
  { path: "var/log/journal/abc/system.journal" },
  { path: "var/mail/root" },
  { path: "var/spool/cron/crontabs/root" },
  { path: "var/spool/cron/atjobs", kind: "dir" },
  { path: "var/spool/cups/c001" },
  { path: "snap/core/current/x" },
];

// Names that exercise every corner of the matcher, copied under one directory per pattern.
const PLAYGROUND: Entry[] = [
  ".git/config",
  ".java/prefs",
  ".hidden",
  "..x",
  "java",
  "a",
  "b",
  "ab",
  "a.b",
  "x.1",
  "x.10",
  "x.gz",
  "x.old",
  "70-persistent-net.rules",
  "7-persistent-x.rules",
  "ssh_host_rsa_key",
  "ssh_host_rsa_key.pub",
  "[x]",
  "*",
  "?",
  "a b",
  "é",
  "#c",
  "\\x",
  "sub/inner",
  "sub/.dot",
  "sub/deeper/f",
  ".dir/inner",
  "lost+found/f",
  "-",
  "ltsp",
  "ltsp-x",
  "UPPER",
  "9",
].map((p) => ({ path: p }));

const TRICKY_PATTERNS = [
  "*",
  ".*",
  "?",
  "??",
  "*.[1-9]",
  "*.[!1-9]*",
  "[^a]*",
  "[]x]*",
  "[[]x]",
  "\\*",
  "\\?",
  "??-persistent-*.rules",
  ".!(java)",
  "!(java)",
  "!(*)",
  "!(.*)",
  "@(a|b)",
  "+(a|b)",
  "*(a)",
  "?(a)b",
  "*(.)java",
  "@(.git|.java)",
  "a*@(|x)",
  "sub",
  "sub/",
  "sub//inner",
  "sub/*",
  "sub/.*",
  "*/*",
  "*/inner",
  "[[:alpha:]]",
  "[[:digit:]]",
  "[[:upper:]]*",
  "[[:punct:]]",
  "[[:foo:]]*",
  "[[.a.]]",
  "[[=a=]]",
  "[ab",
  "a\\ b",
  "a b",
  "a?b",
  "ltsp*",
  "lost+found",
  "lost+found/*",
  "é",
  "[é]",
  "\\#c",
  "#c",
  "\\\\x",
  "ssh_host_*",
  "x.@(1|gz)",
];

describe("createExcludeMatcher agrees with mksquashfs -wildcards", () => {
  it("on an image-like tree with the built-in list", async () => {
    const source = path.join(tmp, "root");
    buildTree(source, IMAGE_TREE);
    await makeNodes(source, IMAGE_TREE);
    const dropped = await expectSameVerdicts(source, effectiveExcludes());
    expect(dropped).toBeGreaterThan(40);
  });

  it("pattern by pattern on tricky names", async () => {
    // One copy of the playground per pattern, so each verdict comes from that pattern alone.
    const source = path.join(tmp, "root");
    const entries = TRICKY_PATTERNS.flatMap((_, i) => PLAYGROUND.map((e) => ({ path: `t${i}/${e.path}` })));
    buildTree(source, entries);
    const lines = TRICKY_PATTERNS.map((pattern, i) => `t${i}/${pattern}`);
    const dropped = await expectSameVerdicts(source, lines);
    expect(dropped).toBeGreaterThan(100);
  });

  it("reading exclude lines as mksquashfs does: comments, white space, patterns at any depth", async () => {
    const source = path.join(tmp, "root");
    const entries = ["c1", "c2", "c3", "c4", "c5", "deep/er/node_modules/x", "node_modules/y", "m/pyc.d/z", "q/a/x", "n/a", "a/b"].map((p) => ({
      path: p.includes("/") ? p : `${p}/f`,
    }));
    buildTree(source, entries);
    const lines = ["# c1/*", "   c2/*", "\tc3/f", "c4/f  ", "c5/*\r", "... node_modules", "... pyc.d/zz", "... a/nothing", "", "  # c1/f"];
    const dropped = await expectSameVerdicts(source, lines);
    expect(dropped).toBeGreaterThan(5);
  });
});
