// plan (read-only, stable, text/JSON/Markdown, diffs of generated files) and graph.
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { listing, MINE, planJson, useProjects, verdict, type TestProject } from "./helpers.ts";

const newProject = useProjects();

/** A render task whose content follows TIMEOUT, a file-producing task and one that depends on it. */
function project(): TestProject {
  const p = newProject();
  p.write("src/a.txt", "hello\n");
  p.writeConfig(`
const timeout = Number(process.env.TIMEOUT ?? "5");
export default defineConfig({
  tasks: [
    task({
      id: "upper",
      inputs: [{ file: at("src/a.txt") }],
      outputs: [at("out/upper.txt")],
      run: async (ctx) => { bump("upper"); await ctx.writeFile(at("out/upper.txt"), readFileSync(at("src/a.txt"), "utf8").toUpperCase()); },
    }),
    task({ id: "pack", deps: ["upper"], outputs: [at("out/pack.txt")], run: async (ctx) => { bump("pack"); await ctx.writeFile(at("out/pack.txt"), "packed\\n"); } }),
    task({
      id: "conf",
      params: { timeout },
      render: () => ({ [at("out/menu.conf")]: \`# generated\\nmenu title Boot\\ntimeout=\${timeout}\\nlabel one\\nlabel two\\n\` }),
    }),
  ],
});
`);
  return p;
}

describe("plan", () => {
  it("writes nothing: the state dir and the outputs are untouched", async () => {
    const p = project();
    // Before any run, and after one with changes pending.
    let before = p.cacheListing();
    expect((await p.cli(["plan", MINE])).exitCode).toBe(0);
    expect((await p.cli(["plan", "--json", MINE])).exitCode).toBe(0);
    expect((await p.cli([MINE, "--dry-run"])).exitCode).toBe(0);
    expect(p.cacheListing()).toEqual(before);
    expect(p.exists("out")).toBe(false);

    expect((await p.cli([MINE])).exitCode).toBe(0);
    p.write("src/a.txt", "changed\n");
    p.write("out/pack.txt", "edited\n");
    await new Promise((resolve) => setTimeout(resolve, 100)); // so a write would show in mtimes
    before = p.cacheListing();
    const outputs = listing(p.path("out"));
    for (const args of [["plan", MINE], ["plan", "--markdown", MINE], ["explain", "upper"], ["graph", MINE]]) {
      expect((await p.cli(args, { env: { TIMEOUT: "7" } })).exitCode).toBe(0);
    }
    expect(p.cacheListing()).toEqual(before);
    expect(listing(p.path("out"))).toEqual(outputs);
    expect([p.count("upper"), p.count("pack")]).toEqual([1, 1]);
  });

  it("is stable: two plans are identical, in text, JSON and Markdown", async () => {
    const p = project();
    expect((await p.cli([MINE])).exitCode).toBe(0);
    p.write("src/a.txt", "changed\n");
    const env = { TIMEOUT: "7" };
    for (const format of [[], ["--json"], ["--markdown"]]) {
      const one = await p.cli(["plan", ...format, MINE], { env });
      const two = await p.cli(["plan", ...format, MINE], { env });
      expect(one.exitCode).toBe(0);
      expect(two.stdout).toBe(one.stdout);
      expect(one.stdout.length).toBeGreaterThan(50);
    }
  });

  it("--json: tasks with id, status and reasons in graph order, and a summary", async () => {
    const p = project();
    let plan = await planJson(p, [MINE]);
    expect(plan.tasks.map((t) => t.id)).toEqual(["conf", "upper", "pack"]);
    for (const t of plan.tasks) {
      expect(Object.keys(t).sort()).toEqual(expect.arrayContaining(["id", "reasons", "status"]));
      expect(t.reasons).toEqual(expect.arrayContaining([expect.any(String)]));
    }
    expect(plan.summary).toEqual({ stale: 3, fresh: 0 });
    expect(verdict(plan, "upper").reasons).toEqual(["never built"]);
    // A new generated file shows as a creation diff.
    expect(verdict(plan, "conf").files).toEqual([{ path: p.path("out/menu.conf"), kind: "create", diff: expect.stringContaining("+timeout=5") }]);

    expect((await p.cli([MINE])).exitCode).toBe(0);
    plan = await planJson(p, [MINE]);
    expect(plan.summary).toEqual({ stale: 0, fresh: 3 });
    expect(plan.tasks.every((t) => t.status === "fresh" && t.reasons.length === 0 && t.files === undefined)).toBe(true);

    p.write("src/a.txt", "other\n");
    plan = await planJson(p, [MINE]);
    expect(plan.summary).toEqual({ stale: 2, fresh: 1 });
    expect(verdict(plan, "pack")).toEqual({ id: "pack", status: "stale", reasons: ["upstream upper runs"], conditional: true });

    // Targets select what is planned, with dependencies.
    plan = await planJson(p, ["pack"]);
    expect(plan.tasks.map((t) => t.id)).toEqual(["upper", "pack"]);
  });

  it("shows a unified diff of what a render task would change; --no-diff leaves it out", async () => {
    const p = project();
    expect((await p.cli([MINE])).exitCode).toBe(0);
    const env = { TIMEOUT: "9" };
    const text = await p.cli(["plan", MINE], { env });
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toMatch(/^conf +stale +parameter timeout changed: 5 → 9; would change .*menu\.conf$/m);
    const diff = text.stdout.slice(text.stdout.indexOf("---"));
    expect(diff).toContain(`--- ${p.path("out/menu.conf")}`);
    expect(diff).toContain(`+++ ${p.path("out/menu.conf")}`);
    expect(diff).toMatch(/^@@ -1,5 \+1,5 @@$/m);
    expect(diff).toMatch(/^ menu title Boot\n-timeout=5\n\+timeout=9\n label one$/m);

    const bare = await p.cli(["plan", "--no-diff", MINE], { env });
    expect(bare.stdout).not.toContain("+timeout=9");
    expect(bare.stdout).toContain("conf");

    const json = await planJson(p, [MINE], { env });
    expect(verdict(json, "conf").files?.[0]).toMatchObject({ path: p.path("out/menu.conf"), kind: "change" });
    expect(verdict(json, "conf").files?.[0]?.diff).toContain("-timeout=5\n+timeout=9");

    // Running it writes exactly what the diff showed.
    expect((await p.cli([MINE], { env })).exitCode).toBe(0);
    expect(p.read("out/menu.conf")).toContain("timeout=9\n");
    expect((await planJson(p, [MINE], { env })).summary).toEqual({ stale: 0, fresh: 3 });
  });

  it("--markdown: a table with a row per task, and the diffs in fenced blocks", async () => {
    const p = project();
    expect((await p.cli([MINE])).exitCode).toBe(0);
    p.write("src/a.txt", "x|y\n");
    const md = await p.cli(["plan", "--markdown", MINE], { env: { TIMEOUT: "6" } });
    expect(md.exitCode).toBe(0);
    const lines = md.stdout.split("\n");
    expect(lines[0]).toBe("| task | status | why |");
    expect(lines[1]).toBe("| --- | --- | --- |");
    expect(lines.slice(2, 5)).toEqual([
      "| `conf` | stale | parameter timeout changed: 5 → 6<br>would change " + p.path("out/menu.conf") + " |",
      `| \`upper\` | stale | input file:${p.path("src/a.txt")} changed |`,
      "| `pack` | stale | upstream upper runs |",
    ]);
    expect(md.stdout).toContain("**3 stale, 0 fresh**");
    expect(md.stdout).toContain("```diff\n");
    expect(md.stdout).toContain("+timeout=6");
  });
});

describe("graph", () => {
  it("prints dot, mermaid and a list", async () => {
    const p = project();
    const dot = await p.cli(["graph", MINE]);
    expect(dot.exitCode).toBe(0);
    expect(dot.stdout).toBe(
      ["digraph ltsp_make {", "  rankdir=LR;", '  "conf";', '  "upper";', '  "pack";', '  "upper" -> "pack";', "}"].join("\n"),
    );
    const dot2 = await p.cli(["graph", "--format", "dot", MINE]);
    expect(dot2.stdout).toBe(dot.stdout);

    const mermaid = await p.cli(["graph", "--format", "mermaid", MINE]);
    expect(mermaid.exitCode).toBe(0);
    const m = mermaid.stdout.split("\n");
    expect(m[0]).toBe("graph LR");
    const node = (id: string) => /^\s+(\w+)\["(.+)"\]$/.exec(m.find((l) => l.includes(`["${id}"]`)) ?? "")?.[1];
    expect(node("upper")).toBeDefined();
    expect(mermaid.stdout).toContain(`  ${node("upper")} --> ${node("pack")}`);
    expect(m.filter((l) => l.includes("-->"))).toHaveLength(1);

    const list = await p.cli(["graph", "--format", "list", MINE]);
    expect(list.stdout).toBe("conf\nupper\npack  <- upper");

    const bad = await p.cli(["graph", "--format", "svg", MINE]);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/dot, mermaid, list/);
    expect(fs.existsSync(p.path("cache/state.json"))).toBe(false);
  });
});
