// Errors a user can hit: each exits 2 with a message that names the problem, and writes nothing
// to the state directory.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import { MINE, useProjects, type CliResult, type TestProject } from "./helpers.ts";

const newProject = useProjects();

/** Run, expect exit 2 and an unchanged state dir; returns stderr. */
async function expectRefused(p: TestProject, args: string[]): Promise<string> {
  const before = p.cacheListing();
  const result: CliResult = await p.cli(args);
  expect(result.exitCode, result.stderr).toBe(2);
  expect(p.cacheListing()).toEqual(before);
  expect(result.stderr).toMatch(/^ltsp-make: /);
  // One clear message, not a stack trace.
  expect(result.stderr).not.toMatch(/^\s+at /m);
  return result.stderr;
}

const simpleTask = (id: string, extra = "") => `task({ id: "${id}"${extra}, run: () => { bump("${id}"); } })`;

describe("graph errors", () => {
  it("a cycle: the message prints it; nothing is written, not even the type-check cache", async () => {
    const p = newProject();
    p.writeConfig(
      `export default defineConfig({ tasks: [${simpleTask("a", ', deps: ["c"]')}, ${simpleTask("b", ', deps: ["a"]')}, ${simpleTask("c", ', deps: ["b"]')}] });\n`,
      { typecheck: true },
    );
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain("the tasks form a cycle: a → c → b → a");
    expect(fs.existsSync(p.cacheDir)).toBe(false);
    expect(p.count("a") + p.count("b") + p.count("c")).toBe(0);
  });

  it("an unknown dependency, with a suggestion", async () => {
    const p = newProject();
    p.writeConfig(`export default defineConfig({ tasks: [${simpleTask("build")}, ${simpleTask("deploy", ', deps: ["bulid"]')}] });\n`);
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain("task deploy depends on bulid, which is not a task (did you mean build?)");
  });

  it("two tasks declaring one output", async () => {
    const p = newProject();
    p.writeConfig(
      `export default defineConfig({ tasks: [${simpleTask("one", ', outputs: [at("out/x.conf")]')}, ${simpleTask("two", ', outputs: [at("out/x.conf")]')}] });\n`,
    );
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain(`tasks one and two both declare the output ${p.path("out/x.conf")}`);
    // The same check guards plan.
    await expectRefused(p, ["plan", MINE]);
  });

  it("an unknown target, with the nearest name", async () => {
    const p = newProject();
    p.writeConfig(`export default defineConfig({ tasks: [${simpleTask("upper")}, ${simpleTask("lower")}] });\n`);
    const stderr = await expectRefused(p, ["uper"]);
    expect(stderr).toContain("unknown target uper (did you mean upper?)");
    expect(await expectRefused(p, ["plan", "lowr"])).toContain("(did you mean lower?)");
    expect(p.count("upper")).toBe(0);
  });
});

describe("config errors", () => {
  it("a syntax error names file:line", async () => {
    const p = newProject();
    const preludeLines = p.writeConfig(`export default defineConfig({\n  tasks: [\n    task({ id: "a", run: () => { ) }),\n  ],\n});\n`, {
      typecheck: true,
    });
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain(`${p.configPath}:${preludeLines + 3}:`);
    expect(fs.existsSync(p.cacheDir)).toBe(false);
  });

  it("a type error names file:line and what is wrong", async () => {
    const p = newProject();
    const preludeLines = p.writeConfig(`export default defineConfig({\n  tasks: [\n    task({ id: "a", deps: "b", run: () => {} }),\n  ],\n});\n`, {
      typecheck: true,
    });
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain(`${p.configPath}:${preludeLines + 3}:`);
    expect(stderr).toMatch(/not assignable to type 'string\[\]'/);
    expect(stderr).toContain("does not type-check");
    expect(fs.existsSync(p.cacheDir)).toBe(false);
  });

  it("a type error in a file the config imports is found, also after the config itself was checked", async () => {
    const p = newProject();
    p.write("site.ts", `export const mirror: string = "http://deb.debian.org/debian";\n`);
    p.writeConfig(`import { mirror } from "./site.ts";\nexport default defineConfig({ tasks: [task({ id: "a", params: { mirror }, run: () => {} })] });\n`, {
      typecheck: true,
    });
    expect((await p.cli([MINE])).exitCode).toBe(0);
    p.write("site.ts", `export const mirror: string = 42;\n`);
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain(`${p.path("site.ts")}:1:`);
    expect(stderr).toContain("does not type-check");
  });

  it("a config that throws while loading names file:line and the error", async () => {
    const p = newProject();
    const preludeLines = p.writeConfig(
      `function mirror(): string {\n  throw new Error("no mirror configured");\n}\nexport default defineConfig({ tasks: [task({ id: "a", params: { mirror: mirror() }, run: () => {} })] });\n`,
    );
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain("no mirror configured");
    const line = new RegExp(`${p.configPath.replace(/[.]/g, "\\.")}:(\\d+)`).exec(stderr)?.[1];
    expect([preludeLines + 2, preludeLines + 4]).toContain(Number(line));
  });
});

describe("state errors", () => {
  const config = `export default defineConfig({ tasks: [${simpleTask("a")}] });\n`;

  it("a state dir that is a file", async () => {
    const p = newProject();
    p.writeConfig(config, { typecheck: true });
    fs.writeFileSync(p.cacheDir, "not a directory\n");
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain(`the state directory ${p.cacheDir} is not writable`);
    expect(stderr).toContain("--cache-dir");
    expect(fs.readFileSync(p.cacheDir, "utf8")).toBe("not a directory\n");
    expect(p.count("a")).toBe(0);
  });

  it("a read-only state dir (bind mount): runs are refused, plan still works", async () => {
    const p = newProject();
    p.writeConfig(config);
    execFileSync("mount", ["--bind", p.cacheDir, p.cacheDir]);
    execFileSync("mount", ["-o", "remount,bind,ro", p.cacheDir]);
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain(`the state directory ${p.cacheDir} is not writable (EROFS)`);
    await expectRefused(p, ["clean"]);
    const plan = await p.cli(["plan", MINE]);
    expect(plan.exitCode).toBe(0);
    expect(plan.stdout).toMatch(/^a +stale +never built$/m);
    expect(p.count("a")).toBe(0);
  });

  it("a corrupted state.json", async () => {
    const p = newProject();
    p.writeConfig(config);
    expect((await p.cli([MINE])).exitCode).toBe(0);
    fs.writeFileSync(p.path("cache/state.json"), '{"format":1,"tasks":{"a":');
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain(`the state file ${p.path("cache/state.json")} is corrupted`);
    expect(stderr).toContain("mv ");
    await expectRefused(p, ["plan", MINE]);
    expect(p.count("a")).toBe(1);
  });

  it("state written by a newer format", async () => {
    const p = newProject();
    p.writeConfig(config);
    p.write("cache/state.json", JSON.stringify({ format: 99, writer: "ltsp-make 9.0.0", generation: 1, tasks: {}, durations: {}, stamps: {}, tools: {} }));
    const stderr = await expectRefused(p, [MINE]);
    expect(stderr).toContain("written by a newer ltsp-make (ltsp-make 9.0.0, state format 99");
    expect(p.count("a")).toBe(0);
  });
});
