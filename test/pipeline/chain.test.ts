// A source chain like "/,,/boot,subdir=boot": a root directory whose boot/ is empty (a separate
// partition on a real system) and a second directory mounted on it. The image holds both, and
// the kernel task finds the kernel that only the second one has.
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { catImage, expectCleanImage, fakeBinary, makeSmallChroot, makeTree, startedTasks, usePrefixes } from "./helpers.ts";

const newPrefix = usePrefixes();

describe("a root plus a separate boot directory", () => {
  test("puts the boot directory under boot/ and extracts its kernel", async () => {
    const prefix = newPrefix();
    const root = makeSmallChroot(prefix.path("sources", "root"), { withBoot: false, withProc: true });
    fs.mkdirSync(path.join(root, "boot"));
    const boot = makeTree(prefix.path("sources", "boot"), {
      "vmlinuz-6.1.0-7-amd64": fakeBinary("separate vmlinuz", 40 * 1024),
      "initrd.img-6.1.0-7-amd64": fakeBinary("separate initrd", 20 * 1024),
      "config-6.1.0-7-amd64": "CONFIG_SQUASHFS=y\n",
      "grub/grub.cfg": "set timeout=5\n",
    });
    prefix.writeConfig(`{
  discover: false,
  images: { split: { source: ${JSON.stringify(`${root},,${boot},subdir=boot`)}, compression: "zstd" } },
  dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },
}`);

    const result = await prefix.build();
    expect(startedTasks(result.stdout)).toEqual(expect.arrayContaining(["cleanup:split", "squash:split", "kernel:split"]));
    const image = prefix.image("split");
    const entries = expectCleanImage(image, {
      present: ["bin/busybox", "etc/hostname", "boot/vmlinuz-6.1.0-7-amd64", "boot/initrd.img-6.1.0-7-amd64", "boot/grub/grub.cfg"],
      removedUsers: ["alice", "bob"],
    });
    expect(entries.get("boot/vmlinuz-6.1.0-7-amd64")?.size).toBe(40 * 1024);
    expect(catImage(image, "boot/grub/grub.cfg")).toBe("set timeout=5\n");
    expect(fs.readFileSync(prefix.tftpFile("split", "vmlinuz"))).toEqual(fakeBinary("separate vmlinuz", 40 * 1024));
    expect(fs.readFileSync(prefix.tftpFile("split", "initrd.img"))).toEqual(fakeBinary("separate initrd", 20 * 1024));
    // Neither source was written to.
    expect(fs.readdirSync(path.join(root, "boot"))).toEqual([]);
    expect(fs.readdirSync(boot).sort()).toEqual(["config-6.1.0-7-amd64", "grub", "initrd.img-6.1.0-7-amd64", "vmlinuz-6.1.0-7-amd64"]);

    // Both entries are inputs: a change in the boot directory alone rebuilds the image.
    expect(await prefix.stale()).toEqual([]);
    fs.writeFileSync(path.join(boot, "grub/grub.cfg"), "set timeout=1\n");
    expect(await prefix.stale()).toEqual(["cleanup:split", "kernel:split", "squash:split"]);
    await prefix.build();
    expect(catImage(image, "boot/grub/grub.cfg")).toBe("set timeout=1\n");
  });
});
