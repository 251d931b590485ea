// The image pipeline end to end: a temp prefix (base, TFTP, home and etc roots, a state dir) with
// an ltspfile.ts, the real CLI run with execa, and the checks every test ends with: no mount, loop
// device or process that mentions the prefix is left behind.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";
import { afterEach, beforeEach, expect } from "vitest";
import { VERSION } from "../../src/config.ts";
import { hashString, initHash } from "../../src/hash.ts";
import { killChildren } from "../support.ts";

await initHash();

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CLI = path.join(PACKAGE_ROOT, "bin", "ltsp-make.js");

export interface CliResult {
  /** -1 when a signal ended it (see `signal`). */
  exitCode: number;
  signal?: string;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Working directory (default: the prefix). */
  cwd?: string;
  /** Leave out --config (the CLI then looks for ./ltspfile.ts in cwd). */
  noConfig?: boolean;
  /** Leave out --cache-dir (the CLI then uses cache/ next to the config, or in cwd). */
  noCacheDir?: boolean;
  /** Kill the CLI after this many ms (default 120 s). */
  timeout?: number;
}

function run(file: string, args: string[], input?: string): string {
  return execFileSync(file, args, { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"], maxBuffer: 256 * 1024 * 1024 });
}

/** The cached Debian bookworm chroot (built once by test/fixtures/debian-chroot.sh). Never write to it. */
export function debianFixture(): string {
  return run("bash", [path.join(PACKAGE_ROOT, "test", "fixtures", "debian-chroot.sh")]).trim();
}

/** Creates files (and their directories) under `dir`; `null` makes an empty directory. */
export function makeTree(dir: string, files: Record<string, string | Buffer | null>): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const [rel, content] of Object.entries(files)) {
    const full = path.join(dir, rel);
    if (content === null) {
      fs.mkdirSync(full, { recursive: true });
    } else {
      fs.mkdirSync(path.dirname(full), { recursive: true });
      fs.writeFileSync(full, content);
    }
  }
  return dir;
}

/** A kernel and initrd stand-in: distinct bytes per name, so copies can be told apart. */
export function fakeBinary(name: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  const seed = Buffer.from(hashString(name), "hex");
  for (let i = 0; i < size; i++) out[i] = (seed[i % seed.length]! + i * 31 + Math.floor(i / 251)) & 0xff;
  return out;
}

export const KERNEL_VERSION = "6.1.0-99-amd64";

/**
 * The files of a small chroot as a system installed with a human user would have them: shadow
 * hashes, SSH host keys, logs, a home directory, dpkg's lock. With `withBoot`, a kernel and
 * initrd in boot/ and the /vmlinuz symlinks.
 */
export function smallChrootFiles(options: { withBoot?: boolean; withProc?: boolean } = {}): Record<string, string | Buffer | null> {
  const files: Record<string, string | Buffer | null> = {
    bin: null,
    dev: null,
    run: null,
    sys: null,
    root: null,
    "usr/share/doc": null,
    "usr/bin/true": "#!/bin/sh\nexit 0\n",
    "sbin/init": "#!/bin/sh\n",
    "etc/os-release": 'PRETTY_NAME="pipeline test"\nID=pipelinetest\n',
    "etc/hostname": "pipeline-test\n",
    "etc/passwd":
      "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nbob:x:1001:1001:Bob:/home/bob:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "etc/group": "root:x:0:\ndaemon:x:1:\nshadow:x:42:\nalice:x:1000:\nbob:x:1001:\nnogroup:x:65534:\n",
    "etc/shadow":
      "root:$6$rootsalt$roothashroothash:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:$6$alicesalt$alicehashalicehash:19000:0:99999:7:::\nbob:$y$j9T$bobsalt$bobhashbobhash:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
    "etc/gshadow": "root:*::\nalice:!::\nbob:!::\n",
    "etc/fstab": "UUID=1234 / ext4 defaults 0 1\n",
    "etc/ssh/sshd_config": "PermitRootLogin no\n",
    "etc/ssh/ssh_host_ed25519_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nhost key of the build machine\n-----END OPENSSH PRIVATE KEY-----\n",
    "etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAhostpub root@build\n",
    "etc/ssh/ssh_host_rsa_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nrsa\n-----END OPENSSH PRIVATE KEY-----\n",
    "home/alice/notes.txt": "alice's secret\n",
    "home/bob/.bashrc": "alias ll='ls -l'\n",
    "root/.bash_history": "passwd\n",
    "tmp/build.tmp": "scratch\n",
    "var/log/syslog": "a boot log line\n",
    "var/log/dpkg.log.1": "rotated\n",
    "var/log/apt/history.log": "Start-Date: 2024-01-01\n",
    "var/lib/dpkg/lock": "",
    "var/lib/dpkg/status": "Package: base-files\nStatus: install ok installed\n",
  };
  if (options.withProc !== false) files.proc = null;
  if (options.withBoot !== false) {
    files[`boot/vmlinuz-${KERNEL_VERSION}`] = fakeBinary("vmlinuz", 48 * 1024);
    files[`boot/initrd.img-${KERNEL_VERSION}`] = fakeBinary("initrd", 24 * 1024);
    files[`boot/config-${KERNEL_VERSION}`] = "CONFIG_SQUASHFS=y\n";
  }
  return files;
}

/** Writes a small chroot (see smallChrootFiles) at `dir`, with /vmlinuz and /initrd.img symlinks. */
export function makeSmallChroot(dir: string, options: { withBoot?: boolean; withProc?: boolean } = {}): string {
  makeTree(dir, smallChrootFiles(options));
  fs.copyFileSync("/bin/busybox", path.join(dir, "bin", "busybox"));
  fs.symlinkSync("busybox", path.join(dir, "bin", "sh"));
  if (options.withBoot !== false) {
    fs.symlinkSync(`boot/vmlinuz-${KERNEL_VERSION}`, path.join(dir, "vmlinuz"));
    fs.symlinkSync(`boot/initrd.img-${KERNEL_VERSION}`, path.join(dir, "initrd.img"));
  }
  return dir;
}

/** Task ids the plain reporter said it started. */
export function startedTasks(stdout: string): string[] {
  return [...stdout.matchAll(/^start {3}(\S+)$/gm)].map((m) => m[1]!).sort();
}

/** The "N run, M up to date" summary line, parsed. */
export function runSummary(stdout: string): { ran: number; upToDate: number; failed: number } {
  const m = /^(\d+) run, (\d+) up to date(?: \([^)]*\))?, (\d+) failed/m.exec(stdout);
  if (!m) throw new Error(`no summary line in the CLI's output:\n${stdout}`);
  return { ran: Number(m[1]), upToDate: Number(m[2]), failed: Number(m[3]) };
}

export interface PlanEntry {
  status: string;
  reasons: string[];
}

export class Prefix {
  readonly base: string;
  readonly tftp: string;
  readonly home: string;
  readonly etc: string;
  readonly cache: string;
  readonly configPath: string;
  private readonly children: ResultPromise[] = [];

  constructor(readonly dir: string) {
    this.base = path.join(dir, "srv", "ltsp");
    this.tftp = path.join(dir, "srv", "tftp");
    this.home = path.join(dir, "home");
    this.etc = path.join(dir, "etc");
    this.cache = path.join(dir, "cache");
    this.configPath = path.join(dir, "ltspfile.ts");
    for (const d of [this.base, this.tftp, this.home, path.join(this.etc, "ltsp"), path.join(this.etc, "ssh")]) fs.mkdirSync(d, { recursive: true });
    const files: Record<string, string> = {
      passwd: "root:x:0:0:root:/root:/bin/bash\nteacher:x:1000:1000:Teacher:/home/teacher:/bin/bash\n",
      group: "root:x:0:\nteacher:x:1000:\n",
      "login.defs": "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n",
      "ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPipelinePipelinePipelinePipelinePipelinePi root@server\n",
      "ltsp/ltsp.conf": "[clients]\n# LTSP client settings\n",
      "resolv.conf": "nameserver 192.168.67.1\n",
    };
    for (const [rel, content] of Object.entries(files)) fs.writeFileSync(path.join(this.etc, rel), content);
  }

  path(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /** BASE/images/NAME.img */
  image(name: string): string {
    return path.join(this.base, "images", `${name}.img`);
  }

  /** TFTP/ltsp/… */
  tftpFile(...parts: string[]): string {
    return path.join(this.tftp, "ltsp", ...parts);
  }

  /**
   * Writes ltspfile.ts: `export default defineConfig(BODY)`. Type-checking a config takes many
   * seconds; unless `typecheck` is set, the file is recorded as checked in the state dir as the
   * CLI itself does after a first run (same key: version, path, source).
   */
  writeConfig(body: string, options: { typecheck?: boolean } = {}): void {
    const source = `import { defineConfig } from "ltsp-make";\n\nexport default defineConfig(${body});\n`;
    fs.writeFileSync(this.configPath, source);
    if (!options.typecheck) {
      fs.mkdirSync(this.cache, { recursive: true });
      fs.writeFileSync(path.join(this.cache, "typecheck.json"), JSON.stringify({ ok: hashString(`${VERSION}\n${this.configPath}\n${source}`) }));
    }
  }

  private argv(args: string[], options: CliOptions): string[] {
    const roots = ["--base-dir", this.base, "--tftp-dir", this.tftp, "--home-dir", this.home, "--etc-dir", this.etc];
    const config = options.noConfig ? [] : ["--config", this.configPath];
    const cache = options.noCacheDir ? [] : ["--cache-dir", this.cache];
    return [...args, ...config, ...cache, ...roots];
  }

  private start(args: string[], options: CliOptions): ResultPromise {
    const child = execa("node", [CLI, ...this.argv(args, options)], {
      cwd: options.cwd ?? this.dir,
      env: { NO_COLOR: "1", CI: "1" },
      reject: false,
      timeout: options.timeout ?? 120_000,
      stdin: "ignore",
    });
    this.children.push(child);
    return child;
  }

  /** Runs the CLI to completion. */
  async cli(args: string[] = [], options: CliOptions = {}): Promise<CliResult> {
    const r = await this.start(args, options);
    return { exitCode: r.exitCode ?? -1, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) };
  }

  /** Runs the CLI and fails the test, with its output, unless it exits 0. */
  async build(args: string[] = [], options: CliOptions = {}): Promise<CliResult> {
    const result = await this.cli(args, options);
    if (result.exitCode !== 0) throw new Error(`ltsp-make ${args.join(" ")} exited ${result.exitCode}\n${result.stdout}\n${result.stderr}`);
    return result;
  }

  /** Starts the CLI in the background (to signal it); `done` resolves with its result. */
  spawn(args: string[] = [], options: CliOptions = {}): { pid: number; done: Promise<CliResult> } {
    const child = this.start(args, options);
    const done = child.then((r) => ({ exitCode: r.exitCode ?? -1, signal: r.signal, stdout: String(r.stdout), stderr: String(r.stderr) }));
    return { pid: child.pid!, done };
  }

  /** `ltsp-make plan --json`, by task id. */
  async plan(targets: string[] = [], options: CliOptions = {}): Promise<Map<string, PlanEntry>> {
    const result = await this.cli(["plan", "--json", "--no-diff", ...targets], options);
    if (result.exitCode !== 0) throw new Error(`ltsp-make plan exited ${result.exitCode}\n${result.stdout}\n${result.stderr}`);
    const parsed = JSON.parse(result.stdout) as { tasks: { id: string; status: string; reasons?: string[] }[] };
    return new Map(parsed.tasks.map((t) => [t.id, { status: t.status, reasons: t.reasons ?? [] }]));
  }

  /** Task ids the plan calls stale. */
  async stale(targets: string[] = []): Promise<string[]> {
    const plan = await this.plan(targets);
    return [...plan].filter(([, v]) => v.status === "stale").map(([id]) => id).sort();
  }

  /** Kills CLI processes this prefix started that still run (by PID) and waits for them. */
  async stopChildren(): Promise<void> {
    await killChildren(this.children);
  }
}

// ---- What a test must not leave behind ----

function mountLines(): string[] {
  return fs.readFileSync("/proc/mounts", "utf8").split("\n").filter(Boolean);
}

function loopLines(): string[] {
  return run("losetup", ["-a"]).split("\n").filter(Boolean);
}

export interface SystemSnapshot {
  mounts: Set<string>;
  loops: Set<string>;
}

export function snapshotSystem(): SystemSnapshot {
  return { mounts: new Set(mountLines()), loops: new Set(loopLines()) };
}

function decode(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Running processes (not zombies) whose command line mentions `dir`. */
export function processesMentioning(dir: string): { pid: number; pgid: number; comm: string; cmdline: string }[] {
  const found: { pid: number; pgid: number; comm: string; cmdline: string }[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ").trim();
      const stat = fs.readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (cmdline.includes(dir) && fields[0] !== "Z") found.push({ pid: Number(entry), pgid: Number(fields[2]), comm, cmdline });
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

/**
 * What appeared since `before` and mentions `dir`: mounts (/proc/mounts), loop devices
 * (losetup -a) and processes. Only entries naming the prefix count, so tests running in parallel
 * do not see each other's work.
 */
export function leftoversSince(before: SystemSnapshot, dir: string): string[] {
  const mounts = mountLines().filter((l) => !before.mounts.has(l) && decode(l).includes(dir));
  const loops = loopLines().filter((l) => !before.loops.has(l) && l.includes(dir));
  const procs = processesMentioning(dir).map((p) => `process ${p.pid} (${p.comm}): ${p.cmdline}`);
  return [...mounts.map((l) => `mount ${l}`), ...loops.map((l) => `loop ${l}`), ...procs];
}

/** Mount points at or under `dir`, deepest first. */
function mountPointsUnder(dir: string): string[] {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => decode(line.split(" ")[4] ?? ""))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.split("/").length - a.split("/").length || b.length - a.length);
}

/** Removes by force whatever a failed test left under `dir`, then `dir` itself. */
export function scrub(dir: string): void {
  for (const p of processesMentioning(dir)) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  for (let round = 0; round < 3; round++) {
    for (const mountPoint of mountPointsUnder(dir)) {
      try {
        run("umount", [mountPoint]);
      } catch {
        try {
          run("umount", ["-l", mountPoint]);
        } catch {
          // gone with its parent
        }
      }
    }
  }
  for (const line of loopLines().filter((l) => l.includes(dir))) {
    const device = /^(\/dev\/loop\d+):/.exec(line)?.[1];
    if (device) {
      try {
        run("losetup", ["-d", device]);
      } catch {
        // auto-cleared meanwhile
      }
    }
  }
  const still = mountPointsUnder(dir);
  // Never delete through a mount: it could reach a source tree.
  if (still.length) throw new Error(`not removing ${dir}: still mounted: ${still.join(", ")}`);
  fs.rmSync(dir, { recursive: true, force: true });
}

export async function waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Call once per test file: returns a factory of prefixes. Before each test the mount table and
 * loop devices are recorded; after it, running CLIs are killed, and whatever mentions a prefix
 * (mounts, loop devices, processes) is recorded, removed by force, and then fails the test.
 */
export function usePrefixes(): () => Prefix {
  const made: Prefix[] = [];
  let before: SystemSnapshot | undefined;
  beforeEach(() => {
    before = snapshotSystem();
  });
  afterEach(async () => {
    const problems: string[] = [];
    for (const prefix of made.splice(0)) {
      await prefix.stopChildren();
      // Helpers (the dpkg lock holder) exit on their own shortly after the run that made them.
      let left: string[] = [];
      try {
        await waitFor("nothing left", () => (left = leftoversSince(before!, prefix.dir)).length === 0, 3000, 100);
      } catch {
        problems.push(...left);
      }
      try {
        scrub(prefix.dir);
      } catch (error) {
        problems.push((error as Error).message);
      }
    }
    if (problems.length) throw new Error(`the test left behind:\n${problems.join("\n")}`);
  });
  return () => {
    const prefix = new Prefix(fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-")));
    made.push(prefix);
    return prefix;
  };
}

// ---- Looking into built images ----

export interface ImageEntry {
  type: string;
  mode: string;
  owner: string;
  size: number;
  /** Relative to the image root, no leading "/". */
  path: string;
  target?: string;
}

/** `unsquashfs -lls`, parsed. */
export function listImage(image: string): Map<string, ImageEntry> {
  const out = new Map<string, ImageEntry>();
  for (const line of run("unsquashfs", ["-lls", image]).split("\n")) {
    const m = /^(\S)(\S{9}) (\S+)\s+(\d+|\d+,\s*\d+) \d{4}-\d\d-\d\d \d\d:\d\d squashfs-root(\/.*)?$/.exec(line);
    if (!m) continue;
    let rel = (m[5] ?? "").replace(/^\//, "");
    let target: string | undefined;
    if (m[1] === "l") {
      const arrow = rel.indexOf(" -> ");
      target = rel.slice(arrow + 4);
      rel = rel.slice(0, arrow);
    }
    const size = m[4]!.includes(",") ? 0 : Number(m[4]);
    out.set(rel, { type: m[1]!, mode: m[2]!, owner: m[3]!, size, path: rel, ...(target !== undefined ? { target } : {}) });
  }
  if (out.size === 0) throw new Error(`unsquashfs -lls ${image} listed nothing`);
  return out;
}

/** A file's content inside a squashfs image. */
export function catImage(image: string, rel: string): string {
  return run("unsquashfs", ["-cat", image, rel]);
}

export function catImageBytes(image: string, rel: string): Buffer {
  return execFileSync("unsquashfs", ["-cat", image, rel], { maxBuffer: 256 * 1024 * 1024, stdio: ["ignore", "pipe", "pipe"] });
}

/** Throws unless `unsquashfs -s` reads the superblock (exit 0). Returns its output. */
export function superblock(image: string): string {
  return run("unsquashfs", ["-s", image]);
}

export interface CleanImageExpectations {
  /** Files that must be in the image. */
  present: string[];
  /** Human users that must be gone from passwd and shadow. */
  removedUsers?: string[];
}

/**
 * The checks every built image passes: the given system files present; nothing under the
 * excluded home/*, tmp/*, root/*, var/log/*\/*; no SSH host keys (etc/ssh/ssh_host_* excluded, no
 * private host key anywhere); no human account (UID 1000..60000) in passwd or shadow; every
 * password locked, root's included, and no hash left.
 */
export function expectCleanImage(image: string, expected: CleanImageExpectations): Map<string, ImageEntry> {
  const entries = listImage(image);
  const paths = [...entries.keys()];
  for (const file of expected.present) expect(entries.has(file), `${file} in ${image}`).toBe(true);
  for (const dir of ["home", "tmp", "root"]) {
    expect(paths.filter((p) => p.startsWith(`${dir}/`)), `${dir}/* excluded`).toEqual([]);
  }
  expect(paths.filter((p) => /^var\/log\/[^/]+\/./.test(p)), "var/log/*/* excluded").toEqual([]);
  expect(paths.filter((p) => /^etc\/ssh\/ssh_host_/.test(p)), "etc/ssh/ssh_host_* excluded").toEqual([]);
  expect(paths.filter((p) => /(^|\/)ssh_host_[^/]*_key$/.test(p)), "no host private keys").toEqual([]);

  const passwd = catImage(image, "etc/passwd");
  const shadow = catImage(image, "etc/shadow");
  const users = passwd.split("\n").filter(Boolean).map((l) => l.split(":"));
  expect(users.find((u) => u[0] === "root"), "root in passwd").toBeDefined();
  expect(users.filter((u) => Number(u[2]) >= 1000 && Number(u[2]) <= 60000).map((u) => u[0]), "human users in passwd").toEqual([]);
  const shadowEntries = shadow.split("\n").filter(Boolean).map((l) => l.split(":"));
  for (const user of expected.removedUsers ?? []) {
    expect(users.map((u) => u[0]), `${user} in passwd`).not.toContain(user);
    expect(shadowEntries.map((s) => s[0]), `${user} in shadow`).not.toContain(user);
  }
  const root = shadowEntries.find((s) => s[0] === "root");
  expect(root?.[1], "root's password field").toMatch(/^!/);
  expect(shadowEntries.filter((s) => (s[1] ?? "").includes("$")).map((s) => s[0]), "accounts with a password hash").toEqual([]);
  expect(shadowEntries.map((s) => s[0]).sort(), "shadow lists exactly the accounts of passwd").toEqual(users.map((u) => u[0]).sort());
  return entries;
}

/** The generation files of BASE/images/NAME.img (not the stable symlink, not temporaries). */
export function generations(prefix: Prefix, name: string): string[] {
  const dir = path.join(prefix.base, "images");
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => new RegExp(`^${escaped}\\.img\\.\\d{8}-\\d{6}(-\\d+)?$`).test(n)).sort() : [];
}

/** Everything in BASE/images whose name starts with a dot (temporaries of a build). */
export function hiddenInImages(prefix: Prefix): string[] {
  const dir = path.join(prefix.base, "images");
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.startsWith(".")) : [];
}

// ---- VM disks ----

const MiB = 1024 * 1024;

export interface DiskPartition {
  sizeMiB: number;
  /** sfdisk type: `linux`, `uefi` for GPT; `83`, `ef` for MBR. */
  type: string;
  /** An ext4 filesystem made from this directory, or an empty FAT filesystem. */
  content?: { fs: "ext4"; from: string } | { fs: "vfat" };
}

/** A sparse raw disk with a partition table, filesystems made in place (no loop device). */
export function makeDisk(file: string, table: "gpt" | "dos", partitions: DiskPartition[]): string {
  const totalMiB = 2 + partitions.reduce((sum, p) => sum + p.sizeMiB, 0);
  fs.rmSync(file, { force: true });
  run("truncate", ["-s", `${totalMiB}M`, file]);
  run("sfdisk", ["--quiet", file], `${[`label: ${table}`, ...partitions.map((p) => `size=${p.sizeMiB}MiB, type=${p.type}`)].join("\n")}\n`);
  let start = MiB;
  for (const p of partitions) {
    if (p.content?.fs === "ext4") run("mkfs.ext4", ["-q", "-F", "-d", p.content.from, "-E", `offset=${start}`, file, `${p.sizeMiB}M`]);
    if (p.content?.fs === "vfat") run("mkfs.vfat", [`--offset=${start / 512}`, file, String((p.sizeMiB * MiB) / 1024)]);
    start += p.sizeMiB * MiB;
  }
  return file;
}

export function toQcow2(raw: string, qcow2: string): string {
  run("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2]);
  return qcow2;
}
