// The scheduler through the real CLI: critical-path priority, resource classes, --keep-going.
import { describe, expect, it } from "vitest";
import { MINE, planJson, useProjects, verdict } from "./helpers.ts";

const newProject = useProjects();

describe("priority", () => {
  it("starts the critical path first, weighted by the durations of the last run", async () => {
    const p = newProject();
    // zchain1 → zchain2 is long (2 × 400 ms). b1 → b2 → b3 and c1 → c2 → c3 have more tasks but
    // are short; a1…a4 are short and alone. Ids are chosen so that id order (a1), task count (b1,
    // c1) and duration (zchain1) each pick different first tasks.
    p.writeConfig(`
const work = (id: string, ms: number, deps: string[] = []) =>
  task({ id, deps, run: async () => { note("starts.log", id); await sleep(ms); } });
export default defineConfig({
  tasks: [
    work("zchain1", 400), work("zchain2", 400, ["zchain1"]),
    work("b1", 20), work("b2", 20, ["b1"]), work("b3", 20, ["b2"]),
    work("c1", 20), work("c2", 20, ["c1"]), work("c3", 20, ["c2"]),
    work("a1", 20), work("a2", 20), work("a3", 20), work("a4", 20),
  ],
});
`);
    // First run: no durations yet, every task counts 1: the three-task chains lead.
    expect((await p.cli([MINE, "-j", "2"])).exitCode).toBe(0);
    const first = p.lines("starts.log");
    expect(first).toHaveLength(12);
    expect(first.slice(0, 2).sort()).toEqual(["b1", "c1"]);

    // Forced run: the recorded durations (800 ms against about 60 ms) make the long chain the
    // critical path, though it has fewer tasks and the last id.
    p.write("starts.log", "");
    expect((await p.cli([MINE, "-j", "2", "--force"])).exitCode).toBe(0);
    const forced = p.lines("starts.log");
    expect(forced).toHaveLength(12);
    expect(forced[0]).toBe("zchain1");
  });
});

describe("resource classes", () => {
  it("never runs two tasks of a class with limit 1 at the same time", async () => {
    const p = newProject();
    p.writeConfig(`
const span = (id: string, ms: number, resourceClass?: string) =>
  task({ id, resourceClass, run: async () => {
    const start = now();
    await sleep(ms);
    note("spans.log", \`\${id} \${start} \${now()}\`);
  } });
export default defineConfig({
  resourceClasses: { heavy: 1 },
  tasks: [span("h1", 150, "heavy"), span("h2", 150, "heavy"), span("h3", 150, "heavy"), span("h4", 150, "heavy"), span("n1", 400), span("n2", 400)],
});
`);
    const run = await p.cli([MINE, "-j", "4"]);
    expect(run.exitCode).toBe(0);
    const spans = new Map(
      p.lines("spans.log").map((line) => {
        const [id, start, end] = line.split(" ");
        return [id!, { start: Number(start), end: Number(end) }];
      }),
    );
    expect([...spans.keys()].sort()).toEqual(["h1", "h2", "h3", "h4", "n1", "n2"]);
    const overlap = (a: string, b: string) => spans.get(a)!.start < spans.get(b)!.end && spans.get(b)!.start < spans.get(a)!.end;
    const heavy = ["h1", "h2", "h3", "h4"];
    for (const a of heavy) for (const b of heavy) if (a < b) expect(overlap(a, b), `${a} and ${b} overlap`).toBe(false);
    // Tasks outside the class do run alongside (the limit is the class's, not -j's).
    expect(overlap("n1", "n2")).toBe(true);
    expect(heavy.some((h) => overlap(h, "n1"))).toBe(true);
  });
});

describe("--keep-going", () => {
  const config = `
export default defineConfig({
  tasks: [
    task({ id: "a-bad", run: async () => { bump("a-bad"); await sleep(50); throw new Error("broken on purpose"); } }),
    task({ id: "child", deps: ["a-bad"], run: () => { bump("child"); } }),
    task({ id: "grandchild", deps: ["child"], run: () => { bump("grandchild"); } }),
    task({ id: "later1", run: () => { bump("later1"); } }),
    task({ id: "later2", run: () => { bump("later2"); } }),
    task({ id: "later3", run: () => { bump("later3"); } }),
  ],
});
`;
  const ids = ["a-bad", "child", "grandchild", "later1", "later2", "later3"];

  it("without -k: stops starting work after a failure; the rest is not started; exit 1", async () => {
    const p = newProject();
    p.writeConfig(config);
    const run = await p.cli([MINE, "-j", "1"]);
    expect(run.exitCode).toBe(1);
    expect(run.stderr).toMatch(/FAILED {2}a-bad .*broken on purpose/);
    expect(ids.map((id) => p.count(id))).toEqual([1, 0, 0, 0, 0, 0]);
    expect(run.stdout).toMatch(/^skipped later1: .*--keep-going/m);
    expect(run.stdout).toMatch(/0 run, 0 up to date, 1 failed, 5 not started/);
  });

  it("with -k: independent work goes on, dependents of the failed task never run; exit 1", async () => {
    const p = newProject();
    p.writeConfig(config);
    const run = await p.cli([MINE, "-j", "1", "--keep-going"]);
    expect(run.exitCode).toBe(1);
    expect(ids.map((id) => p.count(id))).toEqual([1, 0, 0, 1, 1, 1]);
    expect(run.stdout).toMatch(/^skipped child: upstream a-bad failed/m);
    expect(run.stdout).toMatch(/^skipped grandchild: upstream child did not run/m);
    expect(run.stdout).toMatch(/3 run, 0 up to date, 1 failed, 2 not started/);

    // What ran is recorded; the failed task and its dependents are still to do.
    const plan = await planJson(p, [MINE]);
    expect(ids.map((id) => verdict(plan, id).status)).toEqual(["stale", "stale", "stale", "fresh", "fresh", "fresh"]);
    expect(verdict(plan, "a-bad").reasons.join()).toMatch(/did not finish|never built/);
  });
});
