// The iPXE boot menu (TFTP_DIR/ltsp/ltsp.ipxe): one entry per image and chroot, per-client
// settings by MAC address, and the kernel command line each entry boots with. Pure: options in,
// script text out.
//
// iPXE scripts have no quoting. Every value written here is checked by validate.ts so that it can't
// end a command, start a comment, expand a setting or continue a line.
import {
  InvalidValueError,
  validateHostname,
  validateImageName,
  validateInteger,
  validateIpAddress,
  validateIpv4,
  validateIpxeText,
  validateIpxeUrlBase,
  validateKernelParameters,
  validateKernelPath,
  validateMac,
  validateNbdExportName,
  validatePort,
  withoutTrailingSlash,
} from "./validate.ts";

/** Boot an image file over NFS: the client mounts BASE_DIR and loop-mounts images/NAME.img. */
export interface NfsBoot {
  method: "nfs";
  /** NFS server (IPv4 address). Default: the menu's server (the one that served the menu). */
  server?: string;
  /** The directory exported on that server that holds images/. Default: the menu's baseDir. */
  baseDir?: string;
}

/**
 * Boot an image served by nbd-server as a named export: the client's initramfs connects
 * /dev/nbd0 to it and mounts the squashfs on it directly. The image needs the nbd-client
 * package, whose initramfs hook adds the NBD client.
 */
export interface NbdBoot {
  method: "nbd";
  /** NBD server (IP address). Default: the menu's server (the one that served the menu). */
  server?: string;
  /** NBD server port. Default 10809; set it when each image has its own nbd-server process and port. */
  port?: number;
  /** Export name (the nbd-server section name). Default: the image name. */
  exportName?: string;
}

export type ImageBoot = NfsBoot | NbdBoot;

/** An exported image (BASE_DIR/images/NAME.img) in the menu. Its menu entry id is NAME. */
export interface IpxeImage {
  name: string;
  /** Menu text. Default "NAME.img". Runs of whitespace show as one space. */
  title?: string;
  /** How clients reach the image. Default `{ method: "nfs" }`. */
  boot?: ImageBoot;
  /** Where vmlinuz, initrd.img and ltsp.img come from, e.g. "tftp://10.0.0.9". Default: the menu's tftpBase. */
  tftpBase?: string;
}

/** A chroot (BASE_DIR/NAME/) booted as an NFS root. Its menu entry id is r_NAME. */
export interface IpxeChroot {
  name: string;
  /** Menu text. Default "NAME". */
  title?: string;
  /** NFS server (IPv4 address). Default: the menu's server. */
  server?: string;
  /** The directory on that server holding the chroot. Default: the menu's baseDir. */
  baseDir?: string;
  /** Where vmlinuz, initrd.img and ltsp.img come from. Default: the menu's tftpBase. */
  tftpBase?: string;
}

/** Settings for one client, selected by its MAC address. */
export interface IpxeClient {
  /** The client's full MAC address, e.g. "52:54:00:12:34:56" (any case). */
  mac: string;
  /** Entry id booted by default: an image NAME, a chroot r_NAME, or memtest/config/shell/disk/exit. */
  defaultImage?: string;
  /** Kernel parameters for this client; they replace the global ones. */
  kernelParameters?: string;
  /** Menu timeout in ms for this client (0 waits forever, -1 boots the default entry without a menu). */
  timeout?: number;
  /** Host name shown in the menu title. */
  hostname?: string;
}

export interface IpxeMenuOptions {
  /** The LTSP base directory on the NFS server. Default "/srv/ltsp". */
  baseDir?: string;
  /** Exported images; listed sorted by name. */
  images?: IpxeImage[];
  /** Chroots booted as NFS roots; listed sorted by name, after the images. */
  chroots?: IpxeChroot[];
  /**
   * Entry id booted by default. When unset, "x86_64" on 64-bit CPUs and "x86_32" otherwise;
   * a DHCP root-path names the default entry too, but this setting wins over it.
   */
  defaultImage?: string;
  /** Menu timeout in ms. Default 5000; 0 waits forever; -1 boots the default entry without a menu. */
  timeout?: number;
  /** Kernel parameters for every client (a client's own replace them). */
  kernelParameters?: string;
  /** Per-client settings. */
  clients?: IpxeClient[];
  /** Offer the memory test (memtest.0 on BIOS, memtest.efi on UEFI, next to the menu). Default true. */
  memtest?: boolean;
  /**
   * The server address clients use for NFS/NBD when an entry names none. Default: decided by
   * the client at boot, the proxyDHCP server that answered or else DHCP's next-server.
   */
  server?: string;
  /** Default URL prefix for kernels and initrds, e.g. "tftp://10.0.0.9". Default: the menu's own server. */
  tftpBase?: string;
  /** Which MAC selects a client's settings: the booting NIC ("mac", default) or the first NIC ("net0/mac"). */
  clientMac?: "mac" | "net0/mac";
  /** Menu title. Default "LTSP boot menu". */
  title?: string;
}

export const DEFAULT_BASE_DIR = "/srv/ltsp";
export const DEFAULT_MENU_TIMEOUT_MS = 5000;
export const DEFAULT_NBD_PORT = 10809;
const MAX_TIMEOUT_MS = 24 * 60 * 60 * 1000;

/** Menu entries that are not images. Their ids double as script labels. */
const FIXED_ENTRIES = ["memtest", "config", "shell", "disk", "exit"] as const;
/** Script labels used internally; an image can't share them. */
const INTERNAL_LABELS = ["menu", "cancel", "failed"] as const;

/** What a menu entry boots, after validation. */
interface BootEntry {
  id: string;
  title: string;
  /** Kernel arguments of the boot method (root=…). */
  methodArgs: string;
  /** Directory holding vmlinuz and initrd.img, and the ltsp.img location. */
  kernel: string;
  initrd: string;
  ltspImg: string;
}

function ipv4OrDefault(field: string, value: string | undefined, fallback: string): string {
  return value === undefined ? fallback : validateIpv4(field, value);
}

/**
 * The `nbdroot=` value for Debian's nbd-client initramfs script (local-top/nbd, nbd-client 3.24).
 * That script reads `HOST:PORT/NAME` as host, port and export name; it needs a name, and it takes
 * `HOST:/NAME` as the name "/NAME" on the default port, so the explicit-port form is the one that
 * gives both the right name and the right port. An IPv6 host goes in brackets: `[HOST]:PORT/NAME`.
 */
export function nbdRootArgument(server: string, port: number, exportName: string): string {
  const host = server.includes(":") ? `[${server}]` : server;
  return `${host}:${port}/${exportName}`;
}

function fileUrls(base: string, name: string): Pick<BootEntry, "kernel" | "initrd" | "ltspImg"> {
  return {
    kernel: `${base}/ltsp/${name}/vmlinuz`,
    initrd: `${base}/ltsp/${name}/initrd.img`,
    ltspImg: `${base}/ltsp/ltsp.img`,
  };
}

function imageEntry(image: IpxeImage, index: number, defaults: { baseDir: string; tftpBase: string }): BootEntry {
  const name = validateImageName(`ipxe.images[${index}].name`, image.name);
  const field = `ipxe.images.${name}`;
  const title = image.title === undefined ? `${name}.img` : validateIpxeText(`${field}.title`, image.title);
  const base = image.tftpBase === undefined ? defaults.tftpBase : validateIpxeUrlBase(`${field}.tftpBase`, image.tftpBase);
  const boot: ImageBoot = image.boot ?? { method: "nfs" };
  let methodArgs: string;
  if (boot.method === "nfs") {
    const server = ipv4OrDefault(`${field}.boot.server`, boot.server, "${srv}");
    const baseDir = boot.baseDir === undefined ? defaults.baseDir : withoutTrailingSlash(validateKernelPath(`${field}.boot.baseDir`, boot.baseDir));
    methodArgs = `root=/dev/nfs nfsroot=${server}:${baseDir} ltsp.image=images/${name}.img loop.max_part=9`;
  } else if (boot.method === "nbd") {
    const server = boot.server === undefined ? "${srv}" : validateIpAddress(`${field}.boot.server`, boot.server);
    const port = boot.port === undefined ? DEFAULT_NBD_PORT : validatePort(`${field}.boot.port`, boot.port);
    const exportName = validateNbdExportName(`${field}.boot.exportName`, boot.exportName ?? name);
    methodArgs = `root=/dev/nbd0 nbdroot=${nbdRootArgument(server, port, exportName)}`;
  } else {
    throw new InvalidValueError(`${field}.boot.method`, (boot as { method?: unknown }).method, 'is not a boot method', 'Use "nfs" or "nbd".');
  }
  return { id: name, title, methodArgs, ...fileUrls(base, name) };
}

function chrootEntry(chroot: IpxeChroot, index: number, defaults: { baseDir: string; tftpBase: string }): BootEntry {
  const name = validateImageName(`ipxe.chroots[${index}].name`, chroot.name);
  const field = `ipxe.chroots.${name}`;
  const title = chroot.title === undefined ? name : validateIpxeText(`${field}.title`, chroot.title);
  const base = chroot.tftpBase === undefined ? defaults.tftpBase : validateIpxeUrlBase(`${field}.tftpBase`, chroot.tftpBase);
  const server = ipv4OrDefault(`${field}.server`, chroot.server, "${srv}");
  const baseDir = chroot.baseDir === undefined ? defaults.baseDir : withoutTrailingSlash(validateKernelPath(`${field}.baseDir`, chroot.baseDir));
  const root = `${baseDir === "/" ? "" : baseDir}/${name}`;
  return { id: `r_${name}`, title, methodArgs: `root=/dev/nfs nfsroot=${server}:${root}`, ...fileUrls(base, name) };
}

function validateTimeout(field: string, value: unknown): number {
  return validateInteger(field, value, -1, MAX_TIMEOUT_MS);
}

function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

interface ClientSection {
  mac: string;
  label: string;
  lines: string[];
}

/** The text of the iPXE menu script (TFTP_DIR/ltsp/ltsp.ipxe). */
export function renderIpxeMenu(opts: IpxeMenuOptions = {}): string {
  const baseDir = withoutTrailingSlash(validateKernelPath("ipxe.baseDir", opts.baseDir ?? DEFAULT_BASE_DIR));
  const tftpBase = opts.tftpBase === undefined ? "" : validateIpxeUrlBase("ipxe.tftpBase", opts.tftpBase);
  const defaults = { baseDir, tftpBase };
  const images = (opts.images ?? []).map((image, i) => imageEntry(image, i, defaults)).sort(byId);
  const chroots = (opts.chroots ?? []).map((chroot, i) => chrootEntry(chroot, i, defaults)).sort(byId);
  const entries = [...images, ...chroots];
  const memtest = opts.memtest ?? true;
  const fixed = FIXED_ENTRIES.filter((id) => memtest || id !== "memtest");
  const server = opts.server === undefined ? undefined : validateIpv4("ipxe.server", opts.server);
  const kernelParameters = opts.kernelParameters === undefined ? "" : validateKernelParameters("ipxe.kernelParameters", opts.kernelParameters);
  const timeout = opts.timeout === undefined ? DEFAULT_MENU_TIMEOUT_MS : validateTimeout("ipxe.timeout", opts.timeout);
  const title = validateIpxeText("ipxe.title", opts.title ?? "LTSP boot menu");
  const macVariable = opts.clientMac ?? "mac";
  if (macVariable !== "mac" && macVariable !== "net0/mac") {
    throw new InvalidValueError("ipxe.clientMac", macVariable, "is not a MAC source", 'Use "mac" or "net0/mac".');
  }

  const used = new Map<string, string>();
  const claim = (label: string, owner: string) => {
    const previous = used.get(label);
    if (previous !== undefined) {
      throw new Error(`The iPXE menu has two entries named "${label}" (${previous} and ${owner}). Rename one of them.`);
    }
    used.set(label, owner);
  };
  for (const id of [...FIXED_ENTRIES, ...INTERNAL_LABELS]) claim(id, `the menu's built-in "${id}"`);
  for (const entry of images) claim(entry.id, `image "${entry.id}"`);
  for (const entry of chroots) claim(entry.id, `chroot "${entry.id.slice(2)}"`);

  const entryIds = new Set([...entries.map((entry) => entry.id), ...fixed]);
  const checkDefault = (field: string, value: unknown): string => {
    if (typeof value !== "string" || !entryIds.has(value)) {
      throw new InvalidValueError(
        field,
        value,
        "is not an entry of the menu",
        `Use one of: ${[...entryIds].join(", ")} (chroots are r_NAME).`,
      );
    }
    return value;
  };
  const defaultImage = opts.defaultImage === undefined ? undefined : checkDefault("ipxe.defaultImage", opts.defaultImage);

  const clients: ClientSection[] = [];
  (opts.clients ?? []).forEach((client, i) => {
    const mac = validateMac(`ipxe.clients[${i}].mac`, client.mac);
    const field = `ipxe.clients.${mac}`;
    const label = `mac-${mac.replaceAll(":", "-")}`;
    claim(label, `client ${mac}`);
    const lines: string[] = [];
    if (client.hostname !== undefined) lines.push(`set hostname ${validateHostname(`${field}.hostname`, client.hostname)}`);
    if (client.defaultImage !== undefined) lines.push(`set img ${checkDefault(`${field}.defaultImage`, client.defaultImage)}`);
    if (client.kernelParameters !== undefined) {
      const parameters = validateKernelParameters(`${field}.kernelParameters`, client.kernelParameters);
      lines.push(parameters === "" ? "clear cmdline_client" : `set cmdline_client ${parameters}`);
    }
    if (client.timeout !== undefined) lines.push(`set menu-timeout ${validateTimeout(`${field}.timeout`, client.timeout)}`);
    if (lines.length > 0) clients.push({ mac, label, lines });
  });
  clients.sort((a, b) => (a.mac < b.mac ? -1 : a.mac > b.mac ? 1 : 0));

  const out: string[] = [];
  const blank = () => out.push("");
  out.push("#!ipxe", "# LTSP boot menu, generated by ltsp-make. It is rewritten on every build.");
  blank();

  out.push(
    "# Default entry: by CPU (64-bit or not); a DHCP root-path names it instead; the configured default wins.",
    "cpuid --ext 29 && set img x86_64 || set img x86_32",
    "isset ${root-path} && set img ${root-path} ||",
  );
  if (defaultImage !== undefined) out.push(`set img ${defaultImage}`);
  blank();

  if (server === undefined) {
    out.push(
      "# Server for NFS and NBD: the proxyDHCP server that answered, otherwise DHCP's next-server.",
      "isset ${proxydhcp/dhcp-server} && set srv ${proxydhcp/dhcp-server} || set srv ${next-server}",
    );
  } else {
    out.push("# Server for NFS and NBD.", `set srv ${server}`);
  }
  if (kernelParameters !== "") out.push("# Kernel parameters for every client.", `set cmdline_client ${kernelParameters}`);
  blank();

  if (clients.length > 0) {
    out.push("# Settings of single clients, by MAC address.", `goto mac-\${${macVariable}:hexhyp} || goto menu`);
    for (const client of clients) {
      blank();
      out.push(`:${client.label}`, ...client.lines, "goto menu");
    }
    blank();
  }

  out.push(
    ":menu",
    `isset \${menu-timeout} || set menu-timeout ${timeout}`,
    "# A timeout of -1 boots the default entry without showing the menu (if that entry exists).",
    "iseq x${menu-timeout} x-1 && goto ${img} ||",
    `menu ${title} - \${hostname} \${srv} || goto \${img}`,
  );
  if (entries.length > 0) out.push("item --gap Boot in LTSP mode:");
  entries.forEach((entry, i) => {
    // Number keys for the first ten entries: 1 … 9, then 0.
    const key = i < 10 ? `--key ${(i + 1) % 10} ` : "";
    out.push(`item ${key}${entry.id} ${entry.title}`);
  });
  if (entries.length > 0) out.push("item");
  out.push("item --gap Other options:");
  if (memtest) out.push("item --key m memtest Memory test");
  out.push(
    "item --key c config iPXE settings",
    "item --key s shell iPXE shell",
    "item --key d disk Boot from the first local disk",
    "item",
    "item --key x exit Exit iPXE and let the firmware try the next boot device",
    "choose --timeout ${menu-timeout} --default ${img} img || goto cancel",
    "goto ${img} || goto menu",
  );

  for (const entry of entries) {
    blank();
    // BOOTIF names the boot NIC for the initramfs. The initrd= arguments name the initrds
    // loaded below; EFI kernels need them on the command line.
    const args = ["initrd=ltsp.img", "initrd=initrd.img", "BOOTIF=01-${mac:hexhyp}", entry.methodArgs, "${cmdline_client}"];
    out.push(
      `:${entry.id}`,
      `kernel ${entry.kernel} ${args.join(" ")} || goto failed`,
      `initrd ${entry.ltspImg} || goto failed`,
      `initrd ${entry.initrd} || goto failed`,
      "boot || goto failed",
    );
  }

  if (memtest) {
    blank();
    out.push(
      ":memtest",
      "iseq ${platform} pcbios && set memtest_file memtest.0 || set memtest_file memtest.efi",
      "kernel ${memtest_file} && boot || echo The memory test could not be loaded, or it has ended.",
      "goto menu",
    );
  }
  blank();
  out.push(
    ":config",
    "config ||",
    "goto menu",
    "",
    ":shell",
    "echo Type exit to return to the menu.",
    "shell ||",
    "goto menu",
    "",
    ":disk",
    "sanboot --no-describe --drive 0x80 || goto failed",
    "",
    ":exit",
    "# Fail, so the firmware tries its next boot device.",
    "exit 1",
    "",
    ":cancel",
    "echo Menu cancelled, opening the iPXE shell.",
    "goto shell",
    "",
    ":failed",
    "echo Booting ${img} failed, opening the iPXE shell.",
    "goto shell",
  );
  return `${out.join("\n")}\n`;
}
