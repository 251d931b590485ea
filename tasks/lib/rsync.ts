// Copying files to a host with rsync over OpenSSH. rsync sends only the differences (the delta
// algorithm, with a similar older file as the basis when the name is new), verifies every file
// with its whole-file checksum, and writes each file under a temporary dot name in the target
// directory that it renames at the end: a reader never sees a half-copied file. A cut transfer
// keeps what arrived in a partial directory, and the next transfer resumes from it.
import type { Exec } from "../../src/exec.ts";
import { CancelledError, CommandError } from "../../src/exec.ts";
import { connectionError, HostError, sshCommandLine, type SshTarget } from "./ssh.ts";

export const PARTIAL_DIR = ".ltsp-make-partial";

/** rsync's exit code when the remote shell (ssh) failed to connect. */
const RSYNC_CONNECTION_FAILED = 255;

export interface RsyncOptions {
  /** Extra rsync arguments (e.g. ["--bwlimit=10m"]). */
  extraArgs?: readonly string[];
  /** Progress of the transfer, 0..1. */
  onProgress?: (fraction: number) => void;
  log?: (line: string) => void;
}

function remoteSpec(target: SshTarget, path: string): string {
  // rsync 3.2.4+ quotes the remote path itself (no shell word splitting of the path).
  return `${target.destination}:${path}`;
}

async function rsync(exec: Exec, target: SshTarget, args: string[], what: string, options: RsyncOptions, input?: string): Promise<void> {
  const argv = [
    "--times",
    "--perms",
    "--chmod=D755,F644",
    "--mkpath",
    `--partial-dir=${PARTIAL_DIR}`,
    "--info=progress2",
    "--no-inc-recursive",
    "-e",
    sshCommandLine(target),
    ...(options.extraArgs ?? []),
    ...args,
  ];
  try {
    const result = await exec("rsync", argv, {
      input,
      okExitCodes: [0, RSYNC_CONNECTION_FAILED],
      onLine: (line, stream) => {
        const m = /\s(\d{1,3})%\s/.exec(line);
        if (m && options.onProgress) options.onProgress(Number(m[1]) / 100);
        else if (stream === "stderr" && options.log) options.log(line);
      },
    });
    if (result.exitCode === RSYNC_CONNECTION_FAILED) throw connectionError(target, result.stderr);
  } catch (error) {
    if (error instanceof CancelledError || error instanceof HostError) throw error;
    if (error instanceof CommandError) {
      const detail = error.stderr.trim().split("\n").slice(-8).join("\n");
      throw new HostError(target.name, `copying ${what} to host "${target.name}" (${target.destination}) failed (rsync exit code ${error.exitCode ?? "?"})${detail ? `:\n${detail}` : ""}`);
    }
    throw error;
  }
}

/** Copy one local file to `remotePath` on the host (parent directories are created). */
export async function rsyncFile(exec: Exec, target: SshTarget, localPath: string, remotePath: string, options: RsyncOptions = {}): Promise<void> {
  await rsync(exec, target, ["--fuzzy", "--", localPath, remoteSpec(target, remotePath)], remotePath, options);
}

/**
 * Copy files (paths relative to `localDir`) into `remoteDir` on the host, keeping their relative
 * paths. With delayUpdates, every changed file is renamed into place at the end, together.
 */
export async function rsyncFiles(
  exec: Exec,
  target: SshTarget,
  localDir: string,
  relativePaths: readonly string[],
  remoteDir: string,
  options: RsyncOptions & { delayUpdates?: boolean } = {},
): Promise<void> {
  const flags = options.delayUpdates === false ? [] : ["--delay-updates"];
  await rsync(
    exec,
    target,
    [...flags, "--files-from=-", "--", `${localDir.replace(/\/?$/, "/")}`, remoteSpec(target, `${remoteDir.replace(/\/?$/, "/")}`)],
    `${relativePaths.length} file(s) to ${remoteDir}`,
    options,
    `${relativePaths.join("\n")}\n`,
  );
}

