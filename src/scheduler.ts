// Runs the stale part of a plan (design rules 5, 6, 7): critical path first through p-queue,
// resource classes limiting what runs together, scoped resources set up on first use and torn
// down after the last, early cutoff when an upstream task re-ran without changing its output.
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { writeFileAtomicSync } from "./atomic.ts";
import { CancelledError, createExec } from "./exec.ts";
import { hashString } from "./hash.ts";
import { RACY_WINDOW_MS } from "./fingerprint/stamps.ts";
import { criticalPath } from "./graph.ts";
import { keyHash, type KeyDoc } from "./key.ts";
import { observeOutput, outputHashOf, verifyOutputs } from "./outputs.ts";
import { completeKey, computeKey, recordedUpstream, renderTask, type PendingKey, type Plan, type PlanContext, type RenderedFile } from "./plan.ts";
import type { Reporter, RunSummary, TaskOutcome } from "./report/reporter.ts";
import type { OutputRecord, TaskRecord } from "./state/store.ts";
import type { GeneratedFile, Json, ResourceContext, TaskContext, TaskDef, UpstreamResult } from "./types.ts";
import { removeWorkDir } from "./workdirs.ts";

export interface RunOptions {
  jobs: number;
  keepGoing: boolean;
  reporter: Reporter;
  /** This run's private work area; created on first use. */
  workRoot: string;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
  /** Which signal aborted the run, if any. */
  interruptedBy: () => NodeJS.Signals | undefined;
}

interface Finished {
  outcome: TaskOutcome;
  outputHash?: string;
  upstream?: UpstreamResult;
}

interface ResourceSlot {
  /** Plan-stale tasks using it that have not ended yet. */
  users: number;
  value?: Promise<unknown>;
  workDir: string;
}

const LOG_TAIL = 30;

function safeName(id: string): string {
  return id.replace(/[^A-Za-z0-9._-]/g, "_");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wait until every output is older than the racy window, so its recorded stamp can be trusted. */
async function settle(paths: string[]): Promise<void> {
  let newest = 0;
  for (const path of paths) {
    try {
      const st = statSync(path);
      newest = Math.max(newest, st.mtimeMs, st.ctimeMs);
    } catch {
      // missing outputs are reported by the caller
    }
  }
  const wait = newest + RACY_WINDOW_MS + 1 - Date.now();
  if (wait > 0) await sleep(Math.min(wait, RACY_WINDOW_MS + 1));
}

export async function execute(ctx: PlanContext, plan: Plan, options: RunOptions): Promise<RunSummary> {
  const { graph, state } = ctx;
  const { reporter } = options;
  const started = Date.now();
  const selected = new Set(plan.order);
  const results = new Map<string, Finished>();
  const remainingDeps = new Map<string, number>();
  const failureStop = new AbortController();
  const runSignal = AbortSignal.any([options.signal, failureStop.signal]);
  const summary: RunSummary = { ran: 0, fresh: 0, cutoff: 0, failed: [], blocked: [], cancelled: [], durationMs: 0 };

  if (plan.order.every((id) => plan.verdicts.get(id)!.status === "fresh")) {
    // Nothing to run: no queue, no resources, no work directory.
    for (const id of plan.order) reporter.taskEnd({ id, outcome: "fresh", durationMs: 0 });
    return { ...summary, fresh: plan.order.length, durationMs: Date.now() - started, interrupted: options.interruptedBy() };
  }

  // Loaded here: a run with nothing to do does without it.
  const { default: PQueue } = await import("p-queue");
  const priorities = criticalPath(graph, selected, (id) => state.snapshot.durations[id] ?? graph.tasks.get(id)!.estimate ?? 1);
  const queue = new PQueue({ concurrency: Math.max(1, options.jobs) });
  const classes = new Map<string, { limit: number; running: number; waiting: string[] }>();
  for (const [name, limit] of Object.entries(graph.resourceClasses)) classes.set(name, { limit: Math.max(1, limit), running: 0, waiting: [] });

  const slots = new Map<string, ResourceSlot>();
  for (const id of plan.order) {
    if (plan.verdicts.get(id)!.status !== "stale") continue;
    for (const use of graph.tasks.get(id)!.uses ?? []) {
      const slot = slots.get(use) ?? { users: 0, workDir: join(options.workRoot, `resource-${safeName(use)}`) };
      slot.users++;
      slots.set(use, slot);
    }
  }

  let settleAll!: () => void;
  const allDone = new Promise<void>((resolve) => (settleAll = resolve));
  let left = plan.order.length;
  if (left === 0) settleAll();

  const upstreamOf = (id: string): UpstreamResult | undefined => results.get(id)?.upstream ?? recordedUpstream(state, id);

  const resourceContext = (id: string, workDir: string, signal: AbortSignal): ResourceContext => ({
    id,
    signal,
    workDir,
    exec: createExec(signal, (line) => reporter.note(`[${id}] ${line}`)),
    log: (message) => reporter.note(`[${id}] ${message}`),
  });

  const acquire = async (resourceId: string, signal: AbortSignal): Promise<unknown> => {
    const slot = slots.get(resourceId)!;
    if (!slot.value) {
      const def = graph.resources.get(resourceId)!;
      mkdirSync(slot.workDir, { recursive: true });
      slot.value = def.setup(resourceContext(resourceId, slot.workDir, signal));
    }
    return slot.value;
  };

  const teardown = async (resourceId: string): Promise<void> => {
    const slot = slots.get(resourceId)!;
    if (!slot.value) return;
    const pending = slot.value;
    slot.value = undefined;
    let value: unknown;
    try {
      value = await pending;
    } catch {
      return; // setup failed and cleaned up after itself
    }
    // Tear-downs must finish even when the run is being cancelled.
    const quiet = new AbortController().signal;
    try {
      await graph.resources.get(resourceId)!.teardown(value, resourceContext(resourceId, slot.workDir, quiet));
      tidy(slot.workDir, reporter);
    } catch (error) {
      reporter.note(`tear-down of ${resourceId} failed: ${(error as Error).message}`);
    }
  };

  const release = async (task: TaskDef): Promise<void> => {
    for (const use of task.uses ?? []) {
      const slot = slots.get(use);
      if (!slot) continue;
      slot.users--;
      if (slot.users <= 0) await teardown(use);
    }
  };

  const finish = async (id: string, result: Finished, durationMs: number, error?: string, logTail?: string[]): Promise<void> => {
    results.set(id, result);
    switch (result.outcome) {
      case "done":
        summary.ran++;
        break;
      case "fresh":
        summary.fresh++;
        break;
      case "cutoff":
        summary.cutoff++;
        break;
      case "failed":
        summary.failed.push(id);
        break;
      case "blocked":
        summary.blocked.push(id);
        break;
      case "cancelled":
        summary.cancelled.push(id);
        break;
    }
    reporter.taskEnd({ id, outcome: result.outcome, durationMs, error, logTail });
    // Reported before tear-down: the task is complete whatever happens while unmounting, and its
    // dependents need not wait for it either.
    const releasing = plan.verdicts.get(id)!.status === "stale" ? release(graph.tasks.get(id)!) : undefined;
    for (const dependent of graph.dependents.get(id)!) {
      if (!selected.has(dependent)) continue;
      const n = remainingDeps.get(dependent)! - 1;
      remainingDeps.set(dependent, n);
      if (n === 0) void onReady(dependent);
    }
    await releasing;
    if (--left === 0) settleAll();
  };

  const depHashNow = (dep: string): string => {
    if (graph.tasks.get(dep)!.ephemeral) return keyHash(plan.verdicts.get(dep)!.key);
    return results.get(dep)?.outputHash ?? state.record(dep)?.outputHash ?? "pending";
  };

  // The key a stale task runs with. The plan's is still current unless an upstream task was
  // stale then (its output hash was not known): only then are inputs fingerprinted again.
  type RunKey = { key: KeyDoc; rendered?: RenderedFile[]; pending?: PendingKey };
  const currentKeys = new Map<string, Promise<RunKey>>();
  const currentKey = (id: string): Promise<RunKey> => {
    let found = currentKeys.get(id);
    if (!found) {
      const task = graph.tasks.get(id)!;
      const verdict = plan.verdicts.get(id)!;
      found = Object.values(verdict.key.deps).includes("pending")
        ? (async () => {
            const rendered = task.render ? await renderTask(task, upstreamOf) : undefined;
            const { key, pending } = await computeKey(task, depHashNow, ctx, rendered, verdict.defer);
            return { key, rendered, pending };
          })()
        : Promise.resolve({ key: verdict.key, rendered: verdict.rendered, pending: verdict.pending });
      currentKeys.set(id, found);
    }
    return found;
  };

  const onReady = async (id: string): Promise<void> => {
    const task = graph.tasks.get(id)!;
    const verdict = plan.verdicts.get(id)!;
    const deps = task.deps ?? [];
    const badDep = deps.find((d) => {
      const o = results.get(d)!.outcome;
      return o === "failed" || o === "blocked" || o === "cancelled";
    });
    if (badDep) {
      const o = results.get(badDep)!.outcome;
      return finish(id, { outcome: o === "cancelled" ? "cancelled" : "blocked" }, 0, `upstream ${badDep} ${o === "failed" ? "failed" : "did not run"}`);
    }
    if (options.signal.aborted) return finish(id, { outcome: "cancelled" }, 0);
    const record = state.record(id);
    if (verdict.status === "fresh") {
      return finish(id, { outcome: "fresh", outputHash: record?.outputHash ?? keyHash(verdict.key) }, 0);
    }
    if (failureStop.signal.aborted) return finish(id, { outcome: "blocked" }, 0, "the run stopped after a failure (use --keep-going to continue)");

    // Stale only because upstream tasks ran: if their outputs came out unchanged, skip (early cutoff).
    if (verdict.conditional && record && !task.ephemeral) {
      const { key } = await currentKey(id);
      if (keyHash(key) === record.keyHash && verifyOutputs(record, ctx.stamps).length === 0) {
        return finish(id, { outcome: "cutoff", outputHash: record.outputHash, upstream: recordedUpstream(state, id) }, 0);
      }
    }
    enqueue(id);
  };

  const enqueue = (id: string): void => {
    const cls = graph.tasks.get(id)!.resourceClass;
    if (cls) {
      const c = classes.get(cls)!;
      if (c.running >= c.limit) {
        c.waiting.push(id);
        c.waiting.sort((a, b) => priorities.get(b)! - priorities.get(a)!);
        return;
      }
      c.running++;
    }
    void queue.add(() => runTask(id), { priority: priorities.get(id) ?? 0 });
  };

  const leaveClass = (id: string): void => {
    const cls = graph.tasks.get(id)!.resourceClass;
    if (!cls) return;
    const c = classes.get(cls)!;
    c.running--;
    const next = c.waiting.shift();
    if (next) {
      c.running++;
      void queue.add(() => runTask(next), { priority: priorities.get(next) ?? 0 });
    }
  };

  const runTask = async (id: string): Promise<void> => {
    const task = graph.tasks.get(id)!;
    const verdict = plan.verdicts.get(id)!;
    const begin = Date.now();
    const logTail: string[] = [];
    if (options.signal.aborted) {
      leaveClass(id);
      return finish(id, { outcome: "cancelled" }, 0);
    }
    if (failureStop.signal.aborted) {
      leaveClass(id);
      return finish(id, { outcome: "blocked" }, 0, "the run stopped after a failure (use --keep-going to continue)");
    }
    reporter.taskStart(id);
    const log = (line: string) => {
      logTail.push(line);
      if (logTail.length > LOG_TAIL) logTail.shift();
      reporter.taskLog(id, line);
    };
    const workDir = join(options.workRoot, safeName(id));
    const resources = new Map<string, unknown>();
    const stopHashing = new AbortController();
    let hashing: Promise<void> | undefined;
    try {
      if (verdict.missingTools.length) {
        throw new Error(`needs ${verdict.missingTools.join(", ")}, not found on PATH: install ${verdict.missingTools.length > 1 ? "them" : "it"} and run again`);
      }
      for (const use of task.uses ?? []) resources.set(use, await acquire(use, runSignal));
      // Inputs were fingerprinted before the task reads them: a change made while it runs shows up
      // as a stale key next time.
      let { key, rendered, pending } = await currentKey(id);
      // Files first seen by this run are hashed while the task runs (fs reads only; the key is
      // needed once it has finished).
      hashing = pending?.hashes.prefetch(AbortSignal.any([runSignal, stopHashing.signal]));
      state.markStarted(id);
      mkdirSync(workDir, { recursive: true });
      const context = taskContext(id, workDir, runSignal, log, resources, upstreamOf, reporter);
      if (rendered && task.verify) await task.verify(context, writeDrafts(rendered, workDir));
      if (rendered) writeRendered(rendered);
      const returned = task.run ? await task.run(context) : undefined;
      if (runSignal.aborted && options.signal.aborted) throw new CancelledError();
      await hashing;
      key = completeKey(key, pending);
      const value = returned === undefined ? undefined : (JSON.parse(JSON.stringify(returned)) as Json);
      const outputPaths = [...new Set([...(task.outputs ?? []), ...(rendered ?? []).map((f) => f.path)])].sort();
      await settle(outputPaths);
      const outputs: Record<string, OutputRecord> = {};
      for (const path of outputPaths) {
        const observed = observeOutput(path, ctx.stamps);
        if (!observed) throw new Error(`finished without producing its output ${path}`);
        outputs[path] = observed;
      }
      // What the task changed outside this machine is recorded as it is now, after the run.
      if (task.probe) key = { ...key, inputs: { ...key.inputs, probe: await task.probe() } };
      const hash = keyHash(key);
      const outputHash = task.ephemeral ? hash : outputHashOf(hash, outputs, value);
      const record: TaskRecord = { keyHash: hash, outputs, outputHash, finishedAt: new Date().toISOString() };
      if (value !== undefined) record.value = value;
      state.markFinished(id, record, key, Date.now() - begin);
      tidy(workDir, reporter);
      leaveClass(id);
      await finish(id, { outcome: "done", outputHash, upstream: recordedUpstream(state, id) }, Date.now() - begin);
    } catch (error) {
      stopHashing.abort();
      await hashing?.catch(() => {});
      const cancelled = options.signal.aborted || error instanceof CancelledError;
      tidy(workDir, reporter);
      leaveClass(id);
      if (!cancelled && !options.keepGoing) failureStop.abort();
      const message = error instanceof Error ? error.message : String(error);
      await finish(id, { outcome: cancelled ? "cancelled" : "failed" }, Date.now() - begin, cancelled ? undefined : message, logTail);
    }
  };

  for (const id of plan.order) {
    const deps = new Set(graph.tasks.get(id)!.deps ?? []);
    remainingDeps.set(id, deps.size);
  }
  const initiallyReady = plan.order.filter((id) => remainingDeps.get(id) === 0);
  // p-queue starts a task the moment it is added while a slot is free: hold the queue until every
  // initially ready task is in it, so the first ones to start are the highest-priority ones.
  queue.pause();
  for (const id of initiallyReady) void onReady(id);
  queue.start();

  await allDone;
  await queue.onIdle();
  // Anything still set up (a user was cancelled before it could release) is torn down now.
  for (const [id, slot] of slots) if (slot.value) await teardown(id);
  tidy(options.workRoot, reporter);
  summary.durationMs = Date.now() - started;
  summary.interrupted = options.interruptedBy();
  return summary;
}

function tidy(dir: string, reporter: Reporter): void {
  try {
    removeWorkDir(dir);
  } catch (error) {
    reporter.note((error as Error).message);
  }
}

function writeDrafts(files: RenderedFile[], workDir: string): GeneratedFile[] {
  return files.map((file, i) => {
    const draft = join(workDir, `draft-${i}-${basename(file.path)}`);
    writeFileSync(draft, file.content, { mode: file.mode });
    return { ...file, draft };
  });
}

function writeRendered(files: RenderedFile[]): void {
  for (const file of files) {
    mkdirSync(dirname(file.path), { recursive: true });
    writeFileAtomicSync(file.path, file.content, file.mode);
  }
}

function taskContext(
  id: string,
  workDir: string,
  signal: AbortSignal,
  log: (line: string) => void,
  resources: Map<string, unknown>,
  upstreamOf: (id: string) => UpstreamResult | undefined,
  reporter: Reporter,
): TaskContext {
  return {
    id,
    signal,
    workDir,
    exec: createExec(signal, log),
    log,
    notice: (message) => reporter.notice(id, message),
    progress: (fraction, text) => reporter.taskProgress(id, Math.max(0, Math.min(1, fraction)), text),
    resource<T>(resourceId: string): T {
      if (!resources.has(resourceId)) throw new Error(`task ${id} asked for resource ${resourceId} without listing it in uses`);
      return resources.get(resourceId) as T;
    },
    async writeFile(path, content, mode) {
      mkdirSync(dirname(path), { recursive: true });
      writeFileAtomicSync(path, content, mode);
    },
    upstream(upstreamId) {
      const result = upstreamOf(upstreamId);
      if (!result) throw new Error(`task ${id} read upstream ${upstreamId}, which has no result: list it in deps`);
      return result;
    },
  };
}

