// The command line: parse, load the config, build the graph, then plan, run, explain or draw it.
import { accessSync, constants, mkdirSync, rmSync } from "node:fs";
import { cpus } from "node:os";
import { dirname, join, resolve } from "node:path";
import { Command, Option } from "commander";
import { ConfigError, loadConfigFile, VERSION } from "./config.ts";
import { standaloneExec } from "./exec.ts";
import { StampCache } from "./fingerprint/stamps.ts";
import { ToolVersions } from "./fingerprint/tools.ts";
import { checkGraph, GraphError, selectTargets, TargetError, type CheckedGraph } from "./graph.ts";
import { initHash } from "./hash.ts";
import type { ConfigInput } from "./index.ts";
import { diffKeys, explainChange } from "./key.ts";
import { fileChanges, makePlan, planToJson, type Plan, type PlanContext } from "./plan.ts";
import { buildGraph, evaluateConfig } from "./project.ts";
import type { Reporter } from "./report/reporter.ts";
import { LockHeldError, StateLock } from "./state/lock.ts";
import { StateError, StateStore, isFinished } from "./state/store.ts";
import type { Roots } from "./types.ts";
import { deadRunWorkDirs, removeWorkDir, runWorkDir } from "./workdirs.ts";

export const EXIT = { ok: 0, failed: 1, usage: 2, sigint: 130, sigterm: 143 } as const;

class UsageError extends Error {}

interface CommonOptions {
  config?: string;
  cacheDir?: string;
  baseDir?: string;
  tftpDir?: string;
  homeDir?: string;
  etcDir?: string;
  jobs?: string;
  keepGoing?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  force?: true | string[];
  dryRun?: boolean;
}

function addCommonOptions(command: Command): Command {
  return command
    .option("-c, --config <file>", "config file (default: ./ltspfile.ts; without one, built-in defaults)")
    .option("--cache-dir <dir>", "state directory (default: cache/ next to the config file)")
    .option("--base-dir <dir>", "LTSP base directory: chroots, VM disks, images/ (default: /srv/ltsp)")
    .option("--tftp-dir <dir>", "TFTP root (default: /srv/tftp)")
    .option("--home-dir <dir>", "home directories, for the NFS home export (default: /home)")
    .option("--etc-dir <dir>", "where server configs are read and written (default: /etc)")
    .option("-q, --quiet", "print only failures and the summary")
    .option("-v, --verbose", "print every command and log line");
}

function addRunOptions(command: Command): Command {
  return command
    .option("-j, --jobs <n>", "run at most N tasks at once (default: CPU count)")
    .option("-k, --keep-going", "after a failure, go on with work that does not depend on it")
    .addOption(
      new Option("--force [task]", "rebuild every selected task, or only TASK; write --force=TASK (repeatable)").argParser(
        (value: string, previous: true | string[] | undefined) => (previous === true ? true : [...(previous ?? []), value]),
      ),
    );
}

interface Session {
  roots: Roots;
  graph: CheckedGraph;
  state: StateStore;
  stamps: StampCache;
  tools: ToolVersions;
  options: CommonOptions;
  /** Once the targets proved valid too: skip the type check until the config changes. */
  rememberTypeCheck(): void;
}

function rootsFrom(options: CommonOptions, configPath: string | undefined): Roots {
  const cacheDir = resolve(options.cacheDir ?? join(configPath ? dirname(configPath) : process.cwd(), "cache"));
  return {
    baseDir: resolve(options.baseDir ?? "/srv/ltsp"),
    tftpDir: resolve(options.tftpDir ?? "/srv/tftp"),
    homeDir: resolve(options.homeDir ?? "/home"),
    etcDir: resolve(options.etcDir ?? "/etc"),
    cacheDir,
  };
}

async function openSession(options: CommonOptions, readOnly: boolean): Promise<Session> {
  const configFile = options.config ?? "ltspfile.ts";
  const provisionalCache = resolve(options.cacheDir ?? join(dirname(resolve(configFile)), "cache"));
  await initHash();
  const loaded = await loadConfigFile<ConfigInput>(configFile, options.config !== undefined, provisionalCache, readOnly);
  const roots = rootsFrom(options, loaded.path);
  let config;
  try {
    config = evaluateConfig(loaded.config, roots);
  } catch (error) {
    throw new ConfigError(`${loaded.path}: evaluating the config failed: ${(error as Error).message}`);
  }
  let graph: CheckedGraph;
  try {
    graph = checkGraph(buildGraph(config, roots));
  } catch (error) {
    if (error instanceof GraphError) throw error;
    throw new ConfigError(`${loaded.path ?? "the built-in defaults"}: ${(error as Error).message}`);
  }
  const state = StateStore.load(roots.cacheDir, `ltsp-make ${VERSION}`);
  const generation = readOnly ? state.snapshot.generation : state.snapshot.generation + 1;
  if (!readOnly) state.snapshot.generation = generation;
  const stamps = new StampCache(state.snapshot.stamps, generation);
  const tools = new ToolVersions(state.snapshot.tools, standaloneExec());
  if (config.jobs !== undefined && options.jobs === undefined) options.jobs = String(config.jobs);
  return { roots, graph, state, stamps, tools, options, rememberTypeCheck: loaded.rememberTypeCheck };
}

function forceSet(options: CommonOptions, graph: CheckedGraph): PlanContext["force"] {
  if (options.force === true) return "all";
  const ids = new Set<string>();
  for (const target of options.force ?? []) for (const id of selectTargets(graph, [target])) if (id === target || !graph.tasks.has(target)) ids.add(id);
  return ids;
}

function ensureWritable(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (error) {
    throw new UsageError(
      `the state directory ${dir} is not writable (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}).\n` +
        `Run as a user who can write it, or choose another one with --cache-dir.`,
    );
  }
}

async function createReporter(options: CommonOptions): Promise<Reporter> {
  const interactive = process.stdout.isTTY && !process.env.CI && process.env.TERM !== "dumb" && !options.verbose;
  if (interactive && !options.quiet) {
    const { ListrReporter } = await import("./report/listr.ts");
    return new ListrReporter(Boolean(options.verbose));
  }
  const { PlainReporter } = await import("./report/plain.ts");
  return new PlainReporter({ verbose: Boolean(options.verbose), quiet: Boolean(options.quiet) });
}

async function build(targets: string[], options: CommonOptions): Promise<number> {
  if (options.dryRun) return plan(targets, { ...options }, {});
  const session = await openSession(options, false);
  const { roots, graph, state, stamps, tools } = session;
  const selected = selectTargets(graph, targets);
  const force = forceSet(options, graph);
  ensureWritable(roots.cacheDir);
  session.rememberTypeCheck();
  const lock = new StateLock(roots.cacheDir);
  const takenOver = lock.acquire(["ltsp-make", ...process.argv.slice(2)].join(" "));

  const interrupt = new AbortController();
  let interruptedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interruptedBy) {
      process.stderr.write(`ltsp-make: ${signal} again; still cleaning up (unmounting, stopping commands)...\n`);
      return;
    }
    interruptedBy = signal;
    process.stderr.write(`ltsp-make: ${signal}: cancelling running tasks and cleaning up...\n`);
    interrupt.abort();
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGHUP", onSignal);

  const reporter = await createReporter(options);
  try {
    if (takenOver) reporter.note(`took over the lock of a run that is gone (PID ${takenOver.pid})`);
    if (state.tornLines) reporter.note(`ignored ${state.tornLines} cut-off line(s) at the end of the state journal`);
    const dead = deadRunWorkDirs(roots.cacheDir);
    if (dead.length) {
      for (const sweeper of graph.sweepers) await sweeper.sweep(dead, (m) => reporter.note(`[sweep ${sweeper.id}] ${m}`));
      for (const dir of dead) {
        try {
          removeWorkDir(dir);
        } catch (error) {
          process.stderr.write(`ltsp-make: ${(error as Error).message}\n`);
        }
      }
    }
    const context: PlanContext = { graph, state, stamps, tools, force };
    const thePlan = await makePlan(context, selected);
    reporter.begin(thePlan.order.map((id) => ({ id, title: thePlan.verdicts.get(id)!.title, willRun: thePlan.verdicts.get(id)!.status === "stale" })));
    const { execute } = await import("./scheduler.ts");
    const jobs = options.jobs ? Number(options.jobs) : cpus().length;
    const summary = await execute(context, thePlan, {
      jobs,
      keepGoing: Boolean(options.keepGoing),
      reporter,
      workRoot: runWorkDir(roots.cacheDir),
      signal: interrupt.signal,
      interruptedBy: () => interruptedBy,
    });
    if (summary.ran > 0 || stamps.changed || tools.changed || summary.failed.length || summary.cancelled.length) {
      state.save({ stamps: stamps.toJSON(), tools: tools.toJSON() });
    }
    await reporter.end(summary);
    if (summary.interrupted === "SIGTERM") return EXIT.sigterm;
    if (summary.interrupted) return EXIT.sigint;
    return summary.failed.length ? EXIT.failed : EXIT.ok;
  } finally {
    state.closeJournal();
    lock.release();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    process.off("SIGHUP", onSignal);
  }
}

interface PlanFlags {
  json?: boolean;
  markdown?: boolean;
  diff?: boolean;
}

function printPlanText(thePlan: Plan, withDiffs: boolean): void {
  const width = Math.max(4, ...thePlan.order.map((id) => id.length));
  const out: string[] = [];
  const diffs: string[] = [];
  for (const id of thePlan.order) {
    const v = thePlan.verdicts.get(id)!;
    const reasons = v.status === "stale" ? v.reasons.join("; ") : "";
    out.push(`${id.padEnd(width)}  ${v.status.padEnd(5)}  ${reasons}`.trimEnd());
    if (withDiffs && v.status === "stale") for (const change of fileChanges(v)) diffs.push(change.diff.trimEnd());
  }
  const stale = thePlan.order.filter((id) => thePlan.verdicts.get(id)!.status === "stale").length;
  out.push(`${stale} stale, ${thePlan.order.length - stale} fresh`);
  if (diffs.length) out.push("", ...diffs);
  process.stdout.write(`${out.join("\n")}\n`);
}

function printPlanMarkdown(thePlan: Plan, withDiffs: boolean): void {
  const out = ["| task | status | why |", "| --- | --- | --- |"];
  const diffs: string[] = [];
  for (const id of thePlan.order) {
    const v = thePlan.verdicts.get(id)!;
    const why = v.status === "stale" ? v.reasons.join("<br>").replace(/\|/g, "\\|") : "";
    out.push(`| \`${id}\` | ${v.status} | ${why} |`);
    if (withDiffs && v.status === "stale") for (const change of fileChanges(v)) diffs.push(`\`${change.path}\`\n\n\`\`\`diff\n${change.diff.trimEnd()}\n\`\`\``);
  }
  const stale = thePlan.order.filter((id) => thePlan.verdicts.get(id)!.status === "stale").length;
  out.push("", `**${stale} stale, ${thePlan.order.length - stale} fresh**`);
  if (diffs.length) out.push("", "### Generated files", "", ...diffs);
  process.stdout.write(`${out.join("\n")}\n`);
}

async function plan(targets: string[], options: CommonOptions, flags: PlanFlags): Promise<number> {
  const session = await openSession(options, true);
  const { graph, state, stamps, tools } = session;
  const selected = selectTargets(graph, targets);
  const thePlan = await makePlan({ graph, state, stamps, tools, force: forceSet(options, graph) }, selected);
  const withDiffs = flags.diff !== false;
  if (flags.json) process.stdout.write(`${JSON.stringify(planToJson(thePlan, withDiffs), null, 2)}\n`);
  else if (flags.markdown) printPlanMarkdown(thePlan, withDiffs);
  else printPlanText(thePlan, withDiffs);
  return EXIT.ok;
}

async function explain(taskId: string, options: CommonOptions): Promise<number> {
  const session = await openSession(options, true);
  const { graph, state, stamps, tools } = session;
  if (!graph.tasks.has(taskId)) selectTargets(graph, [taskId]); // throws with a suggestion
  const selected = selectTargets(graph, [taskId]);
  const thePlan = await makePlan({ graph, state, stamps, tools, force: new Set() }, selected);
  const ids = graph.tasks.has(taskId) ? [taskId] : thePlan.order;
  const out: string[] = [];
  for (const id of ids) {
    const v = thePlan.verdicts.get(id)!;
    const raw = state.tasks[id];
    out.push(`${id}: ${v.status}`);
    // An unfinished task's reasons say so (never built, or did not finish).
    if (isFinished(raw)) {
      const recorded = state.recordedKey(id);
      const changes = recorded ? diffKeys(recorded, v.key) : [];
      if (!recorded) out.push("  (the recorded key document is unavailable)");
      if (changes.length === 0) out.push("  key: unchanged since it was built");
      for (const change of changes) out.push(`  ${explainChange(change)}`);
    }
    for (const reason of v.reasons) out.push(`  - ${reason}`);
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return EXIT.ok;
}

async function graphCommand(targets: string[], options: CommonOptions & { format: string }): Promise<number> {
  const session = await openSession(options, true);
  const { graph } = session;
  const selected = selectTargets(graph, targets);
  const ids = graph.order.filter((id) => selected.has(id));
  const lines: string[] = [];
  if (options.format === "mermaid") {
    const n = new Map(ids.map((id, i) => [id, `t${i}`]));
    lines.push("graph LR");
    for (const id of ids) lines.push(`  ${n.get(id)}["${id}"]`);
    for (const id of ids) for (const dep of graph.tasks.get(id)!.deps ?? []) lines.push(`  ${n.get(dep)} --> ${n.get(id)}`);
  } else if (options.format === "list") {
    for (const id of ids) lines.push(`${id}${graph.tasks.get(id)!.deps?.length ? `  <- ${graph.tasks.get(id)!.deps!.join(", ")}` : ""}`);
  } else {
    lines.push("digraph ltsp_make {", "  rankdir=LR;");
    for (const id of ids) lines.push(`  "${id}";`);
    for (const id of ids) for (const dep of graph.tasks.get(id)!.deps ?? []) lines.push(`  "${dep}" -> "${id}";`);
    lines.push("}");
  }
  process.stdout.write(`${lines.join("\n")}\n`);
  return EXIT.ok;
}

async function clean(targets: string[], options: CommonOptions & { outputs?: boolean }): Promise<number> {
  const session = await openSession(options, false);
  const { graph, state, roots, stamps, tools } = session;
  ensureWritable(roots.cacheDir);
  const lock = new StateLock(roots.cacheDir);
  lock.acquire(["ltsp-make", ...process.argv.slice(2)].join(" "));
  try {
    const selected = targets.length ? selectTargets(graph, targets) : new Set(graph.tasks.keys());
    let forgotten = 0;
    for (const id of graph.order) {
      if (!selected.has(id)) continue;
      const record = state.record(id);
      if (options.outputs && record) for (const path of Object.keys(record.outputs)) rmSync(path, { recursive: true, force: true });
      if (state.tasks[id] !== undefined) {
        state.forget(id);
        forgotten++;
      }
    }
    for (const dir of deadRunWorkDirs(roots.cacheDir)) removeWorkDir(dir);
    state.save({ stamps: stamps.toJSON(), tools: tools.toJSON() });
    if (!options.quiet) process.stdout.write(`forgot ${forgotten} task(s)${options.outputs ? " and removed their outputs" : ""}\n`);
    return EXIT.ok;
  } finally {
    lock.release();
  }
}

/** A subcommand's options with the ones given before it (`ltsp-make -v plan`). */
function withGlobals<T>(cmd: Command): T {
  const merged: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(cmd.optsWithGlobals())) if (value !== undefined) merged[key] = value;
  return merged as T;
}

async function revert(name: string, options: CommonOptions): Promise<number> {
  const session = await openSession(options, false);
  const { roots, state, stamps, tools } = session;
  ensureWritable(roots.cacheDir);
  const lock = new StateLock(roots.cacheDir);
  lock.acquire(["ltsp-make", ...process.argv.slice(2)].join(" "));
  try {
    const { revertImage } = await import("../tasks/commands.ts");
    let message: string;
    try {
      message = revertImage(name, session);
    } catch (error) {
      throw new UsageError((error as Error).message);
    }
    state.save({ stamps: stamps.toJSON(), tools: tools.toJSON() });
    process.stdout.write(`${message}\n`);
    return EXIT.ok;
  } finally {
    state.closeJournal();
    lock.release();
  }
}

export function program(): Command {
  const root = new Command("ltsp-make")
    .description("Builds what LTSP clients netboot from, incrementally: images, kernels, ltsp.img, iPXE, NFS, NBD, dnsmasq.")
    .version(`ltsp-make ${VERSION}`, "-V, --version")
    .argument("[targets...]", "tasks, groups (image:NAME), operations (kernel) or all", [])
    .option("-n, --dry-run", "show the plan instead of running it")
    .addHelpText(
      "after",
      `
Exit codes: 0 success, 1 a task failed, 2 usage, config or state error, 130 interrupted (SIGINT), 143 terminated (SIGTERM).
Examples:
  ltsp-make                  build everything that is stale
  ltsp-make plan             what would run, why, and the diff of every generated config
  ltsp-make explain initrd   which field of the task's key changed`,
    )
    .showHelpAfterError()
    .action(async (targets: string[], options: CommonOptions) => setExitCode(await build(targets, options)));
  addRunOptions(addCommonOptions(root));

  addCommonOptions(
    root
      .command("plan")
      .alias("dry-run")
      .description("show what would run and why, and the diff of every generated file; changes nothing")
      .argument("[targets...]", "what to plan (default: all)", [])
      .option("--json", "machine-readable output")
      .option("--markdown", "a table and diffs for a review comment")
      .option("--no-diff", "leave out file diffs")
      .addOption(new Option("--force [task]", "plan as if forced").argParser((v: string, p: true | string[] | undefined) => (p === true ? true : [...(p ?? []), v])))
      .action(async (targets: string[], _o: unknown, cmd: Command) => {
        const options = withGlobals<CommonOptions & PlanFlags>(cmd);
        setExitCode(await plan(targets, options, options));
      }),
  );
  addCommonOptions(
    root
      .command("explain")
      .description("compare a task's recorded key with the current one, field by field")
      .argument("<task>", "task id (or a group to explain each of its tasks)")
      .action(async (task: string, _o: unknown, cmd: Command) => setExitCode(await explain(task, withGlobals(cmd)))),
  );
  addCommonOptions(
    root
      .command("graph")
      .description("print the task graph")
      .argument("[targets...]", "what to draw (default: all)", [])
      .addOption(new Option("--format <format>", "output format").choices(["dot", "mermaid", "list"]).default("dot"))
      .action(async (targets: string[], _o: unknown, cmd: Command) => setExitCode(await graphCommand(targets, withGlobals(cmd)))),
  );
  addCommonOptions(
    root
      .command("clean")
      .description("forget the recorded state of tasks so they rebuild (published files stay unless --outputs)")
      .argument("[targets...]", "what to forget (default: everything)", [])
      .option("--outputs", "also delete the tasks' outputs")
      .action(async (targets: string[], _o: unknown, cmd: Command) => setExitCode(await clean(targets, withGlobals(cmd)))),
  );
  addCommonOptions(
    root
      .command("revert")
      .description("point an image back at its previous generation (upstream: ltsp image -r)")
      .argument("<name>", "image name")
      .action(async (name: string, _o: unknown, cmd: Command) => setExitCode(await revert(name, withGlobals(cmd)))),
  );
  return root;
}

function errorExit(error: unknown): number {
  const known = [ConfigError, GraphError, TargetError, StateError, LockHeldError, UsageError];
  if (known.some((k) => error instanceof k)) {
    process.stderr.write(`ltsp-make: ${(error as Error).message}\n`);
    return EXIT.usage;
  }
  if (error && typeof error === "object" && "code" in error && String((error as { code: unknown }).code).startsWith("commander.")) {
    const code = (error as { exitCode?: number }).exitCode ?? EXIT.usage;
    return code === 0 ? EXIT.ok : EXIT.usage;
  }
  process.stderr.write(`ltsp-make: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  return EXIT.failed;
}

export async function main(argv: string[]): Promise<number> {
  let code: number = EXIT.ok;
  const cli = program();
  cli.exitOverride();
  for (const sub of cli.commands) sub.exitOverride();
  try {
    lastCode = EXIT.ok;
    await cli.parseAsync(argv, { from: "user" });
    code = lastCode;
  } catch (error) {
    code = errorExit(error);
  }
  return code;
}

// commander does not return action results; actions store their exit code here.
let lastCode: number = EXIT.ok;
function setExitCode(code: number): void {
  lastCode = code;
}
