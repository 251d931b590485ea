// Talking to a publishing host over OpenSSH: the ssh options of one host, remote shell scripts
// run with their arguments quoted, and a shared master connection (ControlMaster) per run.
// Failures name the host, and tell a connection problem apart from a failing remote command.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Exec } from "../../src/exec.ts";
import { CancelledError, CommandError } from "../../src/exec.ts";

export interface SshTarget {
  /** The host's name in ltspfile.ts, used in messages. */
  name: string;
  /** user@host (or host). */
  destination: string;
  port?: number;
  identityFile?: string;
  /** A known_hosts file; when set, only the keys in it are accepted. */
  knownHosts?: string;
  /** A ControlMaster socket to reuse (see startMaster). */
  controlPath?: string;
}

/** ssh exits with 255 when it could not connect or authenticate (the remote command never ran). */
const SSH_CONNECTION_FAILED = 255;
const ALL_EXIT_CODES = Array.from({ length: 256 }, (_, i) => i);

export class HostError extends Error {
  constructor(
    readonly host: string,
    message: string,
  ) {
    super(message);
    this.name = "HostError";
  }
}

/** A word for a POSIX shell: single-quoted unless it is plainly safe. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The ssh options for a host (no destination, no command). */
export function sshOptions(target: SshTarget): string[] {
  const args = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"];
  if (target.port !== undefined) args.push("-p", String(target.port));
  if (target.identityFile) args.push("-i", target.identityFile, "-o", "IdentitiesOnly=yes");
  if (target.knownHosts) args.push("-o", `UserKnownHostsFile=${target.knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null");
  if (target.controlPath) args.push("-o", "ControlMaster=no", "-o", `ControlPath=${target.controlPath}`);
  return args;
}

/** The remote shell command rsync should use (`rsync -e`). */
export function sshCommandLine(target: SshTarget): string {
  return ["ssh", ...sshOptions(target)].map(shellQuote).join(" ");
}

function describe(target: SshTarget): string {
  return `host "${target.name}" (${target.destination}${target.port ? ` port ${target.port}` : ""})`;
}

/** The error for an ssh connection that failed, with what to check. */
export function connectionError(target: SshTarget, stderr: string): HostError {
  const detail = stderr.trim().split("\n").slice(-5).join("\n");
  return new HostError(
    target.name,
    `${describe(target)} is unreachable over SSH${detail ? `:\n${detail}` : ""}\n` +
      `Check that the host is up, that sshd listens on it, and that it accepts this key (BatchMode: no password prompts).`,
  );
}

export interface RemoteResult {
  stdout: string;
  stderr: string;
}

/**
 * Run a POSIX shell script on the host: the script goes over stdin (`sh -s`), its arguments are
 * quoted for the remote shell. A non-zero exit fails with the script's stderr, naming the host.
 */
export async function runRemote(exec: Exec, target: SshTarget, script: string, args: readonly string[] = [], what = "a remote command"): Promise<RemoteResult> {
  const command = ["sh", "-s", "--", ...args].map(shellQuote).join(" ");
  let result;
  try {
    result = await exec("ssh", [...sshOptions(target), "--", target.destination, command], { input: script, okExitCodes: ALL_EXIT_CODES });
  } catch (error) {
    if (error instanceof CancelledError) throw error;
    if (error instanceof CommandError) throw connectionError(target, error.stderr);
    throw error;
  }
  if (result.exitCode === SSH_CONNECTION_FAILED) throw connectionError(target, result.stderr);
  if (result.exitCode !== 0) {
    const detail = (result.stderr || result.stdout).trim().split("\n").slice(-10).join("\n");
    throw new HostError(target.name, `${what} failed on ${describe(target)} (exit code ${result.exitCode})${detail ? `:\n${detail}` : ""}`);
  }
  return { stdout: result.stdout, stderr: result.stderr };
}

// Unix socket paths are limited to 108 bytes; ssh adds a random suffix while it sets one up.
const MAX_SOCKET_PATH = 80;

export interface SshMaster {
  controlPath: string;
  /** A directory made outside the work area because the work area's path was too long. */
  ownDir?: string;
}

/**
 * Open a master connection that later ssh and rsync calls reuse (one TCP connection and one
 * authentication per host and run). It ends by itself after `persistSeconds` idle, so a killed
 * run does not leave it behind for long.
 */
export async function startMaster(exec: Exec, target: SshTarget, dir: string, persistSeconds = 60): Promise<SshMaster> {
  let controlPath = join(dir, "cm");
  let ownDir: string | undefined;
  if (controlPath.length > MAX_SOCKET_PATH) {
    ownDir = mkdtempSync(join(tmpdir(), "ltsp-make-ssh-"));
    controlPath = join(ownDir, "cm");
  }
  const options = sshOptions({ ...target, controlPath: undefined });
  try {
    const result = await exec(
      "ssh",
      [...options, "-o", "ControlMaster=yes", "-o", `ControlPersist=${persistSeconds}`, "-o", `ControlPath=${controlPath}`, "-n", "--", target.destination, "true"],
      { okExitCodes: ALL_EXIT_CODES },
    );
    if (result.exitCode !== 0) throw connectionError(target, result.stderr);
  } catch (error) {
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
    if (error instanceof CommandError) throw connectionError(target, error.stderr);
    throw error;
  }
  return { controlPath, ownDir };
}

export async function stopMaster(exec: Exec, target: SshTarget, master: SshMaster): Promise<void> {
  if (existsSync(master.controlPath)) {
    await exec("ssh", [...sshOptions({ ...target, controlPath: undefined }), "-o", `ControlPath=${master.controlPath}`, "-O", "exit", "--", target.destination], {
      okExitCodes: ALL_EXIT_CODES,
    });
  }
  if (master.ownDir) rmSync(master.ownDir, { recursive: true, force: true });
}

/** SHA-256 of a local file, as sha256sum prints it. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path)
      .on("error", reject)
      .on("data", (chunk) => hash.update(chunk))
      .on("end", () => resolve(hash.digest("hex")));
  });
}

/**
 * What the host holds at a path: a file (size and SHA-256, and whether the hash came from the
 * file's recorded stamp instead of a read), a symlink (its target), or nothing.
 */
export type RemoteEntry = { kind: "file"; size: number; sha256: string; fromStamp: boolean } | { kind: "link"; target: string } | { kind: "missing" };

/** A file's stamp on the host: "SIZE,MTIME,CTIME,INODE" (GNU stat, nanoseconds). */
const STAMP_FORMAT = "%s,%.9Y,%.9Z,%i";

/** Recorded hashes of files on the host, valid while their stamp is unchanged. */
export type KnownRemote = Map<string, { stamp: string; sha256: string }>;

export interface RemoteQuery {
  files: string[];
  links: string[];
  known?: KnownRemote;
}

// Args: l:PATH (symlink target), f:PATH (size and SHA-256), k:STAMP,SHA256:PATH (the recorded
// hash while the stamp is unchanged, else as f:).
const STATE_SCRIPT = `
hash() {
  if [ -f "$1" ] && s=$(stat -L -c %s -- "$1") && h=$(sha256sum < "$1"); then printf 'F %s %s read\\n' "$s" "\${h%% *}"; else echo M; fi
}
for a; do
  case $a in
    l:*) p=\${a#l:}; if [ -L "$p" ]; then printf 'L %s\\n' "$(readlink -- "$p")"; else echo M; fi ;;
    f:*) hash "\${a#f:}" ;;
    k:*)
      rest=\${a#k:}; meta=\${rest%%:/*}; p=\${rest#"$meta":}; want=\${meta%,*}
      if [ -f "$p" ] && [ "$(stat -L -c '${STAMP_FORMAT}' -- "$p" 2>/dev/null)" = "$want" ]; then
        printf 'F %s %s stamp\\n' "\${want%%,*}" "\${meta##*,}"
      else
        hash "$p"
      fi ;;
  esac
done
`;

/**
 * Sizes and SHA-256 of files and targets of symlinks on the host, in one ssh call. Reads only;
 * a file whose stamp matches a known one is not read. Keys are "f:PATH" and "l:PATH".
 */
export async function remoteState(exec: Exec, target: SshTarget, query: RemoteQuery): Promise<Map<string, RemoteEntry>> {
  const fileArg = (path: string): string => {
    const known = query.known?.get(path);
    return known ? `k:${known.stamp},${known.sha256}:${path}` : `f:${path}`;
  };
  const keys = [...query.files.map((p) => `f:${p}`), ...query.links.map((p) => `l:${p}`)];
  const args = [...query.files.map(fileArg), ...query.links.map((p) => `l:${p}`)];
  const out = new Map<string, RemoteEntry>();
  if (args.length === 0) return out;
  const { stdout } = await runRemote(exec, target, STATE_SCRIPT, args, "reading the published files");
  const lines = stdout.split("\n").filter((l) => l.length > 0);
  if (lines.length !== args.length) throw new HostError(target.name, `host "${target.name}" answered ${lines.length} lines for ${args.length} paths: ${stdout.slice(0, 200)}`);
  keys.forEach((key, i) => {
    const line = lines[i]!;
    if (line.startsWith("F ")) {
      const [, size, sha256, how] = line.split(" ");
      out.set(key, { kind: "file", size: Number(size), sha256: sha256 ?? "", fromStamp: how === "stamp" });
    } else if (line.startsWith("L ")) {
      out.set(key, { kind: "link", target: line.slice(2) });
    } else {
      out.set(key, { kind: "missing" });
    }
  });
  return out;
}

/**
 * A stamp taken this close to the file's last change is not trusted (the "racy" rule): a change
 * in the same timestamp tick could go unseen. Filesystems with whole-second timestamps need the
 * full second.
 */
const REMOTE_RACY_SECONDS = 0.05;
const COARSE_RACY_SECONDS = 1;

const STAMPS_SCRIPT = `
for p; do stat -L -c '${STAMP_FORMAT}' -- "$p" 2>/dev/null || echo M; done
date +%s.%N
`;

/**
 * The stamps of files on the host, for recording next to their hashes. Files changed just now
 * are left out (see REMOTE_RACY_SECONDS).
 */
export async function remoteStamps(exec: Exec, target: SshTarget, paths: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  if (paths.length === 0) return out;
  const { stdout } = await runRemote(exec, target, STAMPS_SCRIPT, paths, "reading file stamps");
  const lines = stdout.split("\n").filter((l) => l.length > 0);
  const now = Number(lines.at(-1));
  if (lines.length !== paths.length + 1 || !Number.isFinite(now)) return out;
  paths.forEach((path, i) => {
    const stamp = lines[i]!;
    const [, mtimeText, ctimeText] = stamp.split(",");
    const mtime = Number(mtimeText);
    const ctime = Number(ctimeText);
    if (!Number.isFinite(mtime) || !Number.isFinite(ctime)) return;
    const coarse = /\.0+$/.test(mtimeText!) && /\.0+$/.test(ctimeText!);
    if (Math.max(mtime, ctime) < now - (coarse ? COARSE_RACY_SECONDS : REMOTE_RACY_SECONDS)) out.set(path, stamp);
  });
  return out;
}
