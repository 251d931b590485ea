// What ltspfile.ts imports: `import { defineConfig, task } from "ltsp-make"`.
import type { LtspConfig } from "../tasks/config.ts";
import type { ResourceDef, Roots, Sweeper, TaskDef } from "./types.ts";

export type * from "./types.ts";
export type * from "../tasks/config.ts";

/** What a config function receives: the roots in effect for this run (after command-line options). */
export interface ConfigEnv {
  roots: Roots;
}

export interface EngineConfig {
  /** Your own tasks, hashed, planned and scheduled like the built-in ones. */
  tasks?: TaskDef[];
  /** Scoped resources (mounts and the like) your tasks use. */
  resources?: ResourceDef<any>[];
  /** Clean-ups for what killed runs of your resources left behind. */
  sweepers?: Sweeper[];
  /** Concurrency limits by class name, e.g. `{ squash: 1 }`. */
  resourceClasses?: Record<string, number>;
  /** Default for -j. */
  jobs?: number;
}

export type Config = EngineConfig & LtspConfig;
export type ConfigInput = Config | ((env: ConfigEnv) => Config);

export function defineConfig(config: ConfigInput): ConfigInput {
  return config;
}

export function task(def: TaskDef): TaskDef {
  return def;
}

export function resource<T>(def: ResourceDef<T>): ResourceDef<T> {
  return def;
}
