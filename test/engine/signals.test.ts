// Runs that are killed or interrupted: crash safety, process-tree cancellation, tear-down.
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { MINE, planJson, processAlive, useProjects, verdict, waitFor } from "./helpers.ts";

const newProject = useProjects();

describe("a run killed with SIGKILL", () => {
  it("re-runs the task it killed and nothing that had finished", async () => {
    const p = newProject();
    p.writeConfig(`
export default defineConfig({
  tasks: [
    task({ id: "quick", outputs: [at("out/quick.txt")], run: async (ctx) => { bump("quick"); await ctx.writeFile(at("out/quick.txt"), "q\\n"); } }),
    task({ id: "other", run: () => { bump("other"); } }),
    task({
      id: "slow",
      deps: ["quick", "other"],
      outputs: [at("out/slow.txt")],
      run: async (ctx) => {
        bump("slow");
        writeFileSync(at("slow.started"), "");
        await sleep(Number(process.env.SLOW_MS ?? "0"));
        await ctx.writeFile(at("out/slow.txt"), "s\\n");
      },
    }),
  ],
});
`);
    const run = p.spawn([MINE], { env: { SLOW_MS: "60000" } });
    await waitFor("slow to start", () => p.exists("slow.started"));
    process.kill(run.pid, "SIGKILL");
    const killed = await run.done;
    expect(killed.exitCode).not.toBe(0);
    expect(p.exists("out/slow.txt")).toBe(false);

    const plan = await planJson(p, [MINE]);
    expect(verdict(plan, "slow").status).toBe("stale");
    expect(verdict(plan, "slow").reasons.join()).toMatch(/did not finish in an earlier run/);
    expect(verdict(plan, "quick")).toMatchObject({ status: "fresh", reasons: [] });
    expect(verdict(plan, "other")).toMatchObject({ status: "fresh", reasons: [] });
    const explain = await p.cli(["explain", "slow"]);
    expect(explain.stdout).toContain("did not finish");

    // The dead run's lock is taken over without a word from the user.
    const again = await p.cli([MINE]);
    expect(again.exitCode).toBe(0);
    expect([p.count("quick"), p.count("other"), p.count("slow")]).toEqual([1, 1, 2]);
    expect(p.read("out/slow.txt")).toBe("s\n");
    expect((await planJson(p, [MINE])).summary).toEqual({ stale: 0, fresh: 3 });
  });
});

describe.each([
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const)("%s during a long task", (signal, code) => {
  it(`kills the task's process tree, tears down its resource and exits ${code}`, async () => {
    const p = newProject();
    p.writeConfig(`
export default defineConfig({
  resources: [
    resource({
      id: "mnt",
      setup: async () => { writeFileSync(at("mnt.up"), ""); bump("setup"); return at("mnt.up"); },
      teardown: async () => { rmSync(at("mnt.up")); bump("teardown"); },
    }),
  ],
  tasks: [
    task({ id: "done-first", run: () => { bump("done-first"); } }),
    task({
      id: "long",
      deps: ["done-first"],
      uses: ["mnt"],
      run: async (ctx) => {
        bump("long");
        await ctx.exec("sh", ["-c", "sleep 60 & echo $! > " + at("grandchild.pid") + "; wait"]);
      },
    }),
  ],
});
`);
    const run = p.spawn([MINE]);
    await waitFor("the grandchild's PID", () => p.exists("grandchild.pid") && p.read("grandchild.pid").trim() !== "");
    const grandchild = Number(p.read("grandchild.pid"));
    expect(processAlive(grandchild)).toBe(true);
    expect(p.exists("mnt.up")).toBe(true);

    process.kill(run.pid, signal);
    const result = await run.done;
    expect(result.exitCode).toBe(code);
    expect(result.stderr).toContain(`${signal}: cancelling`);
    expect(result.stdout).toContain(`(interrupted by ${signal})`);
    try {
      await waitFor("the grandchild to die", () => !processAlive(grandchild), 2000);
    } finally {
      if (processAlive(grandchild)) process.kill(grandchild, "SIGKILL");
    }
    expect(p.exists("mnt.up")).toBe(false);
    expect([p.count("setup"), p.count("teardown")]).toEqual([1, 1]);
    // No work directory of the interrupted run is left behind.
    expect(fs.readdirSync(p.path("cache/work")).filter((n) => n.startsWith("run-"))).toEqual([]);

    const plan = await planJson(p, [MINE]);
    expect(verdict(plan, "long").status).toBe("stale");
    expect(verdict(plan, "done-first").status).toBe("fresh");
  });
});
