// One run at a time per state directory.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { MINE, useProjects, waitFor, processAlive } from "./helpers.ts";

const newProject = useProjects();

const CONFIG = `
export default defineConfig({
  tasks: [
    task({
      id: "slow",
      run: async () => {
        bump("slow");
        writeFileSync(at("slow.started"), "");
        // Hold the lock until the test says so.
        while (process.env.HOLD && !existsSync(at("release"))) await sleep(20);
      },
    }),
    task({ id: "quick", run: () => { bump("quick"); } }),
  ],
});
`;

/** The PID of a process that has exited: nothing owns it now. */
function deadPid(): number {
  const pid = Number(execFileSync("sh", ["-c", "sh -c 'echo $$'"]).toString().trim());
  expect(processAlive(pid)).toBe(false);
  return pid;
}

describe("the state lock", () => {
  it("refuses a second run while one is running (exit 2, owner's PID named); plan still works", async () => {
    const p = newProject();
    p.writeConfig(CONFIG);
    const first = p.spawn(["slow"], { env: { HOLD: "1" } });
    await waitFor("the first run to start its task", () => p.exists("slow.started"));

    const second = await p.cli(["quick"]);
    expect(second.exitCode).toBe(2);
    expect(second.stderr).toContain(`PID ${first.pid}`);
    expect(second.stderr).toContain(p.path("cache/lock"));
    expect(p.count("quick")).toBe(0);

    // clean takes the lock too.
    const clean = await p.cli(["clean"]);
    expect(clean.exitCode).toBe(2);
    expect(clean.stderr).toContain(`PID ${first.pid}`);

    // plan only reads: it needs no lock.
    const plan = await p.cli(["plan", MINE]);
    expect(plan.exitCode).toBe(0);

    p.write("release", "");
    expect((await first.done).exitCode).toBe(0);
    expect(p.exists("cache/lock")).toBe(false);
    expect((await p.cli(["quick"])).exitCode).toBe(0);
    expect([p.count("slow"), p.count("quick")]).toEqual([1, 1]);
  });

  it("takes over a stale lock whose owner is dead", async () => {
    const p = newProject();
    p.writeConfig(CONFIG);
    const dead = deadPid();
    fs.mkdirSync(p.cacheDir, { recursive: true });
    fs.writeFileSync(
      p.path("cache/lock"),
      `${JSON.stringify({ pid: dead, start: "12345", command: "ltsp-make (killed)", since: "2020-01-01T00:00:00.000Z" })}\n`,
    );
    const run = await p.cli([MINE, "-v"]);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toContain(`took over the lock of a run that is gone (PID ${dead})`);
    expect([p.count("slow"), p.count("quick")]).toEqual([1, 1]);
    expect(p.exists("cache/lock")).toBe(false);

    // A lock naming a live PID that started at another time (a reused PID) is stale too.
    fs.writeFileSync(
      p.path("cache/lock"),
      `${JSON.stringify({ pid: process.pid, start: "1", command: "ltsp-make (long gone)", since: "2020-01-01T00:00:00.000Z" })}\n`,
    );
    const reused = await p.cli([MINE, "--force"]);
    expect(reused.exitCode).toBe(0);
    expect([p.count("slow"), p.count("quick")]).toEqual([2, 2]);
  });
});
