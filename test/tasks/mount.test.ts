import { spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CancelledError, createExec, standaloneExec } from "../../src/exec.ts";
import type { Exec } from "../../src/exec.ts";
import type { ExecOptions } from "../../src/types.ts";
import { isRunning, recordedHelperPids } from "../../tasks/lib/helper-process.ts";
import { decodeMountPath, mountsBelow, parseMountInfo } from "../../tasks/lib/mountinfo.ts";
import { mountSource, sweepStaleWorkDirs } from "../../tasks/lib/mount.ts";
import type { MountedSource } from "../../tasks/lib/mount.ts";
import { OS_TREE, finishTest, leftovers, makeDisk, makeTempDir, makeTree, toQcow2 } from "./disk-fixtures.ts";

const exec = standaloneExec();

let dir: string;
let base: string;
let workDir: string;
let logs: string[];
const log = (message: string) => logs.push(message);
let mounted: MountedSource[];
let children: ChildProcess[];

const CHROOT_TREE = { ...OS_TREE, "etc/hostname": "chroot\n", "var/lib/dpkg/lock": "", "var/lib/dpkg/lock-frontend": "", boot: null };

function options() {
  return { workDir, baseDir: base, exec, log };
}

/** Tries to take an fcntl lock on `file` without waiting: true if it was free. */
async function lockIsFree(file: string): Promise<boolean> {
  const script = "import fcntl,os,sys\nfd=os.open(sys.argv[1],os.O_RDWR)\ntry:\n fcntl.lockf(fd,fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError:\n sys.exit(3)";
  const { exitCode } = await exec("python3", ["-c", script, file], { okExitCodes: [0, 3] });
  return exitCode === 0;
}

beforeEach(() => {
  dir = makeTempDir();
  base = join(dir, "base");
  workDir = join(dir, "work", "run-1");
  mkdirSync(join(dir, "work"), { recursive: true });
  makeTree(join(base, "chroot1"), CHROOT_TREE);
  logs = [];
  mounted = [];
  children = [];
});

afterEach(async () => {
  await finishTest(dir, [
    ...mounted.map((source) => () => source.unmount()),
    ...children.map((child) => () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }),
  ]);
});

describe("mountSource on directories", () => {
  it("gives a writable view of a chroot that never writes to the source", async () => {
    const lockFile = join(base, "chroot1/var/lib/dpkg/lock");
    const lockMtime = statSync(lockFile).mtimeMs;
    const source = await mountSource("chroot1", options());
    mounted.push(source);
    expect(source.source).toEqual({ name: "chroot1", path: join(base, "chroot1"), kind: "chroot" });
    expect(source.root).toBe(join(workDir, "root"));
    expect(readFileSync(join(source.root, "etc/hostname"), "utf8")).toBe("chroot\n");

    writeFileSync(join(source.root, "etc/hostname"), "changed\n");
    writeFileSync(join(source.root, "new-file"), "x");
    mkdirSync(join(source.root, "new-dir"));
    expect(readFileSync(join(source.root, "etc/hostname"), "utf8")).toBe("changed\n");
    expect(readFileSync(join(base, "chroot1/etc/hostname"), "utf8")).toBe("chroot\n");
    expect(existsSync(join(base, "chroot1/new-file"))).toBe(false);
    expect(existsSync(join(base, "chroot1/new-dir"))).toBe(false);

    // Our own tmpfs holds the upper layer; the view is an overlay.
    const table = mountsBelow(workDir);
    expect(table.map((entry) => [entry.mountPoint.slice(workDir.length), entry.fsType])).toEqual([
      ["/tmpfs", "tmpfs"],
      ["/root", "overlay"],
    ]);
    expect(statSync(workDir).mode & 0o777).toBe(0o700);

    // dpkg's lock is held, without touching the lock file.
    expect(source.lockRoot).toBe(join(base, "chroot1"));
    expect(await lockIsFree(lockFile)).toBe(false);
    expect(await lockIsFree(`${lockFile}-frontend`)).toBe(false);
    const helper = recordedHelperPids(workDir)[0];
    expect(helper !== undefined && isRunning(helper)).toBe(true);

    await source.unmount();
    expect(leftovers(dir)).toEqual([]);
    expect(existsSync(workDir)).toBe(false);
    expect(isRunning(helper!)).toBe(false);
    expect(await lockIsFree(lockFile)).toBe(true);
    expect(statSync(lockFile).mtimeMs).toBe(lockMtime);
    expect(readFileSync(lockFile, "utf8")).toBe("");
    await source.unmount(); // idempotent
  });

  it("mounts later entries of a chain on their subdir", async () => {
    const root = makeTree(join(dir, "rootfs"), { "etc/os-release": "ID=x\n", boot: null });
    const boot = makeTree(join(dir, "bootfs"), { "vmlinuz-6.1": "kernel\n" });
    const opt = makeTree(join(dir, "optfs"), { "app/bin": "app\n" });
    const source = await mountSource(`${root},,${boot},subdir=boot,ro,,${opt},subdir=opt`, options());
    mounted.push(source);
    expect(source.source.kind).toBe("dir");
    expect(readFileSync(join(source.root, "boot/vmlinuz-6.1"), "utf8")).toBe("kernel\n");
    expect(readFileSync(join(source.root, "opt/app/bin"), "utf8")).toBe("app\n");
    // opt/ did not exist in the root: it was made in the overlay, not in the source.
    expect(existsSync(join(root, "opt"))).toBe(false);
    writeFileSync(join(source.root, "boot/config"), "x");
    expect(existsSync(join(boot, "config"))).toBe(false);
    expect(logs.some((line) => line.includes("mount options ro are ignored for the directory"))).toBe(true);
    // No dpkg lock in this tree: a warning, and no lock helper.
    expect(source.lockRoot).toBeUndefined();
    expect(logs.some((line) => line.includes("has no var/lib/dpkg/lock"))).toBe(true);
    await source.unmount();
    expect(leftovers(dir)).toEqual([]);
  });

  it("overlays a directory whose path overlayfs options could not carry", async () => {
    // Such a path cannot be written in the source syntax, but parsed entries can carry it.
    const root = makeTree(join(dir, "rootfs"), { "etc/os-release": "ID=x\n" });
    const odd = makeTree(join(dir, "odd dir,with:colon"), { "app/bin": "app\n" });
    const source = await mountSource([{ path: root, subdir: "", options: [] }, { path: odd, subdir: "opt", options: [] }], options());
    mounted.push(source);
    expect(readFileSync(join(source.root, "opt/app/bin"), "utf8")).toBe("app\n");
    writeFileSync(join(source.root, "opt/app/bin"), "changed\n");
    expect(readFileSync(join(odd, "app/bin"), "utf8")).toBe("app\n");
    await source.unmount();
    expect(leftovers(dir)).toEqual([]);
  });

  it("refuses a subdir that crosses a symlink, and cleans up what it had mounted", async () => {
    const root = makeTree(join(dir, "rootfs"), { "etc/os-release": "ID=x\n" });
    const escape = makeTree(join(dir, "outside"), {});
    symlinkSync(escape, join(root, "boot"));
    const boot = makeTree(join(dir, "bootfs"), { vmlinuz: "" });
    await expect(mountSource(`${root},,${boot},subdir=boot`, options())).rejects.toThrow(/subdir=boot: boot is a symlink in the image/);
    expect(leftovers(dir)).toEqual([]);
    expect(readdirSync(escape)).toEqual([]);
    expect(existsSync(workDir)).toBe(false);
  });

  it("tears down what it set up when a later entry fails", async () => {
    await expect(mountSource("chroot1,,/no/such/dir,subdir=boot", options())).rejects.toThrow(
      /Image source entry "\/no\/such\/dir" does not exist/,
    );
    expect(leftovers(dir)).toEqual([]);
    expect(existsSync(workDir)).toBe(false);
    expect(await lockIsFree(join(base, "chroot1/var/lib/dpkg/lock"))).toBe(true);
  });

  it("waits for a busy dpkg lock, saying so", async () => {
    const lockFile = join(base, "chroot1/var/lib/dpkg/lock");
    const holder = spawn("python3", ["-c", "import fcntl,os,sys,time\nfd=os.open(sys.argv[1],os.O_RDWR)\nfcntl.lockf(fd,fcntl.LOCK_EX)\nprint('held',flush=True)\ntime.sleep(60)", lockFile], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(holder);
    await new Promise<void>((done) => holder.stdout!.once("data", () => done()));
    const mounting = mountSource("chroot1", options());
    const waiting = () => logs.some((line) => line.startsWith(`Waiting for ${lockFile}: apt or dpkg is running`));
    for (let i = 0; i < 200 && !waiting(); i++) await new Promise((done) => setTimeout(done, 50));
    expect(waiting()).toBe(true);
    holder.kill("SIGTERM");
    const source = await mounting;
    mounted.push(source);
    expect(source.lockRoot).toBe(join(base, "chroot1"));
    expect(await lockIsFree(lockFile)).toBe(false);
  });
});

describe("mountSource on disks", () => {
  it("mounts a VM disk's root partition through an overlay, and frees its loop device", async () => {
    makeDisk(join(base, "vm.img"), "gpt", [
      { sizeMiB: 4, type: "uefi", content: { fs: "vfat" } },
      { sizeMiB: 8, type: "linux", content: { fs: "ext4", tree: { ...OS_TREE, "etc/hostname": "vm\n" } } },
    ], dir);
    const source = await mountSource("vm", options());
    mounted.push(source);
    expect(source.source).toEqual({ name: "vm", path: join(base, "vm.img"), kind: "vm-disk" });
    expect(source.lockRoot).toBeUndefined();
    expect(readFileSync(join(source.root, "etc/hostname"), "utf8")).toBe("vm\n");
    writeFileSync(join(source.root, "etc/hostname"), "changed\n"); // writable view of a read-only mount
    expect(leftovers(dir).filter((line) => line.startsWith("loop "))).toHaveLength(1);
    await source.unmount();
    expect(leftovers(dir)).toEqual([]);
  });

  it("mounts a qcow2 disk through a FUSE view and stops the daemon on unmount", async () => {
    const raw = join(dir, "vm.raw");
    makeDisk(raw, "dos", [{ sizeMiB: 8, type: "83", content: { fs: "ext4", tree: OS_TREE } }], dir);
    toQcow2(raw, join(base, "q.img"));
    const source = await mountSource("q", options());
    mounted.push(source);
    expect(readFileSync(join(source.root, "etc/os-release"), "utf8")).toBe("ID=testos\n");
    expect(mountsBelow(workDir).map((entry) => entry.fsType)).toEqual(["tmpfs", "fuse", "ext4", "overlay"]);
    const [daemon] = recordedHelperPids(workDir);
    expect(daemon !== undefined && isRunning(daemon)).toBe(true);
    await source.unmount();
    expect(isRunning(daemon!)).toBe(false);
    expect(leftovers(dir)).toEqual([]);
  });

  it("mounts a filesystem image with fstype= and a second entry inside the first", async () => {
    // Like a live CD: an outer filesystem holding the image of the real root.
    const inner = join(dir, "inner.ext4");
    await exec("mkfs.ext4", ["-q", "-F", "-d", makeTree(join(dir, "inner-tree"), OS_TREE), inner, "8M"]);
    const outerTree = makeTree(join(dir, "outer-tree"), { "live/.keep": "" });
    await exec("cp", [inner, join(outerTree, "live/root.ext4")]);
    const outer = join(dir, "outer.ext4");
    await exec("mkfs.ext4", ["-q", "-F", "-d", outerTree, outer, "16M"]);
    const source = await mountSource(`${outer},fstype=ext4,,live/root.ext4`, options());
    mounted.push(source);
    expect(readFileSync(join(source.root, "etc/os-release"), "utf8")).toBe("ID=testos\n");
    await source.unmount();
    expect(leftovers(dir)).toEqual([]);
  });

  it("cleans up completely when cancelled half-way through choosing a partition", async () => {
    makeDisk(join(base, "vm.img"), "dos", [
      { sizeMiB: 8, type: "83", content: { fs: "ext4", tree: { "vmlinuz-6.1": "" } } },
      { sizeMiB: 8, type: "83", content: { fs: "ext4", tree: OS_TREE } },
    ], dir);
    // Ctrl+C arrives just as the /boot-like first partition is to be unmounted again.
    const controller = new AbortController();
    const cancellable = createExec(controller.signal);
    const exec = ((file: string, args: readonly string[] = [], execOptions: ExecOptions & { binary?: false } = {}) => {
      if (file === "umount") controller.abort();
      return cancellable(file, args, execOptions);
    }) as Exec;
    await expect(mountSource("vm", { ...options(), exec })).rejects.toBeInstanceOf(CancelledError);
    expect(leftovers(dir)).toEqual([]);
    // Cleaned up properly, not by detaching a busy tmpfs.
    expect(logs.filter((line) => line.includes("lazily"))).toEqual([]);
    expect(existsSync(workDir)).toBe(false);
  });

  it("says which file it cannot mount", async () => {
    writeFileSync(join(base, "junk.img"), Buffer.alloc(128 * 1024, 1));
    await expect(mountSource("junk", options())).rejects.toThrow(/I don't know how to mount .*junk\.img: blkid finds no filesystem/);
    expect(leftovers(dir)).toEqual([]);
  });
});

describe("sweepStaleWorkDirs", () => {
  it("decodes octal escapes in mountinfo", () => {
    expect(decodeMountPath("/tmp/a\\040b\\011c\\012d\\134e")).toBe("/tmp/a b\tc\nd\\e");
    const [entry] = parseMountInfo("97 29 0:47 / /tmp/with\\040space rw,relatime shared:50 - tmpfs tmp\\040fs rw\n");
    expect(entry).toEqual({ id: 97, parentId: 29, mountPoint: "/tmp/with space", fsType: "tmpfs", source: "tmp fs" });
  });

  it("cleans up the mounts and helpers of a run that died", async () => {
    makeDisk(join(dir, "vm.raw"), "dos", [{ sizeMiB: 8, type: "83", content: { fs: "ext4", tree: OS_TREE } }], dir);
    toQcow2(join(dir, "vm.raw"), join(dir, "vm.qcow2"));
    const boot = makeTree(join(dir, "bootfs"), { vmlinuz: "" });
    // A run that is "killed": its unmount() is never called.
    await mountSource(`chroot1,,${boot},subdir=boot,,${join(dir, "vm.qcow2")},subdir=opt`, options());
    // Another run, alive, on another chroot (the dead run still holds chroot1's dpkg lock).
    makeTree(join(base, "chroot2"), CHROOT_TREE);
    const other = join(dir, "work", "run-10");
    const kept = await mountSource(`chroot2,,${boot},subdir=boot`, { ...options(), workDir: other });
    mounted.push(kept);
    // A mount point with a space, as mountinfo escapes it.
    const spaced = join(workDir, "with space");
    mkdirSync(spaced);
    await exec("mount", ["-t", "tmpfs", "tmpfs", spaced]);
    const helpers = recordedHelperPids(workDir);
    expect(helpers).toHaveLength(2); // the FUSE daemon and the dpkg lock holder
    expect(mountsBelow(workDir).map((entry) => entry.fsType)).toEqual(["tmpfs", "overlay", "overlay", "fuse", "ext4", "overlay", "tmpfs"]);

    const sweepLog: string[] = [];
    await sweepStaleWorkDirs([workDir, join(dir, "work", "gone")], exec, (line) => sweepLog.push(line));

    expect(mountsBelow(workDir)).toEqual([]);
    expect(existsSync(workDir)).toBe(false);
    expect(helpers.filter((pid) => isRunning(pid))).toEqual([]);
    expect(sweepLog).toContain(`removed ${workDir} left by an interrupted run`);
    // The other run's work directory (whose name starts the same) is untouched.
    expect(mountsBelow(other).map((entry) => entry.fsType)).toEqual(["tmpfs", "overlay", "overlay"]);
    expect(readFileSync(join(kept.root, "boot/vmlinuz"), "utf8")).toBe("");
    expect(recordedHelperPids(other).every((pid) => isRunning(pid))).toBe(true);
    await kept.unmount();
    expect(leftovers(dir)).toEqual([]);
  });
});
