import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { standaloneExec } from "../../src/exec.ts";
import {
  blkidProbe,
  containerFormatOf,
  mountDiskRoot,
  mountFilesystem,
  mountOptions,
  openRawView,
  partitionSkipReason,
  probe,
  readPartitions,
} from "../../tasks/lib/disk.ts";
import type { RawView } from "../../tasks/lib/disk.ts";
import { isRunning } from "../../tasks/lib/helper-process.ts";
import { isMountPoint, unmountPath } from "../../tasks/lib/mountinfo.ts";
import { OS_TREE, finishTest, leftovers, makeDisk, makeExt4Image, makeTempDir, toQcow2 } from "./disk-fixtures.ts";

const exec = standaloneExec();
const MiB = 1024 * 1024;
const ESP_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const BOOT_TREE = { "vmlinuz-6.1.0": "kernel\n", "grub/grub.cfg": "" };

let dir: string;
let target: string;
let logs: string[];
const log = (message: string) => logs.push(message);
let views: RawView[];

beforeEach(() => {
  dir = makeTempDir();
  target = join(dir, "target");
  mkdirSync(target);
  logs = [];
  views = [];
});

afterEach(async () => {
  await finishTest(dir, [
    async () => {
      while (isMountPoint(target)) await unmountPath(target, exec, log);
    },
    ...views.map((view) => () => view.close()),
  ]);
});

describe("probe and partition table", () => {
  it("tells filesystems, partitioned disks and disk image formats apart", async () => {
    const fs = join(dir, "fs.img");
    makeExt4Image(fs, 8, { "etc/os-release": "ID=x\n" }, dir);
    const disk = join(dir, "disk.img");
    makeDisk(disk, "gpt", [{ sizeMiB: 8, type: "linux" }], dir);
    const qcow2 = join(dir, "disk.qcow2");
    toQcow2(disk, qcow2);
    const junk = join(dir, "junk.bin");
    writeFileSync(junk, Buffer.alloc(64 * 1024, 7));

    expect(await probe(fs, exec)).toEqual({ kind: "filesystem", fstype: "ext4" });
    expect(await probe(disk, exec)).toEqual({ kind: "partition-table", pttype: "gpt" });
    expect(await probe(qcow2, exec)).toEqual({ kind: "container", format: "qcow2" });
    expect((await probe(junk, exec)).kind).toBe("unknown");
  });

  it("recognises disk image formats by their headers", () => {
    const vdi = Buffer.alloc(512);
    vdi.write("<<< Oracle VM VirtualBox Disk Image >>>\n", 0, "latin1");
    vdi.writeUInt32LE(0xbeda107f, 0x40);
    expect(containerFormatOf(vdi)).toBe("vdi");
    expect(containerFormatOf(Buffer.from("KDMV\x01\0\0\0", "latin1"))).toBe("vmdk");
    expect(containerFormatOf(Buffer.from("# Disk DescriptorFile\nversion=1\n"))).toBe("vmdk");
    expect(containerFormatOf(Buffer.from("QFI\xfb\0\0\0\x03", "latin1"))).toBe("qcow2");
    expect(containerFormatOf(Buffer.alloc(512))).toBeUndefined();
  });

  it("reads partitions in bytes with their types, and knows which cannot be a root", async () => {
    const disk = join(dir, "disk.img");
    makeDisk(disk, "gpt", [
      { sizeMiB: 4, type: "uefi" },
      { sizeMiB: 4, type: "swap" },
      { sizeMiB: 8, type: "linux" },
    ], dir);
    const partitions = await readPartitions(disk, exec);
    expect(partitions.map((p) => [p.number, p.start, p.size, p.table])).toEqual([
      [1, 1 * MiB, 4 * MiB, "gpt"],
      [2, 5 * MiB, 4 * MiB, "gpt"],
      [3, 9 * MiB, 8 * MiB, "gpt"],
    ]);
    expect(partitions[0]?.type).toBe(ESP_GUID);
    expect(partitions.map((p) => partitionSkipReason(p))).toEqual(["EFI system partition", "swap", undefined]);

    const mbr = join(dir, "mbr.img");
    makeDisk(mbr, "dos", [{ sizeMiB: 4, type: "ef" }, { sizeMiB: 4, type: "83" }], dir);
    const mbrPartitions = await readPartitions(mbr, exec);
    expect(mbrPartitions.map((p) => [p.number, p.type, p.table])).toEqual([[1, "ef", "dos"], [2, "83", "dos"]]);
    expect(partitionSkipReason(mbrPartitions[0]!)).toBe("EFI system partition");
  });

  it("probes a partition's filesystem at its offset", async () => {
    const disk = join(dir, "disk.img");
    makeDisk(disk, "dos", [{ sizeMiB: 4, type: "82", content: { fs: "swap" } }, { sizeMiB: 8, type: "83", content: { fs: "ext4" } }], dir);
    const [swap, root] = await readPartitions(disk, exec);
    expect((await blkidProbe(disk, exec, swap!)).TYPE).toBe("swap");
    expect((await blkidProbe(disk, exec, root!)).TYPE).toBe("ext4");
  });

  it("mounts read-only with noload for ext*, user options replacing the defaults", () => {
    const file = join(dir, "f");
    writeFileSync(file, "");
    expect(mountOptions(file, { fstype: "ext4", offset: 512, size: 1024 })).toBe("ro,loop,offset=512,sizelimit=1024,noload");
    expect(mountOptions(file, { fstype: "squashfs" })).toBe("ro,loop");
    expect(mountOptions(file, { fstype: "ext4", options: ["rw", "loop", "errors=continue"] })).toBe("ro,loop,errors=continue");
  });
});

describe("choosing and mounting the root partition", () => {
  it("mounts the ext4 root of an MBR disk", async () => {
    const disk = join(dir, "mbr.img");
    makeDisk(disk, "dos", [{ sizeMiB: 8, type: "83", content: { fs: "ext4", tree: OS_TREE } }], dir);
    const chosen = await mountDiskRoot(disk, target, {}, { exec, log });
    expect(chosen.partition.number).toBe(1);
    expect(chosen.fstype).toBe("ext4");
    expect(readFileSync(join(target, "etc/os-release"), "utf8")).toBe("ID=testos\n");
    // Read-only, and a loop device limited to the partition.
    expect(() => writeFileSync(join(target, "x"), "")).toThrow(/EROFS|read-only/);
    const loops = leftovers(dir).filter((line) => line.startsWith("loop "));
    expect(loops).toHaveLength(1);
    await unmountPath(target, exec, log);
    expect(leftovers(dir)).toEqual([]); // the loop device went with the mount
  });

  it("skips a GPT ESP (FAT) and picks the second partition", async () => {
    const disk = join(dir, "gpt.img");
    makeDisk(disk, "gpt", [
      { sizeMiB: 8, type: "uefi", content: { fs: "vfat" } },
      { sizeMiB: 8, type: "linux", content: { fs: "ext4", tree: OS_TREE } },
    ], dir);
    const chosen = await mountDiskRoot(disk, target, {}, { exec, log });
    expect(chosen.partition.number).toBe(2);
    expect(existsSync(join(target, "sbin/init"))).toBe(true);
  });

  it("skips swap placed first, by partition type and by signature", async () => {
    const disk = join(dir, "swap.img");
    makeDisk(disk, "dos", [
      { sizeMiB: 4, type: "82", content: { fs: "swap" } },
      { sizeMiB: 4, type: "83", content: { fs: "swap" } },
      { sizeMiB: 8, type: "83", content: { fs: "ext4", tree: OS_TREE } },
    ], dir);
    const chosen = await mountDiskRoot(disk, target, {}, { exec, log });
    expect(chosen.partition.number).toBe(3);
  });

  it("passes over a /boot partition without an operating system to the root after it", async () => {
    const disk = join(dir, "boot-first.img");
    makeDisk(disk, "dos", [
      { sizeMiB: 8, type: "83", content: { fs: "ext4", tree: BOOT_TREE } },
      { sizeMiB: 8, type: "83", content: { fs: "ext4", tree: OS_TREE } },
    ], dir);
    const chosen = await mountDiskRoot(disk, target, {}, { exec, log });
    expect(chosen.partition.number).toBe(2);
    expect(existsSync(join(target, "etc/os-release"))).toBe(true);
    expect(existsSync(join(target, "vmlinuz-6.1.0"))).toBe(false);
    // Only the chosen partition stays mounted.
    expect(leftovers(dir).filter((line) => line.startsWith("loop "))).toHaveLength(1);
  });

  it("mounts the partition given with partition=N", async () => {
    const disk = join(dir, "boot-first.img");
    makeDisk(disk, "dos", [
      { sizeMiB: 8, type: "83", content: { fs: "ext4", tree: BOOT_TREE } },
      { sizeMiB: 8, type: "83", content: { fs: "ext4", tree: OS_TREE } },
    ], dir);
    const chosen = await mountDiskRoot(disk, target, { partition: 1 }, { exec, log });
    expect(chosen.partition.number).toBe(1);
    expect(readFileSync(join(target, "vmlinuz-6.1.0"), "utf8")).toBe("kernel\n");
    await unmountPath(target, exec, log);
    await expect(mountDiskRoot(disk, target, { partition: 3 }, { exec, log })).rejects.toThrow(/has no partition 3; it has p1 \(type 83\), p2 \(type 83\)/);
  });

  it("says what it looked at when no partition holds an operating system", async () => {
    const disk = join(dir, "no-os.img");
    makeDisk(disk, "gpt", [
      { sizeMiB: 4, type: "uefi", content: { fs: "vfat" } },
      { sizeMiB: 4, type: "swap", content: { fs: "swap" } },
      { sizeMiB: 4, type: "linux" },
      { sizeMiB: 8, type: "linux", content: { fs: "ext4", tree: BOOT_TREE } },
    ], dir);
    const error = await mountDiskRoot(disk, target, {}, { exec, log }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain(`No partition of ${disk} holds an operating system`);
    expect((error as Error).message).toContain("p1 EFI system partition: skipped; p2 swap: skipped; p3: no filesystem; p4 ext4: no etc/os-release");
    expect((error as Error).message).toContain("partition=N");
    expect(isMountPoint(target)).toBe(false);
  });

  it("mounts a bare ext4 filesystem image", async () => {
    const image = join(dir, "root.ext4");
    makeExt4Image(image, 8, OS_TREE, dir);
    const found = await probe(image, exec);
    expect(found).toEqual({ kind: "filesystem", fstype: "ext4" });
    await mountFilesystem(image, target, { fstype: "ext4" }, exec);
    expect(readFileSync(join(target, "etc/os-release"), "utf8")).toBe("ID=testos\n");
    expect(readFileSync("/proc/self/mountinfo", "utf8")).toMatch(new RegExp(`${target} \\S+ - ext4 \\S+ ro,[^\\n]*norecovery`));
  });
});

describe("qcow2 disks", () => {
  async function qcow2Disk(): Promise<string> {
    const raw = join(dir, "vm.raw");
    makeDisk(raw, "gpt", [
      { sizeMiB: 4, type: "uefi", content: { fs: "vfat" } },
      { sizeMiB: 8, type: "linux", content: { fs: "ext4", tree: OS_TREE } },
    ], dir);
    const qcow2 = join(dir, "vm.qcow2");
    toQcow2(raw, qcow2);
    return qcow2;
  }

  it("serves a qcow2 disk as raw sectors through FUSE and mounts its root", async () => {
    const qcow2 = await qcow2Disk();
    const viewDir = join(dir, "view");
    mkdirSync(viewDir);
    const view = await openRawView(qcow2, "qcow2", viewDir, { exec, log }, "fuse");
    views.push(view);
    expect(view.method).toBe("fuse");
    expect(view.pid !== undefined && isRunning(view.pid)).toBe(true);
    expect(isMountPoint(view.path)).toBe(true);
    expect(await probe(view.path, exec)).toEqual({ kind: "partition-table", pttype: "gpt" });
    const chosen = await mountDiskRoot(view.path, target, {}, { exec, log });
    expect(chosen.partition.number).toBe(2);
    expect(readFileSync(join(target, "etc/os-release"), "utf8")).toBe("ID=testos\n");
    await unmountPath(target, exec, log);
    await view.close();
    expect(isRunning(view.pid!)).toBe(false);
    expect(existsSync(view.path)).toBe(false);
    await view.close(); // idempotent
  });

  it("falls back to a raw copy made by qemu-img convert", async () => {
    const qcow2 = await qcow2Disk();
    const viewDir = join(dir, "view");
    mkdirSync(viewDir);
    const view = await openRawView(qcow2, "qcow2", viewDir, { exec, log }, "convert");
    views.push(view);
    expect(view.method).toBe("convert");
    expect(view.pid).toBeUndefined();
    const chosen = await mountDiskRoot(view.path, target, {}, { exec, log });
    expect(chosen.partition.number).toBe(2);
    await unmountPath(target, exec, log);
    await view.close();
    expect(existsSync(view.path)).toBe(false);
  });
});
