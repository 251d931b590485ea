// The add-on initrd ltsp.img: LTSP's client code, the hook that makes initramfs-tools run it, and
// the server's /etc/ltsp, users, groups, ssh host keys and epoptes certificate, as an uncompressed
// newc cpio that the boot loader loads next to the distribution's own initrd.
import type { Stats } from "node:fs";
import { lstat, readdir, readFile, readlink, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { Exec } from "../../src/exec.ts";
import type { InputSpec } from "../../src/types.ts";
import { writeCpioArchive } from "./cpio.ts";
import type { CpioEntry, CpioWriteResult } from "./cpio.ts";
import { existsNoFollow, isDirectory } from "./paths.ts";

export interface LtspImgOptions {
  /** Where Debian's `ltsp` package installs the LTSP code (default `/usr/share/ltsp`). */
  ltspShareDir?: string;
  /** The server's configuration root (default `/etc`). */
  etcDir?: string;
  /** Put `<etc>/epoptes/server.crt` in as `etc/ltsp/epoptes.crt` (upstream's IGNORE_EPOPTES≠1; default true). */
  includeEpoptes?: boolean;
  /** Modification time of every entry, in seconds since the epoch (default 0). */
  mtime?: number;
}

/** The parts of the LTSP code that clients run; `server/` stays on the server. */
const CLIENT_CODE = ["client", "common", "ltsp"] as const;

/** initramfs-tools sources `conf/conf.d/*` early; this link is how LTSP hooks into any such initrd. */
export const HOOK_LINK = "conf/conf.d/00-ltsp.conf";
/** Relative, because the link is resolved inside the initramfs (and busybox has no `ln -r`). */
export const HOOK_LINK_TARGET = "../../usr/share/ltsp/client/initrd-bottom/initramfs-tools/ltsp-hook.conf";
const HOOK_FILE = "client/initrd-bottom/initramfs-tools/ltsp-hook.conf";

const SSH_HOST_KEY = /^ssh_host_.*_key\.pub$/;
const SSH_HOST_KEY_GLOB = "ssh_host_*_key.pub";
/** Upstream writes the archive into its staging tree and leaves out every entry of that name. */
const EXCLUDED_NAME = "ltsp.img";

const DIRECTORY_MODE = 0o755;
const GENERATED_FILE_MODE = 0o644;
/** Permission bits kept from sources: no setuid or setgid in an initrd. */
const PERMISSION_MASK = 0o1777;

interface ResolvedOptions {
  shareDir: string;
  etcDir: string;
  includeEpoptes: boolean;
  mtime: number;
}

function resolve(opts: LtspImgOptions): ResolvedOptions {
  return {
    shareDir: opts.ltspShareDir ?? "/usr/share/ltsp",
    etcDir: opts.etcDir ?? "/etc",
    includeEpoptes: opts.includeEpoptes ?? true,
    mtime: opts.mtime ?? 0,
  };
}

/** A directory as a tree input; when it is missing, the path itself, so creating it makes the task stale. */
function treeOrMissing(path: string): InputSpec {
  return isDirectory(path) ? { tree: path } : { file: path };
}

/**
 * Exactly what ltsp.img is made of, for fingerprinting. Files that an override in `<etc>/ltsp`
 * replaces are left out, so e.g. adding a user changes `<etc>/passwd` and nothing else; adding or
 * removing an override changes the `<etc>/ltsp` tree, which is an input itself.
 */
export function ltspImgInputs(opts: LtspImgOptions = {}): InputSpec[] {
  const o = resolve(opts);
  const etcLtsp = join(o.etcDir, "ltsp");
  const provided = (name: string) => isDirectory(etcLtsp) && existsNoFollow(join(etcLtsp, name));
  const inputs: InputSpec[] = [
    treeOrMissing(join(o.shareDir, "client")),
    treeOrMissing(join(o.shareDir, "common")),
    { file: join(o.shareDir, "ltsp") },
    treeOrMissing(etcLtsp),
  ];
  if (!provided("ssh_known_hosts")) inputs.push({ glob: SSH_HOST_KEY_GLOB, cwd: join(o.etcDir, "ssh") });
  if (!provided("passwd")) inputs.push({ file: join(o.etcDir, "passwd") });
  if (!provided("group")) inputs.push({ file: join(o.etcDir, "group") });
  if (o.includeEpoptes) inputs.push({ file: join(o.etcDir, "epoptes", "server.crt") });
  return inputs;
}

async function statOrUndefined(path: string, follow: boolean): Promise<Stats | undefined> {
  try {
    return follow ? await stat(path) : await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT" || (error as NodeJS.ErrnoException).code === "ENOTDIR") return undefined;
    throw error;
  }
}

function permissions(st: Stats): number {
  return st.mode & PERMISSION_MASK;
}

async function requireLtspCode(shareDir: string): Promise<void> {
  const client = await statOrUndefined(join(shareDir, "client"), true);
  if (!client?.isDirectory()) {
    throw new Error(
      `LTSP client code not found: ${join(shareDir, "client")} is not a directory. ` +
        `Install Debian's ltsp package (apt-get install --no-install-recommends ltsp), ` +
        `or set the ltspShareDir option to where the LTSP code is installed.`,
    );
  }
  for (const part of ["common", "ltsp", HOOK_FILE]) {
    if (!(await statOrUndefined(join(shareDir, part), true))) {
      throw new Error(
        `The LTSP code in ${shareDir} is incomplete: ${join(shareDir, part)} is missing. ` +
          `Reinstall Debian's ltsp package (apt-get install --reinstall --no-install-recommends ltsp), ` +
          `or set the ltspShareDir option to a complete copy of the LTSP code.`,
      );
    }
  }
}

type EntryMap = Map<string, CpioEntry>;

function addDirectory(entries: EntryMap, path: string, mode = DIRECTORY_MODE): void {
  entries.set(path, { path, type: "directory", mode });
}

/** Adds `source` at `path` the way `cp -a` copies it; `followTop` dereferences `source` itself. */
async function addCopy(entries: EntryMap, source: string, path: string, followTop: boolean): Promise<void> {
  const st = followTop ? await stat(source) : await lstat(source);
  if (st.isDirectory()) {
    addDirectory(entries, path, permissions(st));
    const names = await readdir(source);
    for (const name of names) {
      if (name === EXCLUDED_NAME) continue;
      await addCopy(entries, join(source, name), `${path}/${name}`, false);
    }
  } else if (st.isFile()) {
    entries.set(path, { path, type: "file", mode: permissions(st), content: { sourcePath: source } });
  } else if (st.isSymbolicLink()) {
    entries.set(path, { path, type: "symlink", target: await readlink(source) });
  } else {
    throw new Error(
      `${source} is not a regular file, directory or symlink, so it cannot go into ltsp.img. Move it out of ${dirname(source)}.`,
    );
  }
}

/** Every line of the server's ssh host public keys, prefixed with the host alias clients use. */
async function knownHosts(etcDir: string): Promise<Buffer> {
  const sshDir = join(etcDir, "ssh");
  let names: string[];
  try {
    names = await readdir(sshDir);
  } catch {
    names = [];
  }
  const keyFiles = names.filter((n) => SSH_HOST_KEY.test(n)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  let text = "";
  for (const name of keyFiles) {
    const path = join(sshDir, name);
    if (!(await statOrUndefined(path, true))?.isFile()) continue;
    // latin1 keeps every byte as it is.
    const content = await readFile(path, "latin1");
    if (content === "") continue;
    const lines = content.endsWith("\n") ? content.slice(0, -1).split("\n") : content.split("\n");
    for (const line of lines) text += `server ${line}\n`;
  }
  return Buffer.from(text, "latin1");
}

async function addServerFile(entries: EntryMap, source: string, path: string): Promise<void> {
  const st = await statOrUndefined(source, true);
  if (!st?.isFile()) {
    throw new Error(
      `${source} is missing or not a file; ltsp.img needs it so that clients know the server's users and groups. ` +
        `Check the etcDir option (it should be the server's configuration root, /etc by default).`,
    );
  }
  entries.set(path, { path, type: "file", mode: permissions(st), content: { sourcePath: source } });
}

/** The entries of ltsp.img, without reading file contents (they are read while writing). */
export async function collectLtspImgEntries(opts: LtspImgOptions = {}): Promise<CpioEntry[]> {
  const o = resolve(opts);
  await requireLtspCode(o.shareDir);
  const entries: EntryMap = new Map();

  for (const dir of [".", "usr", "usr/share", "usr/share/ltsp"]) addDirectory(entries, dir);
  for (const part of CLIENT_CODE) await addCopy(entries, join(o.shareDir, part), `usr/share/ltsp/${part}`, true);

  addDirectory(entries, "conf");
  addDirectory(entries, "conf/conf.d");
  entries.set(HOOK_LINK, { path: HOOK_LINK, type: "symlink", target: HOOK_LINK_TARGET });

  addDirectory(entries, "etc");
  addDirectory(entries, "etc/ltsp");
  const etcLtsp = join(o.etcDir, "ltsp");
  if ((await statOrUndefined(etcLtsp, true))?.isDirectory()) await addCopy(entries, etcLtsp, "etc/ltsp", true);

  if (!entries.has("etc/ltsp/ssh_known_hosts")) {
    const path = "etc/ltsp/ssh_known_hosts";
    entries.set(path, { path, type: "file", mode: GENERATED_FILE_MODE, content: await knownHosts(o.etcDir) });
  }
  for (const name of ["passwd", "group"]) {
    if (!entries.has(`etc/ltsp/${name}`)) await addServerFile(entries, join(o.etcDir, name), `etc/ltsp/${name}`);
  }
  if (o.includeEpoptes) {
    const cert = join(o.etcDir, "epoptes", "server.crt");
    const st = await statOrUndefined(cert, true);
    if (st?.isFile()) {
      const path = "etc/ltsp/epoptes.crt";
      entries.set(path, { path, type: "file", mode: permissions(st), content: { sourcePath: cert } });
    }
  }
  return [...entries.values()];
}

const SYNTAX_CHECK_BATCH = 200;
// Checks each file given as an argument and prints "<file>\0<message>\0" for each that fails.
const SYNTAX_CHECK_SCRIPT = 'for f do if ! m=$(sh -n "$f" 2>&1); then printf "%s\\0%s\\0" "$f" "$m"; fi; done';

/** Runs `sh -n` on every `*.sh` regular file of the archive, in a few batched commands. */
export async function checkShellSyntax(entries: readonly CpioEntry[], exec: Exec): Promise<void> {
  const scripts: Array<{ source: string; path: string }> = [];
  for (const e of entries) {
    if (e.type === "file" && e.path.endsWith(".sh") && typeof e.content === "object" && !Buffer.isBuffer(e.content)) {
      scripts.push({ source: e.content.sourcePath, path: e.path });
    }
  }
  const archivePath = new Map(scripts.map((s) => [s.source, s.path]));
  const failures: string[] = [];
  for (let i = 0; i < scripts.length; i += SYNTAX_CHECK_BATCH) {
    const batch = scripts.slice(i, i + SYNTAX_CHECK_BATCH).map((s) => s.source);
    const { stdout } = await exec("sh", ["-c", SYNTAX_CHECK_SCRIPT, "sh", ...batch]);
    const fields = stdout.split("\0");
    for (let j = 0; j + 1 < fields.length; j += 2) {
      const file = fields[j] ?? "";
      const message = (fields[j + 1] ?? "").trim();
      failures.push(`${file} (${archivePath.get(file) ?? "?"} in ltsp.img): ${message || "sh -n failed"}`);
    }
  }
  if (failures.length > 0) {
    throw new Error(`Syntax error in shell scripts that would go into ltsp.img; fix them and build again:\n${failures.join("\n")}`);
  }
}

/** Collects the entries, checks the shell scripts and writes the archive to `outPath`. */
export async function buildLtspImg(opts: LtspImgOptions, outPath: string, exec: Exec): Promise<CpioWriteResult> {
  const entries = await collectLtspImgEntries(opts);
  await checkShellSyntax(entries, exec);
  return writeCpioArchive(outPath, entries, { mtime: resolve(opts).mtime });
}
