// The plan (design rule 8): for every selected task, stale or fresh and why. Making a plan reads
// and never writes; the scheduler reuses the same key computation when it runs tasks.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { hashBytes, hashString } from "./hash.ts";
import { DeferredHashes } from "./fingerprint/deferred.ts";
import { fingerprintInput, inputLabel, isPending, type PendingInput } from "./fingerprint/inputs.ts";
import { MISSING, type ToolVersions } from "./fingerprint/tools.ts";
import type { StampCache } from "./fingerprint/stamps.ts";
import type { CheckedGraph } from "./graph.ts";
import { describeChange, diffKeys, keyHash, type KeyDoc } from "./key.ts";
import { verifyOutputs } from "./outputs.ts";
import { isFinished, type StateStore } from "./state/store.ts";
import type { Json, TaskDef, UpstreamResult } from "./types.ts";

const require = createRequire(import.meta.url);

export interface RenderedFile {
  path: string;
  content: Buffer;
  mode: number;
}

export interface FileChange {
  path: string;
  kind: "create" | "change" | "binary";
  diff: string;
}

export interface Verdict {
  id: string;
  title: string;
  status: "stale" | "fresh";
  reasons: string[];
  /** Stale only because an upstream task runs; early cutoff may still skip it. */
  conditional: boolean;
  key: KeyDoc;
  missingTools: string[];
  rendered?: RenderedFile[];
  /** The task runs whatever its inputs hold: files not seen before are hashed while it runs. */
  defer: boolean;
  /** Inputs of `key` still waiting for those hashes. */
  pending?: PendingKey;
}

/** The part of a key that waits for file hashes taken while the task runs. */
export interface PendingKey {
  hashes: DeferredHashes;
  inputs: Array<[label: string, input: PendingInput]>;
}

/** What a pending input holds in the key until its task has run. */
export const PENDING_INPUT = "hashed while the task runs";

export interface Plan {
  verdicts: Map<string, Verdict>;
  /** Selected tasks in stable topological order. */
  order: string[];
}

export interface PlanContext {
  graph: CheckedGraph;
  state: StateStore;
  stamps: StampCache;
  tools: ToolVersions;
  force: "all" | Set<string>;
}

export function renderedFilesHash(files: RenderedFile[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of files) out[f.path] = hashString(`${f.mode.toString(8)}:${hashBytes(f.content)}`);
  return out;
}

export async function renderTask(task: TaskDef, upstream: (id: string) => UpstreamResult | undefined): Promise<RenderedFile[]> {
  const files = await task.render!({ id: task.id, upstream });
  return Object.entries(files)
    .map(([path, spec]) => {
      const content = typeof spec === "string" ? spec : spec.content;
      const mode = typeof spec === "string" ? 0o644 : (spec.mode ?? 0o644);
      if (!path.startsWith("/")) throw new Error(`task ${task.id} rendered ${path}: generated file paths must be absolute`);
      return { path, content: typeof content === "string" ? Buffer.from(content) : content, mode };
    })
    .sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** The key of a task as things are now; `depHash` gives each upstream task's output hash. */
export async function computeKey(
  task: TaskDef,
  depHash: (id: string) => string,
  ctx: Pick<PlanContext, "stamps" | "tools">,
  rendered?: RenderedFile[],
  defer = false,
): Promise<{ key: KeyDoc; missingTools: string[]; pending?: PendingKey }> {
  const inputs: Record<string, Json> = {};
  const hashes = defer ? new DeferredHashes(ctx.stamps) : undefined;
  let pendingInputs: PendingKey["inputs"] | undefined;
  for (const spec of task.inputs ?? []) {
    const label = inputLabel(spec);
    const fingerprint = fingerprintInput(spec, ctx.stamps, hashes);
    if (isPending(fingerprint)) {
      inputs[label] = PENDING_INPUT;
      (pendingInputs ??= []).push([label, fingerprint]);
    } else inputs[label] = fingerprint;
  }
  if (task.probe) {
    try {
      inputs.probe = await task.probe();
    } catch (error) {
      // Unknown state counts as changed: the task runs, and fails there with the real error.
      inputs.probe = { failed: (error as Error).message };
    }
  }
  // Maps in the key need no particular order: its text sorts them (keyText).
  const env: Record<string, string | null> = {};
  for (const name of task.env ?? []) env[name] = process.env[name] ?? null;
  const tools: Record<string, string> = {};
  const missingTools: string[] = [];
  for (const tool of task.tools ?? []) {
    const version = await ctx.tools.version(tool);
    tools[tool.name] = version;
    if (version === MISSING) missingTools.push(tool.name);
  }
  const deps: Record<string, string> = {};
  for (const dep of task.deps ?? []) deps[dep] ??= depHash(dep);
  const colon = task.id.indexOf(":");
  const key: KeyDoc = {
    kind: task.kind ?? (colon < 0 ? task.id : task.id.slice(0, colon)),
    version: task.version ?? 1,
    params: task.params ?? {},
    inputs,
    env,
    tools,
    deps,
  };
  if (rendered) key.files = renderedFilesHash(rendered);
  return { key, missingTools, pending: pendingInputs ? { hashes: hashes!, inputs: pendingInputs } : undefined };
}

/** The key with every pending input fingerprinted, hashing whatever is still left. */
export function completeKey(key: KeyDoc, pending: PendingKey | undefined): KeyDoc {
  if (!pending) return key;
  pending.hashes.finish();
  const inputs = { ...key.inputs };
  for (const [label, input] of pending.inputs) inputs[label] = input.finish();
  return { ...key, inputs };
}

export function recordedUpstream(state: StateStore, id: string): UpstreamResult | undefined {
  const record = state.record(id);
  if (!record) return undefined;
  const outputs: Record<string, string> = {};
  for (const [path, hash] of Object.entries(record.outputs)) outputs[path] = hash;
  return { id, outputs, value: record.value };
}

function unfinishedReason(state: StateStore, id: string): string {
  const raw = state.tasks[id];
  if (raw && !isFinished(raw)) return `did not finish in an earlier run (started ${raw.started})`;
  return "never built";
}

export async function makePlan(ctx: PlanContext, selected: Set<string>): Promise<Plan> {
  const { graph, state } = ctx;
  const verdicts = new Map<string, Verdict>();
  const order = graph.order.filter((id) => selected.has(id));
  const upstream = (id: string) => recordedUpstream(state, id);

  for (const id of order) {
    const task = graph.tasks.get(id)!;
    const record = state.record(id);
    const reasons: string[] = [];
    let upstreamRuns = false;
    const depHash = (dep: string): string => {
      const v = verdicts.get(dep)!;
      if (graph.tasks.get(dep)!.ephemeral) return keyHash(v.key);
      if (v.status === "stale") {
        upstreamRuns = true;
        return "pending";
      }
      return state.record(dep)?.outputHash ?? "pending";
    };
    const rendered = task.render ? await renderTask(task, upstream) : undefined;
    const forced = ctx.force === "all" || ctx.force.has(id);
    const defer = !task.ephemeral && (forced || !record);
    const { key, missingTools, pending } = await computeKey(task, depHash, ctx, rendered, defer);

    if (forced) reasons.push("forced (--force)");
    if (!record) {
      reasons.push(unfinishedReason(state, id));
    } else {
      // A pending key (only when forced here) cannot be compared yet: the task runs anyway.
      if (!pending && keyHash(key) !== record.keyHash) {
        const recordedKey = state.recordedKey(id);
        const changes = recordedKey ? diffKeys(recordedKey, key) : [];
        for (const change of changes) {
          if (change.section === "upstream" && change.after === "pending") continue;
          reasons.push(describeChange(change));
        }
        if (!recordedKey) reasons.push("key changed (its recorded document is unavailable)");
      }
      if (!task.ephemeral) reasons.push(...verifyOutputs(record, ctx.stamps));
    }
    const conditional = reasons.length === 0 && upstreamRuns;
    if (conditional) {
      for (const d of task.deps ?? []) if (!graph.tasks.get(d)!.ephemeral && verdicts.get(d)!.status === "stale") reasons.push(`upstream ${d} runs`);
    }
    verdicts.set(id, {
      id,
      title: task.title ?? id,
      status: reasons.length > 0 && !task.ephemeral ? "stale" : "fresh",
      reasons,
      conditional,
      key,
      missingTools,
      rendered,
      defer,
      pending,
    });
  }

  // Ephemeral tasks (effects inside a scoped resource) run exactly when a later task using the
  // same resource runs.
  for (let i = order.length - 1; i >= 0; i--) {
    const id = order[i]!;
    const task = graph.tasks.get(id)!;
    if (!task.ephemeral) continue;
    const verdict = verdicts.get(id)!;
    const needer = findResourcePeer(ctx.graph, verdicts, id, selected);
    if (needer) {
      verdict.status = "stale";
      verdict.reasons = [`needed by ${needer.task}, which runs inside ${needer.resource}`];
    } else {
      verdict.status = "fresh";
      verdict.reasons = [];
    }
  }
  return { verdicts, order };
}

function findResourcePeer(
  graph: CheckedGraph,
  verdicts: Map<string, Verdict>,
  id: string,
  selected: Set<string>,
): { task: string; resource: string } | undefined {
  const uses = new Set(graph.tasks.get(id)!.uses ?? []);
  const seen = new Set<string>();
  const queue = [...graph.dependents.get(id)!];
  while (queue.length) {
    const next = queue.shift()!;
    if (seen.has(next) || !selected.has(next)) continue;
    seen.add(next);
    const task = graph.tasks.get(next)!;
    const shared = (task.uses ?? []).find((u) => uses.has(u));
    if (shared && verdicts.get(next)?.status === "stale") return { task: next, resource: shared };
    if (shared) queue.push(...graph.dependents.get(next)!);
  }
  return undefined;
}

/** Unified diffs of what running the plan would change in generated text files. */
export function fileChanges(verdict: Verdict): FileChange[] {
  const changes: FileChange[] = [];
  for (const file of verdict.rendered ?? []) {
    let before: Buffer | undefined;
    try {
      before = readFileSync(file.path);
    } catch {
      before = undefined;
    }
    if (before && before.equals(file.content)) continue;
    const binary = file.content.includes(0) || (before?.includes(0) ?? false);
    if (binary) {
      changes.push({ path: file.path, kind: "binary", diff: `binary file ${file.path} would ${before ? "change" : "be created"}\n` });
      continue;
    }
    const { createTwoFilesPatch } = require("diff") as typeof import("diff");
    const patch = createTwoFilesPatch(
      before ? file.path : "/dev/null",
      file.path,
      before?.toString() ?? "",
      file.content.toString(),
      undefined,
      undefined,
      { context: 3 },
    );
    const body = patch
      .split("\n")
      .filter((line) => !line.startsWith("Index: ") && !/^=+$/.test(line))
      .join("\n");
    changes.push({ path: file.path, kind: before ? "change" : "create", diff: body });
  }
  return changes;
}

export function planToJson(plan: Plan, withDiffs: boolean): Json {
  return {
    tasks: plan.order.map((id) => {
      const v = plan.verdicts.get(id)!;
      const entry: Record<string, Json> = { id, status: v.status, reasons: v.reasons };
      if (v.conditional) entry.conditional = true;
      if (withDiffs && v.status === "stale") {
        const files = fileChanges(v);
        if (files.length) entry.files = files.map((f) => ({ path: f.path, kind: f.kind, diff: f.diff }));
      }
      return entry;
    }),
    summary: {
      stale: plan.order.filter((id) => plan.verdicts.get(id)!.status === "stale").length,
      fresh: plan.order.filter((id) => plan.verdicts.get(id)!.status === "fresh").length,
    },
  };
}

