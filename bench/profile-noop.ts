// Profiles ltsp-make's no-op on the benchmark graph: `node --cpu-prof`, then the functions and
// files with the most self time, and the engine functions with the most total (inclusive) time.
// BENCH_PROFILE_OUT=DIR keeps the .cpuprofile files (open them in Chrome DevTools).
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { execa } from "execa";
import { benchDir, envInt, fmtMs, isMain, REPO_ROOT, sleep } from "./lib.ts";
import { buildBoth, ltspArgs, ltspNoop, prepareGraph } from "./noop-graph.ts";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface Hotspot {
  name: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  profiles: number;
  totalMs: number;
  self: Hotspot[];
  inclusive: Hotspot[];
  files: Hotspot[];
}

function where(url: string): string {
  const path = url.replace(/^file:\/\//, "");
  if (!path) return "(native)";
  return path.startsWith(REPO_ROOT) ? relative(REPO_ROOT, path) : path.replace(/^.*\/node_modules\//, "node_modules/");
}

function frameName(frame: CallFrame): string {
  return `${frame.functionName || "(anonymous)"} ${where(frame.url)}:${frame.lineNumber + 1}`;
}

function top(map: Map<string, number>, totalUs: number, count: number, runs: number): Hotspot[] {
  return [...map]
    .sort((a, b) => b[1] - a[1])
    .slice(0, count)
    .map(([name, us]) => ({ name, ms: us / 1000 / runs, share: us / totalUs }));
}

/** Self and inclusive time per function over several profiles (times are per run). */
export function summarize(profiles: CpuProfile[], count = 20): ProfileSummary {
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  const files = new Map<string, number>();
  let totalUs = 0;
  for (const profile of profiles) {
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
    profile.samples.forEach((id, i) => {
      const delta = profile.timeDeltas[i] ?? 0;
      totalUs += delta;
      const node = byId.get(id)!;
      const name = frameName(node.callFrame);
      self.set(name, (self.get(name) ?? 0) + delta);
      const file = where(node.callFrame.url);
      files.set(file, (files.get(file) ?? 0) + delta);
      const seen = new Set<string>();
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const frame = byId.get(at)!.callFrame;
        if (!frame.url.includes(`${REPO_ROOT}/src/`)) continue;
        const key = frameName(frame);
        if (seen.has(key)) continue;
        seen.add(key);
        inclusive.set(key, (inclusive.get(key) ?? 0) + delta);
      }
    });
  }
  const runs = profiles.length;
  return {
    profiles: runs,
    totalMs: totalUs / 1000 / runs,
    self: top(self, totalUs, count, runs),
    inclusive: top(inclusive, totalUs, count, runs),
    files: top(files, totalUs, count, runs),
  };
}

export function printProfile(s: ProfileSummary, write: (line: string) => void): void {
  const row = (h: Hotspot) => `  ${fmtMs(h.ms).padStart(9)}  ${(h.share * 100).toFixed(1).padStart(5)}%  ${h.name}`;
  write(`profiled time per no-op run: ${fmtMs(s.totalMs)} (mean of ${s.profiles} profiles)`);
  write("top self time, by function:");
  for (const h of s.self) write(row(h));
  write("top self time, by file:");
  for (const h of s.files) write(row(h));
  write("top total (inclusive) time, engine functions (src/):");
  for (const h of s.inclusive) write(row(h));
}

export async function profileNoop(chains: number, depth: number, runs: number, log: (line: string) => void): Promise<ProfileSummary> {
  const dir = benchDir("profile");
  try {
    const sides = prepareGraph(dir.path, chains, depth);
    log(`building ${sides.tasks} tasks in ${dir.path} ...`);
    await buildBoth(sides, sides.tasks);
    await sleep(1100);
    await ltspNoop(sides, sides.tasks);
    const profDir = join(dir.path, "profiles");
    mkdirSync(profDir);
    for (let i = 0; i < runs; i++) {
      await execa("node", ["--cpu-prof", "--cpu-prof-dir", profDir, ...ltspArgs(sides)], { cwd: sides.ltspDir });
    }
    const files = readdirSync(profDir).filter((f) => f.endsWith(".cpuprofile"));
    const keep = process.env.BENCH_PROFILE_OUT;
    if (keep) {
      mkdirSync(keep, { recursive: true });
      for (const f of files) copyFileSync(join(profDir, f), join(keep, f));
      log(`profiles kept in ${keep}`);
    }
    return summarize(files.map((f) => JSON.parse(readFileSync(join(profDir, f), "utf8")) as CpuProfile));
  } finally {
    dir.dispose();
  }
}

if (isMain(import.meta.url)) {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const summary = await profileNoop(envInt("BENCH_CHAINS", 100), envInt("BENCH_DEPTH", 100), envInt("BENCH_RUNS", 3), log);
  printProfile(summary, (line) => process.stdout.write(`${line}\n`));
}
