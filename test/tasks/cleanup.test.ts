import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { standaloneExec } from "../../src/exec.ts";
import { type CleanupOptions, cleanupImage, defaultCleanup } from "../../tasks/lib/cleanup.ts";
import { parseGroup, parsePasswd, parseShadow } from "../../tasks/lib/passwd.ts";

const exec = standaloneExec();

let tmp: string;
let root: string;
let loginDefs: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-"));
  root = path.join(tmp, "root");
  fs.mkdirSync(root);
  loginDefs = path.join(tmp, "server-login.defs");
  fs.writeFileSync(loginDefs, "# the server's\nUID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n");
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function put(rel: string, content: string, mode = 0o644, uid = 0, gid = 0): void {
  const full = path.join(root, rel);
  fs.mkdirSync(path.dirname(full), { recursive: true });
  fs.writeFileSync(full, content);
  fs.chmodSync(full, mode);
  fs.chownSync(full, uid, gid);
}

function link(rel: string, target: string): void {
  const full = path.join(root, rel);
  fs.mkdirSync(path.dirname(full), { recursive: true });
  fs.symlinkSync(target, full);
}

const read = (rel: string) => fs.readFileSync(path.join(root, rel), "utf8");
const lstat = (rel: string) => fs.lstatSync(path.join(root, rel), { throwIfNoEntry: false });

const SHADOW_GID = 142;

/** A root with secrets and junk in every place the cleanup looks at. */
function seedImage(): void {
  put("etc/passwd", [
    "root:x:0:0:root:/root:/bin/bash",
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
    "alice:x:1000:1000:Alice:/home/alice:/bin/bash",
    "bob:x:1001:1001:Bob:/home/bob:/bin/bash",
    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
    "",
  ].join("\n"));
  put("etc/group", ["root:x:0:", "daemon:x:1:", "sudo:x:27:alice", `shadow:x:${SHADOW_GID}:`, "users:x:100:alice,bob", "alice:x:1000:", "bob:x:1001:", "lab:x:1002:alice,bob", "nogroup:x:65534:", ""].join("\n"));
  put("etc/shadow", "root:$y$j9T$ROOTHASH:19000:0:99999:7:::\nalice:$y$j9T$ALICEHASH:19000:0:99999:7:::\nbob:$6$BOBHASH:19000:0:99999:7:::\n", 0o640, 7, 99);
  put("etc/gshadow", "root:*::\nsudo:*::alice\nlab:$6$GROUPHASH:alice:alice,bob\n", 0o640, 7, 99);
  for (const name of ["passwd-", "group-", "shadow-", "gshadow-", "subuid-", "subgid-", "shadow~"]) put(`etc/${name}`, "BACKUP $6$OLDHASH\n", 0o600);
  put("etc/subuid", "alice:100000:65536\n");
  put("etc/subgid", "alice:100000:65536\n");
  put("etc/passwd.orig", "kept: more than one character after the name\n");
  put("etc/cups/printers.conf", "# Printer configuration file for CUPS\n<Printer lab>\nDeviceURI ipp://10.0.0.5/printers/lab\n</Printer>\n# Written by cupsd\n", 0o600, 0, 7);
  put("etc/ssh/ssh_host_rsa_key", "OLD RSA PRIVATE KEY\n", 0o600);
  put("etc/ssh/ssh_host_rsa_key.pub", "ssh-rsa OLD\n");
  put("etc/ssh/ssh_host_ed25519_key", "OLD ED25519 PRIVATE KEY\n", 0o600);
  put("etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 OLD\n");
  put("etc/ssh/sshd_config", "PermitRootLogin no\n");
  put("etc/ssl/private/ssl-cert-snakeoil.key", "OLD SNAKEOIL KEY\n", 0o640, 0, 110);
  put("etc/ssl/certs/ssl-cert-snakeoil.pem", "OLD SNAKEOIL CERT\n");
  put("var/log/syslog", "Nov 1 secret log line\n", 0o640, 0, 4);
  put("var/log/auth.log", "sudo: alice : COMMAND=/bin/sh\n", 0o640);
  put("var/log/empty.log", "");
  put("var/log/apt/history.log", "Start-Date: 2024\n");
  link("var/log/latest", "syslog");
  put("etc/fstab", "UUID=1234 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n");
  put("var/cache/debconf/passwords.dat", "Name: mysql/root_password\nValue: hunter2\n", 0o600);
  put("etc/systemd/resolved.conf.d/ltsp.conf", "[Resolve]\nDNSStubListener=no\n");
  put("etc/resolv.conf", "nameserver 127.0.0.1\n");
}

const opts = (extra: Partial<CleanupOptions> = {}): Partial<CleanupOptions> => ({ loginDefs, ...extra });

describe("cleanupImage", () => {
  it("removes secrets and junk from a seeded root", async () => {
    seedImage();
    const lines: string[] = [];
    const summary = await cleanupImage(root, opts(), exec, (line) => lines.push(line));

    // Printers: only comment lines remain, mode and owner kept.
    expect(read("etc/cups/printers.conf")).toBe("# Printer configuration file for CUPS\n# Written by cupsd\n");
    expect(lstat("etc/cups/printers.conf")?.mode! & 0o7777).toBe(0o600);
    expect(lstat("etc/cups/printers.conf")?.gid).toBe(7);

    // Accounts.
    expect(parsePasswd(read("etc/passwd")).map((u) => u.name)).toEqual(["root", "daemon", "nobody"]);
    expect(parseGroup(read("etc/group")).map((g) => g.name)).toEqual(["root", "daemon", "sudo", "shadow", "users", "nogroup"]);
    expect(read("etc/shadow")).toBe("root:!:::::::\ndaemon:!:::::::\nnobody:!:::::::\n");
    expect(parseShadow(read("etc/shadow")).every((s) => s.password === "!")).toBe(true);
    expect(read("etc/gshadow")).not.toContain("$");
    expect(read("etc/gshadow")).toContain("sudo:*::\n");
    expect(summary.removedUsers).toEqual(["alice", "bob"]);
    expect(summary.removedGroups).toEqual(["alice", "bob", "lab"]);
    for (const rel of ["etc/passwd", "etc/group"]) {
      expect(lstat(rel)?.mode! & 0o7777).toBe(0o644);
      expect([lstat(rel)?.uid, lstat(rel)?.gid]).toEqual([0, 0]);
    }
    for (const rel of ["etc/shadow", "etc/gshadow"]) {
      expect(lstat(rel)?.mode! & 0o7777).toBe(0o640);
      // Owner from the old shadow, group from the image's own "shadow" group.
      expect([lstat(rel)?.uid, lstat(rel)?.gid]).toEqual([7, SHADOW_GID]);
    }
    for (const name of ["passwd-", "group-", "shadow-", "gshadow-", "subuid-", "subgid-", "shadow~"]) expect(lstat(`etc/${name}`)).toBeUndefined();
    expect(read("etc/subuid")).toBe("alice:100000:65536\n");
    expect(lstat("etc/subgid")).toBeDefined();
    expect(lstat("etc/passwd.orig")).toBeDefined();
    expect(fs.readdirSync(path.join(root, "etc")).filter((name) => name.includes("ltsp-make"))).toEqual([]);

    // resolv.conf.
    expect(lstat("etc/systemd/resolved.conf.d/ltsp.conf")).toBeUndefined();
    expect(fs.readlinkSync(path.join(root, "etc/resolv.conf"))).toBe("../run/systemd/resolve/stub-resolv.conf");

    // SSH host keys: removed, not regenerated by default.
    expect(fs.readdirSync(path.join(root, "etc/ssh"))).toEqual(["sshd_config"]);

    // Snakeoil: a new self-signed pair, valid for ten years, with the old modes and owners.
    const { stdout: endDate } = await exec("openssl", ["x509", "-in", path.join(root, "etc/ssl/certs/ssl-cert-snakeoil.pem"), "-noout", "-enddate"]);
    const days = (Date.parse(endDate.trim().replace("notAfter=", "")) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(3649);
    expect(days).toBeLessThan(3651);
    const { stdout: certKey } = await exec("openssl", ["x509", "-in", path.join(root, "etc/ssl/certs/ssl-cert-snakeoil.pem"), "-noout", "-pubkey"]);
    const { stdout: privateKey } = await exec("openssl", ["pkey", "-in", path.join(root, "etc/ssl/private/ssl-cert-snakeoil.key"), "-pubout"]);
    expect(certKey).toBe(privateKey);
    expect(read("etc/ssl/private/ssl-cert-snakeoil.key")).not.toContain("ENCRYPTED");
    expect(lstat("etc/ssl/private/ssl-cert-snakeoil.key")?.mode! & 0o7777).toBe(0o640);
    expect(lstat("etc/ssl/private/ssl-cert-snakeoil.key")?.gid).toBe(110);
    expect(lstat("etc/ssl/certs/ssl-cert-snakeoil.pem")?.mode! & 0o7777).toBe(0o644);

    // Logs: regular files directly in var/log emptied, keeping mode and owner; subdirectories and links left.
    expect(read("var/log/syslog")).toBe("");
    expect(lstat("var/log/syslog")?.mode! & 0o7777).toBe(0o640);
    expect(lstat("var/log/syslog")?.gid).toBe(4);
    expect(read("var/log/auth.log")).toBe("");
    expect(read("var/log/apt/history.log")).toBe("Start-Date: 2024\n");
    expect(lstat("var/log/latest")?.isSymbolicLink()).toBe(true);

    // fstab and debconf passwords.
    expect(read("etc/fstab")).toBe("");
    expect(read("var/cache/debconf/passwords.dat")).toBe("");
    expect(lstat("var/cache/debconf/passwords.dat")?.mode! & 0o7777).toBe(0o600);

    expect(summary.emptiedFiles.sort()).toEqual(["etc/fstab", "var/cache/debconf/passwords.dat", "var/log/auth.log", "var/log/syslog"]);
    expect(summary.regeneratedFiles).toEqual(["etc/ssl/private/ssl-cert-snakeoil.key", "etc/ssl/certs/ssl-cert-snakeoil.pem"]);
    expect(lines).toEqual(summary.lines);
    expect(lines.length).toBeGreaterThan(10);
  });

  it("regenerates SSH host keys when asked", async () => {
    seedImage();
    const summary = await cleanupImage(root, opts({ sshHostKeys: "regenerate", snakeoil: false }), exec);
    expect(fs.readdirSync(path.join(root, "etc/ssh")).sort()).toEqual([
      "ssh_host_ed25519_key",
      "ssh_host_ed25519_key.pub",
      "ssh_host_rsa_key",
      "ssh_host_rsa_key.pub",
      "sshd_config",
    ]);
    for (const type of ["rsa", "ed25519"]) {
      const key = path.join(root, `etc/ssh/ssh_host_${type}_key`);
      const { stdout } = await exec("ssh-keygen", ["-l", "-f", key]);
      expect(stdout).toMatch(new RegExp(`\\(${type.toUpperCase()}\\)`));
      // Passwordless: the public key can be derived without a passphrase.
      const { stdout: pub } = await exec("ssh-keygen", ["-y", "-P", "", "-f", key]);
      expect(fs.readFileSync(`${key}.pub`, "utf8")).toContain(pub.trim());
    }
    expect(summary.regeneratedFiles).toHaveLength(4);
  });

  it("can remove the snakeoil pair instead of regenerating it", async () => {
    seedImage();
    await cleanupImage(root, opts({ snakeoil: "remove" }), exec);
    expect(lstat("etc/ssl/private/ssl-cert-snakeoil.key")).toBeUndefined();
    expect(lstat("etc/ssl/certs/ssl-cert-snakeoil.pem")).toBeUndefined();
  });

  it("keeps resolv.conf when the image has no LTSP resolved drop-in", async () => {
    seedImage();
    fs.rmSync(path.join(root, "etc/systemd/resolved.conf.d/ltsp.conf"));
    await cleanupImage(root, opts({ snakeoil: "remove" }), exec);
    expect(read("etc/resolv.conf")).toBe("nameserver 127.0.0.1\n");
  });

  // What each step touches; with the step off, all of it must stay exactly as it was.
  const STEP_FILES: Record<string, string[]> = {
    printers: ["etc/cups/printers.conf"],
    users: ["etc/passwd", "etc/group", "etc/shadow", "etc/gshadow", "etc/passwd-", "etc/shadow-", "etc/gshadow-", "etc/subuid-", "etc/shadow~"],
    resolvConf: ["etc/systemd/resolved.conf.d/ltsp.conf", "etc/resolv.conf"],
    sshHostKeys: ["etc/ssh/ssh_host_rsa_key", "etc/ssh/ssh_host_rsa_key.pub", "etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub"],
    snakeoil: ["etc/ssl/private/ssl-cert-snakeoil.key", "etc/ssl/certs/ssl-cert-snakeoil.pem"],
    logs: ["var/log/syslog", "var/log/auth.log"],
    fstab: ["etc/fstab"],
    debconfPasswords: ["var/cache/debconf/passwords.dat"],
  };

  function snapshot(dir: string, rels: readonly string[]): string[] {
    return rels.map((rel) => {
      const full = path.join(dir, rel);
      const info = fs.lstatSync(full, { throwIfNoEntry: false });
      if (!info) return `${rel}: missing`;
      const what = info.isSymbolicLink() ? `-> ${fs.readlinkSync(full)}` : info.isFile() ? JSON.stringify(fs.readFileSync(full, "utf8")) : "dir";
      return `${rel}: ${(info.mode & 0o7777).toString(8)} ${info.uid}:${info.gid} ino ${info.ino} ${what}`;
    });
  }

  for (const step of Object.keys(STEP_FILES)) {
    it(`leaves the files of step "${step}" untouched when it is off`, async () => {
      seedImage();
      const files = STEP_FILES[step] as string[];
      const before = snapshot(root, files);
      const others = Object.entries(STEP_FILES).filter(([name]) => name !== step);
      const othersBefore = others.map(([, rels]) => snapshot(root, rels));
      await cleanupImage(root, opts({ [step]: false, snakeoil: step === "snakeoil" ? false : "remove" }), exec);
      expect(snapshot(root, files)).toEqual(before);
      // Every other step did change its files.
      others.forEach(([, rels], i) => expect(snapshot(root, rels)).not.toEqual(othersBefore[i]));
    });
  }

  it("changes nothing with every step off", async () => {
    seedImage();
    const all = walk(root);
    const before = snapshot(root, all);
    const off = Object.fromEntries(Object.keys(STEP_FILES).map((step) => [step, false]));
    const summary = await cleanupImage(root, opts(off), exec);
    expect(walk(root)).toEqual(all);
    expect(snapshot(root, all)).toEqual(before);
    expect(summary.lines).toEqual([]);
  });

  it("refuses the host's root and explains a missing passwd", async () => {
    await expect(cleanupImage("/", opts(), exec)).rejects.toThrow(/host's own root/);
    await expect(cleanupImage(path.join(tmp, "absent"), opts(), exec)).rejects.toThrow(/does not exist/);
    put("etc/group", "root:x:0:\n");
    await expect(cleanupImage(root, opts(), exec)).rejects.toThrow(/has no etc\/passwd.*switch the "users" cleanup step off/s);
  });

  it("uses the bounds of the login.defs it is given", async () => {
    seedImage();
    fs.writeFileSync(loginDefs, "UID_MIN 1001\nGID_MIN 1001\n");
    await cleanupImage(root, opts(), exec);
    expect(parsePasswd(read("etc/passwd")).map((u) => u.name)).toEqual(["root", "daemon", "alice", "nobody"]);
  });
});

function walk(dir: string, rel = ""): string[] {
  const result: string[] = [];
  for (const dirent of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const child = rel ? `${rel}/${dirent.name}` : dirent.name;
    result.push(child);
    if (dirent.isDirectory()) result.push(...walk(dir, child));
  }
  return result;
}

describe("cleanupImage never leaves the root", () => {
  let outside: string;
  beforeEach(() => {
    outside = path.join(tmp, "outside");
    for (const rel of ["fstab", "passwords.dat", "log/syslog", "cups/printers.conf", "ssh/ssh_host_rsa_key", "ssh/ssh_host_rsa_key.pub", "ssl/ssl-cert-snakeoil.key", "ssl/ssl-cert-snakeoil.pem", "resolved/ltsp.conf", "passwd-", "shadow", "gshadow", "resolv.conf", "hardlinked"]) {
      const full = path.join(outside, rel);
      fs.mkdirSync(path.dirname(full), { recursive: true });
      fs.writeFileSync(full, `CANARY ${rel}\n`);
      fs.chmodSync(full, 0o604);
    }
  });

  function outsideState(): string[] {
    return walk(outside).map((rel) => {
      const full = path.join(outside, rel);
      const info = fs.lstatSync(full);
      return `${rel} ${(info.mode & 0o7777).toString(8)} ${info.uid}:${info.gid} ${info.isFile() ? fs.readFileSync(full, "utf8") : "dir"}`;
    });
  }

  it("does not follow links that point out of the image, absolute or relative", async () => {
    put("etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n");
    put("etc/group", "root:x:0:\nalice:x:1000:\n");
    link("etc/fstab", path.join(outside, "fstab"));
    link("var/cache/debconf/passwords.dat", "../../../../outside/passwords.dat");
    link("var/log", path.join(outside, "log"));
    link("etc/cups", "../../outside/cups");
    link("etc/ssh", path.join(outside, "ssh"));
    link("etc/ssl/private", path.join(outside, "ssl"));
    link("etc/ssl/certs", "../../../outside/ssl");
    link("etc/systemd/resolved.conf.d", path.join(outside, "resolved"));
    link("etc/passwd-", path.join(outside, "passwd-"));
    link("etc/shadow", path.join(outside, "shadow"));
    link("etc/gshadow", "../../outside/gshadow");
    const before = outsideState();

    await cleanupImage(root, opts({ sshHostKeys: "regenerate" }), exec);

    expect(outsideState()).toEqual(before);
    // The links into the host were replaced or removed, never written through.
    expect(lstat("etc/passwd-")).toBeUndefined();
    expect(lstat("etc/shadow")?.isFile()).toBe(true);
    expect(read("etc/shadow")).toBe("root:!:::::::\n");
    expect(lstat("etc/gshadow")?.isFile()).toBe(true);
    expect(lstat("etc/fstab")?.isSymbolicLink()).toBe(true);
    expect(lstat("var/log")?.isSymbolicLink()).toBe(true);
  });

  it("replaces a link whose target is outside, rather than writing to it", async () => {
    put("etc/systemd/resolved.conf.d/ltsp.conf", "[Resolve]\n");
    link("etc/resolv.conf", path.join(outside, "resolv.conf"));
    const before = outsideState();
    await cleanupImage(root, opts({ users: false }), exec);
    expect(outsideState()).toEqual(before);
    expect(fs.readlinkSync(path.join(root, "etc/resolv.conf"))).toBe("../run/systemd/resolve/stub-resolv.conf");
  });

  it("empties a hard-linked log without touching the other name", async () => {
    fs.mkdirSync(path.join(root, "var/log"), { recursive: true });
    fs.linkSync(path.join(outside, "hardlinked"), path.join(root, "var/log/hard.log"));
    const before = outsideState();
    await cleanupImage(root, opts({ users: false }), exec);
    expect(outsideState()).toEqual(before);
    expect(read("var/log/hard.log")).toBe("");
  });

  it("follows links inside the image as the image sees them", async () => {
    put("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    put("etc/group", "root:x:0:\n");
    // Absolute targets start at the image root; ".." stops there.
    put("srv/logs/app.log", "inside the image\n");
    link("var/log", "/srv/logs");
    put("etc/fstab.real", "UUID=1 / ext4 defaults 0 1\n");
    link("etc/fstab", "/etc/fstab.real");
    put("opt/printers.conf", "<Printer x>\n# comment\n");
    link("etc/cups/printers.conf", "../../../../../opt/printers.conf");
    await cleanupImage(root, opts(), exec);
    expect(read("srv/logs/app.log")).toBe("");
    expect(lstat("etc/fstab")?.isFile()).toBe(true);
    expect(read("etc/fstab")).toBe("");
    expect(read("etc/fstab.real")).toBe("UUID=1 / ext4 defaults 0 1\n");
    expect(lstat("etc/cups/printers.conf")?.isFile()).toBe(true);
    expect(read("etc/cups/printers.conf")).toBe("# comment\n");
    expect(read("opt/printers.conf")).toBe("<Printer x>\n# comment\n");
  });

  it("stops at a link loop with a clear error", async () => {
    put("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    put("etc/group", "root:x:0:\n");
    link("etc/cups", "/etc/cups");
    await expect(cleanupImage(root, opts(), exec)).rejects.toThrow(/link loop/);
  });
});

describe("defaultCleanup", () => {
  it("runs every step, removing SSH host keys and regenerating the snakeoil pair", () => {
    expect(defaultCleanup).toMatchObject({
      printers: true,
      users: true,
      resolvConf: true,
      sshHostKeys: "remove",
      snakeoil: "regenerate",
      logs: true,
      fstab: true,
      debconfPasswords: true,
      loginDefs: "/etc/login.defs",
    });
  });
});
