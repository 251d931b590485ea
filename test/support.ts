// Small helpers shared by the test suites.
import type { ResultPromise } from "execa";

/** SIGKILL the CLI processes a test started (by PID) that still run, and wait for them. */
export async function killChildren(children: readonly ResultPromise[]): Promise<void> {
  for (const child of children) {
    if (child.exitCode === null && child.pid) {
      try {
        process.kill(child.pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    await child.catch(() => undefined);
  }
}
