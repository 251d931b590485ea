// No-op build of a large graph: ltsp-make against ninja on the same 10,000 tasks.
// Both sides get the same inputs, outputs and edges, are built once, left to age past any racy
// timestamp window, and are then timed doing nothing, alternately, N times each.
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { execa } from "execa";
import { benchDir, CLI, envInt, fmtMs, fmtRatio, isMain, median, nowMs, REPO_ROOT, sleep } from "./lib.ts";

export interface NoopOptions {
  /** Independent chains of tasks; chains × depth tasks in all. */
  chains: number;
  depth: number;
  /** Timed no-op runs of each tool. */
  runs: number;
  /** Also measure where ltsp-make's no-op time goes (one extra instrumented run per sample). */
  breakdown: boolean;
  log: (line: string) => void;
}

export interface Phase {
  name: string;
  ms: number;
}

export interface NoopResult {
  tasks: number;
  edges: number;
  runs: number;
  initialBuildMs: { ltsp: number; ninja: number };
  ltspMs: number[];
  ninjaMs: number[];
  ltspMedian: number;
  ninjaMedian: number;
  /** ltsp-make median / ninja median. */
  ratio: number;
  /** Median of each phase over the instrumented runs, in run order. */
  phases?: Phase[];
  /** Size of state.json after the runs, and whether a no-op rewrote it. */
  stateBytes: number;
  noopRewritesState: boolean;
}

/** Task c/d depends on c/(d-1) and, every tenth layer, also on (c-1)/(d-1): chains with cross-links. */
function depsOf(c: number, d: number): Array<[number, number]> {
  const deps: Array<[number, number]> = [];
  if (d > 0) deps.push([c, d - 1]);
  if (d > 0 && d % 10 === 0 && c > 0) deps.push([c - 1, d - 1]);
  return deps;
}

const pad = (n: number) => String(n).padStart(3, "0");
const taskId = (c: number, d: number) => `gen:c${pad(c)}-d${pad(d)}`;
const inputPath = (root: string, c: number, d: number) => `${root}/in/c${pad(c)}/d${pad(d)}`;

/** The ltspfile: tasks made by a loop, with the same shape as `depsOf`. */
function ltspfileSource(root: string, chains: number, depth: number): string {
  return `import { readFile } from "node:fs/promises";
import { defineConfig, task, type TaskDef } from "ltsp-make";

const ROOT = ${JSON.stringify(root)};
const CHAINS = ${chains};
const DEPTH = ${depth};
const pad = (n: number) => String(n).padStart(3, "0");
const id = (c: number, d: number) => \`gen:c\${pad(c)}-d\${pad(d)}\`;

const tasks: TaskDef[] = [];
for (let c = 0; c < CHAINS; c++) {
  for (let d = 0; d < DEPTH; d++) {
    const deps: string[] = [];
    if (d > 0) deps.push(id(c, d - 1));
    if (d > 0 && d % 10 === 0 && c > 0) deps.push(id(c - 1, d - 1));
    const input = \`\${ROOT}/in/c\${pad(c)}/d\${pad(d)}\`;
    const output = \`\${ROOT}/ltsp/out/c\${pad(c)}/d\${pad(d)}\`;
    const self = id(c, d);
    tasks.push(
      task({
        id: self,
        inputs: [{ file: input }],
        deps,
        outputs: [output],
        run: async (ctx) => ctx.writeFile(output, \`\${self}\\n\${await readFile(input, "utf8")}\`),
      }),
    );
  }
}

export default defineConfig({ tasks, jobs: 64 });
`;
}

/** The same graph for ninja: one edge per task, upstream outputs as implicit dependencies. */
function buildNinjaSource(root: string, chains: number, depth: number): string {
  const out = (c: number, d: number) => `out/c${pad(c)}/d${pad(d)}`;
  const lines = ["rule gen", "  command = (echo $id; cat $in) > $out", "  description = $id", ""];
  for (let c = 0; c < chains; c++) {
    for (let d = 0; d < depth; d++) {
      const deps = depsOf(c, d).map(([dc, dd]) => out(dc, dd));
      lines.push(`build ${out(c, d)}: gen ${inputPath(root, c, d)}${deps.length ? ` | ${deps.join(" ")}` : ""}`);
      lines.push(`  id = ${taskId(c, d)}`);
    }
  }
  return `${lines.join("\n")}\n`;
}

function writeInputs(root: string, chains: number, depth: number): void {
  for (let c = 0; c < chains; c++) {
    mkdirSync(`${root}/in/c${pad(c)}`, { recursive: true });
    for (let d = 0; d < depth; d++) writeFileSync(inputPath(root, c, d), `input ${c} ${d}\n`);
  }
}

export interface Sides {
  ltspDir: string;
  cacheDir: string;
  /** Base, TFTP, home and etc roots for ltsp-make: inside the temp dir, so nothing outside it is touched. */
  rootsDir: string;
  ninjaDir: string;
}

/** Only the generated tasks are selected (every `gen:*` task), not the built-in LTSP ones. */
export const TARGET = "gen";

/** Writes the inputs, the ltspfile and build.ninja under `root`; returns where each side lives. */
export function prepareGraph(root: string, chains: number, depth: number): Sides & { tasks: number; edges: number } {
  const sides: Sides = { ltspDir: join(root, "ltsp"), cacheDir: join(root, "ltsp", "cache"), rootsDir: join(root, "roots"), ninjaDir: join(root, "ninja") };
  mkdirSync(sides.ltspDir, { recursive: true });
  for (const sub of ["base", "tftp", "home", "etc"]) mkdirSync(join(sides.rootsDir, sub), { recursive: true });
  mkdirSync(sides.ninjaDir, { recursive: true });
  writeInputs(root, chains, depth);
  writeFileSync(join(sides.ltspDir, "ltspfile.ts"), ltspfileSource(root, chains, depth));
  writeFileSync(join(sides.ninjaDir, "build.ninja"), buildNinjaSource(root, chains, depth));
  let edges = 0;
  for (let c = 0; c < chains; c++) for (let d = 0; d < depth; d++) edges += depsOf(c, d).length;
  return { ...sides, tasks: chains * depth, edges };
}

/** Full builds of both sides; returns how long each took. */
export async function buildBoth(sides: Sides, tasks: number): Promise<{ ltsp: number; ninja: number }> {
  let start = nowMs();
  await execa("ninja", ["-C", sides.ninjaDir]);
  const ninja = nowMs() - start;
  start = nowMs();
  const built = await execa("node", ltspArgs(sides), { cwd: sides.ltspDir, reject: false });
  const ltsp = nowMs() - start;
  if (built.exitCode !== 0 || !built.stdout.includes(`${tasks} run, 0 up to date, 0 failed`)) {
    throw new Error(`ltsp-make full build failed (exit ${built.exitCode}):\n${built.stdout.slice(-2000)}\n${built.stderr}`);
  }
  return { ltsp, ninja };
}

/** Options that keep ltsp-make inside the temp dir: config, state and every root. */
function commonArgs(sides: Sides): string[] {
  const r = sides.rootsDir;
  return ["--cache-dir", sides.cacheDir, "--config", join(sides.ltspDir, "ltspfile.ts"), "--base-dir", `${r}/base`, "--tftp-dir", `${r}/tftp`, "--home-dir", `${r}/home`, "--etc-dir", `${r}/etc`];
}

export function ltspArgs(sides: Sides): string[] {
  return [CLI, ...commonArgs(sides), TARGET];
}

export async function ltspNoop(sides: Sides, tasks: number): Promise<number> {
  const start = nowMs();
  const result = await execa("node", ltspArgs(sides), { cwd: sides.ltspDir, reject: false });
  const ms = nowMs() - start;
  if (result.exitCode !== 0 || !new RegExp(`^0 run, ${tasks} up to date, 0 failed`, "m").test(result.stdout)) {
    throw new Error(`ltsp-make no-op did not come out as a no-op (exit ${result.exitCode}):\n${result.stdout}\n${result.stderr}`);
  }
  return ms;
}

export async function ninjaNoop(sides: Sides): Promise<number> {
  const start = nowMs();
  const result = await execa("ninja", ["-C", sides.ninjaDir], { reject: false });
  const ms = nowMs() - start;
  if (result.exitCode !== 0 || !result.stdout.includes("no work to do")) {
    throw new Error(`ninja no-op did work (exit ${result.exitCode}):\n${result.stdout.slice(-2000)}\n${result.stderr}`);
  }
  return ms;
}

async function phasesOnce(sides: Sides): Promise<{ phases: Phase[]; wallMs: number }> {
  const start = nowMs();
  const script = join(REPO_ROOT, "bench", "noop-phases.mjs");
  const result = await execa("node", [script, sides.cacheDir, join(sides.ltspDir, "ltspfile.ts"), sides.rootsDir, TARGET], {
    cwd: sides.ltspDir,
  });
  const wallMs = nowMs() - start;
  const marks = JSON.parse(result.stdout.trim().split("\n").pop()!) as Phase[];
  const inside = marks.reduce((sum, p) => sum + p.ms, 0);
  marks.push({ name: "exit + spawn (the rest)", ms: Math.max(0, wallMs - inside) });
  marks.push({ name: "total (instrumented run)", ms: wallMs });
  return { phases: marks, wallMs };
}

/** Counts the edges ltsp-make sees, so a mismatch with ninja's graph cannot go unnoticed. */
async function checkSameGraph(sides: Sides, tasks: number, edges: number): Promise<void> {
  const listed = await execa("node", [CLI, "graph", "--format", "list", ...commonArgs(sides), TARGET], { cwd: sides.ltspDir });
  const lines = listed.stdout.trim().split("\n");
  const ltspEdges = lines.reduce((n, line) => n + (line.includes("  <- ") ? line.split("  <- ")[1]!.split(", ").length : 0), 0);
  if (lines.length !== tasks || ltspEdges !== edges) {
    throw new Error(`ltsp-make sees ${lines.length} tasks and ${ltspEdges} edges; expected ${tasks} and ${edges}`);
  }
  const targets = await execa("ninja", ["-C", sides.ninjaDir, "-t", "targets", "rule", "gen"]);
  const ninjaTargets = targets.stdout.trim().split("\n").length;
  if (ninjaTargets !== tasks) throw new Error(`ninja has ${ninjaTargets} build edges; expected ${tasks}`);
}

export async function runNoopBench(options: NoopOptions): Promise<NoopResult> {
  const { chains, depth, runs, log } = options;
  const dir = benchDir("noop");
  try {
    const root = dir.path;
    const sides = prepareGraph(root, chains, depth);
    const { tasks, edges } = sides;
    log(`graph: ${tasks} tasks in ${chains} chains of ${depth}, ${edges} edges, in ${root}`);
    log("full builds (ltsp-make with -j 64: each task waits out the 50 ms racy window of its output) ...");
    const initialBuildMs = await buildBoth(sides, tasks);
    log(`  ltsp-make ${fmtMs(initialBuildMs.ltsp)}, ninja ${fmtMs(initialBuildMs.ninja)}`);
    await checkSameGraph(sides, tasks, edges);

    await sleep(1100);
    log("warm-up no-op of each ...");
    await ninjaNoop(sides);
    await ltspNoop(sides, tasks);

    const statePath = join(sides.cacheDir, "state.json");
    const stateBefore = statSync(statePath).mtimeMs;
    const ltspMs: number[] = [];
    const ninjaMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      // Alternate which side goes first so neither always runs on a cache the other warmed.
      if (i % 2 === 0) {
        ltspMs.push(await ltspNoop(sides, tasks));
        ninjaMs.push(await ninjaNoop(sides));
      } else {
        ninjaMs.push(await ninjaNoop(sides));
        ltspMs.push(await ltspNoop(sides, tasks));
      }
      log(`  run ${i + 1}/${runs}: ltsp-make ${fmtMs(ltspMs.at(-1)!)}, ninja ${fmtMs(ninjaMs.at(-1)!)}`);
    }
    const noopRewritesState = statSync(statePath).mtimeMs !== stateBefore;
    const stateBytes = readFileSync(statePath).length;

    let phases: Phase[] | undefined;
    if (options.breakdown) {
      log("instrumented no-op runs (bench/noop-phases.mjs) ...");
      const samples: Phase[][] = [];
      for (let i = 0; i < runs; i++) samples.push((await phasesOnce(sides)).phases);
      phases = samples[0]!.map((p, i) => ({ name: p.name, ms: median(samples.map((s) => s[i]!.ms)) }));
    }

    const ltspMedian = median(ltspMs);
    const ninjaMedian = median(ninjaMs);
    return {
      tasks,
      edges,
      runs,
      initialBuildMs,
      ltspMs,
      ninjaMs,
      ltspMedian,
      ninjaMedian,
      ratio: ltspMedian / ninjaMedian,
      phases,
      stateBytes,
      noopRewritesState,
    };
  } finally {
    dir.dispose();
  }
}

export function noopOptionsFromEnv(log: (line: string) => void): NoopOptions {
  return {
    chains: envInt("BENCH_CHAINS", 100),
    depth: envInt("BENCH_DEPTH", 100),
    runs: Math.max(5, envInt("BENCH_RUNS", 7)),
    breakdown: process.env.BENCH_BREAKDOWN !== "0",
    log,
  };
}

export function printNoop(r: NoopResult, write: (line: string) => void): void {
  write(`no-op of ${r.tasks} tasks (${r.edges} edges), median of ${r.runs}:`);
  write(`  ltsp-make ${fmtMs(r.ltspMedian)}   ninja ${fmtMs(r.ninjaMedian)}   ratio ${fmtRatio(r.ratio)} (goal ≤ 3×)`);
  write(`  full build: ltsp-make ${fmtMs(r.initialBuildMs.ltsp)}, ninja ${fmtMs(r.initialBuildMs.ninja)}`);
  write(`  state.json ${(r.stateBytes / 1e6).toFixed(1)} MB; a no-op ${r.noopRewritesState ? "REWRITES" : "leaves"} it`);
  if (r.phases) {
    write("  where ltsp-make's no-op time goes (medians):");
    for (const p of r.phases) write(`    ${p.name.padEnd(28)} ${fmtMs(p.ms).padStart(9)}`);
  }
}

if (isMain(import.meta.url)) {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const result = await runNoopBench(noopOptionsFromEnv(log));
  printNoop(result, (line) => process.stdout.write(`${line}\n`));
}
