// Shared by the reliability tests: the CLI started with its output read line by line (each line
// timestamped), a simulated machine crash, snapshots of every published file, and a seeded
// random generator so a failing kill point can be replayed.
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { hashBytes, initHash } from "../../src/hash.ts";
import { PACKAGE_ROOT, processesMentioning, type CliResult, type Prefix } from "../pipeline/helpers.ts";

await initHash();

const CLI = path.join(PACKAGE_ROOT, "bin", "ltsp-make.js");

export interface TimedLine {
  /** Milliseconds since the process was started. */
  at: number;
  text: string;
}

export interface TimedRun {
  pid: number;
  lines: TimedLine[];
  /** Resolves when the process has exited. */
  done: Promise<CliResult>;
  exited(): boolean;
}

/** The prefix's roots as options, leaving out any that `given` already names. */
export function prefixArgs(prefix: Prefix, given: string[] = []): string[] {
  const all: [string, string][] = [
    ["--config", prefix.configPath], ["--cache-dir", prefix.cache],
    ["--base-dir", prefix.base], ["--tftp-dir", prefix.tftp], ["--home-dir", prefix.home], ["--etc-dir", prefix.etc],
  ];
  return all.filter(([option]) => !given.includes(option)).flat();
}

/**
 * Starts the CLI in its own process group (so a crash can take the whole group down), calling
 * `onLine` for every stdout line as it arrives.
 */
export function startTimed(prefix: Prefix, args: string[], onLine?: (line: TimedLine) => void, env: NodeJS.ProcessEnv = {}): TimedRun {
  const begin = Date.now();
  const child = spawn("node", [CLI, ...args, ...prefixArgs(prefix, args)], {
    cwd: prefix.dir,
    env: { ...process.env, NO_COLOR: "1", CI: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  const lines: TimedLine[] = [];
  let stdout = "";
  let stderr = "";
  let pending = "";
  let exited = false;
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stdout.on("data", (chunk: string) => {
    stdout += chunk;
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = { at: Date.now() - begin, text: pending.slice(0, nl) };
      pending = pending.slice(nl + 1);
      lines.push(line);
      onLine?.(line);
    }
  });
  child.stderr.on("data", (chunk: string) => (stderr += chunk));
  const done = new Promise<CliResult>((resolve) => {
    child.on("close", (code, signal) => {
      exited = true;
      resolve({ exitCode: code ?? -1, signal: signal ?? undefined, stdout, stderr });
    });
  });
  const timer = setTimeout(() => crash(prefix, child.pid!), 120_000);
  void done.then(() => clearTimeout(timer));
  return { pid: child.pid!, lines, done, exited: () => exited };
}

/**
 * A machine crash, as far as processes go: SIGKILL to the CLI's process group, then to every
 * process whose command line names the prefix (mksquashfs runs in a group of its own). Mounts
 * and files stay, as they would on a disk after a power cut.
 */
export function crash(prefix: Prefix, pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // gone
  }
  for (let round = 0; round < 5; round++) {
    const left = processesMentioning(prefix.dir);
    if (left.length === 0) break;
    for (const p of left) {
      try {
        process.kill(p.pid, "SIGKILL");
      } catch {
        // gone
      }
    }
  }
}

/** Where ltsp-make publishes under a prefix. */
export function publishedRoots(prefix: Prefix): string[] {
  return [path.join(prefix.base, "images"), prefix.tftp, path.join(prefix.etc, "dnsmasq.d"), path.join(prefix.etc, "exports.d"), path.join(prefix.etc, "nbd-server")];
}

export interface PublishedEntry {
  kind: "file" | "link" | "dir";
  hash?: string;
  target?: string;
  mode: number;
}

/** Every file, symlink and directory under the published roots, by absolute path. */
export function publishedSnapshot(prefix: Prefix): Map<string, PublishedEntry> {
  const out = new Map<string, PublishedEntry>();
  const walk = (dir: string) => {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const full = path.join(dir, name);
      const st = fs.lstatSync(full);
      if (st.isSymbolicLink()) out.set(full, { kind: "link", target: fs.readlinkSync(full), mode: st.mode });
      else if (st.isDirectory()) {
        out.set(full, { kind: "dir", mode: st.mode });
        walk(full);
      } else out.set(full, { kind: "file", hash: hashBytes(fs.readFileSync(full)), mode: st.mode });
    }
  };
  for (const root of publishedRoots(prefix)) walk(root);
  return out;
}

/** Hashes of every published file plus the state snapshot: what a refused run must not change. */
export function fingerprintAll(prefix: Prefix): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [p, e] of publishedSnapshot(prefix)) out[p] = e.kind === "file" ? `${e.hash} ${(e.mode & 0o7777).toString(8)}` : e.kind === "link" ? `-> ${e.target}` : `dir ${(e.mode & 0o7777).toString(8)}`;
  const state = path.join(prefix.cache, "state.json");
  out[state] = fs.existsSync(state) ? hashBytes(fs.readFileSync(state)) : "absent";
  return out;
}

/** Names starting with a dot under the published roots: temporaries, never meant to stay. */
export function hiddenEntries(prefix: Prefix): string[] {
  return [...publishedSnapshot(prefix).keys()].filter((p) => path.basename(p).startsWith("."));
}

export function sh(file: string, args: string[], input?: string | Buffer): string {
  return execFileSync(file, args, { input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"], maxBuffer: 256 * 1024 * 1024 });
}

/** A directory of symlinks to every command on PATH, except the ones named (a machine without them). */
export function pathWithout(dir: string, missing: string[]): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const source of (process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    let names: string[];
    try {
      names = fs.readdirSync(source);
    } catch {
      continue;
    }
    for (const name of names) {
      if (missing.includes(name) || fs.existsSync(path.join(dir, name))) continue;
      const full = path.join(source, name);
      try {
        if (!fs.statSync(full).isFile()) continue;
        fs.symlinkSync(full, path.join(dir, name));
      } catch {
        // dangling or unreadable: leave it out
      }
    }
  }
  return dir;
}
