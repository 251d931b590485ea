// Telling whether a process that left something behind (a lock, a work directory, a temporary
// file) is still running. A PID alone can be reused, so its start time is compared too.
import { readFileSync } from "node:fs";

/** Start time of a process in clock ticks since boot, or undefined if it does not exist. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return undefined;
  }
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}
