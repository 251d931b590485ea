import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { standaloneExec } from "../../src/exec.ts";
import { HOOK_LINK_TARGET, buildLtspImg, collectLtspImgEntries, ltspImgInputs } from "../../tasks/lib/ltsp-img.ts";
import type { LtspImgOptions } from "../../tasks/lib/ltsp-img.ts";
import { readNewc } from "./newc-reader.ts";

// Debian's ltsp package, installed on the test machine.
const SHARE = "/usr/share/ltsp";
const exec = standaloneExec();

let tmp: string;
let etc: string;
let opts: LtspImgOptions;

const PASSWD = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\n";
const GROUP = "root:x:0:\nalice:x:1000:\n";
const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly root@server\n";
const RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQFakeRsa root@server\n";
// No trailing newline, on purpose.
const ECDSA = "ecdsa-sha2-nistp256 AAAAE2VjZHNhFake root@server";

function write(rel: string, content: string, mode = 0o644): string {
  const file = path.join(etc, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  fs.chmodSync(file, mode);
  return file;
}

function makeEtc(): void {
  write("passwd", PASSWD);
  write("group", GROUP);
  write("shadow", "root:!:19000:0:99999:7:::\nalice:$y$secret:19000:0:99999:7:::\n", 0o640);
  write("ssh/ssh_host_rsa_key.pub", RSA);
  write("ssh/ssh_host_rsa_key", "PRIVATE KEY\n", 0o600);
  write("ssh/ssh_host_ed25519_key.pub", ED25519);
  write("ssh/ssh_host_ecdsa_key.pub", ECDSA);
  write("ltsp/ltsp.conf", "[clients]\nRELOGIN=1\n");
  write("ltsp/bin/sshfs-x86_64", "\x7fELF not really\n", 0o755);
  write("ltsp/secret.txt", "only root\n", 0o600);
  write("ltsp/setuid-tool", "#!/bin/sh\n", 0o4755);
  write("ltsp/hooks/ok.sh", "#!/bin/sh\nif true; then echo ok; fi\n", 0o755);
  fs.symlinkSync("ltsp.conf", path.join(etc, "ltsp/ltsp-link.conf"));
  write("epoptes/server.crt", "-----BEGIN CERTIFICATE-----\nFAKE\n-----END CERTIFICATE-----\n");
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-"));
  etc = path.join(tmp, "etc");
  makeEtc();
  opts = { ltspShareDir: SHARE, etcDir: etc };
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function build(options: LtspImgOptions = opts, name = "ltsp.img"): Promise<string> {
  const out = path.join(tmp, name);
  await buildLtspImg(options, out, exec);
  return out;
}

async function cpioList(archive: string): Promise<string[]> {
  const { stdout, stderr } = await exec("cpio", ["-t"], { input: fs.readFileSync(archive) });
  // GNU cpio prints only its block count on stderr when the archive is sound.
  expect(stderr).toMatch(/^\d+ blocks?\n$/);
  return stdout.split("\n").filter((l) => l !== "");
}

async function extract(archive: string): Promise<string> {
  const dest = fs.mkdtempSync(path.join(tmp, "x-"));
  const { stderr } = await exec("cpio", ["-idm", "--quiet"], { cwd: dest, input: fs.readFileSync(archive) });
  expect(stderr).toBe("");
  return dest;
}

/** Every path under `root`, relative, like `find` without the root. */
function findAll(root: string, rel = ""): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(path.join(root, rel))) {
    const r = rel ? `${rel}/${name}` : name;
    out.push(r);
    if (fs.lstatSync(path.join(root, r)).isDirectory()) out.push(...findAll(root, r));
  }
  return out;
}

describe("buildLtspImg", () => {
  it("contains the client code, the hook, the server's etc/ltsp, users, groups, keys and certificate", async () => {
    const names = await cpioList(await build());
    const expected = [
      ".",
      "usr",
      "usr/share",
      "usr/share/ltsp",
      "usr/share/ltsp/client",
      ...findAll(path.join(SHARE, "client")).map((p) => `usr/share/ltsp/client/${p}`),
      "usr/share/ltsp/common",
      ...findAll(path.join(SHARE, "common")).map((p) => `usr/share/ltsp/common/${p}`),
      "usr/share/ltsp/ltsp",
      "conf",
      "conf/conf.d",
      "conf/conf.d/00-ltsp.conf",
      "etc",
      "etc/ltsp",
      "etc/ltsp/bin",
      "etc/ltsp/bin/sshfs-x86_64",
      "etc/ltsp/epoptes.crt",
      "etc/ltsp/group",
      "etc/ltsp/hooks",
      "etc/ltsp/hooks/ok.sh",
      "etc/ltsp/ltsp-link.conf",
      "etc/ltsp/ltsp.conf",
      "etc/ltsp/passwd",
      "etc/ltsp/secret.txt",
      "etc/ltsp/setuid-tool",
      "etc/ltsp/ssh_known_hosts",
    ];
    expect([...names].sort()).toEqual([...expected].sort());
    expect(names[0]).toBe(".");
    expect(names.some((n) => n.includes("shadow"))).toBe(false);
    expect(names.some((n) => n.includes("/server"))).toBe(false);
    expect(names.some((n) => n.endsWith("_key"))).toBe(false);
  });

  it("extracts to the same contents, links and modes, owned by root", async () => {
    const dest = await extract(await build());
    for (const rel of findAll(path.join(SHARE, "client"))) {
      const src = path.join(SHARE, "client", rel);
      const got = path.join(dest, "usr/share/ltsp/client", rel);
      const s = fs.lstatSync(src);
      const g = fs.lstatSync(got);
      expect(g.mode & 0o7777, rel).toBe(s.mode & 0o1777);
      if (s.isFile()) expect(fs.readFileSync(got).equals(fs.readFileSync(src)), rel).toBe(true);
    }
    expect(fs.readFileSync(path.join(dest, "usr/share/ltsp/ltsp")).equals(fs.readFileSync(path.join(SHARE, "ltsp")))).toBe(true);
    expect(fs.statSync(path.join(dest, "usr/share/ltsp/ltsp")).mode & 0o777).toBe(0o755);

    const hook = path.join(dest, "conf/conf.d/00-ltsp.conf");
    expect(fs.readlinkSync(hook)).toBe(HOOK_LINK_TARGET);
    // The link resolves inside the unpacked initramfs to the installed hook.
    expect(fs.readFileSync(hook).equals(fs.readFileSync(path.join(SHARE, "client/initrd-bottom/initramfs-tools/ltsp-hook.conf")))).toBe(true);

    expect(fs.readFileSync(path.join(dest, "etc/ltsp/passwd"), "utf8")).toBe(PASSWD);
    expect(fs.readFileSync(path.join(dest, "etc/ltsp/group"), "utf8")).toBe(GROUP);
    expect(fs.readFileSync(path.join(dest, "etc/ltsp/ltsp.conf"), "utf8")).toBe("[clients]\nRELOGIN=1\n");
    expect(fs.readlinkSync(path.join(dest, "etc/ltsp/ltsp-link.conf"))).toBe("ltsp.conf");
    expect(fs.readFileSync(path.join(dest, "etc/ltsp/epoptes.crt"), "utf8")).toContain("FAKE");
    // Sorted by key file name: ecdsa, ed25519, rsa; a missing final newline is supplied.
    expect(fs.readFileSync(path.join(dest, "etc/ltsp/ssh_known_hosts"), "utf8")).toBe(`server ${ECDSA}\nserver ${ED25519}server ${RSA}`);

    const mode = (rel: string) => fs.statSync(path.join(dest, rel)).mode & 0o7777;
    expect(mode("etc/ltsp/bin/sshfs-x86_64")).toBe(0o755);
    expect(mode("etc/ltsp/secret.txt")).toBe(0o600);
    expect(mode("etc/ltsp/setuid-tool")).toBe(0o755);
    expect(mode("etc/ltsp/ssh_known_hosts")).toBe(0o644);
    expect(mode("conf/conf.d")).toBe(0o755);
    for (const rel of ["etc/ltsp/secret.txt", "usr/share/ltsp/ltsp", "etc/ltsp/ssh_known_hosts"]) {
      const st = fs.statSync(path.join(dest, rel));
      expect([st.uid, st.gid, st.mtimeMs], rel).toEqual([0, 0, 0]);
    }
  });

  it("matches, byte for byte, GNU cpio over a staging tree copied with cp -a", async () => {
    fs.rmSync(path.join(etc, "ltsp/setuid-tool"));
    const mtime = 1500000000;
    const stage = path.join(tmp, "stage");
    fs.mkdirSync(stage);
    const script = [
      "set -e",
      `cd "${stage}"`,
      "mkdir -p usr/share/ltsp conf/conf.d etc/ltsp",
      `cp -a "${SHARE}/client" "${SHARE}/common" "${SHARE}/ltsp" usr/share/ltsp/`,
      `ln -s ${HOOK_LINK_TARGET} conf/conf.d/00-ltsp.conf`,
      `cp -a "${etc}/ltsp/." etc/ltsp/`,
      `sed 's/^/server /' "${etc}"/ssh/ssh_host_*_key.pub > etc/ltsp/ssh_known_hosts`,
      `cp -a "${etc}/passwd" "${etc}/group" etc/ltsp/`,
      `cp -a "${etc}/epoptes/server.crt" etc/ltsp/epoptes.crt`,
      `find . -exec touch -h -d @${mtime} {} +`,
      "find . | LC_ALL=C sort | cpio -o -H newc --reproducible --quiet",
    ].join("\n");
    const { stdout: gnu } = await exec("sh", ["-c", script], { binary: true, env: { LC_ALL: "C" } });
    const ours = fs.readFileSync(await build({ ...opts, mtime }));
    expect(readNewc(ours).map((e) => e.name)).toEqual(readNewc(gnu).map((e) => e.name));
    const strip = (e: ReturnType<typeof readNewc>[number]) => ({ ...e, data: e.data.toString("latin1") });
    expect(readNewc(ours).map(strip)).toEqual(readNewc(gnu).map(strip));
    expect(ours.equals(gnu)).toBe(true);
  });

  it("follows the kernel's newc rules: magic, alignment, root-owned, fixed times, no device numbers", async () => {
    const archive = fs.readFileSync(await build({ ...opts, mtime: 1700000000 }));
    expect(archive.length % 512).toBe(0);
    const entries = readNewc(archive);
    expect(entries.length).toBeGreaterThan(60);
    for (const e of entries) {
      expect(e.offset % 4).toBe(0);
      expect([e.uid, e.gid, e.mtime, e.devMajor, e.devMinor, e.rdevMajor, e.rdevMinor, e.check], e.name).toEqual([0, 0, 1700000000, 0, 0, 0, 0, 0]);
      expect(e.mode & 0o6000, e.name).toBe(0);
    }
    const names = entries.map((e) => e.name);
    // Every entry's directory comes before it, as the kernel creates no missing parents.
    for (const [i, name] of names.entries()) {
      if (name === "." || !name.includes("/")) continue;
      const parent = name.slice(0, name.lastIndexOf("/"));
      const j = names.indexOf(parent);
      expect(j, name).toBeGreaterThanOrEqual(0);
      expect(j, name).toBeLessThan(i);
    }
  });

  it("gives identical bytes for identical inputs, whatever their times, and different bytes for a new user", async () => {
    const first = fs.readFileSync(await build(opts, "a.img"));
    const second = fs.readFileSync(await build(opts, "b.img"));
    expect(second.equals(first)).toBe(true);

    const later = new Date("2030-01-01T00:00:00Z");
    for (const rel of ["passwd", "ltsp/ltsp.conf", "ltsp/bin", "ssh/ssh_host_rsa_key.pub", "epoptes/server.crt"]) {
      fs.utimesSync(path.join(etc, rel), later, later);
    }
    expect(fs.readFileSync(await build(opts, "c.img")).equals(first)).toBe(true);

    fs.appendFileSync(path.join(etc, "passwd"), "bob:x:1001:1001:Bob:/home/bob:/bin/bash\n");
    const withBob = fs.readFileSync(await build(opts, "d.img"));
    expect(withBob.equals(first)).toBe(false);
    const dest = await extract(path.join(tmp, "d.img"));
    expect(fs.readFileSync(path.join(dest, "etc/ltsp/passwd"), "utf8")).toContain("bob:x:1001");
  });

  it("lets etc/ltsp override passwd, group and ssh_known_hosts, and leaves epoptes out on request", async () => {
    write("ltsp/passwd", "root:x:0:0::/root:/bin/sh\nldap:x:5000:5000::/home/ldap:/bin/sh\n");
    write("ltsp/group", "root:x:0:\nldap:x:5000:\n");
    write("ltsp/ssh_known_hosts", "myserver ssh-ed25519 AAAAother\n");
    const dest = await extract(await build({ ...opts, includeEpoptes: false }));
    expect(fs.readFileSync(path.join(dest, "etc/ltsp/passwd"), "utf8")).toContain("ldap:x:5000");
    expect(fs.readFileSync(path.join(dest, "etc/ltsp/group"), "utf8")).toContain("ldap:x:5000");
    expect(fs.readFileSync(path.join(dest, "etc/ltsp/ssh_known_hosts"), "utf8")).toBe("myserver ssh-ed25519 AAAAother\n");
    expect(fs.existsSync(path.join(dest, "etc/ltsp/epoptes.crt"))).toBe(false);
  });

  it("works without etc/ltsp, ssh keys or epoptes", async () => {
    fs.rmSync(path.join(etc, "ltsp"), { recursive: true });
    fs.rmSync(path.join(etc, "ssh"), { recursive: true });
    fs.rmSync(path.join(etc, "epoptes"), { recursive: true });
    const names = await cpioList(await build());
    expect(names.filter((n) => n.startsWith("etc/")).sort()).toEqual(["etc/ltsp", "etc/ltsp/group", "etc/ltsp/passwd", "etc/ltsp/ssh_known_hosts"]);
    const dest = await extract(path.join(tmp, "ltsp.img"));
    expect(fs.readFileSync(path.join(dest, "etc/ltsp/ssh_known_hosts"), "utf8")).toBe("");
  });

  it("tells the user to install ltsp when the client code is missing", async () => {
    const out = path.join(tmp, "ltsp.img");
    const missing = path.join(tmp, "no-such-share");
    await expect(buildLtspImg({ ...opts, ltspShareDir: missing }, out, exec)).rejects.toThrow(
      /LTSP client code not found: .*no-such-share\/client.*apt-get install --no-install-recommends ltsp.*ltspShareDir/s,
    );
    expect(fs.existsSync(out)).toBe(false);
    // Client code present but the hook missing: the link would dangle.
    const share = path.join(tmp, "share");
    fs.mkdirSync(path.join(share, "client"), { recursive: true });
    fs.mkdirSync(path.join(share, "common"));
    fs.writeFileSync(path.join(share, "ltsp"), "#!/bin/sh\n");
    await expect(buildLtspImg({ ...opts, ltspShareDir: share }, out, exec)).rejects.toThrow(/ltsp-hook\.conf is missing/);
  });

  it("fails naming each shell script with a syntax error", async () => {
    const bad = write("ltsp/hooks/broken.sh", "#!/bin/sh\nif true; then\n  echo unfinished\n");
    const out = path.join(tmp, "ltsp.img");
    const error = await buildLtspImg(opts, out, exec).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect(error?.message).toContain(bad);
    expect(error?.message).toContain("etc/ltsp/hooks/broken.sh in ltsp.img");
    expect(error?.message).toMatch(/Syntax error/);
    expect(error?.message).not.toContain("ok.sh");
    expect(fs.existsSync(out)).toBe(false);
  });

  it("refuses special files in etc/ltsp", async () => {
    await exec("mkfifo", [path.join(etc, "ltsp/fifo")]);
    await expect(buildLtspImg(opts, path.join(tmp, "ltsp.img"), exec)).rejects.toThrow(/fifo is not a regular file, directory or symlink/);
  });
});

describe("ltspImgInputs", () => {
  it("lists exactly the files ltsp.img is made of", () => {
    expect(ltspImgInputs(opts)).toEqual([
      { tree: `${SHARE}/client` },
      { tree: `${SHARE}/common` },
      { file: `${SHARE}/ltsp` },
      { tree: `${etc}/ltsp` },
      { glob: "ssh_host_*_key.pub", cwd: `${etc}/ssh` },
      { file: `${etc}/passwd` },
      { file: `${etc}/group` },
      { file: `${etc}/epoptes/server.crt` },
    ]);
  });

  it("leaves out what etc/ltsp overrides, and watches a missing etc/ltsp for creation", () => {
    write("ltsp/passwd", "x\n");
    write("ltsp/ssh_known_hosts", "x\n");
    expect(ltspImgInputs({ ...opts, includeEpoptes: false })).toEqual([
      { tree: `${SHARE}/client` },
      { tree: `${SHARE}/common` },
      { file: `${SHARE}/ltsp` },
      { tree: `${etc}/ltsp` },
      { file: `${etc}/group` },
    ]);
    fs.rmSync(path.join(etc, "ltsp"), { recursive: true });
    expect(ltspImgInputs(opts)).toContainEqual({ file: `${etc}/ltsp` });
    expect(ltspImgInputs(opts)).toContainEqual({ file: `${etc}/passwd` });
  });

  it("covers every source file of the collected entries", async () => {
    const inputs = ltspImgInputs(opts);
    const covered = (file: string) =>
      inputs.some((i) => ("file" in i && i.file === file) || ("tree" in i && file.startsWith(`${i.tree}/`)));
    for (const e of await collectLtspImgEntries(opts)) {
      if (e.type === "file" && typeof e.content === "object" && !Buffer.isBuffer(e.content)) {
        expect(covered(e.content.sourcePath), e.content.sourcePath).toBe(true);
      }
    }
  });
});
