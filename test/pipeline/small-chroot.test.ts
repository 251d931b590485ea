// A small writable chroot through the whole pipeline: what a no-op, a change under an excluded
// path, a change to an image file, a menu setting and a server user each make run.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { describe, expect, test } from "vitest";
import {
  catImage,
  expectCleanImage,
  generations,
  hiddenInImages,
  KERNEL_VERSION,
  makeSmallChroot,
  runSummary,
  startedTasks,
  superblock,
  usePrefixes,
  type Prefix,
} from "./helpers.ts";

const newPrefix = usePrefixes();

const CONFIG = (timeout: number) => `{
  imageDefaults: { compression: "zstd" },
  ipxe: { timeout: ${timeout} },
  dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },
}`;

/** Names, types, sizes, modes and mtimes of a tree: any write to it shows. */
function treeState(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const full = path.join(dir, name);
      const st = fs.lstatSync(full);
      out.push(`${path.relative(root, full)} ${st.mode.toString(8)} ${st.isDirectory() ? "d" : st.size} ${st.mtimeMs} ${st.ctimeMs}`);
      if (st.isDirectory()) walk(full);
    }
  };
  walk(root);
  return out;
}

function ltspImgFile(prefix: Prefix, rel: string): string {
  return execFileSync("cpio", ["-i", "--quiet", "--to-stdout", rel], { input: fs.readFileSync(prefix.tftpFile("ltsp.img")), encoding: "utf8" });
}

describe("a small chroot through the pipeline", () => {
  test("builds once, then rebuilds only what a change reaches", async () => {
    const prefix = newPrefix();
    const chroot = makeSmallChroot(path.join(prefix.base, "small"));
    prefix.writeConfig(CONFIG(5000));
    const image = prefix.image("small");

    // First build: everything runs; the image is clean; the chroot is untouched.
    const chrootBefore = treeState(chroot);
    const first = await prefix.build();
    expect(startedTasks(first.stdout)).toEqual(
      ["cleanup:small", "dnsmasq", "initrd", "ipxe", "ipxe-binaries", "kernel:small", "nfs", "reload-dnsmasq", "reload-nfs", "squash:small"].sort(),
    );
    expect(treeState(chroot)).toEqual(chrootBefore);
    expect(superblock(image)).toMatch(/zstd/);
    const entries = expectCleanImage(image, {
      present: ["bin/busybox", "bin/sh", "sbin/init", "usr/bin/true", "etc/os-release", "etc/hostname", "var/lib/dpkg/status", `boot/vmlinuz-${KERNEL_VERSION}`, "vmlinuz"],
      removedUsers: ["alice", "bob"],
    });
    expect(entries.get("var/log/syslog")?.size, "top-level logs are emptied").toBe(0);
    expect(entries.has("var/log/dpkg.log.1"), "rotated logs are left out").toBe(false);
    expect(entries.get("var/log/apt")?.type, "log subdirectories stay, empty").toBe("d");
    expect(catImage(image, "etc/fstab")).toBe("");
    expect(catImage(image, "etc/passwd")).toMatch(/^daemon:x:1:1:/m);
    const gen1 = generations(prefix, "small");
    expect(gen1).toHaveLength(1);
    expect(fs.readlinkSync(image)).toBe(gen1[0]);
    expect(fs.readFileSync(prefix.tftpFile("small", "vmlinuz"))).toEqual(fs.readFileSync(path.join(chroot, "boot", `vmlinuz-${KERNEL_VERSION}`)));
    expect(fs.readFileSync(prefix.tftpFile("small", "initrd.img"))).toEqual(fs.readFileSync(path.join(chroot, "boot", `initrd.img-${KERNEL_VERSION}`)));

    // No-op: the plan says everything is fresh and the run does nothing.
    const plan = await prefix.plan();
    expect(plan.get("squash:small")?.status).toBe("fresh");
    expect([...plan.values()].filter((v) => v.status !== "fresh")).toEqual([]);
    const noop = await prefix.build();
    expect(runSummary(noop.stdout).ran).toBe(0);
    expect(startedTasks(noop.stdout)).toEqual([]);
    expect(generations(prefix, "small")).toEqual(gen1);

    // Changes under excluded paths (home/*, tmp/*, var/log/*/*) reach no task.
    fs.writeFileSync(path.join(chroot, "home/alice/x"), "new\n");
    fs.utimesSync(path.join(chroot, "home/alice/notes.txt"), new Date(), new Date(Date.now() + 5000));
    fs.writeFileSync(path.join(chroot, "tmp/x"), "new\n");
    fs.writeFileSync(path.join(chroot, "var/log/apt/x"), "new\n");
    fs.appendFileSync(path.join(chroot, "var/log/apt/history.log"), "End-Date: 2024-01-01\n");
    expect(await prefix.stale()).toEqual([]);
    const excluded = await prefix.build();
    expect(runSummary(excluded.stdout).ran).toBe(0);
    expect(generations(prefix, "small")).toEqual(gen1);

    // One included file: the image (and the kernel copied out of it) is rebuilt as a new
    // generation; the previous one stays for running clients.
    fs.writeFileSync(path.join(chroot, "etc/hostname"), "renamed\n");
    const planned = await prefix.plan();
    expect(planned.get("squash:small")?.status).toBe("stale");
    expect(planned.get("squash:small")?.reasons.join("\n")).toMatch(/small/);
    expect([...planned].filter(([, v]) => v.status === "stale").map(([id]) => id).sort()).toEqual(["cleanup:small", "kernel:small", "squash:small"]);
    const changed = await prefix.build();
    expect(startedTasks(changed.stdout)).toContain("squash:small");
    expect(startedTasks(changed.stdout).filter((id) => !["cleanup:small", "squash:small", "kernel:small"].includes(id))).toEqual([]);
    const gen2 = generations(prefix, "small");
    expect(gen2).toHaveLength(2);
    expect(gen2).toContain(gen1[0]);
    const newest = gen2.find((g) => g !== gen1[0])!;
    expect(fs.readlinkSync(image)).toBe(newest);
    expect(catImage(image, "etc/hostname")).toBe("renamed\n");
    expect(catImage(path.join(prefix.base, "images", gen1[0]!), "etc/hostname")).toBe("pipeline-test\n");
    expectCleanImage(image, { present: ["etc/hostname"], removedUsers: ["alice", "bob"] });
    expect(hiddenInImages(prefix)).toEqual([]);
    expect(await prefix.stale()).toEqual([]);

    // The iPXE menu timeout: only the menu is regenerated.
    const ipxeBefore = fs.readFileSync(prefix.tftpFile("ltsp.ipxe"), "utf8");
    expect(ipxeBefore).toContain("set menu-timeout 5000");
    prefix.writeConfig(CONFIG(7000));
    expect(await prefix.stale()).toEqual(["ipxe"]);
    const menu = await prefix.build();
    expect(startedTasks(menu.stdout)).toEqual(["ipxe"]);
    const ipxeAfter = fs.readFileSync(prefix.tftpFile("ltsp.ipxe"), "utf8");
    expect(ipxeAfter).toContain("set menu-timeout 7000");
    expect(ipxeAfter).not.toContain("set menu-timeout 5000");

    // A new user on the server: only ltsp.img (which carries passwd) is rebuilt.
    expect(ltspImgFile(prefix, "etc/ltsp/passwd")).not.toMatch(/^student:/m);
    fs.appendFileSync(path.join(prefix.etc, "passwd"), "student:x:1001:1001:Student:/home/student:/bin/bash\n");
    expect(await prefix.stale()).toEqual(["initrd"]);
    const user = await prefix.build();
    expect(startedTasks(user.stdout)).toEqual(["initrd"]);
    expect(ltspImgFile(prefix, "etc/ltsp/passwd")).toMatch(/^student:x:1001:/m);
    expect(generations(prefix, "small")).toEqual(gen2);
    expect(treeState(chroot).filter((l) => !/^(home\/alice|tmp|var\/log\/apt|etc)/.test(l))).toEqual(
      chrootBefore.filter((l) => !/^(home\/alice|tmp|var\/log\/apt|etc)/.test(l)),
    );
  });
});
