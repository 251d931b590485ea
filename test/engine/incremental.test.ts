// Incremental builds through the real CLI: early cutoff, output verification, explain, clean, --force.
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { MINE, planJson, useProjects, verdict, type TestProject } from "./helpers.ts";

const newProject = useProjects();

/** gen reads src/input.txt and drops comment lines; use and last follow it. */
function cutoffProject(): TestProject {
  const p = newProject();
  p.write("src/input.txt", "# a comment\nline one\n");
  p.writeConfig(`
export default defineConfig({
  tasks: [
    task({
      id: "gen",
      inputs: [{ file: at("src/input.txt") }],
      outputs: [at("out/gen.txt")],
      run: async (ctx) => {
        bump("gen");
        const text = readFileSync(at("src/input.txt"), "utf8");
        await ctx.writeFile(at("out/gen.txt"), text.split("\\n").filter((l) => !l.startsWith("#")).join("\\n"));
      },
    }),
    task({
      id: "use",
      deps: ["gen"],
      outputs: [at("out/use.txt")],
      run: async (ctx) => {
        bump("use");
        await ctx.writeFile(at("out/use.txt"), readFileSync(at("out/gen.txt"), "utf8").toUpperCase());
      },
    }),
    task({
      id: "last",
      deps: ["use"],
      run: () => {
        bump("last");
      },
    }),
  ],
});
`);
  return p;
}

describe("early cutoff", () => {
  it("does not rebuild dependents when a task rewrites identical output", async () => {
    const p = cutoffProject();
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect([p.count("gen"), p.count("use"), p.count("last")]).toEqual([1, 1, 1]);

    // A change that gen's output does not reflect.
    p.write("src/input.txt", "# another comment\nline one\n");
    const plan = await planJson(p, [MINE]);
    expect(verdict(plan, "gen").status).toBe("stale");
    expect(verdict(plan, "gen").reasons.join("\n")).toContain(`input file:${p.path("src/input.txt")} changed`);
    expect(verdict(plan, "use")).toMatchObject({ status: "stale", conditional: true, reasons: ["upstream gen runs"] });

    const run = await p.cli([MINE]);
    expect(run.exitCode).toBe(0);
    expect([p.count("gen"), p.count("use"), p.count("last")]).toEqual([2, 1, 1]);
    expect(run.stdout).toMatch(/^cutoff {2}use /m);
    expect(run.stdout).toMatch(/1 run, 2 up to date \(2 by early cutoff\)/);

    // Cut-off tasks stay recorded as fresh.
    const after = await planJson(p, [MINE]);
    expect(after.tasks.map((t) => t.status)).toEqual(["fresh", "fresh", "fresh"]);

    // A change that does reach the output rebuilds the chain.
    p.write("src/input.txt", "# another comment\nline two\n");
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect([p.count("gen"), p.count("use"), p.count("last")]).toEqual([3, 2, 2]);
    expect(p.read("out/use.txt")).toBe("LINE TWO\n");
  });
});

describe("output verification", () => {
  function outputProject(): TestProject {
    const p = newProject();
    p.writeConfig(`
export default defineConfig({
  tasks: [
    task({
      id: "gen",
      outputs: [at("out/gen.txt"), at("out/dir")],
      run: async (ctx) => {
        bump("gen");
        await ctx.writeFile(at("out/gen.txt"), "generated\\n");
        await ctx.writeFile(at("out/dir/inner.txt"), "inner\\n");
      },
    }),
    task({ id: "conf", params: { timeout: 5 }, render: () => ({ [at("out/menu.conf")]: "timeout=5\\n" }) }),
  ],
});
`);
    return p;
  }

  it("makes a task stale when someone edits or deletes what it generated, and plan names the file", async () => {
    const p = outputProject();
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect((await planJson(p, [MINE])).summary).toEqual({ stale: 0, fresh: 2 });

    p.write("out/gen.txt", "hand edited\n");
    let plan = await planJson(p, [MINE]);
    expect(verdict(plan, "gen")).toMatchObject({ status: "stale", reasons: [`output ${p.path("out/gen.txt")} was modified since it was built`] });
    expect(verdict(plan, "conf").status).toBe("fresh");
    const text = await p.cli(["plan", MINE]);
    expect(text.stdout).toContain(p.path("out/gen.txt"));

    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(p.count("gen")).toBe(2);
    expect(p.read("out/gen.txt")).toBe("generated\n");

    fs.rmSync(p.path("out/gen.txt"));
    plan = await planJson(p, [MINE]);
    expect(verdict(plan, "gen").reasons).toEqual([`output ${p.path("out/gen.txt")} is missing`]);
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(p.exists("out/gen.txt")).toBe(true);

    // A file inside a directory output.
    p.write("out/dir/inner.txt", "changed\n");
    plan = await planJson(p, [MINE]);
    expect(verdict(plan, "gen").reasons).toEqual([`output ${p.path("out/dir")} was modified since it was built`]);
    expect((await p.cli([MINE])).exitCode).toBe(0);

    // A generated (rendered) file: stale, and the plan shows the diff that would restore it.
    p.write("out/menu.conf", "timeout=99\n");
    plan = await planJson(p, [MINE]);
    const conf = verdict(plan, "conf");
    expect(conf.status).toBe("stale");
    expect(conf.reasons).toEqual([`output ${p.path("out/menu.conf")} was modified since it was built`]);
    expect(conf.files?.[0]?.diff).toMatch(/-timeout=99\n\+timeout=5/);
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(p.read("out/menu.conf")).toBe("timeout=5\n");
    expect((await planJson(p, [MINE])).summary).toEqual({ stale: 0, fresh: 2 });
    expect(p.count("gen")).toBe(4);
  });
});

describe("explain", () => {
  it("names the field that changed: a parameter, an input file, an environment variable", async () => {
    const p = newProject();
    p.write("src/in.txt", "first\n");
    p.writeConfig(`
export default defineConfig({
  tasks: [
    task({
      id: "x",
      params: { timeout: Number(process.env.TEST_TIMEOUT ?? "5") },
      inputs: [{ file: at("src/in.txt") }],
      env: ["LTSP_TEST_MIRROR"],
      run: () => {
        bump("x");
      },
    }),
  ],
});
`);
    const env = { TEST_TIMEOUT: "5", LTSP_TEST_MIRROR: "http://a.example" };
    expect((await p.cli([MINE], { env })).exitCode).toBe(0);

    let out = await p.cli(["explain", "x"], { env });
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toContain("x: fresh");
    expect(out.stdout).toContain("key: unchanged since it was built");

    out = await p.cli(["explain", "x"], { env: { ...env, TEST_TIMEOUT: "7" } });
    expect(out.stdout).toContain("x: stale");
    expect(out.stdout).toMatch(/parameter timeout:\n\s+recorded: 5\n\s+now:\s+7/);
    expect(out.stdout).not.toContain("input file:");

    p.write("src/in.txt", "second\n");
    out = await p.cli(["explain", "x"], { env });
    expect(out.stdout).toContain(`input file:${p.path("src/in.txt")}:`);
    expect(out.stdout).not.toContain("parameter");
    fs.rmSync(p.path("src/in.txt"));
    out = await p.cli(["explain", "x"], { env });
    expect(out.stdout).toContain(`input file:${p.path("src/in.txt")} was removed`);
    p.write("src/in.txt", "first\n");

    out = await p.cli(["explain", "x"], { env: { ...env, LTSP_TEST_MIRROR: "http://b.example" } });
    expect(out.stdout).toMatch(/environment variable LTSP_TEST_MIRROR:\n\s+recorded: http:\/\/a\.example\n\s+now:\s+http:\/\/b\.example/);
    out = await p.cli(["explain", "x"], { env: { TEST_TIMEOUT: "5" } });
    expect(out.stdout).toMatch(/environment variable LTSP_TEST_MIRROR:\n\s+recorded: http:\/\/a\.example\n\s+now:\s+(null|\(none\)|\(unset\))\n/);

    // Back as it was: nothing to explain, nothing to run.
    out = await p.cli(["explain", "x"], { env });
    expect(out.stdout).toContain("key: unchanged since it was built");
    expect((await p.cli([MINE], { env })).exitCode).toBe(0);
    expect(p.count("x")).toBe(1);

    const unknown = await p.cli(["explain", "y"], { env });
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain("unknown target y");
  });
});

describe("clean and --force", () => {
  function abcProject(): TestProject {
    const p = newProject();
    p.writeConfig(`
export default defineConfig({
  tasks: [
    task({ id: "a", outputs: [at("out/a.txt")], run: async (ctx) => { bump("a"); await ctx.writeFile(at("out/a.txt"), "A\\n"); } }),
    task({ id: "b", deps: ["a"], outputs: [at("out/b.txt")], run: async (ctx) => { bump("b"); await ctx.writeFile(at("out/b.txt"), "B\\n"); } }),
    task({ id: "c", run: () => { bump("c"); } }),
  ],
});
`);
    return p;
  }
  const counts = (p: TestProject) => ["a", "b", "c"].map((id) => p.count(id));

  it("clean forgets the state so the next run rebuilds; published files stay unless --outputs", async () => {
    const p = abcProject();
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(counts(p)).toEqual([1, 1, 1]);

    let clean = await p.cli(["clean", "c"]);
    expect(clean.exitCode).toBe(0);
    expect(clean.stdout).toContain("forgot 1 task(s)");
    expect((await planJson(p, [MINE])).tasks.map((t) => `${t.id}:${t.status}:${t.reasons.join(",")}`)).toEqual([
      "a:fresh:",
      "b:fresh:",
      "c:stale:never built",
    ]);
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(counts(p)).toEqual([1, 1, 2]);

    clean = await p.cli(["clean"]);
    expect(clean.stdout).toContain("forgot 3 task(s)");
    expect(p.exists("out/a.txt")).toBe(true);
    expect((await planJson(p, [MINE])).summary).toEqual({ stale: 3, fresh: 0 });
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(counts(p)).toEqual([2, 2, 3]);

    clean = await p.cli(["clean", "--outputs", "a"]);
    expect(clean.exitCode).toBe(0);
    expect(p.exists("out/a.txt")).toBe(false);
    expect(p.exists("out/b.txt")).toBe(true);
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(counts(p)).toEqual([3, 2, 3]); // a's output came back identical: b is cut off
  });

  it("--force rebuilds everything selected, --force=ID only that task", async () => {
    const p = abcProject();
    expect((await p.cli([MINE])).exitCode).toBe(0);

    let run = await p.cli([MINE, "--force"]);
    expect(run.exitCode).toBe(0);
    expect(counts(p)).toEqual([2, 2, 2]);

    run = await p.cli(["--force=c", MINE]);
    expect(run.exitCode).toBe(0);
    expect(counts(p)).toEqual([2, 2, 3]);

    run = await p.cli(["--force=b", "--force=c", MINE]);
    expect(run.exitCode).toBe(0);
    expect(counts(p)).toEqual([2, 3, 4]);

    // Forcing a only re-runs a: its output is identical, so b is cut off.
    run = await p.cli(["--force=a", MINE]);
    expect(run.exitCode).toBe(0);
    expect(counts(p)).toEqual([3, 3, 4]);
    expect(run.stdout).toMatch(/^cutoff {2}b /m);

    // "--force b" reads b as the option's value: the same as --force=b.
    run = await p.cli(["--force", "b", MINE]);
    expect(run.exitCode).toBe(0);
    expect(counts(p)).toEqual([3, 4, 4]);
    // A bare --force with a target forces only what the target selects.
    run = await p.cli(["c", "--force"]);
    expect(run.exitCode).toBe(0);
    expect(counts(p)).toEqual([3, 4, 5]);

    const plan = await planJson(p, ["--force=b", MINE]);
    expect(verdict(plan, "b").reasons).toEqual(["forced (--force)"]);
    expect(verdict(plan, "a").status).toBe("fresh");
    // plan --force changes nothing
    expect((await planJson(p, [MINE])).summary).toEqual({ stale: 0, fresh: 3 });

    const bad = await p.cli(["--force=zz", MINE]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("unknown target zz");
  });
});
