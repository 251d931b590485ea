// VM disks under the base directory (BASE/NAME.img) become images with no image configured:
// an MBR disk, a GPT disk whose first partition is an ESP, a qcow2 disk; and with no ltspfile at
// all, chroots and disks are found the same way.
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import {
  catImage,
  expectCleanImage,
  fakeBinary,
  generations,
  KERNEL_VERSION,
  makeDisk,
  makeSmallChroot,
  runSummary,
  startedTasks,
  superblock,
  toQcow2,
  usePrefixes,
  type Prefix,
} from "./helpers.ts";

const newPrefix = usePrefixes();

/** A small chroot whose etc/hostname names the disk, to tell the images apart. */
function rootTree(prefix: Prefix, name: string): string {
  const dir = makeSmallChroot(prefix.path("trees", name));
  fs.writeFileSync(path.join(dir, "etc/hostname"), `${name}\n`);
  return dir;
}

function expectBuiltFromDisk(prefix: Prefix, name: string): void {
  const image = prefix.image(name);
  expect(superblock(image)).toMatch(/Filesystem size/);
  expect(generations(prefix, name)).toHaveLength(1);
  expectCleanImage(image, {
    present: ["bin/busybox", "sbin/init", "etc/os-release", "usr/bin/true", `boot/vmlinuz-${KERNEL_VERSION}`],
    removedUsers: ["alice", "bob"],
  });
  expect(catImage(image, "etc/hostname")).toBe(`${name}\n`);
  expect(fs.readFileSync(prefix.tftpFile(name, "vmlinuz"))).toEqual(fakeBinary("vmlinuz", 48 * 1024));
  expect(fs.readFileSync(prefix.tftpFile(name, "initrd.img"))).toEqual(fakeBinary("initrd", 24 * 1024));
}

describe("VM disks as image sources", () => {
  test("MBR, GPT with an ESP first, and qcow2 disks are found and built with no image configured", async () => {
    const prefix = newPrefix();
    makeDisk(path.join(prefix.base, "mbr.img"), "dos", [{ sizeMiB: 16, type: "83", content: { fs: "ext4", from: rootTree(prefix, "mbr") } }]);
    makeDisk(path.join(prefix.base, "gpt.img"), "gpt", [
      { sizeMiB: 8, type: "uefi", content: { fs: "vfat" } },
      { sizeMiB: 16, type: "linux", content: { fs: "ext4", from: rootTree(prefix, "gpt") } },
    ]);
    const raw = makeDisk(prefix.path("trees", "qcow.raw"), "dos", [{ sizeMiB: 16, type: "83", content: { fs: "ext4", from: rootTree(prefix, "qcow") } }]);
    toQcow2(raw, path.join(prefix.base, "qcow.img"));
    const disksBefore = ["mbr", "gpt", "qcow"].map((n) => fs.readFileSync(path.join(prefix.base, `${n}.img`)));
    prefix.writeConfig(`{
  imageDefaults: { compression: "zstd" },
  dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },
}`);

    const result = await prefix.build();
    const started = startedTasks(result.stdout);
    for (const name of ["mbr", "gpt", "qcow"]) {
      expect(started).toEqual(expect.arrayContaining([`cleanup:${name}`, `squash:${name}`, `kernel:${name}`]));
      expectBuiltFromDisk(prefix, name);
    }
    const menu = fs.readFileSync(prefix.tftpFile("ltsp.ipxe"), "utf8");
    for (const name of ["mbr", "gpt", "qcow"]) expect(menu).toMatch(new RegExp(`^item .* ${name} ${name}\\.img$`, "m"));
    // Disks are read only.
    ["mbr", "gpt", "qcow"].forEach((n, i) => expect(fs.readFileSync(path.join(prefix.base, `${n}.img`)).equals(disksBefore[i]!), `${n}.img unchanged`).toBe(true));

    expect(await prefix.stale()).toEqual([]);
  });

  test("with no ltspfile at all, chroots and VM disks under the base directory are found and built", async () => {
    const prefix = newPrefix();
    makeSmallChroot(path.join(prefix.base, "chroot"));
    makeDisk(path.join(prefix.base, "vm.img"), "dos", [{ sizeMiB: 16, type: "83", content: { fs: "ext4", from: rootTree(prefix, "vm") } }]);
    const cwd = prefix.path("empty");
    fs.mkdirSync(cwd);
    const options = { cwd, noConfig: true, noCacheDir: true };

    const result = await prefix.build([], options);
    expect(startedTasks(result.stdout)).toEqual(expect.arrayContaining(["squash:chroot", "kernel:chroot", "squash:vm", "kernel:vm", "initrd", "ipxe", "nfs", "dnsmasq"]));
    expectBuiltFromDisk(prefix, "vm");
    expectCleanImage(prefix.image("chroot"), { present: ["bin/busybox", "etc/hostname"], removedUsers: ["alice", "bob"] });
    // Built-in defaults: zstd compression, state in ./cache.
    expect(superblock(prefix.image("chroot"))).toMatch(/zstd/);
    expect(fs.existsSync(path.join(cwd, "cache"))).toBe(true);
    expect(fs.existsSync(prefix.tftpFile("ltsp.img"))).toBe(true);
    // The chroot can also be booted as an NFS root: the menu lists it (r_NAME).
    expect(fs.readFileSync(prefix.tftpFile("ltsp.ipxe"), "utf8")).toMatch(/^item .* r_chroot chroot$/m);

    const again = await prefix.build([], options);
    expect(runSummary(again.stdout).ran).toBe(0);
  });
});
