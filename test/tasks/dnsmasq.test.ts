import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CommandError, standaloneExec } from "../../src/exec.ts";
import {
  DEFAULT_DNS_SERVERS,
  detectDnsServers,
  prefixToNetmask,
  proxyRangesFromRoutes,
  renderDnsmasq,
  type DnsmasqOptions,
} from "../../tasks/lib/dnsmasq.ts";

const exec = standaloneExec();
let dir: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-"));
});
afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs dnsmasq's own syntax check on the text; resolves to its output, rejects with its error. */
async function dnsmasqTest(text: string): Promise<string> {
  const file = path.join(dir, "ltsp-dnsmasq.conf");
  fs.writeFileSync(file, text);
  const result = await exec("dnsmasq", ["--test", `--conf-file=${file}`]);
  return result.stdout + result.stderr;
}

/** The directive lines (no comments, no blanks). */
function directives(text: string): string[] {
  return text.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
}

function values(text: string, option: string): string[] {
  return directives(text)
    .filter((line) => line === option || line.startsWith(`${option}=`))
    .map((line) => line.slice(option.length + 1));
}

describe("renderDnsmasq: files dnsmasq accepts", () => {
  it("proxy mode: proxy ranges from routes, no real DHCP", async () => {
    const routes = JSON.stringify([
      { dst: "default", gateway: "10.0.0.1", dev: "eth0" },
      { dst: "10.0.0.0/24", dev: "eth0", protocol: "kernel", scope: "link" },
      { dst: "172.17.0.0/16", dev: "docker0" },
    ]);
    const text = renderDnsmasq({ proxyRanges: proxyRangesFromRoutes(routes), realDhcp: false });
    expect(await dnsmasqTest(text)).toMatch(/syntax check OK/);
    expect(values(text, "dhcp-range")).toEqual(["set:proxy,10.0.0.0,proxy,255.255.255.0", "set:proxy,172.17.0.0,proxy,255.255.0.0"]);
    expect(values(text, "port")).toEqual(["0"]);
    expect(values(text, "pxe-service")).toEqual([
      'tag:proxy,tag:!ipxe,X86PC,"LTSP BIOS loader",ltsp/undionly.kpxe',
      'tag:proxy,tag:!ipxe,X86-64_EFI,"LTSP UEFI loader",ltsp/snponly.efi',
      'tag:proxy,tag:ipxe,X86PC,"LTSP menu",ltsp/ltsp.ipxe',
      'tag:proxy,tag:ipxe,X86-64_EFI,"LTSP menu",ltsp/ltsp.ipxe',
      'tag:rpi,X86PC,"Raspberry Pi Boot   ",unused',
    ]);
  });

  it("proxy mode with the routes of this machine (ip -j route)", async () => {
    const { stdout } = await exec("ip", ["-j", "route"]);
    const ranges = proxyRangesFromRoutes(stdout);
    const text = renderDnsmasq({ proxyRanges: ranges, realDhcp: false });
    expect(await dnsmasqTest(text)).toMatch(/syntax check OK/);
    expect(values(text, "dhcp-range")).toHaveLength(ranges.length);
  });

  it("dual-NIC mode: real DHCP on 192.168.67.20-250 for 12h, no proxy", async () => {
    const text = renderDnsmasq();
    expect(await dnsmasqTest(text)).toMatch(/syntax check OK/);
    expect(values(text, "dhcp-range")).toEqual(["192.168.67.20,192.168.67.250,12h"]);
    expect(values(text, "dhcp-boot")).toEqual([
      "tag:!ipxe,tag:X86PC,ltsp/undionly.kpxe",
      "tag:!ipxe,tag:X86-64_EFI,ltsp/snponly.efi",
      "tag:ipxe,ltsp/ltsp.ipxe",
    ]);
    expect(values(text, "dhcp-option")).toEqual([`option:dns-server,${DEFAULT_DNS_SERVERS.join(",")}`]);
    expect(values(text, "enable-tftp")).toEqual([""]);
    expect(values(text, "tftp-root")).toEqual(["/srv/tftp"]);
    // Client architecture tags: 0 is BIOS, 7 and 9 are x86-64 UEFI.
    expect(values(text, "dhcp-match").filter((value) => value.includes("client-arch"))).toEqual([
      "set:X86PC,option:client-arch,0",
      "set:X86-64_EFI,option:client-arch,7",
      "set:X86-64_EFI,option:client-arch,9",
    ]);
    // iPXE is recognised by its option 175 features: http, menu, and pxe+bzimage or efi.
    expect(values(text, "dhcp-match").filter((value) => value.includes(",175,"))).toEqual([
      "set:ipxe-http,175,19",
      "set:ipxe-menu,175,39",
      "set:ipxe-pxe,175,33",
      "set:ipxe-bzimage,175,24",
      "set:ipxe-efi,175,36",
    ]);
    expect(values(text, "tag-if")).toEqual([
      "set:ipxe,tag:ipxe-http,tag:ipxe-menu,tag:ipxe-pxe,tag:ipxe-bzimage",
      "set:ipxe,tag:ipxe-http,tag:ipxe-menu,tag:ipxe-efi",
    ]);
    // Every PXE service is limited to proxy networks, except the Raspberry Pi one.
    for (const service of values(text, "pxe-service")) expect(service).toMatch(/^tag:(proxy|rpi),/);
  });

  it("DNS on, with the given servers after this server", async () => {
    const text = renderDnsmasq({ dns: true, dnsServers: ["1.1.1.1", "9.9.9.9"] });
    expect(await dnsmasqTest(text)).toMatch(/syntax check OK/);
    expect(values(text, "port")).toEqual([]);
    expect(values(text, "dhcp-option")).toEqual(["option:dns-server,0.0.0.0,1.1.1.1,9.9.9.9"]);
  });

  it("TFTP off", async () => {
    const text = renderDnsmasq({ tftp: false, tftpServer: "10.0.0.9" });
    expect(await dnsmasqTest(text)).toMatch(/syntax check OK/);
    expect(values(text, "enable-tftp")).toEqual([]);
    expect(values(text, "tftp-root")).toEqual([]);
    expect(values(text, "dhcp-boot")).toContain("tag:ipxe,ltsp/ltsp.ipxe,,10.0.0.9");
    expect(values(text, "pxe-service")).toContain('tag:proxy,tag:ipxe,X86PC,"LTSP menu",ltsp/ltsp.ipxe,10.0.0.9');
  });

  it("interfaces, bind-interfaces, custom range, logging, no Raspberry Pi, extra lines", async () => {
    const text = renderDnsmasq({
      interfaces: ["eth1", "enp3s0"],
      bindInterfaces: true,
      realDhcp: { start: "10.1.0.10", end: "10.1.0.99", lease: "infinite" },
      logDhcp: true,
      raspberryPi: false,
      tftpDir: "/var/lib/tftpboot",
      extraLines: ["dhcp-host=52:54:00:aa:bb:cc,10.1.0.50", "# a comment line"],
    });
    expect(await dnsmasqTest(text)).toMatch(/syntax check OK/);
    expect(values(text, "interface")).toEqual(["eth1", "enp3s0"]);
    expect(values(text, "bind-interfaces")).toEqual([""]);
    expect(values(text, "log-dhcp")).toEqual([""]);
    expect(values(text, "dhcp-range")).toEqual(["10.1.0.10,10.1.0.99,infinite"]);
    expect(values(text, "tftp-root")).toEqual(["/var/lib/tftpboot"]);
    expect(text).not.toContain("rpi");
    expect(values(text, "dhcp-host")).toEqual(["52:54:00:aa:bb:cc,10.1.0.50"]);
  });

  it("the check catches a directive dnsmasq does not accept", async () => {
    const text = renderDnsmasq({ extraLines: ["dhcp-range=not-an-address"] });
    await expect(dnsmasqTest(text)).rejects.toThrow(CommandError);
  });

  it("writes no comment after a directive, no trailing whitespace, and ends with a newline", () => {
    const text = renderDnsmasq({ dns: true, proxyRanges: [{ network: "10.0.0.0", netmask: "255.0.0.0" }], interfaces: ["eth0"] });
    expect(text.endsWith("\n")).toBe(true);
    for (const line of directives(text)) {
      expect(line).not.toMatch(/\s#/);
      expect(line).toBe(line.trim());
    }
    expect(renderDnsmasq({ dns: true })).toBe(renderDnsmasq({ dns: true }));
  });
});

describe("renderDnsmasq: rejected values", () => {
  const cases: Array<[string, DnsmasqOptions, RegExp]> = [
    ["a directive smuggled in an extra line", { extraLines: ["\ndhcp-boot=evil"] }, /dnsmasq\.extraLines\[0\] .*line break/],
    ["a directive after a newline in the TFTP dir", { tftpDir: "/srv/tftp\ndhcp-boot=evil" }, /dnsmasq\.tftpDir .*line break/],
    ["a comma in the TFTP dir", { tftpDir: "/srv/tftp,eth0" }, /dnsmasq\.tftpDir .*","/],
    ["a relative TFTP dir", { tftpDir: "srv/tftp" }, /dnsmasq\.tftpDir .*absolute/],
    ["a newline in a DNS server", { dnsServers: ["8.8.8.8\ndhcp-boot=evil"] }, /dnsmasq\.dnsServers\[0\] .*line break/],
    ["a DNS server list in one string", { dnsServers: ["8.8.8.8,1.1.1.1"] }, /dnsmasq\.dnsServers\[0\] .*IPv4/],
    ["an interface with a space", { interfaces: ["eth0 eth1"] }, /dnsmasq\.interfaces\[0\]/],
    ["a TFTP server with a comma", { tftpServer: "10.0.0.1,evil" }, /dnsmasq\.tftpServer/],
    ["an IPv6 TFTP server", { tftpServer: "fd00::1" }, /dnsmasq\.tftpServer .*IPv6/],
    ["a boot file with a comma", { bootFiles: { ipxe: "ltsp/ltsp.ipxe,evil" } }, /dnsmasq\.bootFiles\.ipxe .*","/],
    ["a boot file with a quote", { bootFiles: { bios: 'ltsp/"x.kpxe' } }, /dnsmasq\.bootFiles\.bios/],
    ["a boot file without an extension", { bootFiles: { bios: "ltsp/pxelinux" } }, /dnsmasq\.bootFiles\.bios .*"\.0"/],
    ["a bad lease time", { realDhcp: { lease: "12 hours" } }, /dnsmasq\.realDhcp\.lease/],
    ["a range start with a comma", { realDhcp: { start: "192.168.67.20,evil" } }, /dnsmasq\.realDhcp\.start/],
    ["a netmask with holes", { proxyRanges: [{ network: "10.0.0.0", netmask: "255.0.255.0" }] }, /dnsmasq\.proxyRanges\[0\]\.netmask .*contiguous/],
    ["bind-interfaces without interfaces", { bindInterfaces: true }, /dnsmasq\.bindInterfaces/],
  ];
  for (const [what, options, message] of cases) {
    it(`rejects ${what}`, () => {
      expect(() => renderDnsmasq(options)).toThrow(message);
    });
  }
});

describe("proxyRangesFromRoutes", () => {
  it("keeps IPv4 network routes and skips what upstream skips", () => {
    const routes = [
      { dst: "default", gateway: "192.168.1.1", dev: "eth0" },
      { dst: "192.168.1.0/24", dev: "eth0", protocol: "kernel", scope: "link", prefsrc: "192.168.1.5" },
      { dst: "10.0.2.2", dev: "eth0", scope: "link" },
      { dst: "127.0.0.1/8", dev: "lo" },
      { dst: "169.254.0.0/16", dev: "eth0", scope: "link" },
      { dst: "192.168.67.0/24", dev: "eth1", protocol: "kernel" },
      { type: "blackhole", dst: "10.99.0.0/16" },
      { type: "unreachable", dst: "10.98.0.0/16" },
      { dst: "fd00::/64", dev: "eth0" },
      { dst: "10.0.0.0/8", dev: "tun0" },
      { dst: "192.168.1.0/24", dev: "eth0", metric: 600 },
      { dst: "0.0.0.0/0", dev: "eth0" },
      { dst: "10.5.5.5/32", dev: "eth0" },
      "junk",
      null,
    ];
    expect(proxyRangesFromRoutes(routes)).toEqual([
      { network: "10.0.0.0", netmask: "255.0.0.0" },
      { network: "192.168.1.0", netmask: "255.255.255.0" },
    ]);
    expect(proxyRangesFromRoutes(JSON.stringify(routes), [])).toContainEqual({ network: "192.168.67.0", netmask: "255.255.255.0" });
  });

  it("explains input that is not ip -j route output", () => {
    expect(() => proxyRangesFromRoutes("default via 10.0.0.1 dev eth0")).toThrow(/ip -j route/);
    expect(() => proxyRangesFromRoutes({ dst: "x" })).toThrow(/not a JSON array/);
  });

  it("turns prefix lengths into netmasks", () => {
    expect([0, 1, 8, 12, 23, 24, 30, 32].map(prefixToNetmask)).toEqual([
      "0.0.0.0",
      "128.0.0.0",
      "255.0.0.0",
      "255.240.0.0",
      "255.255.254.0",
      "255.255.255.0",
      "255.255.255.252",
      "255.255.255.255",
    ]);
  });
});

describe("detectDnsServers", () => {
  it("reads nameserver lines, skipping loopback", () => {
    const text = "# generated\nsearch lan\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n  nameserver 9.9.9.9 # quad9\nnameserver fd00::1\nnameserver 10.0.0.1\n";
    expect(detectDnsServers(text)).toEqual(["10.0.0.1", "9.9.9.9"]);
  });

  it("falls back to 8.8.8.8 and 208.67.222.222", () => {
    expect(detectDnsServers("nameserver 127.0.0.53\noptions edns0\n")).toEqual(["8.8.8.8", "208.67.222.222"]);
    expect(detectDnsServers("")).toEqual(["8.8.8.8", "208.67.222.222"]);
  });

  it("prefers the DNS Servers of resolvectl status when given", () => {
    const status = [
      "Global",
      "       Protocols: +LLMNR +mDNS -DNSOverTLS DNSSEC=no/unsupported",
      "resolv.conf mode: stub",
      "",
      "Link 2 (eth0)",
      "Current DNS Server: 10.0.0.1",
      "       DNS Servers: 10.0.0.1 10.0.0.2",
      "                    fd00::1",
      "                    192.168.5.5",
      "        DNS Domain: lan",
      "     Fallback: 1.1.1.1",
    ].join("\n");
    expect(detectDnsServers("nameserver 127.0.0.53\n", status)).toEqual(["10.0.0.1", "10.0.0.2", "192.168.5.5"]);
    expect(detectDnsServers("nameserver 10.9.9.9\n", "Global\n  Protocols: +LLMNR\n")).toEqual(["10.9.9.9"]);
  });
});
