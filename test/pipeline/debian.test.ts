// The real Debian bookworm chroot (test/fixtures/debian-chroot.sh), built in place without a
// copy, and a build of it interrupted half-way through mksquashfs (Ctrl+C, and a killed run).
// The fixture is shared and must never change: its state is compared before and after.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import {
  catImage,
  debianFixture,
  expectCleanImage,
  generations,
  hiddenInImages,
  leftoversSince,
  makeSmallChroot,
  processesMentioning,
  runSummary,
  snapshotSystem,
  startedTasks,
  superblock,
  usePrefixes,
  waitFor,
  type Prefix,
} from "./helpers.ts";

const newPrefix = usePrefixes();
let fixture: string;

beforeAll(() => {
  fixture = debianFixture();
});

/** Entry count, and mode/size/mtime/ctime of a few entries plus the content of the account files. */
function fixtureState(): { count: number; entries: string[] } {
  const count = execFileSync("find", [fixture], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 }).split("\n").filter(Boolean).length;
  const kernel = fs.readdirSync(path.join(fixture, "boot")).find((n) => n.startsWith("vmlinuz-"))!;
  const watched = [".", "etc", "etc/passwd", "etc/shadow", "etc/group", "etc/ssh", "etc/ssh/ssh_host_ed25519_key", "etc/resolv.conf", "etc/fstab",
    "var/lib/dpkg/lock", "var/lib/dpkg/lock-frontend", "var/lib/dpkg/status", "var/log", "home", "tmp", "root", "boot", `boot/${kernel}`];
  const entries = watched.map((rel) => {
    const st = fs.lstatSync(path.join(fixture, rel));
    return `${rel} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${st.ctimeMs}`;
  });
  for (const rel of ["etc/passwd", "etc/shadow", "etc/group"]) entries.push(`${rel}: ${fs.readFileSync(path.join(fixture, rel), "utf8")}`);
  return { count, entries };
}

function fixtureKernel(): { vmlinuz: string; initrd: string } {
  return {
    vmlinuz: path.join(fixture, "boot", path.basename(fs.readlinkSync(path.join(fixture, "vmlinuz")))),
    initrd: path.join(fixture, "boot", path.basename(fs.readlinkSync(path.join(fixture, "initrd.img")))),
  };
}

const SERVER = `dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },`;

function config(source: string): string {
  return `{
  images: { bookworm: { source: ${JSON.stringify(source)}, compression: "zstd" } },
  ${SERVER}
}`;
}

/** The mksquashfs of this prefix, once it is writing the image. */
async function mksquashfsRunning(prefix: Prefix): Promise<{ pid: number; pgid: number }> {
  const images = path.join(prefix.base, "images");
  return waitFor(
    "mksquashfs to be writing the image",
    () => {
      const squash = processesMentioning(prefix.dir).find((p) => p.comm === "mksquashfs");
      if (!squash) return undefined;
      const temp = hiddenInImages(prefix).find((n) => n.startsWith(".bookworm.img.tmp-"));
      return temp && fs.statSync(path.join(images, temp)).size > 4 * 1024 * 1024 ? squash : undefined;
    },
    60_000,
  );
}

/** A published image built from a small chroot, then the source switched to the fixture. */
async function publishedSmallThenFixture(prefix: Prefix): Promise<{ target: string; gens: string[] }> {
  const small = makeSmallChroot(prefix.path("sources", "small"));
  fs.writeFileSync(path.join(small, "etc/hostname"), "published\n");
  prefix.writeConfig(config(small));
  await prefix.build();
  const target = fs.readlinkSync(prefix.image("bookworm"));
  const gens = generations(prefix, "bookworm");
  expect(gens).toEqual([target]);
  prefix.writeConfig(config(fixture));
  expect(await prefix.stale()).toEqual(expect.arrayContaining(["squash:bookworm"]));
  return { target, gens };
}

function expectPublishedUntouched(prefix: Prefix, before: { target: string; gens: string[] }): void {
  const image = prefix.image("bookworm");
  expect(fs.readlinkSync(image)).toBe(before.target);
  expect(generations(prefix, "bookworm")).toEqual(before.gens);
  expect(superblock(image)).toMatch(/Filesystem size/);
  expect(catImage(image, "etc/hostname")).toBe("published\n");
}

describe("the Debian bookworm chroot", () => {
  test("is built in place into a clean image, with its kernel, and is not modified", async () => {
    const prefix = newPrefix();
    const before = fixtureState();
    // The one config of this suite that goes through the CLI's own type check.
    prefix.writeConfig(config(fixture), { typecheck: true });

    const result = await prefix.build();
    expect(startedTasks(result.stdout)).toEqual(
      expect.arrayContaining(["cleanup:bookworm", "squash:bookworm", "kernel:bookworm", "initrd", "ipxe", "ipxe-binaries", "nfs", "dnsmasq"]),
    );
    expect(fixtureState()).toEqual(before);

    const image = prefix.image("bookworm");
    expect(superblock(image)).toMatch(/Compression zstd/);
    const entries = expectCleanImage(image, {
      present: ["usr/bin/bash", "usr/bin/dpkg", "usr/sbin/nbd-client", "usr/share/ltsp/ltsp", "usr/lib/os-release", "etc/os-release",
        "etc/ssh/sshd_config", "etc/ltsp-make-fixture", "var/lib/dpkg/status", "bin", "sbin", "lib"],
    });
    expect(entries.get("bin")?.target).toBe("usr/bin");
    expect(catImage(image, "etc/ltsp-make-fixture")).toBe("ltsp-make test chroot v1\n");
    expect(catImage(image, "var/lib/dpkg/status")).toBe(fs.readFileSync(path.join(fixture, "var/lib/dpkg/status"), "utf8"));
    expect(fs.readdirSync(path.join(fixture, "etc/ssh")).filter((n) => /^ssh_host_.*_key$/.test(n)).length, "the fixture has host keys to leave out").toBeGreaterThan(0);

    const kernel = fixtureKernel();
    expect(fs.readFileSync(prefix.tftpFile("bookworm", "vmlinuz")).equals(fs.readFileSync(kernel.vmlinuz))).toBe(true);
    expect(fs.readFileSync(prefix.tftpFile("bookworm", "initrd.img")).equals(fs.readFileSync(kernel.initrd))).toBe(true);

    expect(fs.statSync(prefix.tftpFile("ltsp.img")).size).toBeGreaterThan(0);
    expect(fs.readFileSync(prefix.tftpFile("ltsp.ipxe"), "utf8")).toMatch(/^item .* bookworm bookworm\.img$/m);
    expect(fs.readFileSync(path.join(prefix.etc, "exports.d", "ltsp-nfs.exports"), "utf8")).toContain(`${prefix.base}\t`);
    expect(fs.readFileSync(path.join(prefix.etc, "dnsmasq.d", "ltsp-dnsmasq.conf"), "utf8")).toContain(`tftp-root=${prefix.tftp}`);

    expect(await prefix.stale()).toEqual([]);
    expect(fixtureState()).toEqual(before);
  });

  test("Ctrl+C during mksquashfs leaves the published image alone and exits 130", async () => {
    const prefix = newPrefix();
    const published = await publishedSmallThenFixture(prefix);
    const before = fixtureState();

    const run = prefix.spawn();
    await mksquashfsRunning(prefix);
    const t0 = Date.now();
    process.kill(run.pid, "SIGINT");
    const result = await run.done;
    expect(Date.now() - t0, "the run stops within seconds (mksquashfs is stopped, not waited for)").toBeLessThan(15_000);
    expect(result.exitCode, `${result.stdout}\n${result.stderr}`).toBe(130);
    expect(result.stdout).toMatch(/interrupted by SIGINT/);

    expectPublishedUntouched(prefix, published);
    expect(hiddenInImages(prefix), "the partial image is removed").toEqual([]);
    expect(processesMentioning(prefix.dir).map((p) => p.comm)).toEqual([]);
    expect(fs.readdirSync(path.join(prefix.cache, "work")).filter((n) => n.startsWith("run-")), "the run's work dir is removed").toEqual([]);
    expect(fixtureState()).toEqual(before);
    expect(await prefix.stale()).toEqual(expect.arrayContaining(["squash:bookworm"]));
  });

  test("a killed run leaves the published image alone; the next run cleans up and rebuilds", async () => {
    const prefix = newPrefix();
    const published = await publishedSmallThenFixture(prefix);
    const before = fixtureState();
    const system = snapshotSystem();

    const run = prefix.spawn();
    const squash = await mksquashfsRunning(prefix);
    process.kill(run.pid, "SIGKILL");
    const killed = await run.done;
    expect(killed.signal).toBe("SIGKILL");
    // mksquashfs runs in a process group of its own, which outlives the run: end it too.
    expect(squash.pgid).toBe(squash.pid);
    process.kill(-squash.pgid, "SIGKILL");
    await waitFor("mksquashfs to end", () => !processesMentioning(prefix.dir).some((p) => p.comm === "mksquashfs"), 10_000);

    const deadRuns = fs.readdirSync(path.join(prefix.cache, "work")).filter((n) => n.startsWith("run-"));
    expect(deadRuns).toHaveLength(1);
    expect(leftoversSince(system, prefix.dir).filter((l) => l.startsWith("mount ")).length, "the killed run left its mounts").toBeGreaterThan(0);
    expectPublishedUntouched(prefix, published);

    const rebuilt = await prefix.build();
    expect(runSummary(rebuilt.stdout).failed).toBe(0);
    expect(startedTasks(rebuilt.stdout)).toEqual(expect.arrayContaining(["squash:bookworm", "kernel:bookworm"]));
    expect(fs.existsSync(path.join(prefix.cache, "work", deadRuns[0]!)), "the dead run's work dir is swept").toBe(false);
    expect(leftoversSince(system, prefix.dir)).toEqual([]);

    const image = prefix.image("bookworm");
    const gens = generations(prefix, "bookworm");
    expect(gens).toHaveLength(2);
    expect(gens).toContain(published.target);
    expect(fs.readlinkSync(image)).not.toBe(published.target);
    expect(superblock(image)).toMatch(/Compression zstd/);
    expect(catImage(image, "etc/ltsp-make-fixture")).toBe("ltsp-make test chroot v1\n");
    expectCleanImage(image, { present: ["usr/bin/dpkg", "usr/share/ltsp/ltsp", "etc/os-release"] });
    expect(hiddenInImages(prefix), "no partial image of the killed run is left").toEqual([]);
    expect(fs.readFileSync(prefix.tftpFile("bookworm", "vmlinuz")).equals(fs.readFileSync(fixtureKernel().vmlinuz))).toBe(true);
    expect(fixtureState()).toEqual(before);
  });
});
