// SIGKILL at seeded random points of `ltsp-make all` (a machine crash: the CLI and every process
// naming the test's prefix die at once; mounts and files stay).
import { expect, test } from "vitest";
import { usePrefixes } from "../pipeline/helpers.ts";
import { kindOf, reportStats, runKills, TASKS } from "./kill-suite.ts";

const newPrefix = usePrefixes();

test("SIGKILL anywhere: nothing half-written, the state claims only what finished, the next run completes it", async () => {
  const stats = await runKills(newPrefix(), { seed: 0x5eed01, count: 25, signals: ["SIGKILL"] });
  reportStats("SIGKILL", stats);
  expect(stats.landed).toBe(25);
  expect([...stats.byKind.keys()].sort()).toEqual([...new Set(TASKS.map(kindOf))].sort());
}, 240_000);
