// Composition: the config (or the built-in defaults) and the roots become one graph.
import { builtinGraph } from "../tasks/index.ts";
import type { Config, ConfigInput } from "./index.ts";
import type { Graph, Roots } from "./types.ts";

export function evaluateConfig(input: ConfigInput | undefined, roots: Roots): Config {
  if (input === undefined) return {};
  return typeof input === "function" ? input({ roots }) : input;
}

export function buildGraph(config: Config, roots: Roots): Graph {
  const builtin = builtinGraph(config, roots);
  return {
    tasks: [...builtin.tasks, ...(config.tasks ?? [])],
    resources: [...builtin.resources, ...(config.resources ?? [])],
    sweepers: [...builtin.sweepers, ...(config.sweepers ?? [])],
    resourceClasses: { ...builtin.resourceClasses, ...(config.resourceClasses ?? {}) },
  };
}
