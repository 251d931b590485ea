// SIGINT and SIGTERM at seeded random points of `ltsp-make all`: the run stops its commands,
// unmounts, removes its work directory and exits 130 or 143; what it finished stays recorded.
import { expect, test } from "vitest";
import { usePrefixes } from "../pipeline/helpers.ts";
import { kindOf, reportStats, runKills, TASKS } from "./kill-suite.ts";

const newPrefix = usePrefixes();

test("SIGINT and SIGTERM anywhere: a clean stop, nothing half-written, the next run completes it", async () => {
  const stats = await runKills(newPrefix(), { seed: 0x5eed02, count: 25, signals: ["SIGINT", "SIGTERM"] });
  reportStats("SIGINT/SIGTERM", stats);
  expect(stats.landed).toBe(25);
  expect([...stats.byKind.keys()].sort()).toEqual([...new Set(TASKS.map(kindOf))].sort());
  expect([...stats.bySignal.keys()].sort()).toEqual(["SIGINT", "SIGTERM"]);
}, 240_000);
