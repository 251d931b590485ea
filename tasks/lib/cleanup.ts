// Remove what must not go into an image: human accounts and password hashes, host keys, logs,
// printers, mount tables. It changes the directory it is given, which in production is an
// overlay on the image source, so the source itself stays untouched.
import { readFile } from "node:fs/promises";
import type { Exec } from "../../src/exec.ts";
import { type FileOwnership, ImageRoot } from "./image-root.ts";
import { DEFAULT_ID_BOUNDS, type IdBounds, parseGroup, parseLoginDefs, removeHumanAccounts } from "./passwd.ts";

export interface CleanupOptions {
  /** Delete every line of etc/cups/printers.conf that is not a comment: clients find printers themselves. */
  printers: boolean;
  /**
   * Remove human accounts (UID in the server's UID_MIN..UID_MAX) and empty human groups, lock
   * every remaining account and drop all password hashes, root's included; remove the backups
   * passwd-, shadow- and the like. Clients get the server's accounts at boot.
   */
  users: boolean;
  /** The server's login.defs, which gives the UID/GID ranges of human accounts. */
  loginDefs: string;
  /**
   * Undo `ltsp dnsmasq --dns=1` on a chrootless server: when
   * etc/systemd/resolved.conf.d/ltsp.conf exists, remove it and point etc/resolv.conf back at
   * systemd-resolved's stub. An image without that file keeps its resolv.conf.
   */
  resolvConf: boolean;
  /**
   * The SSH host keys of the source (for a chrootless image, the server's own keys).
   * "remove" deletes each key pair; the exclude list (`etc/ssh/ssh_host_*`) keeps them out of
   * the image anyway, and clients get their keys at boot, so deleting is enough.
   * "regenerate" deletes them and generates new passwordless keys of the same types, for
   * images built without that exclude pattern. `true` means "remove"; `false` skips the step.
   */
  sshHostKeys: "remove" | "regenerate" | boolean;
  /**
   * The snakeoil TLS certificate and key (etc/ssl/private/ssl-cert-snakeoil.key and
   * etc/ssl/certs/ssl-cert-snakeoil.pem), which would otherwise be the source's.
   * "regenerate" makes a new self-signed pair (10 years, SHA-256, no passphrase), keeping the
   * old files' modes and owners; they are not excluded, and services may be configured to use
   * them. "remove" only deletes them. `true` means "regenerate"; `false` skips the step.
   */
  snakeoil: "regenerate" | "remove" | boolean;
  /** Empty every regular file directly in var/log; subdirectories are left to the exclude list. */
  logs: boolean;
  /** Empty etc/fstab: clients build theirs at boot from FSTAB_* settings. */
  fstab: boolean;
  /** Empty var/cache/debconf/passwords.dat, where debconf keeps answers to password questions. */
  debconfPasswords: boolean;
}

export const defaultCleanup: Readonly<CleanupOptions> = {
  printers: true,
  users: true,
  loginDefs: "/etc/login.defs",
  resolvConf: true,
  sshHostKeys: "remove",
  snakeoil: "regenerate",
  logs: true,
  fstab: true,
  debconfPasswords: true,
};

export interface CleanupSummary {
  /** One line per change, in the order made. */
  lines: string[];
  removedUsers: string[];
  removedGroups: string[];
  /** Paths relative to the root. */
  removedFiles: string[];
  emptiedFiles: string[];
  regeneratedFiles: string[];
}

const SSH_KEY_TYPES = ["dsa", "ecdsa", "ed25519", "rsa"] as const;
const ACCOUNT_FILES = ["passwd", "group", "shadow", "gshadow", "subuid", "subgid"];
const SNAKEOIL_KEY = "etc/ssl/private/ssl-cert-snakeoil.key";
const SNAKEOIL_CERT = "etc/ssl/certs/ssl-cert-snakeoil.pem";
const RESOLVED_DROP_IN = "etc/systemd/resolved.conf.d/ltsp.conf";
const RESOLVED_STUB = "../run/systemd/resolve/stub-resolv.conf";

/** Clean the image tree at `root` in place. Steps run in upstream's order; each can be switched off. */
export async function cleanupImage(
  root: string,
  options: Partial<CleanupOptions>,
  exec: Exec,
  log: (line: string) => void = () => {},
): Promise<CleanupSummary> {
  const opts: CleanupOptions = { ...defaultCleanup, ...options };
  const image = await ImageRoot.open(root);
  const summary: CleanupSummary = { lines: [], removedUsers: [], removedGroups: [], removedFiles: [], emptiedFiles: [], regeneratedFiles: [] };
  const note = (line: string) => {
    summary.lines.push(line);
    log(line);
  };
  const removed = (rel: string) => {
    summary.removedFiles.push(rel);
    note(`removed ${rel}`);
  };

  if (opts.printers) await cleanPrinters(image, note);
  if (opts.users) await cleanAccounts(image, opts.loginDefs, summary, note, removed);
  if (opts.resolvConf) await restoreResolvConf(image, note, removed);
  const sshMode = opts.sshHostKeys === true ? "remove" : opts.sshHostKeys;
  if (sshMode) await replaceSshHostKeys(image, sshMode, exec, summary, note, removed);
  const snakeoilMode = opts.snakeoil === true ? "regenerate" : opts.snakeoil;
  if (snakeoilMode) await replaceSnakeoil(image, snakeoilMode, exec, summary, note, removed);
  const emptied = (rel: string) => {
    summary.emptiedFiles.push(rel);
    note(`emptied ${rel}`);
  };
  if (opts.logs) {
    for (const name of (await image.list("var/log")).sort()) {
      const rel = `var/log/${name}`;
      const info = await image.lstat(rel);
      if (info?.isFile() && info.size > 0 && (await image.empty(rel))) emptied(rel);
    }
  }
  if (opts.fstab && (await emptyIfNotEmpty(image, "etc/fstab"))) emptied("etc/fstab");
  if (opts.debconfPasswords && (await emptyIfNotEmpty(image, "var/cache/debconf/passwords.dat"))) {
    emptied("var/cache/debconf/passwords.dat");
  }
  return summary;
}

async function cleanPrinters(image: ImageRoot, note: (line: string) => void): Promise<void> {
  const rel = "etc/cups/printers.conf";
  const text = await image.readText(rel);
  if (text === undefined) return;
  const lines = text.split("\n");
  if (text.endsWith("\n")) lines.pop();
  const comments = lines.filter((line) => line.startsWith("#"));
  if (comments.length === lines.length) return;
  await image.replaceFile(rel, comments.map((line) => `${line}\n`).join(""), ownership(await image.stat(rel), 0o600));
  note(`removed ${lines.length - comments.length} printer lines from ${rel}`);
}

async function readLoginDefs(file: string, note: (line: string) => void): Promise<IdBounds> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    note(`${file} does not exist; human accounts are UIDs/GIDs ${DEFAULT_ID_BOUNDS.uidMin}-${DEFAULT_ID_BOUNDS.uidMax}`);
    return { ...DEFAULT_ID_BOUNDS };
  }
  return parseLoginDefs(text, file);
}

async function cleanAccounts(
  image: ImageRoot,
  loginDefs: string,
  summary: CleanupSummary,
  note: (line: string) => void,
  removed: (rel: string) => void,
): Promise<void> {
  const bounds = await readLoginDefs(loginDefs, note);
  const passwd = await image.readText("etc/passwd");
  const group = await image.readText("etc/group");
  if (passwd === undefined || group === undefined) {
    throw new Error(
      `The image at ${image.root} has no etc/${passwd === undefined ? "passwd" : "group"}, so its accounts cannot be cleaned; ` +
        `check that this is the root of an installed system, or switch the "users" cleanup step off.`,
    );
  }
  const result = removeHumanAccounts({ passwd, group }, bounds);
  const oldShadow = await image.stat("etc/shadow");
  const shadowGroup = parseGroup(group, "etc/group").find((entry) => entry.name === "shadow");
  const secret: FileOwnership = { mode: 0o640, uid: oldShadow?.uid ?? 0, gid: shadowGroup?.gid ?? oldShadow?.gid ?? 0 };
  const plain: FileOwnership = { mode: 0o644, uid: 0, gid: 0 };
  await image.replaceFile("etc/passwd", result.passwd, plain);
  await image.replaceFile("etc/group", result.group, plain);
  await image.replaceFile("etc/shadow", result.shadow, secret);
  await image.replaceFile("etc/gshadow", result.gshadow, secret);
  summary.removedUsers.push(...result.removedUsers);
  summary.removedGroups.push(...result.removedGroups);
  note(
    `accounts: removed users [${result.removedUsers.join(" ")}], groups [${result.removedGroups.join(" ")}]; ` +
      `every password is now locked (UIDs ${bounds.uidMin}-${bounds.uidMax}, GIDs ${bounds.gidMin}-${bounds.gidMax} are human)`,
  );
  // Backups such as passwd- and shadow- still hold the old accounts and hashes.
  for (const name of (await image.list("etc")).sort()) {
    const chars = Array.from(name);
    if (!ACCOUNT_FILES.some((base) => chars.length === base.length + 1 && name.startsWith(base))) continue;
    const rel = `etc/${name}`;
    if (await image.remove(rel)) removed(rel);
    else note(`left ${rel} alone: it is a directory`);
  }
}

async function restoreResolvConf(image: ImageRoot, note: (line: string) => void, removed: (rel: string) => void): Promise<void> {
  if (!(await image.remove(RESOLVED_DROP_IN))) return;
  removed(RESOLVED_DROP_IN);
  await image.symlink("etc/resolv.conf", RESOLVED_STUB);
  note(`etc/resolv.conf -> ${RESOLVED_STUB}`);
}

async function replaceSshHostKeys(
  image: ImageRoot,
  mode: "remove" | "regenerate",
  exec: Exec,
  summary: CleanupSummary,
  note: (line: string) => void,
  removed: (rel: string) => void,
): Promise<void> {
  for (const type of SSH_KEY_TYPES) {
    const key = `etc/ssh/ssh_host_${type}_key`;
    const info = await image.lstat(key);
    if (!info || info.isDirectory()) continue;
    for (const rel of [key, `${key}.pub`]) {
      if (await image.remove(rel)) removed(rel);
    }
    if (mode !== "regenerate") continue;
    try {
      const target = await image.pathForNewFile(key);
      await image.pathForNewFile(`${key}.pub`);
      await exec("ssh-keygen", ["-q", "-N", "", "-t", type, "-f", target]);
      summary.regeneratedFiles.push(key, `${key}.pub`);
      note(`generated a new ${type} host key in ${key}`);
    } catch (error) {
      // The image gets no key of this type; clients generate or receive keys at boot.
      note(`could not generate a ${type} host key: ${(error as Error).message.split("\n")[0]}`);
    }
  }
}

async function replaceSnakeoil(
  image: ImageRoot,
  mode: "remove" | "regenerate",
  exec: Exec,
  summary: CleanupSummary,
  note: (line: string) => void,
  removed: (rel: string) => void,
): Promise<void> {
  const keyInfo = await image.lstat(SNAKEOIL_KEY);
  if (!keyInfo || keyInfo.isDirectory()) return;
  const keyOwner = ownership(await image.stat(SNAKEOIL_KEY), 0o600);
  const certOwner = ownership(await image.stat(SNAKEOIL_CERT), 0o644);
  for (const rel of [SNAKEOIL_KEY, SNAKEOIL_CERT]) {
    if (await image.remove(rel)) removed(rel);
  }
  if (mode !== "regenerate") return;
  await image.mkdir("etc/ssl/certs");
  const keyPath = await image.pathForNewFile(SNAKEOIL_KEY);
  const certPath = await image.pathForNewFile(SNAKEOIL_CERT);
  try {
    await exec("openssl", ["req", "-batch", "-new", "-x509", "-days", "3650", "-nodes", "-sha256", "-out", certPath, "-keyout", keyPath]);
  } catch (error) {
    throw new Error(
      `Could not generate a new snakeoil certificate for the image with openssl: ${(error as Error).message}\n` +
        `Install openssl on the server, or set the cleanup option snakeoil to "remove".`,
    );
  }
  await image.setOwnership(SNAKEOIL_KEY, keyOwner);
  await image.setOwnership(SNAKEOIL_CERT, certOwner);
  summary.regeneratedFiles.push(SNAKEOIL_KEY, SNAKEOIL_CERT);
  note(`generated a new snakeoil certificate in ${SNAKEOIL_CERT}`);
}

/**
 * Empty a file that has content. A link is replaced by an empty file when what it points to
 * inside the image has content; its target is never written.
 */
async function emptyIfNotEmpty(image: ImageRoot, rel: string): Promise<boolean> {
  const entry = await image.lstat(rel);
  if (entry?.isFile()) return entry.size > 0 && image.empty(rel);
  if (!entry?.isSymbolicLink()) return false;
  const target = await image.stat(rel);
  if (!target?.isFile() || target.size === 0) return false;
  await image.replaceFile(rel, "", ownership(target, 0o644));
  return true;
}

function ownership(info: FileOwnership | undefined, mode: number): FileOwnership {
  return info ? { mode: info.mode & 0o7777, uid: info.uid, gid: info.gid } : { mode, uid: 0, gid: 0 };
}
