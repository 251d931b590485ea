// Files appear whole or not at all: write to a temporary name in the same directory, then rename.
// Temporary names start with a dot and carry the writer's PID, so leftovers of a killed run are
// recognisable, ignored by conf-dir readers (dnsmasq skips dot files) and removed by the next write.
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { pidAlive } from "./processes.ts";

export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
}

/** Remove temporaries of `path` left by writers that are no longer running. */
export function removeStaleTemps(path: string): void {
  const prefix = `.${basename(path)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dirname(path));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split("-")[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !pidAlive(pid)) {
      try {
        unlinkSync(join(dirname(path), name));
      } catch {
        // already gone
      }
    }
  }
}

export function writeFileAtomicSync(path: string, content: string | Uint8Array, mode = 0o644): void {
  removeStaleTemps(path);
  const temp = tempPathFor(path);
  const fd = openSync(temp, "wx", mode);
  try {
    writeSync(fd, typeof content === "string" ? Buffer.from(content) : content);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temp);
    throw error;
  }
  closeSync(fd);
  try {
    renameSync(temp, path);
  } catch (error) {
    unlinkSync(temp);
    throw error;
  }
}
