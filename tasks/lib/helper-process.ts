// Long-running helper processes (a FUSE disk view, a package-manager lock holder) outlive the
// command that started them. Their PIDs are recorded in the work directory so that a later run
// can stop what a killed run left behind; a PID is only signalled while its command line still
// names that work directory, so a recycled PID is never hit.
import { appendFileSync, readFileSync } from "node:fs";
import { join } from "node:path";

const PIDS_FILE = "pids";

/** The command line of a process, arguments joined by spaces, or undefined if it is gone. */
export function commandLineOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").join(" ").trim();
  } catch {
    return undefined;
  }
}

/** True while the process exists and is not a zombie waiting to be reaped. */
export function isRunning(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone already.
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isRunning(pid)) {
    if (Date.now() >= deadline) return false;
    await new Promise((done) => setTimeout(done, 25));
  }
  return true;
}

/**
 * Stops a helper: TERM, then KILL if it is still there after `graceMs`. With `marker`, the process
 * is left alone unless its command line contains it (the PID may belong to someone else by now).
 * Returns true when the process is gone.
 */
export async function stopHelper(pid: number, options: { marker?: string; graceMs?: number } = {}): Promise<boolean> {
  if (!isRunning(pid)) return true;
  if (options.marker !== undefined && !(commandLineOf(pid) ?? "").includes(options.marker)) return true;
  signal(pid, "SIGTERM");
  if (await waitForExit(pid, options.graceMs ?? 2000)) return true;
  signal(pid, "SIGKILL");
  return waitForExit(pid, 2000);
}

/** Notes a helper's PID in `workDir` for a later sweep. */
export function recordHelperPid(workDir: string, pid: number): void {
  appendFileSync(join(workDir, PIDS_FILE), `${pid}\n`);
}

/** The PIDs recorded in `workDir`, most recent first. */
export function recordedHelperPids(workDir: string): number[] {
  let text: string;
  try {
    text = readFileSync(join(workDir, PIDS_FILE), "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((line) => /^[1-9][0-9]*$/.test(line))
    .map(Number)
    .reverse();
}
