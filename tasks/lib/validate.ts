// Checks for configuration values that end up inside generated server files (dnsmasq, iPXE,
// NFS exports, nbd-server). None of those formats can quote a value reliably, so a value that
// could change the meaning of the file is rejected with an error naming the field and the value.
import { isIPv6 } from "node:net";
import { imageNameProblem } from "./image-names.ts";

/** A configuration value that cannot be written safely into a generated file. */
export class InvalidValueError extends Error {
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly reason: string,
    readonly fix?: string,
  ) {
    super(`Invalid ${field} ${showValue(value)}: ${reason}.${fix ? ` ${fix}` : ""}`);
    this.name = "InvalidValueError";
  }
}

function showValue(value: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

function fail(field: string, value: unknown, reason: string, fix?: string): never {
  throw new InvalidValueError(field, value, reason, fix);
}

/** A readable name for one character, for error messages. */
export function describeCharacter(char: string): string {
  if (char === "\n" || char === "\r" || char === "\u2028" || char === "\u2029") return "a line break";
  if (char === "\t") return "a tab";
  if (char === " ") return "a space";
  const code = char.codePointAt(0) ?? 0;
  if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) {
    return `the control character U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
  }
  if (/\s/u.test(char)) return "whitespace";
  return JSON.stringify(char);
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/u;

/** The value as a string, or an error when it is not one. */
export function requireString(field: string, value: unknown): string {
  if (typeof value !== "string") fail(field, value, `must be a string, not ${value === null ? "null" : typeof value}`);
  return value;
}

/** A one-line string without control characters; `allowEmpty` lets "" through. */
export function validateLine(field: string, value: unknown, allowEmpty = false): string {
  const text = requireString(field, value);
  const bad = CONTROL.exec(text);
  if (bad) fail(field, text, `contains ${describeCharacter(bad[0])}`, "Write it on one line, without control characters.");
  if (!allowEmpty && text.trim() === "") fail(field, text, "is empty");
  return text;
}

/** Rejects the first character of `value` that `forbidden` matches, explaining why with `why`. */
function rejectCharacters(field: string, value: string, forbidden: RegExp, why: string, fix?: string): void {
  const bad = forbidden.exec(value);
  if (bad) fail(field, value, `contains ${describeCharacter(bad[0])}, ${why}`, fix);
}

// --- names, numbers and addresses ---------------------------------------------------------------

/** An image or chroot name: letters, digits, ".", "_", "+", "-" (it goes on kernel command lines). */
export function validateImageName(field: string, value: unknown): string {
  const name = requireString(field, value);
  const problem = imageNameProblem(name);
  if (problem !== undefined) {
    fail(field, name, problem, 'Image names may only use letters, digits, ".", "_", "+" and "-".');
  }
  return name;
}

/** A full MAC address (six hex pairs, ":" or "-" separated), returned lower-case with ":". */
export function validateMac(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (/[*?]/.test(text)) {
    fail(field, text, "has a wildcard, but only full MAC addresses can select a client", "Write all six bytes, e.g. 52:54:00:12:34:56.");
  }
  if (!/^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(text)) {
    fail(field, text, "is not a MAC address", "Write six hex bytes separated by colons, e.g. 52:54:00:12:34:56.");
  }
  return text.toLowerCase().replaceAll("-", ":");
}

/** A whole number in [min, max]. */
export function validateInteger(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isInteger(value)) fail(field, value, "must be a whole number");
  if (value < min || value > max) fail(field, value, `must be between ${min} and ${max}`);
  return value;
}

/** A TCP port, 1 to 65535. */
export function validatePort(field: string, value: unknown): number {
  return validateInteger(field, value, 1, 65535);
}

const IPV4 = /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;

/** A dotted-quad IPv4 address (no leading zeros, which some parsers read as octal). */
export function validateIpv4(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (!IPV4.test(text)) fail(field, text, "is not an IPv4 address", "Write it as four numbers 0-255, e.g. 192.168.67.1.");
  return text;
}

/** An IPv4 or IPv6 address (no zone index). */
export function validateIpAddress(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (IPV4.test(text) || (isIPv6(text) && !text.includes("%"))) return text;
  return fail(field, text, "is not an IP address");
}

/** A DNS host name (RFC 1123: dot-separated labels of letters, digits and inner hyphens). */
export function validateHostname(field: string, value: unknown): string {
  const text = validateLine(field, value);
  rejectCharacters(field, text, /[^A-Za-z0-9.-]/u, "and host names may only use letters, digits, hyphens and dots");
  if (text.length > 253) fail(field, text, "is longer than 253 characters");
  for (const label of text.split(".")) {
    if (label === "") fail(field, text, "has an empty label (two dots in a row, or a dot at an end)");
    if (label.length > 63) fail(field, text, `has the label "${label}", longer than 63 characters`);
    if (label.startsWith("-") || label.endsWith("-")) fail(field, text, `has the label "${label}", which starts or ends with a hyphen`);
  }
  return text;
}

/** A server given by IP address or host name. */
export function validateHost(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (IPV4.test(text) || (isIPv6(text) && !text.includes("%"))) return text;
  if (/^[0-9.]+$/.test(text)) fail(field, text, "is not a valid IPv4 address");
  return validateHostname(field, text);
}

/** An address or a network in CIDR form (`10.0.0.0/8`, `fd00::/8`). */
export function validateCidr(field: string, value: unknown): string {
  const text = validateLine(field, value);
  const [address = "", prefix, extra] = text.split("/");
  if (extra !== undefined) fail(field, text, 'has more than one "/"');
  const v4 = IPV4.test(address);
  if (!v4 && !(isIPv6(address) && !address.includes("%"))) {
    fail(field, text, "is not an IP address or CIDR network", "Write e.g. 192.168.0.0/16 or 10.0.0.5.");
  }
  if (prefix !== undefined) {
    const max = v4 ? 32 : 128;
    if (!/^[0-9]{1,3}$/.test(prefix) || Number(prefix) > max) fail(field, text, `has a prefix length that is not 0-${max}`);
  }
  return text;
}

// --- paths ----------------------------------------------------------------------------------------

/** An absolute path without control characters. */
export function validateAbsolutePath(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (!text.startsWith("/")) fail(field, text, 'is not an absolute path (it must start with "/")');
  return text;
}

/** The path without trailing slashes ("/" stays "/"). */
export function withoutTrailingSlash(path: string): string {
  return path.replace(/\/+$/u, "") || "/";
}

/**
 * A path that goes on a kernel command line (`nfsroot=SERVER:PATH`). The command line can't quote,
 * and nfsroot= takes NFS options after a comma, so only a plain set of characters is allowed.
 */
export function validateKernelPath(field: string, value: unknown): string {
  const text = validateAbsolutePath(field, value);
  rejectCharacters(
    field,
    text,
    /[^A-Za-z0-9._+@=/-]/u,
    'and a path on the kernel command line may only use letters, digits and "._+@=/-"',
    "Use a path without such characters (a symlink can give it a plain name).",
  );
  return text;
}

/** A path relative to the TFTP root (a boot file name in dnsmasq): no leading "/" needed, no separators. */
export function validateBootFileName(field: string, value: unknown): string {
  const text = validateLine(field, value);
  rejectCharacters(
    field,
    text,
    /[^A-Za-z0-9._+/-]/u,
    'and a boot file name may only use letters, digits and "._+/-"',
  );
  if (text.split("/").includes("..")) fail(field, text, 'contains "..", which TFTP servers refuse');
  return text;
}

// --- iPXE ---------------------------------------------------------------------------------------

// iPXE splits a script line on whitespace, with no quoting at all, then treats a word "||", "&&" or
// ";" as the end of a command, a word starting with "#" as the start of a comment, "${" as the
// start of a setting to expand, and a "\" at the end of a line as a continuation. A value made of
// words that do none of that is passed through literally (with runs of whitespace collapsed).
function checkIpxeWords(field: string, text: string): string[] {
  if (text.includes("${")) {
    fail(field, text, 'contains "${", which iPXE would expand as a setting', 'Remove the "${".');
  }
  const words = text.trim().split(/\s+/u).filter((word) => word !== "");
  for (const word of words) {
    if (word === "||" || word === "&&" || word === ";") {
      fail(field, text, `contains the word "${word}", which iPXE reads as the end of a command`, "Remove it.");
    }
    if (word.startsWith("#")) {
      fail(field, text, `has a word starting with "#" ("${word}"), which iPXE reads as the start of a comment`, 'Remove the "#".');
    }
    if (word.endsWith("\\")) {
      fail(field, text, `has a word ending with "\\" ("${word}"), which iPXE could read as a line continuation`, 'Remove the "\\".');
    }
  }
  return words;
}

/**
 * Text shown by iPXE (menu and item titles). iPXE has no quoting: the words are written as they
 * are and iPXE joins them with single spaces, so runs of whitespace collapse to one space.
 * Returns the text as it will show.
 */
export function validateIpxeText(field: string, value: unknown): string {
  const text = validateLine(field, value);
  const words = checkIpxeWords(field, text);
  if (words[0]?.startsWith("-")) {
    fail(field, text, 'starts with "-", which iPXE would read as an option', "Start it with another character.");
  }
  return words.join(" ");
}

/**
 * Kernel parameters passed through iPXE's `kernel` command. Besides iPXE's own syntax, a lone
 * double quote would make the kernel read the rest of the command line as one value.
 * Returns the parameters with whitespace collapsed, as iPXE passes them.
 */
export function validateKernelParameters(field: string, value: unknown): string {
  const text = validateLine(field, value, true);
  const words = checkIpxeWords(field, text);
  if ((text.match(/"/g) ?? []).length % 2 !== 0) {
    fail(field, text, "has an unbalanced double quote", 'Close the quote, e.g. param="a b".');
  }
  return words.join(" ");
}

/** An iPXE URL prefix for boot files, e.g. `tftp://10.0.0.9` or `http://boot.example/ltsp-files`. */
export function validateIpxeUrlBase(field: string, value: unknown): string {
  const text = validateLine(field, value);
  const match = /^(tftp|http|https):\/\/([^/]+)(\/.*)?$/.exec(text);
  if (!match) {
    fail(field, text, "is not an absolute tftp://, http:// or https:// URL", "Write e.g. tftp://10.0.0.9 (no trailing file name).");
  }
  const hostPort = match[2] ?? "";
  const bracketed = /^\[([^\]]+)\](?::([0-9]+))?$/.exec(hostPort);
  const plain = /^([^:]+)(?::([0-9]+))?$/.exec(hostPort);
  const host = bracketed?.[1] ?? plain?.[1];
  const port = bracketed?.[2] ?? plain?.[2];
  if (host === undefined) fail(field, text, "has no valid host");
  if (bracketed) validateIpAddress(field, host);
  else validateHost(field, host);
  if (port !== undefined) validatePort(field, Number(port));
  const path = match[3] ?? "";
  rejectCharacters(field, path, /[^A-Za-z0-9._+@=/%~-]/u, "which can't be part of a boot file URL here");
  return text.replace(/\/+$/u, "");
}

// --- dnsmasq --------------------------------------------------------------------------------------

/**
 * One field of a dnsmasq directive. dnsmasq splits values on ",", treats quotes and backslashes
 * specially and starts a comment at a "#" after whitespace, so none of those may appear.
 */
export function validateDnsmasqField(field: string, value: unknown): string {
  const text = validateLine(field, value);
  rejectCharacters(
    field,
    text,
    /[,="'\\#\s]/u,
    "which would change how dnsmasq splits or reads the directive",
    "Remove that character.",
  );
  return text;
}

/** An absolute path for a dnsmasq directive (e.g. tftp-root). */
export function validateDnsmasqPath(field: string, value: unknown): string {
  return validateDnsmasqField(field, validateAbsolutePath(field, value));
}

/** A dnsmasq lease time: seconds, or a number with s/m/h/d/w, or "infinite". */
export function validateLeaseTime(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (!/^([0-9]+[smhdw]?|infinite)$/.test(text)) {
    fail(field, text, "is not a dnsmasq lease time", 'Write e.g. "12h", "45m", "3600" or "infinite".');
  }
  return text;
}

/** A network interface name as dnsmasq takes it (a trailing "*" matches a prefix). */
export function validateInterfaceName(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (!/^[A-Za-z0-9_.@-]{1,15}\*?$/.test(text) || text.startsWith("-")) {
    fail(field, text, "is not a network interface name", "Write e.g. eth1 or enp3s0 (up to 15 characters).");
  }
  return text;
}

/** A line added to the dnsmasq file as is: one line, not empty. */
export function validateDnsmasqRawLine(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (/^\s/u.test(text)) fail(field, text, "starts with whitespace", "Start it with the option name.");
  return text;
}

// --- NFS exports ----------------------------------------------------------------------------------

/**
 * A path in /etc/exports. exportfs splits the line on whitespace, reads client options in
 * parentheses and treats quotes, backslashes and "#" specially.
 */
export function validateExportsPath(field: string, value: unknown): string {
  const text = validateAbsolutePath(field, value);
  rejectCharacters(
    field,
    text,
    /[\s()"'\\#]/u,
    "which exportfs would read as a separator, quote or option list",
    "Use a path without it (a bind mount or symlinked directory can give it a plain name).",
  );
  return text;
}

/** A client in /etc/exports: `*`, a host name or wildcard, an address, a network, or `@netgroup`. */
export function validateExportsClient(field: string, value: unknown): string {
  const text = validateLine(field, value);
  rejectCharacters(
    field,
    text,
    /[^A-Za-z0-9.:/*?@_-]/u,
    "and an export client may only be *, a host name or wildcard, an address, a network or @netgroup",
  );
  return text;
}

// --- nbd-server -----------------------------------------------------------------------------------

/**
 * An NBD export name. It is a section header in the nbd-server config (`[NAME]`), and the client's
 * initramfs passes it unquoted to nbd-client from `nbdroot=SERVER:PORT/NAME`.
 */
export function validateNbdExportName(field: string, value: unknown): string {
  const text = validateLine(field, value);
  rejectCharacters(field, text, /[[\]=]/u, "which nbd-server's config syntax reserves for section headers and options");
  rejectCharacters(
    field,
    text,
    /[^A-Za-z0-9._+/-]/u,
    'and an NBD export name on the kernel command line may only use letters, digits and "._+/-"',
  );
  if (text.startsWith("-")) fail(field, text, 'starts with "-", which nbd-client would read as an option');
  if (text.toLowerCase() === "generic") fail(field, text, 'is the name of nbd-server\'s [generic] section', "Choose another export name.");
  return text;
}

/** A string option value in nbd-server's config: no escapes, no surrounding whitespace. */
export function validateNbdValue(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (text !== text.trim()) fail(field, text, "has whitespace at its start or end, which nbd-server would not keep");
  rejectCharacters(field, text, /\\/u, "which nbd-server's config reads as an escape");
  return text;
}

/** An absolute path as an nbd-server option value. */
export function validateNbdPath(field: string, value: unknown): string {
  return validateNbdValue(field, validateAbsolutePath(field, value));
}

/** A user or group name (for nbd-server's `user`/`group`). */
export function validateAccountName(field: string, value: unknown): string {
  const text = validateLine(field, value);
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*\$?$/.test(text) || text.length > 32) {
    fail(field, text, "is not a user or group name");
  }
  return text;
}
