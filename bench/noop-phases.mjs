#!/usr/bin/env node
// One instrumented ltsp-make build: the same steps, in the same order and through the same loader
// as bin/ltsp-make.js (the compiled dist/ when it is current, else jiti on the sources) and
// src/cli.ts's build(), with a timestamp after each.
// Plain JavaScript like bin/ltsp-make.js, so no extra loader hook skews the start-up figures.
// Usage: node bench/noop-phases.mjs CACHE_DIR CONFIG_FILE ROOTS_DIR TARGET → prints [{name, ms}, ...] as JSON.
// ROOTS_DIR holds base/, tftp/, home/ and etc/, used as the roots (never the real /srv or /etc).
import { performance } from "node:perf_hooks";
import { distIsCurrent, importEngine } from "../bin/engine.js";

const marks = [{ name: "node start (to first line)", ms: performance.now() }];
let last = performance.now();
const mark = (name) => {
  const now = performance.now();
  marks.push({ name, ms: now - last });
  last = now;
};

const [cacheDir, configFile, rootsDir, target] = process.argv.slice(2);
if (!cacheDir || !configFile || !rootsDir || !target) {
  process.stderr.write("usage: node bench/noop-phases.mjs CACHE_DIR CONFIG_FILE ROOTS_DIR TARGET\n");
  process.exit(2);
}

const compiled = distIsCurrent();
await importEngine("src/cli");
const { loadConfigFile, VERSION } = await importEngine("src/config");
const { initHash } = await importEngine("src/hash");
const { buildGraph, evaluateConfig } = await importEngine("src/project");
const { checkGraph, selectTargets } = await importEngine("src/graph");
const { StateStore } = await importEngine("src/state/store");
const { StateLock } = await importEngine("src/state/lock");
const { StampCache } = await importEngine("src/fingerprint/stamps");
const { ToolVersions } = await importEngine("src/fingerprint/tools");
const { standaloneExec } = await importEngine("src/exec");
const { makePlan } = await importEngine("src/plan");
const { deadRunWorkDirs, runWorkDir } = await importEngine("src/workdirs");
mark(compiled ? "load engine modules (dist/)" : "load engine modules (jiti)");

await initHash();
mark("initHash (xxhash wasm)");

const loaded = await loadConfigFile(configFile, true, cacheDir, false);
mark("load ltspfile.ts (jiti)");

const roots = { baseDir: `${rootsDir}/base`, tftpDir: `${rootsDir}/tftp`, homeDir: `${rootsDir}/home`, etcDir: `${rootsDir}/etc`, cacheDir };
const config = evaluateConfig(loaded.config, roots);
const graph = checkGraph(buildGraph(config, roots));
const selected = selectTargets(graph, [target]);
mark("build + check graph");

const state = StateStore.load(cacheDir, `ltsp-make ${VERSION}`);
state.snapshot.generation += 1;
const stamps = new StampCache(state.snapshot.stamps, state.snapshot.generation);
const tools = new ToolVersions(state.snapshot.tools, standaloneExec());
mark("load state (state.json)");

const lock = new StateLock(cacheDir);
lock.acquire("ltsp-make bench/noop-phases.mjs");
deadRunWorkDirs(cacheDir);
mark("lock + work dirs");

const context = { graph, state, stamps, tools, force: new Set() };
const plan = await makePlan(context, selected);
mark("plan (keys, stamps, outputs)");

const { PlainReporter } = await importEngine("src/report/plain");
const { execute } = await importEngine("src/scheduler");
const reporter = new PlainReporter({ verbose: false, quiet: true, write: () => {} });
reporter.begin(plan.order.map((id) => ({ id, title: plan.verdicts.get(id).title, willRun: plan.verdicts.get(id).status === "stale" })));
const summary = await execute(context, plan, {
  jobs: config.jobs ?? 2,
  keepGoing: false,
  reporter,
  workRoot: runWorkDir(cacheDir),
  signal: new AbortController().signal,
  interruptedBy: () => undefined,
});
if (summary.ran !== 0) throw new Error(`expected a no-op, but ${summary.ran} task(s) ran`);
mark("scheduler (all fresh)");

const saved = summary.ran > 0 || stamps.changed || tools.changed || summary.failed.length > 0;
if (saved) state.save({ stamps: stamps.toJSON(), tools: tools.toJSON() });
state.closeJournal();
lock.release();
mark(saved ? "save state.json (rewritten)" : "save state.json (skipped)");

process.stdout.write(`${JSON.stringify(marks)}\n`);
