// The graph: tasks, their edges and resources, validated before anything runs.
import type { Graph, ResourceDef, TaskDef } from "./types.ts";

export class GraphError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "GraphError";
  }
}

/** A binary heap of strings, smallest first. */
class MinHeap {
  private readonly items: string[] = [];

  get size(): number {
    return this.items.length;
  }

  push(item: string): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (items[parent]! <= item) break;
      items[i] = items[parent]!;
      i = parent;
    }
    items[i] = item;
  }

  pop(): string {
    const items = this.items;
    const top = items[0]!;
    const last = items.pop()!;
    if (items.length > 0) {
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= items.length) break;
        const right = left + 1;
        const child = right < items.length && items[right]! < items[left]! ? right : left;
        if (items[child]! >= last) break;
        items[i] = items[child]!;
        i = child;
      }
      items[i] = last;
    }
    return top;
  }
}

export interface CheckedGraph {
  tasks: Map<string, TaskDef>;
  /** Topological order, stable: among tasks ready at the same time, sorted by id. */
  order: string[];
  dependents: Map<string, string[]>;
  resources: Map<string, ResourceDef<any>>;
  groups: Map<string, string[]>;
  resourceClasses: Record<string, number>;
  sweepers: Graph["sweepers"];
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._:+@-]*$/;

export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

export function nearest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}

function didYouMean(name: string, candidates: Iterable<string>): string {
  const guess = nearest(name, candidates);
  return guess ? ` (did you mean ${guess}?)` : "";
}

function findCycle(tasks: Map<string, TaskDef>): string[] | undefined {
  const state = new Map<string, 1 | 2>();
  const stack: string[] = [];
  const visit = (id: string): string[] | undefined => {
    state.set(id, 1);
    stack.push(id);
    for (const dep of [...(tasks.get(id)!.deps ?? [])].sort()) {
      const s = state.get(dep);
      if (s === 1) return [...stack.slice(stack.indexOf(dep)), dep];
      if (s === undefined) {
        const cycle = visit(dep);
        if (cycle) return cycle;
      }
    }
    stack.pop();
    state.set(id, 2);
    return undefined;
  };
  for (const id of [...tasks.keys()].sort()) {
    if (!state.has(id)) {
      const cycle = visit(id);
      if (cycle) return cycle;
    }
  }
  return undefined;
}

function isInside(path: string, dir: string): boolean {
  return path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
}

export function checkGraph(graph: Graph): CheckedGraph {
  const tasks = new Map<string, TaskDef>();
  for (const task of graph.tasks) {
    if (typeof task.id !== "string" || !ID.test(task.id)) {
      throw new GraphError(`task id ${JSON.stringify(task.id)} is not valid: use letters, digits and . _ : + @ - (e.g. "squash:bookworm")`);
    }
    if (tasks.has(task.id)) throw new GraphError(`two tasks are named ${task.id}: task ids must be unique`);
    if (!task.run && !task.render && !task.ephemeral && !(task.deps?.length)) {
      throw new GraphError(`task ${task.id} has neither run() nor render(): give it one of them`);
    }
    tasks.set(task.id, task);
  }
  const resources = new Map<string, ResourceDef<any>>();
  for (const resource of graph.resources) {
    if (resources.has(resource.id)) throw new GraphError(`two resources are named ${resource.id}`);
    resources.set(resource.id, resource);
  }

  const dependents = new Map<string, string[]>();
  for (const id of tasks.keys()) dependents.set(id, []);
  const outputOwner = new Map<string, string>();
  for (const task of tasks.values()) {
    for (const dep of task.deps ?? []) {
      if (!tasks.has(dep)) throw new GraphError(`task ${task.id} depends on ${dep}, which is not a task${didYouMean(dep, tasks.keys())}`);
      dependents.get(dep)!.push(task.id);
    }
    for (const use of task.uses ?? []) {
      if (!resources.has(use)) throw new GraphError(`task ${task.id} uses resource ${use}, which is not defined${didYouMean(use, resources.keys())}`);
    }
    if (task.resourceClass && !(task.resourceClass in graph.resourceClasses)) {
      throw new GraphError(
        `task ${task.id} is in resource class ${task.resourceClass}, which is not defined: add it to resourceClasses (e.g. { ${task.resourceClass}: 1 })`,
      );
    }
    for (const output of task.outputs ?? []) {
      if (!output.startsWith("/")) throw new GraphError(`task ${task.id} declares output ${output}: outputs must be absolute paths`);
      const other = outputOwner.get(output);
      if (other) throw new GraphError(`tasks ${other} and ${task.id} both declare the output ${output}: one file has one producer`);
      outputOwner.set(output, task.id);
    }
  }
  // An output inside another task's directory output is also written by two tasks.
  const outputs = [...outputOwner.keys()].sort();
  for (let i = 0; i + 1 < outputs.length; i++) {
    const dir = outputs[i]!;
    for (let j = i + 1; j < outputs.length && isInside(outputs[j]!, dir); j++) {
      const a = outputOwner.get(dir)!;
      const b = outputOwner.get(outputs[j]!)!;
      if (a !== b) throw new GraphError(`task ${b} declares output ${outputs[j]}, inside ${dir}, which task ${a} produces`);
    }
  }

  // Kahn's algorithm taking the smallest ready id each time: a stable order, so plans diff cleanly.
  const remaining = new Map<string, number>();
  for (const task of tasks.values()) remaining.set(task.id, new Set(task.deps ?? []).size);
  const ready = new MinHeap();
  for (const [id, n] of remaining) if (n === 0) ready.push(id);
  const order: string[] = [];
  while (ready.size > 0) {
    const id = ready.pop();
    order.push(id);
    for (const dependent of new Set(dependents.get(id))) {
      const left = remaining.get(dependent)! - 1;
      remaining.set(dependent, left);
      if (left === 0) ready.push(dependent);
    }
  }
  if (order.length < tasks.size) {
    const cycle = findCycle(tasks);
    throw new GraphError(`the tasks form a cycle: ${(cycle ?? [...remaining.keys()].filter((id) => remaining.get(id)! > 0)).join(" → ")}`);
  }

  const groups = new Map<string, string[]>();
  for (const id of order) {
    for (const group of tasks.get(id)!.groups ?? []) {
      if (tasks.has(group)) throw new GraphError(`group ${group} has the same name as a task`);
      (groups.get(group) ?? groups.set(group, []).get(group)!).push(id);
    }
  }
  return { tasks, order, dependents, resources, groups, resourceClasses: graph.resourceClasses, sweepers: graph.sweepers };
}

export class TargetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TargetError";
  }
}

/** The tasks named by targets: task ids, groups, `all`, or an operation (`kernel` → every `kernel:*`). */
export function selectTargets(graph: CheckedGraph, targets: readonly string[]): Set<string> {
  const wanted = new Set<string>();
  for (const target of targets.length ? targets : ["all"]) {
    if (target === "all") {
      for (const [id, task] of graph.tasks) if (!task.explicitOnly) wanted.add(id);
    } else if (graph.tasks.has(target)) {
      wanted.add(target);
    } else if (graph.groups.has(target)) {
      for (const id of graph.groups.get(target)!) wanted.add(id);
    } else {
      const prefixed = graph.order.filter((id) => id.startsWith(`${target}:`) && !graph.tasks.get(id)!.explicitOnly);
      if (prefixed.length === 0) {
        const names = ["all", ...graph.tasks.keys(), ...graph.groups.keys(), ...new Set(graph.order.map((id) => id.split(":")[0]!))];
        throw new TargetError(`unknown target ${target}${didYouMean(target, names)}. Run "ltsp-make graph" to list the tasks.`);
      }
      for (const id of prefixed) wanted.add(id);
    }
  }
  return withDependencies(graph, wanted);
}

export function withDependencies(graph: CheckedGraph, ids: Iterable<string>): Set<string> {
  const selected = new Set<string>();
  const visit = (id: string) => {
    if (selected.has(id)) return;
    selected.add(id);
    for (const dep of graph.tasks.get(id)!.deps ?? []) visit(dep);
  };
  for (const id of ids) visit(id);
  return selected;
}

/** Critical-path priority: the longest duration-weighted path from a task to the end of the graph. */
export function criticalPath(graph: CheckedGraph, selected: Set<string>, duration: (id: string) => number): Map<string, number> {
  const priority = new Map<string, number>();
  for (let i = graph.order.length - 1; i >= 0; i--) {
    const id = graph.order[i]!;
    if (!selected.has(id)) continue;
    let longest = 0;
    for (const dependent of graph.dependents.get(id)!) {
      const p = priority.get(dependent);
      if (p !== undefined && p > longest) longest = p;
    }
    priority.set(id, longest + Math.max(1, duration(id)));
  }
  return priority;
}
