// Runs every benchmark and prints the results as a Markdown table with the machine they ran on.
// Sizes and run counts: BENCH_RUNS (≥ 5), BENCH_CHAINS × BENCH_DEPTH tasks, BENCH_TREE_FILES;
// BENCH_BREAKDOWN=0 skips the instrumented no-op runs.
import { cpus, loadavg, totalmem } from "node:os";
import { execa } from "execa";
import { fmtMs, fmtRatio } from "./lib.ts";
import { noopOptionsFromEnv, printNoop, runNoopBench } from "./noop-graph.ts";
import { printTree, runTreeBench, treeOptionsFromEnv } from "./tree-check.ts";

const log = (line: string) => process.stderr.write(`${line}\n`);
const out = (line: string) => process.stdout.write(`${line}\n`);

async function ninjaVersion(): Promise<string> {
  try {
    return (await execa("ninja", ["--version"])).stdout.trim();
  } catch {
    return "not found";
  }
}

const loadBefore = loadavg()[0]!;
const noop = await runNoopBench(noopOptionsFromEnv(log));
log("");
const tree = await runTreeBench(treeOptionsFromEnv(log));
log("");
printNoop(noop, log);
printTree(tree, log);

const cpu = cpus()[0]?.model.trim() ?? "unknown CPU";
out("");
out(`Machine: ${cpus().length} CPUs (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}, ninja ${await ninjaVersion()}`);
// Other work on the machine skews every figure; the load average says how much there was.
out(`Load average (1 min): ${loadBefore.toFixed(2)} before, ${loadavg()[0]!.toFixed(2)} after`);
out("");
out("| benchmark | ltsp-make | reference | ratio | goal |");
out("| --- | ---: | ---: | ---: | --- |");
out(
  `| no-op, ${noop.tasks} tasks / ${noop.edges} edges (median of ${noop.runs}) | ${fmtMs(noop.ltspMedian)} | ninja ${fmtMs(noop.ninjaMedian)} | ${fmtRatio(noop.ratio)} | ≤ 3× ${noop.ratio <= 3 ? "✅" : "❌"} |`,
);
out(
  `| unchanged tree, ${tree.shape.files} files (median of ${tree.runs}) | ${fmtMs(tree.engineMedian)} | find -printf ${fmtMs(tree.findMedian)} | ${fmtRatio(tree.ratio)} | |`,
);
out(`| unchanged tree, stamp cache loaded from JSON | ${fmtMs(tree.fromStateMedian)} | | | |`);
out(
  `| first tree hash, empty stamp cache (${(tree.cold.bytes / 1e6).toFixed(0)} MB, median of ${tree.runs}) | ${fmtMs(tree.cold.ms)} | ${tree.cold.mbPerSec.toFixed(0)} MB/s, ${tree.cold.filesPerSec.toFixed(0)} files/s | | |`,
);
out(`| full build, ${noop.tasks} tasks | ${fmtMs(noop.initialBuildMs.ltsp)} | ninja ${fmtMs(noop.initialBuildMs.ninja)} | ${fmtRatio(noop.initialBuildMs.ltsp / noop.initialBuildMs.ninja)} | |`);
if (noop.phases) {
  out("");
  out("ltsp-make no-op, where the time goes (median of the instrumented runs):");
  out("");
  out("| phase | time |");
  out("| --- | ---: |");
  for (const p of noop.phases) out(`| ${p.name} | ${fmtMs(p.ms)} |`);
}
