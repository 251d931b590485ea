// Tool versions as key fields. A tool's version line is cached against the stamp of its binary,
// so an unchanged no-op run spawns nothing.
import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";
import type { Exec } from "../exec.ts";
import type { ToolSpec } from "../types.ts";
import { stampOf } from "./stamps.ts";

export const MISSING = "missing";

export interface ToolRecord {
  path: string;
  stamp: string;
  version: string;
}

export function whichSync(name: string): string | undefined {
  if (name.includes("/")) return name;
  for (const dir of (process.env.PATH ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export class ToolVersions {
  private readonly known = new Map<string, Promise<string>>();
  changed = false;

  constructor(
    private readonly records: Record<string, ToolRecord>,
    private readonly exec: Exec,
  ) {}

  version(tool: ToolSpec): Promise<string> {
    const command = tool.version ?? [tool.name, "--version"];
    const cacheKey = command.join(" ");
    let pending = this.known.get(cacheKey);
    if (!pending) {
      pending = this.lookup(cacheKey, command);
      this.known.set(cacheKey, pending);
    }
    return pending;
  }

  private async lookup(cacheKey: string, command: string[]): Promise<string> {
    const path = whichSync(command[0]!);
    if (!path) return MISSING;
    const stamp = stampOf(statSync(path));
    const record = this.records[cacheKey];
    if (record && record.path === path && record.stamp === stamp) return record.version;
    const result = await this.exec(path, command.slice(1), { okExitCodes: [0, 1] });
    const version =
      `${result.stdout}\n${result.stderr}`
        .split("\n")
        .map((l) => l.trim())
        .find((l) => l.length > 0) ?? "unknown";
    this.records[cacheKey] = { path, stamp, version };
    this.changed = true;
    return version;
  }

  toJSON(): Record<string, ToolRecord> {
    return this.records;
  }
}
