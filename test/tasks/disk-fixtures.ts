// Small real disks for the disk and mount tests, and checks that a test left no mount or loop
// device behind.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

const MiB = 1024 * 1024;

function run(file: string, args: string[], input?: string): string {
  return execFileSync(file, args, { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
}

export function makeTempDir(): string {
  return mkdtempSync(join(tmpdir(), "ltsp-make-test-"));
}

/** Creates files (and their directories) under `dir`; a value of `null` makes an empty directory. */
export function makeTree(dir: string, files: Record<string, string | null>): string {
  mkdirSync(dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    const full = join(dir, path);
    if (content === null) {
      mkdirSync(full, { recursive: true });
    } else {
      mkdirSync(dirname(full), { recursive: true });
      writeFileSync(full, content);
    }
  }
  return dir;
}

export interface PartitionSpec {
  sizeMiB: number;
  /** sfdisk type: a GUID or alias for GPT (`linux`, `uefi`, `swap`), hex for MBR (`83`, `82`, `ef`). */
  type: string;
  content?: { fs: "ext4"; tree?: Record<string, string | null> } | { fs: "vfat" } | { fs: "swap" };
}

/** A sparse disk file with a partition table and filesystems made in place (no loop devices). */
export function makeDisk(path: string, table: "gpt" | "dos", partitions: PartitionSpec[], scratch: string): void {
  const totalMiB = 1 + partitions.reduce((sum, p) => sum + p.sizeMiB, 0) + 1;
  rmSync(path, { force: true });
  run("truncate", ["-s", `${totalMiB}M`, path]);
  const script = [`label: ${table}`, ...partitions.map((p) => `size=${p.sizeMiB}MiB, type=${p.type}`)].join("\n");
  run("sfdisk", ["--quiet", path], `${script}\n`);
  let start = MiB;
  partitions.forEach((partition, i) => {
    const content = partition.content;
    const bytes = partition.sizeMiB * MiB;
    if (content?.fs === "ext4") {
      const treeDir = makeTree(join(scratch, `tree-${i}-${Date.now()}`), content.tree ?? {});
      run("mkfs.ext4", ["-q", "-F", "-d", treeDir, "-E", `offset=${start}`, path, `${partition.sizeMiB}M`]);
    } else if (content?.fs === "vfat") {
      run("mkfs.vfat", [`--offset=${start / 512}`, path, String(bytes / 1024)]);
    } else if (content?.fs === "swap") {
      const swap = join(scratch, `swap-${i}-${Date.now()}`);
      run("truncate", ["-s", String(bytes), swap]);
      run("mkswap", ["-q", swap]);
      run("dd", [`if=${swap}`, `of=${path}`, "bs=1M", `seek=${start / MiB}`, "conv=notrunc,sparse", "status=none"]);
      rmSync(swap);
    }
    start += bytes;
  });
}

/** A bare ext4 filesystem image holding `tree`. */
export function makeExt4Image(path: string, sizeMiB: number, tree: Record<string, string | null>, scratch: string): void {
  const treeDir = makeTree(join(scratch, `tree-${Date.now()}`), tree);
  run("mkfs.ext4", ["-q", "-F", "-d", treeDir, path, `${sizeMiB}M`]);
}

export function toQcow2(raw: string, qcow2: string): void {
  run("qemu-img", ["convert", "-O", "qcow2", raw, qcow2]);
}

export const OS_TREE = { "etc/os-release": "ID=testos\n", "sbin/init": "#!/bin/sh\n", proc: null } as const;

function decode(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Mount points, loop devices and FUSE mounts that refer to `dir`: what a test must not leave. */
export function leftovers(dir: string): string[] {
  const mounts = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => decode(line.split(" ")[4] ?? ""))
    .filter((mountPoint) => mountPoint === dir || mountPoint.startsWith(`${dir}/`))
    .map((mountPoint) => `mount ${mountPoint}`);
  const loops = (JSON.parse(run("losetup", ["--list", "--json", "--output", "NAME,BACK-FILE"]) || '{"loopdevices":[]}') as {
    loopdevices: { name: string; "back-file": string | null }[];
  }).loopdevices
    .filter((loop) => (loop["back-file"] ?? "").startsWith(`${dir}/`))
    .map((loop) => `loop ${loop.name} ${loop["back-file"]}`);
  return [...mounts, ...loops];
}

/** Forcibly removes what `leftovers` reports (after a failed test), then the directory. */
export function scrub(dir: string): void {
  const mountPoints = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => decode(line.split(" ")[4] ?? ""))
    .filter((mountPoint) => mountPoint === dir || mountPoint.startsWith(`${dir}/`))
    .reverse();
  for (const mountPoint of mountPoints) {
    try {
      run("umount", ["-l", mountPoint]);
    } catch {
      // Already gone with its parent.
    }
  }
  for (const line of leftovers(dir)) {
    const device = /^loop (\S+)/.exec(line)?.[1];
    if (device) {
      try {
        run("losetup", ["-d", device]);
      } catch {
        // Auto-cleared meanwhile.
      }
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/** PIDs of running processes whose command line mentions `dir`. */
export function processesMentioning(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      const state = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.[0];
      if (cmdline.includes(dir) && state !== "Z") pids.push(Number(entry));
    } catch {
      // Exited meanwhile.
    }
  }
  return pids;
}

/** Ends processes (by PID) that a failed test left running. */
export function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Gone.
    }
  }
}

/**
 * The end of every disk/mount test: runs the test's own clean-up steps (each even if an earlier
 * one fails), records what was left behind, removes it by force, and only then fails the test
 * if anything was left or a step failed.
 */
export async function finishTest(dir: string, steps: (() => unknown)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (error) {
      errors.push(error);
    }
  }
  const left = leftovers(dir);
  const stray = processesMentioning(dir);
  killAll(stray);
  scrub(dir);
  if (left.length > 0 || stray.length > 0) {
    throw new Error(`The test left mounts, loop devices or processes behind:\n${[...left, ...stray.map((pid) => `process ${pid}`)].join("\n")}`);
  }
  if (errors.length > 0) throw errors[0];
}
