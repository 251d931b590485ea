// Split deployments against real hosts: network namespaces on this machine, each running sshd,
// reached only over their own addresses. Images go to the NBD host, the menu and kernels to the
// TFTP host; no-op runs copy nothing; a cut transfer leaves the previous image serving.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterEach, describe, expect, test } from "vitest";
import { makeSmallChroot, PACKAGE_ROOT, processesMentioning, startedTasks, usePrefixes, waitFor, type Prefix } from "../pipeline/helpers.ts";
import { standaloneExec } from "../../src/exec.ts";
import { remoteState, type SshTarget } from "../../tasks/lib/ssh.ts";
import { pathWithout } from "../reliability/helpers.ts";
import { TestHosts, type TestHost } from "./netns.ts";

const newPrefix = usePrefixes();
const CLI = path.join(PACKAGE_ROOT, "bin", "ltsp-make.js");

let hostSets: TestHosts[] = [];
const children: ResultPromise[] = [];
afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.pid) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
    await child.catch(() => undefined);
  }
  for (const set of hostSets.splice(0)) await set.cleanup();
});

/** rsync and ssh wrappers that log each start, so a test can count them. */
function wrappers(prefix: Prefix): { dir: string; count(tool: "rsync" | "ssh"): number; reset(): void } {
  const dir = prefix.path("wrappers");
  const log = prefix.path("wrappers.log");
  fs.mkdirSync(dir, { recursive: true });
  for (const tool of ["rsync", "ssh"]) {
    fs.writeFileSync(path.join(dir, tool), `#!/bin/sh\necho "${tool} $*" >> ${log}\nexec /usr/bin/${tool} "$@"\n`, { mode: 0o755 });
  }
  const lines = () => (fs.existsSync(log) ? fs.readFileSync(log, "utf8").split("\n").filter(Boolean) : []);
  return {
    dir,
    // ssh started by rsync (-e) counts as rsync's own.
    count: (tool) => lines().filter((l) => l.startsWith(`${tool} `) && !(tool === "ssh" && l.includes(" rsync --server"))).length,
    reset: () => fs.rmSync(log, { force: true }),
  };
}

interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** The CLI with `pathDir` before the usual PATH, or with `pathDir` as the whole PATH when `onlyPathDir`. */
function start(prefix: Prefix, pathDir: string, args: string[], onlyPathDir = false): ResultPromise {
  const roots = ["--base-dir", prefix.base, "--tftp-dir", prefix.tftp, "--home-dir", prefix.home, "--etc-dir", prefix.etc];
  const child = execa("node", [CLI, ...args, "--config", prefix.configPath, "--cache-dir", prefix.cache, ...roots], {
    cwd: prefix.dir,
    env: { NO_COLOR: "1", CI: "1", PATH: onlyPathDir ? pathDir : `${pathDir}:${process.env.PATH}` },
    reject: false,
    timeout: 120_000,
    stdin: "ignore",
  });
  children.push(child);
  return child;
}

async function cli(prefix: Prefix, pathDir: string, args: string[] = []): Promise<Run> {
  const r = await start(prefix, pathDir, args);
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

async function build(prefix: Prefix, pathDir: string, args: string[] = []): Promise<Run> {
  const r = await cli(prefix, pathDir, args);
  if (r.exitCode !== 0) throw new Error(`ltsp-make ${args.join(" ")} exited ${r.exitCode}\n${r.stdout}\n${r.stderr}`);
  return r;
}

async function plan(prefix: Prefix, pathDir: string): Promise<Map<string, { status: string; reasons: string[] }>> {
  const r = await build(prefix, pathDir, ["plan", "--json", "--no-diff"]);
  const parsed = JSON.parse(r.stdout) as { tasks: { id: string; status: string; reasons: string[] }[] };
  return new Map(parsed.tasks.map((t) => [t.id, { status: t.status, reasons: t.reasons }]));
}

function hostConfig(host: TestHost, roles: string[], extra = ""): string {
  return `${JSON.stringify(host.name)}: {
      ssh: "root@${host.address}", identityFile: ${JSON.stringify(host.identityFile)}, knownHosts: ${JSON.stringify(host.knownHosts)},
      roles: ${JSON.stringify(roles)},
      baseDir: ${JSON.stringify(host.baseDir)}, tftpDir: ${JSON.stringify(host.tftpDir)}, etcDir: ${JSON.stringify(host.etcDir)},
      ${extra}
    }`;
}

function config(prefix: Prefix, images: string[], hosts: string[]): string {
  const entries = images.map((n) => `${n}: { source: ${JSON.stringify(path.join(prefix.base, n))} }`).join(", ");
  return `{
  discover: false,
  images: { ${entries} },
  imageDefaults: { compression: "gzip" },
  hosts: {
    ${hosts.join(",\n    ")}
  },
}`;
}

function remoteImage(host: TestHost, name: string): string {
  return path.join(host.baseDir, "images", `${name}.img`);
}

function unsquashfsOk(image: string): boolean {
  try {
    execFileSync("unsquashfs", ["-s", image], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

function sameBytes(a: string, b: string): boolean {
  return fs.readFileSync(a).equals(fs.readFileSync(b));
}

describe("split deployment over SSH", () => {
  test("images on the NBD host, menu and kernels on the TFTP host; no-op copies nothing; one changed image is copied alone", async () => {
    const prefix = newPrefix();
    const hosts = new TestHosts(prefix.path("hosts"));
    hostSets.push(hosts);
    const boot = await hosts.add("boot");
    const store = await hosts.add("store");
    const reloads = path.join(store.dir, "nbd-reloads");
    for (const n of ["alpha", "beta"]) makeSmallChroot(path.join(prefix.base, n));
    fs.writeFileSync(path.join(prefix.base, "beta", "etc", "motd"), "beta\n");
    prefix.writeConfig(
      config(prefix, ["alpha", "beta"], [
        hostConfig(boot, ["tftp", "dhcp"]),
        hostConfig(store, ["nbd"], `reload: { nbd: ["sh", "-c", "echo reloaded >> ${reloads}"] },`),
      ]),
    );
    const wrap = wrappers(prefix);

    const t0 = Date.now();
    const first = await build(prefix, wrap.dir);
    const firstMs = Date.now() - t0;
    // One master connection per host, reused by every ssh and rsync of the run.
    const sshLines = fs.readFileSync(prefix.path("wrappers.log"), "utf8").split("\n").filter((l) => l.startsWith("ssh "));
    expect(sshLines.filter((l) => l.includes("ControlMaster=yes")).length).toBe(2);
    expect(sshLines.filter((l) => !l.includes("ControlMaster=yes") && !l.includes("ControlPath="))).toEqual([]);
    const started = startedTasks(first.stdout);
    for (const id of ["publish-image:alpha@store", "publish-image:beta@store", "publish-tftp@boot", "publish-dnsmasq@boot", "publish-nbd@store", "reload-nbd@store"]) {
      expect(started).toContain(id);
    }
    // This machine only builds: no local server configs.
    expect(started).not.toContain("nbd");
    expect(started).not.toContain("dnsmasq");

    // Images on the NBD host, as generations behind a symlink, byte for byte the local ones.
    for (const name of ["alpha", "beta"]) {
      const remote = remoteImage(store, name);
      expect(fs.lstatSync(remote).isSymbolicLink()).toBe(true);
      expect(fs.readlinkSync(remote)).toBe(fs.readlinkSync(prefix.image(name)));
      expect(sameBytes(remote, prefix.image(name))).toBe(true);
      expect(unsquashfsOk(remote)).toBe(true);
      expect(fs.existsSync(remoteImage(boot, name))).toBe(false);
      // Kernels on the TFTP host only.
      expect(sameBytes(path.join(boot.tftpDir, "ltsp", name, "vmlinuz"), prefix.tftpFile(name, "vmlinuz"))).toBe(true);
      expect(fs.existsSync(path.join(store.tftpDir, "ltsp", name))).toBe(false);
    }
    // The menu on the TFTP host points each image at the NBD host.
    const menu = fs.readFileSync(path.join(boot.tftpDir, "ltsp", "ltsp.ipxe"), "utf8");
    expect(menu).toBe(fs.readFileSync(prefix.tftpFile("ltsp.ipxe"), "utf8"));
    expect(menu).toContain(`nbdroot=${store.address}:10809/alpha`);
    expect(menu).toContain(`nbdroot=${store.address}:10809/beta`);
    expect(fs.existsSync(path.join(boot.tftpDir, "ltsp", "ltsp.img"))).toBe(true);
    // nbd-server config on the NBD host: one export per image, at that host's paths.
    const nbdConf = fs.readFileSync(path.join(store.etcDir, "nbd-server", "ltsp-make.conf"), "utf8");
    expect(nbdConf).toContain("[alpha]");
    expect(nbdConf).toContain(`exportname = ${remoteImage(store, "alpha")}`);
    expect(nbdConf).toContain(`exportname = ${remoteImage(store, "beta")}`);
    // dnsmasq config on the DHCP host, for its own TFTP root.
    const dnsmasqConf = fs.readFileSync(path.join(boot.etcDir, "dnsmasq.d", "ltsp-dnsmasq.conf"), "utf8");
    expect(dnsmasqConf).toContain(boot.tftpDir);
    expect(fs.existsSync(path.join(store.etcDir, "dnsmasq.d"))).toBe(false);
    expect(fs.readFileSync(reloads, "utf8")).toBe("reloaded\n");

    // No-op: the plan connects once per host and copies nothing; a run starts no task and no rsync.
    wrap.reset();
    const t1 = Date.now();
    const noop = await plan(prefix, wrap.dir);
    const planMs = Date.now() - t1;
    expect([...noop].filter(([, v]) => v.status !== "fresh")).toEqual([]);
    expect(wrap.count("ssh")).toBe(2);
    expect(wrap.count("rsync")).toBe(0);
    wrap.reset();
    const t2 = Date.now();
    const again = await build(prefix, wrap.dir);
    const noopMs = Date.now() - t2;
    expect(startedTasks(again.stdout)).toEqual([]);
    expect(wrap.count("rsync")).toBe(0);

    // The host's copy is part of the key: a file removed there makes its publish task stale.
    fs.rmSync(path.join(boot.tftpDir, "ltsp", "ltsp.ipxe"));
    const afterRemoval = await plan(prefix, wrap.dir);
    expect(afterRemoval.get("publish-tftp@boot")!.status).toBe("stale");
    expect(afterRemoval.get("publish-tftp@boot")!.reasons.join(" ")).toContain("ltsp.ipxe is missing");
    expect(afterRemoval.get("publish-image:alpha@store")!.status).toBe("fresh");
    const repaired = await build(prefix, wrap.dir);
    expect(startedTasks(repaired.stdout)).toEqual(["publish-tftp@boot"]);
    expect(fs.readFileSync(path.join(boot.tftpDir, "ltsp", "ltsp.ipxe"), "utf8")).toBe(menu);

    // One image changes: only that image is copied; the nbd config stays and nbd-server is not reloaded.
    const oldAlpha = fs.readlinkSync(remoteImage(store, "alpha"));
    const oldBeta = fs.readlinkSync(remoteImage(store, "beta"));
    await new Promise((r) => setTimeout(r, 1100)); // a new generation name (one per second)
    fs.writeFileSync(path.join(prefix.base, "alpha", "etc", "motd"), "changed\n");
    wrap.reset();
    const changed = await build(prefix, wrap.dir);
    const changedStarted = startedTasks(changed.stdout);
    expect(changedStarted).toContain("publish-image:alpha@store");
    expect(changedStarted).not.toContain("publish-image:beta@store");
    expect(changedStarted).not.toContain("publish-nbd@store");
    expect(changedStarted).not.toContain("reload-nbd@store");
    expect(wrap.count("rsync")).toBe(1);
    expect(fs.readlinkSync(remoteImage(store, "alpha"))).not.toBe(oldAlpha);
    expect(fs.existsSync(path.join(store.baseDir, "images", oldAlpha))).toBe(true); // previous generation kept
    expect(fs.readlinkSync(remoteImage(store, "beta"))).toBe(oldBeta);
    expect(sameBytes(remoteImage(store, "alpha"), prefix.image("alpha"))).toBe(true);
    expect(fs.readFileSync(reloads, "utf8")).toBe("reloaded\n");
    console.log(`split deployment: first run ${firstMs} ms, no-op plan ${planMs} ms, no-op run ${noopMs} ms`);
  });

  test("a transfer cut in the middle leaves the previous image serving; the next run completes it", async () => {
    const prefix = newPrefix();
    const hosts = new TestHosts(prefix.path("hosts"));
    hostSets.push(hosts);
    const store = await hosts.add("store");
    makeSmallChroot(path.join(prefix.base, "alpha"));
    // About 4 s per MiB: the transfer below takes long enough to be cut.
    prefix.writeConfig(config(prefix, ["alpha"], [hostConfig(store, ["nbd", "tftp"], `rsyncArgs: ["--bwlimit=256"],`)]));
    const wrap = wrappers(prefix);
    await build(prefix, wrap.dir);
    const before = fs.readlinkSync(remoteImage(store, "alpha"));

    await new Promise((r) => setTimeout(r, 1100));
    fs.writeFileSync(path.join(prefix.base, "alpha", "usr", "big.bin"), randomBytes(3 * 1024 * 1024));
    const child = start(prefix, wrap.dir, []);
    const partial = path.join(store.baseDir, "images", ".ltsp-make-partial");
    const imagesDir = path.join(store.baseDir, "images");
    // Wait until the new generation is arriving (rsync's temporary file in the target directory).
    await waitFor(
      "the transfer to start",
      () => fs.readdirSync(imagesDir).some((n) => n.startsWith(".alpha.img.") && !n.includes(".link-") && fs.statSync(path.join(imagesDir, n)).size > 200 * 1024),
      60_000,
      50,
    );
    process.kill(child.pid!, "SIGTERM");
    const cut = await child;
    expect(cut.exitCode).toBe(143);
    // The previous image still serves, whole.
    expect(fs.readlinkSync(remoteImage(store, "alpha"))).toBe(before);
    expect(unsquashfsOk(remoteImage(store, "alpha"))).toBe(true);
    // Nothing of the run is left running (rsync, ssh, the master connection).
    await waitFor("the run's processes to end", () => processesMentioning(prefix.dir).filter((p) => !p.cmdline.includes("sshd")).length === 0, 10_000, 100);
    await waitFor("no ssh to the host left", () => processesMentioning(`root@${store.address}`).length === 0, 10_000, 100);
    expect(fs.existsSync(partial) && fs.readdirSync(partial).length > 0).toBe(true); // kept for the next transfer

    const resumed = await build(prefix, wrap.dir);
    expect(startedTasks(resumed.stdout)).toContain("publish-image:alpha@store");
    const after = fs.readlinkSync(remoteImage(store, "alpha"));
    expect(after).not.toBe(before);
    expect(sameBytes(remoteImage(store, "alpha"), prefix.image("alpha"))).toBe(true);
    expect(unsquashfsOk(remoteImage(store, "alpha"))).toBe(true);
  });

  test("a plan reads a published image on the host only when its stamp changed there", async () => {
    const prefix = newPrefix();
    const hosts = new TestHosts(prefix.path("hosts"));
    hostSets.push(hosts);
    const store = await hosts.add("store");
    makeSmallChroot(path.join(prefix.base, "alpha"));
    prefix.writeConfig(config(prefix, ["alpha"], [hostConfig(store, ["nbd"])]));
    const wrap = wrappers(prefix);
    await build(prefix, wrap.dir);

    const recordPath = path.join(prefix.cache, "hosts", "store", "records", "publish-image_alpha_store.json");
    const record = JSON.parse(fs.readFileSync(recordPath, "utf8")) as { files: Record<string, { size: number; sha256: string; stamp?: string }> };
    const [generation, published] = Object.entries(record.files)[0]!;
    expect(published.stamp).toMatch(/^\d+,\d+\.\d{9},\d+\.\d{9},\d+$/);
    const target: SshTarget = { name: "store", destination: `root@${store.address}`, identityFile: store.identityFile, knownHosts: store.knownHosts };
    const known = new Map([[generation, { stamp: published.stamp!, sha256: published.sha256 }]]);
    const ask = async () => (await remoteState(standaloneExec(), target, { files: [generation], links: [], known })).get(`f:${generation}`);

    // Unchanged: the recorded hash stands, nothing is read.
    expect(await ask()).toEqual({ kind: "file", size: published.size, sha256: published.sha256, fromStamp: true });
    // Touched (same bytes): read again, same hash; the publish task stays fresh.
    fs.utimesSync(generation, new Date(), new Date());
    expect(await ask()).toEqual({ kind: "file", size: published.size, sha256: published.sha256, fromStamp: false });
    expect((await plan(prefix, wrap.dir)).get("publish-image:alpha@store")!.status).toBe("fresh");
    // Changed in place with size and mtime put back: the ctime still gives it away.
    const before = fs.statSync(generation);
    const fd = fs.openSync(generation, "r+");
    fs.writeSync(fd, Buffer.from("corrupt"), 0, 7, 4096);
    fs.closeSync(fd);
    fs.utimesSync(generation, before.atime, before.mtime);
    const corrupted = await ask();
    expect(corrupted).toMatchObject({ kind: "file", size: published.size, fromStamp: false });
    expect(corrupted).not.toMatchObject({ sha256: published.sha256 });
    const stale = (await plan(prefix, wrap.dir)).get("publish-image:alpha@store")!;
    expect(stale.status).toBe("stale");
    expect(stale.reasons.join(" ")).toContain("differs from what was published");
  });

  test("an NBD host gets the allow list and one nbd-server config per port, as this server would", async () => {
    const prefix = newPrefix();
    const hosts = new TestHosts(prefix.path("hosts"));
    hostSets.push(hosts);
    const store = await hosts.add("store");
    for (const n of ["alpha", "beta"]) makeSmallChroot(path.join(prefix.base, n));
    const images = ["alpha", "beta"]
      .map((n, i) => `${n}: { source: ${JSON.stringify(path.join(prefix.base, n))}, boot: { method: "nbd", port: ${10810 + i} } }`)
      .join(", ");
    const body = (clients: string) => `{
  discover: false,
  images: { ${images} },
  imageDefaults: { compression: "gzip" },
  nbd: { perPort: true, allow: ["10.199.0.0/16", "${clients}"] },
  hosts: { ${hostConfig(store, ["nbd"])} },
}`;
    prefix.writeConfig(body("192.168.67.0/24"));
    const wrap = wrappers(prefix);
    await build(prefix, wrap.dir);

    const dir = path.join(store.etcDir, "nbd-server");
    expect(fs.readdirSync(dir).sort()).toEqual(["ltsp-make-alpha.conf", "ltsp-make-beta.conf", "ltsp-make.allow"]);
    expect(fs.readFileSync(path.join(dir, "ltsp-make.allow"), "utf8")).toMatch(/^10\.199\.0\.0\/16\n192\.168\.67\.0\/24\n$/m);
    for (const [name, port] of [["alpha", 10810], ["beta", 10811]] as const) {
      const conf = fs.readFileSync(path.join(dir, `ltsp-make-${name}.conf`), "utf8");
      expect(conf).toMatch(new RegExp(`port = ${port}`));
      expect(conf).toContain(`exportname = ${remoteImage(store, name)}`);
      expect(conf).toContain(`authfile = ${path.join(dir, "ltsp-make.allow")}`);
      expect(conf).not.toContain(prefix.etc); // the host's paths, not this server's
    }
    // A changed allow list is copied alone, and the plan said which task.
    prefix.writeConfig(body("192.168.68.0/24"));
    const planned = await plan(prefix, wrap.dir);
    expect([...planned].filter(([, v]) => v.status === "stale").map(([id]) => id)).toEqual(["publish-nbd@store", "reload-nbd@store"]);
    await build(prefix, wrap.dir);
    expect(fs.readFileSync(path.join(dir, "ltsp-make.allow"), "utf8")).toContain("192.168.68.0/24");
  });

  test("without rsync here, publishing fails naming it and the fix; nothing reaches the host", async () => {
    const prefix = newPrefix();
    const hosts = new TestHosts(prefix.path("hosts"));
    hostSets.push(hosts);
    const store = await hosts.add("store");
    makeSmallChroot(path.join(prefix.base, "alpha"));
    prefix.writeConfig(config(prefix, ["alpha"], [hostConfig(store, ["nbd", "tftp"])]));
    const noRsync = pathWithout(prefix.path("no-rsync"), ["rsync"]);

    const r = await start(prefix, noRsync, ["--keep-going"], true);
    expect(r.exitCode, String(r.stderr)).toBe(1);
    const failed = [...String(r.stderr).matchAll(/^FAILED {2}(\S+)/gm)].map((m) => m[1]!).sort();
    expect(failed).toEqual(["publish-image:alpha@store", "publish-nbd@store", "publish-tftp@store"]);
    expect(String(r.stderr)).toMatch(/needs rsync, not found on PATH: install it and run again/);
    expect(fs.existsSync(path.join(store.baseDir, "images"))).toBe(false);
    expect(fs.existsSync(path.join(store.tftpDir, "ltsp"))).toBe(false);
    // The image itself was built here, and the next run with rsync publishes only what failed.
    expect(unsquashfsOk(prefix.image("alpha"))).toBe(true);
    const next = await build(prefix, prefix.path("wrappers-unused"));
    expect(startedTasks(next.stdout).every((id) => id.endsWith("@store"))).toBe(true);
    expect(sameBytes(remoteImage(store, "alpha"), prefix.image("alpha"))).toBe(true);
  });

  test("an unreachable host fails only its own tasks, naming it; the others complete with --keep-going", async () => {
    const prefix = newPrefix();
    const hosts = new TestHosts(prefix.path("hosts"));
    hostSets.push(hosts);
    const boot = await hosts.add("boot");
    const store = await hosts.add("store");
    makeSmallChroot(path.join(prefix.base, "alpha"));
    prefix.writeConfig(config(prefix, ["alpha"], [hostConfig(boot, ["tftp"]), hostConfig(store, ["nbd"])]));
    const wrap = wrappers(prefix);
    await store.stopSshd();

    const planned = await plan(prefix, wrap.dir);
    expect(planned.get("publish-image:alpha@store")!.status).toBe("stale");

    const run = await cli(prefix, wrap.dir, ["--keep-going"]);
    expect(run.exitCode).toBe(1);
    const failed = [...run.stderr.matchAll(/^FAILED {2}(\S+)/gm)].map((m) => m[1]!).sort();
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((id) => id.endsWith("@store"))).toBe(true);
    expect(run.stderr).toContain(`host "store"`);
    expect(run.stderr).toContain("unreachable");
    expect(run.stdout).toMatch(/^done {4}publish-tftp@boot/m);
    expect(fs.existsSync(path.join(boot.tftpDir, "ltsp", "alpha", "vmlinuz"))).toBe(true);

    // Back up: the next run publishes what failed, and only that.
    await store.startSshd();
    const next = await build(prefix, wrap.dir);
    expect(startedTasks(next.stdout).every((id) => id.endsWith("@store"))).toBe(true);
    expect(fs.readlinkSync(remoteImage(store, "alpha"))).toBe(fs.readlinkSync(prefix.image("alpha")));
  });
});
