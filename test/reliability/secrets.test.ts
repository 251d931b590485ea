// A chroot seeded with secrets: the built image holds none of them; the images directory is 0700;
// exports are read-only; DHCP is offered only on the configured network.
import fs from "node:fs";
import path from "node:path";
import { expect, test } from "vitest";
import { makeSmallChroot, makeTree, usePrefixes } from "../pipeline/helpers.ts";
import { sh } from "./helpers.ts";

const newPrefix = usePrefixes();

const SECRETS: Record<string, string> = {
  "etc/ssh/ssh_host_ecdsa_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRET-ECDSA-HOSTKEY-7f3a\n-----END OPENSSH PRIVATE KEY-----\n",
  "etc/ssh/ssh_host_ed25519_key": "-----BEGIN OPENSSH PRIVATE KEY-----\nSECRET-ED25519-HOSTKEY-91c2\n-----END OPENSSH PRIVATE KEY-----\n",
  "etc/shadow":
    "root:$6$rootsalt$SECRETROOTHASH0000:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:$y$j9T$alicesalt$SECRETALICEHASH111:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n",
  "etc/gshadow": "root:*::\nalice:$6$gsalt$SECRETGROUPHASH222::\n",
  "home/alice/.ssh/id_ed25519": "SECRET-ALICE-USER-KEY-4d1e\n",
  "home/alice/Documents/tax.txt": "SECRET-ALICE-DOCUMENT-a0b1\n",
  "root/.ssh/id_rsa": "SECRET-ROOT-USER-KEY-5e6f\n",
  "root/notes.txt": "SECRET-ROOT-NOTES-c3d4\n",
  "etc/NetworkManager/system-connections/school.nmconnection": "[connection]\nid=school\n[wifi-security]\nkey-mgmt=wpa-psk\npsk=SECRET-WIFI-PSK-8899\n",
  "etc/mysql/debian.cnf": "[client]\nuser=debian-sys-maint\npassword=SECRET-MYSQL-MAINT-7788\n",
  "var/cache/debconf/passwords.dat": "Name: mysql-server/root_password\nTemplate: mysql-server/root_password\nValue: SECRET-DEBCONF-PASSWORD-6655\nOwners: mysql-server\n",
};
const NEEDLES = [
  "SECRET-ECDSA-HOSTKEY", "SECRET-ED25519-HOSTKEY", "SECRETROOTHASH", "SECRETALICEHASH", "SECRETGROUPHASH", "SECRET-ALICE-USER-KEY",
  "SECRET-ALICE-DOCUMENT", "SECRET-ROOT-USER-KEY", "SECRET-ROOT-NOTES", "SECRET-WIFI-PSK", "SECRET-MYSQL-MAINT", "SECRET-DEBCONF-PASSWORD",
];

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...filesUnder(full));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

test("no secret of the source reaches the image; images 0700, exports read-only, DHCP only where configured", async () => {
  const prefix = newPrefix();
  const chroot = makeSmallChroot(path.join(prefix.base, "small"));
  makeTree(chroot, SECRETS);
  prefix.writeConfig(`{ imageDefaults: { compression: "zstd", ionice: [] }, dnsmasq: { realDhcp: false, proxyRanges: [{ network: "10.20.30.0", netmask: "255.255.255.0" }] } }`);
  await prefix.build();

  // The whole image, extracted: no file holds any secret string, and the raw image bytes neither.
  const out = prefix.path("extracted");
  sh("unsquashfs", ["-q", "-n", "-d", out, prefix.image("small")]);
  const files = filesUnder(out);
  expect(files.length).toBeGreaterThan(10);
  for (const file of files) {
    const content = fs.readFileSync(file, "latin1");
    for (const needle of NEEDLES) expect(content.includes(needle), `${needle} in ${path.relative(out, file)}`).toBe(false);
  }
  const raw = sh("unsquashfs", ["-lls", prefix.image("small")]);
  for (const needle of ["ssh_host_ecdsa_key", "id_ed25519", "id_rsa", "school.nmconnection", "debian.cnf", "tax.txt"]) expect(raw).not.toContain(needle);
  // Generated files in TFTP (ltsp.img carries the server's public keys and passwd) hold none either.
  for (const file of filesUnder(prefix.tftp)) {
    const content = fs.readFileSync(file, "latin1");
    for (const needle of NEEDLES) expect(content.includes(needle), `${needle} in ${file}`).toBe(false);
  }

  // The images directory is not readable by other users.
  expect(fs.statSync(path.join(prefix.base, "images")).mode & 0o777).toBe(0o700);

  // Every NFS export is read-only.
  const exportsText = fs.readFileSync(path.join(prefix.etc, "exports.d", "ltsp-nfs.exports"), "utf8");
  const exportLines = exportsText.split("\n").filter((l) => l.trim() && !l.startsWith("#"));
  expect(exportLines.length).toBeGreaterThan(0);
  for (const line of exportLines) {
    expect(line, "read-only export").toMatch(/[(,]ro[,)]/);
    expect(line, "never read-write").not.toMatch(/[(,]rw[,)]/);
  }

  // DHCP: only the configured network, as a proxy (realDhcp: false, so no address is handed out).
  const dnsmasq = fs.readFileSync(path.join(prefix.etc, "dnsmasq.d", "ltsp-dnsmasq.conf"), "utf8");
  const ranges = dnsmasq.split("\n").filter((l) => /^dhcp-range=/.test(l));
  expect(ranges).toEqual([expect.stringMatching(/^dhcp-range=(set:\S+,)?10\.20\.30\.0,proxy,255\.255\.255\.0$/)]);
  sh("dnsmasq", ["--test", `--conf-file=${path.join(prefix.etc, "dnsmasq.d", "ltsp-dnsmasq.conf")}`]);
});
