// nbd-server configuration for serving LTSP images as read-only named exports. Pure: options in,
// file text out.
//
// nbd-server (3.10 and later) serves every export of one config on one port, chosen by name. When
// images must be on different ports (one nbd-server process per port), render one config per image
// with renderNbdServerConfigsPerPort.
import {
  InvalidValueError,
  validateAccountName,
  validateCidr,
  validateImageName,
  validateIpAddress,
  validateNbdExportName,
  validateNbdPath,
  validatePort,
  withoutTrailingSlash,
} from "./validate.ts";

/** One image served read-only. */
export interface NbdImageExport {
  /** Image name. */
  image: string;
  /** The name clients ask for (`nbdroot=SERVER:PORT/NAME`). Default: the image name. */
  exportName?: string;
  /** Absolute path of the served file. Default BASE_DIR/images/IMAGE.img. */
  file?: string;
  /** Allow list file for this export (see renderNbdAllowList). Default: the config's authFile. */
  authFile?: string;
  /** This image's port when each image has its own nbd-server process (per-port configs only). */
  port?: number;
}

export interface NbdServerOptions {
  /** The LTSP base directory holding images/. Default "/srv/ltsp". */
  baseDir?: string;
  /** The images to serve; written sorted by export name. */
  exports: NbdImageExport[];
  /** Local addresses to listen on. Default: all (nbd-server's own default). */
  listenAddresses?: string[];
  /** Port of the single nbd-server. Default 10809. */
  port?: number;
  /** Let clients list the exports (`nbd-client -l`). Default true. */
  allowList?: boolean;
  /** User and group nbd-server switches to after opening its port. Default: stay as started. */
  user?: string;
  group?: string;
  /** A directory of extra *.conf export files nbd-server reads too (single config only). */
  includeDir?: string;
  /** Allow list file for every export without its own. Default: none (everyone may connect). */
  authFile?: string;
}

/** One nbd-server config of the per-port layout. */
export interface NbdPortConfig {
  image: string;
  exportName: string;
  port: number;
  /** The config text for `nbd-server -C FILE`. */
  config: string;
}

export const DEFAULT_NBD_SERVER_PORT = 10809;
export const DEFAULT_NBD_BASE_DIR = "/srv/ltsp";
/** Private and link-local networks: where LTSP clients normally are. */
export const DEFAULT_NBD_ALLOW_LIST: readonly string[] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"];

interface CheckedExport {
  image: string;
  exportName: string;
  file: string;
  authFile: string | undefined;
  port: number | undefined;
}

interface CheckedGeneric {
  listen: string[];
  allowList: boolean;
  user: string | undefined;
  group: string | undefined;
}

function checkExports(opts: NbdServerOptions): CheckedExport[] {
  const baseDir = withoutTrailingSlash(validateNbdPath("nbd.baseDir", opts.baseDir ?? DEFAULT_NBD_BASE_DIR));
  const defaultAuth = opts.authFile === undefined ? undefined : validateNbdPath("nbd.authFile", opts.authFile);
  if (!Array.isArray(opts.exports)) throw new InvalidValueError("nbd.exports", opts.exports, "must be a list of images");
  const checked = opts.exports.map((entry, i) => {
    const image = validateImageName(`nbd.exports[${i}].image`, entry.image);
    const field = `nbd.exports.${image}`;
    return {
      image,
      exportName: validateNbdExportName(`${field}.exportName`, entry.exportName ?? image),
      file: validateNbdPath(`${field}.file`, entry.file ?? `${baseDir === "/" ? "" : baseDir}/images/${image}.img`),
      authFile: entry.authFile === undefined ? defaultAuth : validateNbdPath(`${field}.authFile`, entry.authFile),
      port: entry.port === undefined ? undefined : validatePort(`${field}.port`, entry.port),
    };
  });
  const seen = new Map<string, string>();
  for (const entry of checked) {
    const other = seen.get(entry.exportName);
    if (other !== undefined) {
      throw new InvalidValueError(
        `nbd.exports.${entry.image}.exportName`,
        entry.exportName,
        `is also the export name of image "${other}"`,
        "Give each image its own export name.",
      );
    }
    seen.set(entry.exportName, entry.image);
  }
  return checked.sort((a, b) => (a.exportName < b.exportName ? -1 : a.exportName > b.exportName ? 1 : 0));
}

function checkGeneric(opts: NbdServerOptions): CheckedGeneric {
  return {
    listen: (opts.listenAddresses ?? []).map((address, i) => validateIpAddress(`nbd.listenAddresses[${i}]`, address)),
    allowList: opts.allowList ?? true,
    user: opts.user === undefined ? undefined : validateAccountName("nbd.user", opts.user),
    group: opts.group === undefined ? undefined : validateAccountName("nbd.group", opts.group),
  };
}

function genericSection(generic: CheckedGeneric, port: number, includeDir?: string): string[] {
  const lines = ["[generic]", `port = ${port}`];
  if (generic.listen.length > 0) lines.push(`listenaddr = ${generic.listen.join(",")}`);
  lines.push(`allowlist = ${generic.allowList}`);
  if (generic.user !== undefined) lines.push(`user = ${generic.user}`);
  if (generic.group !== undefined) lines.push(`group = ${generic.group}`);
  if (includeDir !== undefined) lines.push(`includedir = ${includeDir}`);
  return lines;
}

function exportSection(entry: CheckedExport): string[] {
  const lines = [`# Image ${entry.image}.`, `[${entry.exportName}]`, `exportname = ${entry.file}`, "readonly = true"];
  if (entry.authFile !== undefined) lines.push(`authfile = ${entry.authFile}`);
  return lines;
}

const HEADER = [
  "# nbd-server configuration for LTSP images, generated by ltsp-make.",
  "# It is rewritten on every build. Restarting nbd-server disconnects running clients, and an",
  "# image file replaced while clients use it corrupts their reads: publish rebuilt images under",
  "# a new file and export name.",
];

/** One nbd-server config serving every image on one port, each as a named read-only export. */
export function renderNbdServerConfig(opts: NbdServerOptions): string {
  const exports = checkExports(opts);
  const generic = checkGeneric(opts);
  const port = validatePort("nbd.port", opts.port ?? DEFAULT_NBD_SERVER_PORT);
  const includeDir = opts.includeDir === undefined ? undefined : validateNbdPath("nbd.includeDir", opts.includeDir);
  if (exports.length === 0 && includeDir === undefined) {
    throw new InvalidValueError("nbd.exports", [], "is empty, and nbd-server refuses to start without exports", "List at least one image.");
  }
  const out = [...HEADER, "", ...genericSection(generic, port, includeDir)];
  for (const entry of exports) {
    if (entry.port !== undefined && entry.port !== port) {
      throw new InvalidValueError(
        `nbd.exports.${entry.image}.port`,
        entry.port,
        `differs from the server's port ${port}, but one config serves every export on one port`,
        "Use renderNbdServerConfigsPerPort for one port per image, or drop the per-image port.",
      );
    }
    out.push("", ...exportSection(entry));
  }
  return `${out.join("\n")}\n`;
}

/**
 * One nbd-server config per image, each on the image's own port (`port` is required on every
 * export), for running one nbd-server process per port. Sorted by export name.
 */
export function renderNbdServerConfigsPerPort(opts: NbdServerOptions): NbdPortConfig[] {
  const exports = checkExports(opts);
  const generic = checkGeneric(opts);
  if (opts.includeDir !== undefined) {
    throw new InvalidValueError("nbd.includeDir", opts.includeDir, "can't be used with one config per port", "Leave it unset.");
  }
  const ports = new Map<number, string>();
  return exports.map((entry) => {
    if (entry.port === undefined) {
      throw new InvalidValueError(`nbd.exports.${entry.image}.port`, undefined, "is required when each image has its own port", "Give every image a port.");
    }
    const other = ports.get(entry.port);
    if (other !== undefined) {
      throw new InvalidValueError(`nbd.exports.${entry.image}.port`, entry.port, `is also the port of image "${other}"`, "Give each image its own port.");
    }
    ports.set(entry.port, entry.image);
    const config = [...HEADER, "", ...genericSection(generic, entry.port), "", ...exportSection(entry)];
    return { image: entry.image, exportName: entry.exportName, port: entry.port, config: `${config.join("\n")}\n` };
  });
}

/** The text of an nbd-server allow list (authfile): one address or CIDR network per line. */
export function renderNbdAllowList(entries: readonly string[] = DEFAULT_NBD_ALLOW_LIST): string {
  const checked = entries.map((entry, i) => validateCidr(`nbd.allowList[${i}]`, entry));
  if (checked.length === 0) {
    throw new InvalidValueError("nbd.allowList", [], "is empty, which would let no client connect", "List the client networks.");
  }
  return `# Clients allowed to connect, generated by ltsp-make.\n${checked.join("\n")}\n`;
}
