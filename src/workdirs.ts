// Work directories: one per run under <state>/work, named after the run's PID and start time so a
// later run can tell which ones belong to runs that are gone. Nothing is ever deleted through a
// mount point.
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { processStartTime } from "./processes.ts";

export function workArea(stateDir: string): string {
  return join(stateDir, "work");
}

export function runWorkDir(stateDir: string): string {
  return join(workArea(stateDir), `run-${process.pid}-${processStartTime(process.pid) ?? "0"}`);
}

/** Work directories of runs whose process no longer exists. */
export function deadRunWorkDirs(stateDir: string): string[] {
  const area = workArea(stateDir);
  let names: string[];
  try {
    names = readdirSync(area);
  } catch {
    return [];
  }
  const dead: string[] = [];
  for (const name of names) {
    const match = /^run-(\d+)-(\d+)$/.exec(name);
    if (!match) continue;
    if (processStartTime(Number(match[1])) !== match[2]) dead.push(join(area, name));
  }
  return dead.sort();
}

function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

/** Mount points at or below a directory, deepest first. */
export function mountsBelow(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const found: string[] = [];
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const mountPoint = line.split(" ")[4];
    if (!mountPoint) continue;
    const path = unescapeMountPath(mountPoint);
    if (path === dir || path.startsWith(prefix)) found.push(path);
  }
  return found.sort((a, b) => b.length - a.length);
}

/** Remove a work directory, unless something is still mounted inside it. */
export function removeWorkDir(dir: string): void {
  if (!existsSync(dir)) return;
  const mounted = mountsBelow(dir);
  if (mounted.length) {
    throw new Error(`not removing ${dir}: still mounted inside it: ${mounted.join(", ")}`);
  }
  rmSync(dir, { recursive: true, force: true });
}
