// The built-in task library: turns the LTSP part of the config into task nodes.
import type { Graph, Roots } from "../src/types.ts";
import type { LtspConfig } from "./config.ts";

export function builtinGraph(_config: LtspConfig, _roots: Roots): Graph {
  return { tasks: [], resources: [], sweepers: [], resourceClasses: {} };
}
