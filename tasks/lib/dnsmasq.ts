// The dnsmasq configuration for LTSP: DHCP (real and proxy), TFTP, and the boot file each kind of
// client gets. Pure functions: options in, file text out.
import {
  InvalidValueError,
  validateBootFileName,
  validateDnsmasqPath,
  validateDnsmasqRawLine,
  validateHost,
  validateInterfaceName,
  validateIpv4,
  validateLeaseTime,
  withoutTrailingSlash,
} from "./validate.ts";

/** One proxyDHCP range: dnsmasq offers boot information (not addresses) to clients on this network. */
export interface ProxyRange {
  /** Network address, e.g. "10.0.0.0". */
  network: string;
  /** Netmask in dotted form, e.g. "255.255.255.0". */
  netmask: string;
}

/** The address range dnsmasq leases from as a real DHCP server. */
export interface RealDhcpRange {
  /** First address. Default "192.168.67.20". */
  start?: string;
  /** Last address. Default "192.168.67.250". */
  end?: string;
  /** Lease time: seconds, a number with s/m/h/d/w, or "infinite". Default "12h". */
  lease?: string;
}

/** Boot files offered to clients, relative to the TFTP root. */
export interface BootFiles {
  /** PXE firmware on BIOS machines. Default "ltsp/undionly.kpxe". */
  bios?: string;
  /** PXE firmware on x86-64 UEFI machines. Default "ltsp/snponly.efi". */
  efi?: string;
  /** iPXE (after the first stage) on either. Default "ltsp/ltsp.ipxe". */
  ipxe?: string;
}

export interface DnsmasqOptions {
  /**
   * Serve DNS on port 53. Default false: `port=0`, so dnsmasq can't clash with systemd-resolved.
   * When true, "0.0.0.0" (this server) is put first in the DNS servers handed out.
   */
  dns?: boolean;
  /**
   * DNS servers handed to real-DHCP clients (proxyDHCP clients receive no DHCP options).
   * Default: DEFAULT_DNS_SERVERS; use `detectDnsServers()` to take the server's own.
   */
  dnsServers?: string[];
  /** Serve TFTP. Default true. */
  tftp?: boolean;
  /** The TFTP root. Default "/srv/tftp". */
  tftpDir?: string;
  /**
   * Lease addresses as a real DHCP server. Default true with 192.168.67.20-250, 12h: dnsmasq only
   * uses it on an interface with an address in that network (the two-NIC layout, internal NIC
   * 192.168.67.1). false: no real DHCP.
   */
  realDhcp?: boolean | RealDhcpRange;
  /**
   * Networks where another DHCP server leases addresses and dnsmasq only adds boot information.
   * Compute them from the server's routes with `proxyRangesFromRoutes()`. Default: none.
   */
  proxyRanges?: ProxyRange[];
  /** Tag Raspberry Pi clients by MAC vendor prefix and answer their firmware. Default true. */
  raspberryPi?: boolean;
  /** Only listen on these interfaces (e.g. ["eth1"]). Default: all. */
  interfaces?: string[];
  /** Bind only to the listened interfaces (dnsmasq `bind-interfaces`). Default false. */
  bindInterfaces?: boolean;
  /** Address or name of the TFTP server clients fetch boot files from, when it is not this server. */
  tftpServer?: string;
  /** Boot file names. */
  bootFiles?: BootFiles;
  /** Log every DHCP transaction in detail. Default false. */
  logDhcp?: boolean;
  /** Lines appended as they are (one directive each, no line breaks). */
  extraLines?: string[];
}

export const DEFAULT_TFTP_DIR = "/srv/tftp";
export const DEFAULT_DNS_SERVERS: readonly string[] = ["8.8.8.8", "208.67.222.222"];
export const DEFAULT_REAL_DHCP_RANGE: Readonly<Required<RealDhcpRange>> = {
  start: "192.168.67.20",
  end: "192.168.67.250",
  lease: "12h",
};
export const DEFAULT_BOOT_FILES: Readonly<Required<BootFiles>> = {
  bios: "ltsp/undionly.kpxe",
  efi: "ltsp/snponly.efi",
  ipxe: "ltsp/ltsp.ipxe",
};

/** MAC vendor prefixes of Raspberry Pi boards. */
export const RASPBERRY_PI_OUIS: readonly string[] = [
  "28:cd:c1",
  "2c:cf:67",
  "88:a2:9e",
  "b8:27:eb",
  "d8:3a:dd",
  "dc:a6:32",
  "e4:5f:01",
];

/** Networks never given a proxy range: loopback, link-local, and the two-NIC layout's own network. */
export const DEFAULT_PROXY_EXCLUDES: readonly string[] = ["127.0.0.1", "169.254.0.0", "192.168.67.0"];

/** The netmask of a prefix length, e.g. 24 → "255.255.255.0". */
export function prefixToNetmask(prefix: number): string {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) {
    throw new Error(`Invalid prefix length ${prefix}: it must be a whole number from 0 to 32.`);
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return [24, 16, 8, 0].map((shift) => (mask >>> shift) & 0xff).join(".");
}

function netmaskToPrefix(field: string, netmask: string): number {
  const value = netmask.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
  const prefix = 32 - Math.log2(2 ** 32 - value);
  if (!Number.isInteger(prefix) || prefixToNetmask(prefix) !== netmask) {
    throw new InvalidValueError(field, netmask, "is not a netmask (its one bits must be contiguous)", 'Write e.g. "255.255.255.0".');
  }
  return prefix;
}

/**
 * ProxyDHCP ranges from the output of `ip -j route` (JSON text or the parsed array): one per IPv4
 * network route. Skipped: the default route, host routes, routes that are not plain unicast
 * (blackhole, unreachable, …), non-IPv4 destinations, and the `exclude` networks.
 * Sorted by network, without duplicates.
 */
export function proxyRangesFromRoutes(
  routes: string | unknown,
  exclude: readonly string[] = DEFAULT_PROXY_EXCLUDES,
): ProxyRange[] {
  let parsed: unknown = routes;
  if (typeof routes === "string") {
    try {
      parsed = JSON.parse(routes);
    } catch (error) {
      throw new Error(`Could not read the route list as JSON (${(error as Error).message}). Pass the output of "ip -j route".`);
    }
  }
  if (!Array.isArray(parsed)) {
    throw new Error('The route list is not a JSON array. Pass the output of "ip -j route".');
  }
  const ranges = new Map<string, ProxyRange>();
  for (const route of parsed) {
    if (typeof route !== "object" || route === null) continue;
    const { dst, type } = route as { dst?: unknown; type?: unknown };
    if (typeof dst !== "string") continue;
    if (type !== undefined && type !== "unicast") continue;
    const match = /^([0-9.]+)\/([0-9]{1,2})$/.exec(dst);
    if (!match) continue; // "default", a host route without "/", an IPv6 destination
    const network = match[1] ?? "";
    const prefix = Number(match[2]);
    if (!/^(\d{1,3})(\.\d{1,3}){3}$/.test(network) || network.split(".").some((part) => Number(part) > 255)) continue;
    if (prefix === 0 || prefix >= 32) continue;
    if (exclude.includes(network)) continue;
    const range = { network, netmask: prefixToNetmask(prefix) };
    ranges.set(`${network}/${prefix}`, range);
  }
  return [...ranges.values()].sort((a, b) => compareIpv4(a.network, b.network) || compareIpv4(b.netmask, a.netmask));
}

function compareIpv4(a: string, b: string): number {
  const value = (ip: string) => ip.split(".").reduce((acc, part) => acc * 256 + Number(part), 0);
  return value(a) - value(b);
}

const NAMESERVER = /^\s*nameserver\s+([0-9]{1,3}(?:\.[0-9]{1,3}){3})\s*(?:#.*)?$/;
const IPV4_IN_TEXT = /(?<![0-9.])([0-9]{1,3}(?:\.[0-9]{1,3}){3})(?![0-9.])/g;

function usableDnsServer(address: string): boolean {
  const parts = address.split(".").map(Number);
  return parts.every((part) => part <= 255) && parts[0] !== 127 && address !== "0.0.0.0";
}

/**
 * The DNS servers to hand to clients: the IPv4 servers listed under "DNS Servers:" in
 * `resolvectl status` output when given, otherwise the IPv4 `nameserver` lines of resolv.conf,
 * skipping loopback (127.x, e.g. systemd-resolved's stub); DEFAULT_DNS_SERVERS if none is left.
 */
export function detectDnsServers(resolvConfText: string, resolvectlStatusText?: string): string[] {
  const found: string[] = [];
  const add = (address: string) => {
    if (usableDnsServer(address) && !found.includes(address)) found.push(address);
  };
  if (resolvectlStatusText !== undefined) {
    let inList = false;
    for (const line of resolvectlStatusText.split("\n")) {
      // "Label: value" starts a field; indented lines without a label continue the previous one.
      const label = /^\s*([^:\s][^:]*?):(?:\s|$)/.exec(line)?.[1];
      if (line.trim() === "") inList = false;
      else if (label !== undefined) inList = label === "DNS Servers";
      if (!inList) continue;
      const values = label !== undefined ? line.slice(line.indexOf(":") + 1) : line;
      for (const match of values.matchAll(IPV4_IN_TEXT)) add(match[1] ?? "");
    }
  }
  if (found.length === 0) {
    for (const line of resolvConfText.split("\n")) {
      const address = NAMESERVER.exec(line)?.[1];
      if (address !== undefined) add(address);
    }
  }
  return found.length > 0 ? found : [...DEFAULT_DNS_SERVERS];
}

function realDhcpRange(option: DnsmasqOptions["realDhcp"]): Required<RealDhcpRange> | undefined {
  if (option === false) return undefined;
  const given = option === true || option === undefined ? {} : option;
  return {
    start: validateIpv4("dnsmasq.realDhcp.start", given.start ?? DEFAULT_REAL_DHCP_RANGE.start),
    end: validateIpv4("dnsmasq.realDhcp.end", given.end ?? DEFAULT_REAL_DHCP_RANGE.end),
    lease: validateLeaseTime("dnsmasq.realDhcp.lease", given.lease ?? DEFAULT_REAL_DHCP_RANGE.lease),
  };
}

/** The text of the LTSP dnsmasq configuration file (e.g. /etc/dnsmasq.d/ltsp-dnsmasq.conf). */
export function renderDnsmasq(opts: DnsmasqOptions = {}): string {
  const dns = opts.dns ?? false;
  const tftp = opts.tftp ?? true;
  const tftpDir = withoutTrailingSlash(validateDnsmasqPath("dnsmasq.tftpDir", opts.tftpDir ?? DEFAULT_TFTP_DIR));
  const real = realDhcpRange(opts.realDhcp);
  const proxyRanges = (opts.proxyRanges ?? []).map((range, i) => {
    const network = validateIpv4(`dnsmasq.proxyRanges[${i}].network`, range.network);
    const netmask = validateIpv4(`dnsmasq.proxyRanges[${i}].netmask`, range.netmask);
    netmaskToPrefix(`dnsmasq.proxyRanges[${i}].netmask`, netmask);
    return { network, netmask };
  });
  const dnsServers = (opts.dnsServers ?? DEFAULT_DNS_SERVERS).map((server, i) => validateIpv4(`dnsmasq.dnsServers[${i}]`, server));
  if (dnsServers.length === 0 && !dns) {
    throw new InvalidValueError("dnsmasq.dnsServers", [], "is empty", "List at least one DNS server, or leave it unset for the defaults.");
  }
  const interfaces = (opts.interfaces ?? []).map((name, i) => validateInterfaceName(`dnsmasq.interfaces[${i}]`, name));
  const tftpServer = opts.tftpServer === undefined ? undefined : validateHost("dnsmasq.tftpServer", opts.tftpServer);
  if (tftpServer?.includes(":")) {
    throw new InvalidValueError("dnsmasq.tftpServer", tftpServer, "is an IPv6 address, but DHCPv4 boot offers need IPv4", "Give an IPv4 address or a host name.");
  }
  const files = {
    bios: validateBootFileName("dnsmasq.bootFiles.bios", opts.bootFiles?.bios ?? DEFAULT_BOOT_FILES.bios),
    efi: validateBootFileName("dnsmasq.bootFiles.efi", opts.bootFiles?.efi ?? DEFAULT_BOOT_FILES.efi),
    ipxe: validateBootFileName("dnsmasq.bootFiles.ipxe", opts.bootFiles?.ipxe ?? DEFAULT_BOOT_FILES.ipxe),
  };
  for (const [kind, file] of Object.entries(files)) {
    // dnsmasq appends ".0" to a proxyDHCP boot file name without a dot.
    if (!file.split("/").pop()?.includes(".")) {
      throw new InvalidValueError(`dnsmasq.bootFiles.${kind}`, file, "has no dot in its file name, so dnsmasq would append \".0\" to it", "Use the file's real name, with its extension.");
    }
  }
  const extraLines = (opts.extraLines ?? []).map((line, i) => validateDnsmasqRawLine(`dnsmasq.extraLines[${i}]`, line));
  const raspberryPi = opts.raspberryPi ?? true;

  const out: string[] = [];
  const blank = () => out.push("");
  out.push(
    "# dnsmasq configuration for LTSP clients, generated by ltsp-make.",
    "# It is rewritten on every build: put local settings in another file of /etc/dnsmasq.d.",
  );
  blank();

  if (dns) {
    out.push("# DNS is served on port 53.");
  } else {
    out.push("# No DNS service (port 0): dnsmasq only does DHCP and TFTP here.", "port=0");
  }
  blank();

  if (interfaces.length > 0) {
    out.push("# Only these interfaces.");
    for (const name of interfaces) out.push(`interface=${name}`);
    if (opts.bindInterfaces) out.push("bind-interfaces");
    blank();
  } else if (opts.bindInterfaces) {
    throw new InvalidValueError("dnsmasq.bindInterfaces", true, "needs dnsmasq.interfaces", "List the interfaces to bind to.");
  }

  if (tftp) {
    out.push("# TFTP service for the boot files.", "enable-tftp", `tftp-root=${tftpDir}`);
  } else {
    out.push("# No TFTP service: boot files come from another TFTP server.");
  }
  blank();

  if (opts.logDhcp) {
    out.push("# Log every DHCP transaction in detail.", "log-dhcp");
    blank();
  }

  if (real) {
    out.push(
      "# Leased addresses, used only on an interface whose address is in this network",
      "# (the internal NIC of a two-NIC server).",
      `dhcp-range=${real.start},${real.end},${real.lease}`,
    );
  } else {
    out.push("# No real DHCP: addresses come from another DHCP server.");
  }
  blank();

  if (proxyRanges.length > 0) {
    out.push("# Networks where another DHCP server leases addresses: add boot information only (proxyDHCP).");
    for (const range of proxyRanges) out.push(`dhcp-range=set:proxy,${range.network},proxy,${range.netmask}`);
  } else {
    out.push("# No proxyDHCP networks.");
  }
  blank();

  const servers = dns && !dnsServers.includes("0.0.0.0") ? ["0.0.0.0", ...dnsServers] : dnsServers;
  out.push(
    "# DNS servers for real-DHCP clients (0.0.0.0 is this server); proxyDHCP clients get no DHCP options.",
    `dhcp-option=option:dns-server,${servers.join(",")}`,
  );
  blank();

  out.push(
    "# Firmware type from the client architecture (DHCP option 93). 9 is a common misuse of 7.",
    "dhcp-match=set:X86PC,option:client-arch,0",
    "dhcp-match=set:X86-64_EFI,option:client-arch,7",
    "dhcp-match=set:X86-64_EFI,option:client-arch,9",
  );
  if (raspberryPi) {
    out.push("# Raspberry Pi boards, by MAC vendor prefix.");
    for (const oui of RASPBERRY_PI_OUIS) out.push(`dhcp-mac=set:rpi,${oui}:*:*:*`);
  }
  blank();

  out.push(
    "# iPXE that can run the LTSP menu (DHCP option 175 features): http and menu,",
    "# plus either pxe and bzimage (BIOS) or efi. Other iPXE builds are treated as plain PXE.",
    "dhcp-match=set:ipxe-http,175,19",
    "dhcp-match=set:ipxe-menu,175,39",
    "dhcp-match=set:ipxe-pxe,175,33",
    "dhcp-match=set:ipxe-bzimage,175,24",
    "dhcp-match=set:ipxe-efi,175,36",
    "tag-if=set:ipxe,tag:ipxe-http,tag:ipxe-menu,tag:ipxe-pxe,tag:ipxe-bzimage",
    "tag-if=set:ipxe,tag:ipxe-http,tag:ipxe-menu,tag:ipxe-efi",
  );
  blank();

  const server = tftpServer === undefined ? "" : `,${tftpServer}`;
  out.push(
    "# proxyDHCP boot offers, only on proxy networks: PXE services on real-DHCP networks break",
    "# UEFI netboot. File names are relative to the TFTP root.",
    `pxe-service=tag:proxy,tag:!ipxe,X86PC,"LTSP BIOS loader",${files.bios}${server}`,
    `pxe-service=tag:proxy,tag:!ipxe,X86-64_EFI,"LTSP UEFI loader",${files.efi}${server}`,
    `pxe-service=tag:proxy,tag:ipxe,X86PC,"LTSP menu",${files.ipxe}${server}`,
    `pxe-service=tag:proxy,tag:ipxe,X86-64_EFI,"LTSP menu",${files.ipxe}${server}`,
  );
  if (raspberryPi) {
    out.push(
      "# The Raspberry Pi firmware netboots only when offered this exact service name (three trailing spaces).",
      'pxe-service=tag:rpi,X86PC,"Raspberry Pi Boot   ",unused',
    );
  }
  blank();

  const bootServer = tftpServer === undefined ? "" : `,,${tftpServer}`;
  out.push(
    "# Boot file for real-DHCP clients; when several lines match, dnsmasq uses the last one.",
    `dhcp-boot=tag:!ipxe,tag:X86PC,${files.bios}${bootServer}`,
    `dhcp-boot=tag:!ipxe,tag:X86-64_EFI,${files.efi}${bootServer}`,
    `dhcp-boot=tag:ipxe,${files.ipxe}${bootServer}`,
  );

  if (extraLines.length > 0) {
    blank();
    out.push("# Extra settings from the configuration.", ...extraLines);
  }
  return `${out.join("\n")}\n`;
}
