// Two more rows of the bad-input catalogue that need their own base directory: a disk that fills
// up while mksquashfs writes, and a read-only base directory. The run fails (exit 1) naming the
// problem; the image published before, its symlink and every config stay byte-identical; no
// temporary is left.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import { makeSmallChroot, usePrefixes, type Prefix } from "../pipeline/helpers.ts";
import { fakeBinaryFiles } from "./fixtures.ts";
import { fingerprintAll, hiddenEntries } from "./helpers.ts";

const newPrefix = usePrefixes();

const config = (chroot: string) => `{
  images: { small: { source: ${JSON.stringify(chroot)}, compression: "gzip", ionice: [] } },
  discover: false,
  dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },
}`;

function withoutState(fp: Record<string, string>, prefix: Prefix): Record<string, string> {
  const { [path.join(prefix.cache, "state.json")]: _state, ...rest } = fp;
  return rest;
}

async function goodBuild(prefix: Prefix): Promise<string> {
  const chroot = makeSmallChroot(prefix.path("chroot"));
  prefix.writeConfig(config(chroot));
  await prefix.build();
  return chroot;
}

describe("disk trouble during a build", () => {
  test("full disk while squashing: exit 1, ENOSPC named, previous image intact, no temporary left", async () => {
    const prefix = newPrefix();
    const fsFile = prefix.path("small-fs.ext4");
    execFileSync("truncate", ["-s", "24M", fsFile]);
    execFileSync("mkfs.ext4", ["-q", "-F", fsFile]);
    const loop = execFileSync("losetup", ["-f", "--show", fsFile], { encoding: "utf8" }).trim();
    try {
      execFileSync("mount", [loop, prefix.base]);
    } catch (error) {
      execFileSync("losetup", ["-d", loop]);
      throw error;
    }
    try {
      const chroot = await goodBuild(prefix);
      const before = fingerprintAll(prefix);
      // Fill the disk, and change the source so the image must be squashed again (incompressible data).
      fs.writeFileSync(path.join(chroot, "usr/share/doc/big.bin"), fakeBinaryFiles(6 * 1024 * 1024));
      try {
        execFileSync("dd", ["if=/dev/zero", `of=${path.join(prefix.base, "filler")}`, "bs=1M", "count=64"], { stdio: "ignore" });
      } catch {
        // dd stops with ENOSPC: the disk is full, as wanted
      }
      const result = await prefix.cli(["all"]);
      const output = `${result.stderr}\n${result.stdout}`;
      expect(result.exitCode, output).toBe(1);
      expect(output).toMatch(/FAILED\s+squash:small/);
      expect(output).toMatch(/No space left on device|ENOSPC|disk full|Failed to write/i);
      expect(withoutState(fingerprintAll(prefix), prefix)).toEqual(withoutState(before, prefix));
      expect(hiddenEntries(prefix)).toEqual([]);
      // Room again: the next run publishes the new image.
      fs.rmSync(path.join(prefix.base, "filler"));
      fs.rmSync(path.join(chroot, "usr/share/doc/big.bin"));
      const again = await prefix.cli(["all"]);
      expect(again.exitCode, `${again.stdout}\n${again.stderr}`).toBe(0);
    } finally {
      execFileSync("umount", [prefix.base]);
      execFileSync("losetup", ["-d", loop]);
    }
  });

  test("read-only base directory: exit 1, the problem named, nothing changed", async () => {
    const prefix = newPrefix();
    const chroot = await goodBuild(prefix);
    const before = fingerprintAll(prefix);
    fs.writeFileSync(path.join(chroot, "etc/hostname"), "changed\n");
    execFileSync("mount", ["--bind", prefix.base, prefix.base]);
    try {
      execFileSync("mount", ["-o", "remount,bind,ro", prefix.base]);
      const result = await prefix.cli(["all"]);
      const output = `${result.stderr}\n${result.stdout}`;
      expect(result.exitCode, output).toBe(1);
      expect(output).toMatch(/FAILED\s+squash:small/);
      expect(output).toMatch(/read-only|EROFS/i);
      expect(withoutState(fingerprintAll(prefix), prefix)).toEqual(withoutState(before, prefix));
    } finally {
      execFileSync("umount", [prefix.base]);
    }
    expect(hiddenEntries(prefix)).toEqual([]);
  });
});
