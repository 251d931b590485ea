// One run at a time per state directory (design rule 9). The lock file names its owner; a lock
// whose owner is gone (or whose PID now belongs to another process) is taken over.
import { linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { processStartTime } from "../processes.ts";

export interface LockOwner {
  pid: number;
  /** Process start time (clock ticks since boot), so a reused PID is not mistaken for the owner. */
  start: string;
  command: string;
  since: string;
}

export class LockHeldError extends Error {
  constructor(
    readonly owner: LockOwner,
    readonly lockPath: string,
  ) {
    super(
      `another ltsp-make run (PID ${owner.pid}, started ${owner.since}: ${owner.command}) is using ${lockPath}.\n` +
        `Wait for it to finish, or stop it (kill ${owner.pid}); a lock left by a dead run is taken over automatically.`,
    );
    this.name = "LockHeldError";
  }
}

export function ownerAlive(owner: LockOwner): boolean {
  const start = processStartTime(owner.pid);
  return start !== undefined && start === owner.start;
}

function readOwner(path: string): LockOwner | undefined {
  try {
    const owner = JSON.parse(readFileSync(path, "utf8")) as LockOwner;
    return typeof owner.pid === "number" ? owner : undefined;
  } catch {
    return undefined;
  }
}

export class StateLock {
  readonly path: string;
  private held = false;

  constructor(stateDir: string) {
    this.path = join(stateDir, "lock");
  }

  /** Take the lock or throw LockHeldError. Returns the dead owner whose lock was taken over, if any. */
  acquire(command: string): LockOwner | undefined {
    const me: LockOwner = {
      pid: process.pid,
      start: processStartTime(process.pid) ?? "",
      command,
      since: new Date().toISOString(),
    };
    const content = `${JSON.stringify(me)}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = openSync(this.path, "wx", 0o644);
        writeSync(fd, content);
        closeSync(fd);
        this.held = true;
        return undefined;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      }
      const owner = readOwner(this.path);
      if (owner && ownerAlive(owner)) throw new LockHeldError(owner, this.path);
      // Stale (dead owner, or a lock file cut short before its owner wrote it): move it aside, and
      // make sure what was moved is the stale lock and not one a concurrent run just created.
      const aside = `${this.path}.stale-${process.pid}`;
      try {
        renameSync(this.path, aside);
      } catch {
        continue;
      }
      const moved = readOwner(aside);
      if (moved && ownerAlive(moved)) {
        try {
          linkSync(aside, this.path);
        } catch {
          // someone else holds it now
        }
        unlinkSync(aside);
        throw new LockHeldError(moved, this.path);
      }
      unlinkSync(aside);
      const fd = openSync(this.path, "wx", 0o644);
      writeSync(fd, content);
      closeSync(fd);
      this.held = true;
      return owner ?? { pid: 0, start: "", command: "unknown", since: "unknown" };
    }
    const owner = readOwner(this.path);
    throw new LockHeldError(owner ?? { pid: 0, start: "", command: "unknown", since: "unknown" }, this.path);
  }

  release(): void {
    if (!this.held) return;
    const owner = readOwner(this.path);
    if (owner?.pid === process.pid) unlinkSync(this.path);
    this.held = false;
  }
}
