// Scoped resources (mounts and the like) through the real CLI.
import { describe, expect, it } from "vitest";
import { MINE, planJson, useProjects, verdict } from "./helpers.ts";

const newProject = useProjects();

/** A resource that leaves mnt.up while it is set up and logs setup/teardown to events.log. */
const MNT = `
const mnt = resource({
  id: "mnt",
  setup: async () => { bump("setup"); note("events.log", "setup"); writeFileSync(at("mnt.up"), ""); return "mounted"; },
  teardown: async (value: string) => { bump("teardown"); note("events.log", \`teardown \${value}\`); rmSync(at("mnt.up")); },
});
`;

describe("scoped resources", () => {
  it("are set up only when a user must run, shared, torn down after the last user and on failure", async () => {
    const p = newProject();
    for (const f of ["u1", "u2", "x"]) p.write(`src/${f}.txt`, "1\n");
    p.writeConfig(`${MNT}
const user = (id: string, deps: string[] = []) =>
  task({
    id,
    deps,
    uses: ["mnt"],
    inputs: [{ file: at(\`src/\${id}.txt\`) }],
    run: async (ctx) => {
      if (process.env.FAIL === id) throw new Error(\`\${id} fails on purpose\`);
      note("events.log", \`\${id} sees \${ctx.resource<string>("mnt")} \${existsSync(at("mnt.up"))}\`);
      await sleep(30);
    },
  });
export default defineConfig({
  resources: [mnt],
  tasks: [
    user("u1"),
    user("u2", ["u1"]),
    task({ id: "after", deps: ["u2"], run: () => { note("events.log", \`after sees mnt.up \${existsSync(at("mnt.up"))}\`); } }),
    task({ id: "unrelated", inputs: [{ file: at("src/x.txt") }], run: () => { bump("unrelated"); } }),
  ],
});
`);
    const events = () => {
      const lines = p.lines("events.log");
      p.write("events.log", "");
      return lines;
    };

    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(events()).toEqual(["setup", "u1 sees mounted true", "u2 sees mounted true", "teardown mounted", "after sees mnt.up false"]);

    // Nothing to do: nothing set up.
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(events()).toEqual([]);

    // Work that does not use the resource: still not set up.
    p.write("src/x.txt", "2\n");
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(p.count("unrelated")).toBe(2);
    expect(events()).toEqual([]);

    // One user must run: set up for it alone.
    p.write("src/u2.txt", "2\n");
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(events()).toEqual(["setup", "u2 sees mounted true", "teardown mounted", "after sees mnt.up false"]);

    // A user fails: the resource is torn down all the same.
    p.write("src/u1.txt", "2\n");
    const failed = await p.cli([MINE], { env: { FAIL: "u1" } });
    expect(failed.exitCode).toBe(1);
    expect(failed.stderr).toContain("u1 fails on purpose");
    expect(events()).toEqual(["setup", "teardown mounted"]);
    expect(p.exists("mnt.up")).toBe(false);
    expect([p.count("setup"), p.count("teardown")]).toEqual([3, 3]);
  });

  it("run an ephemeral task only when a later user of its resource runs", async () => {
    const p = newProject();
    p.write("src/user.txt", "1\n");
    p.write("src/side.txt", "1\n");
    p.writeConfig(`${MNT}
export default defineConfig({
  resources: [mnt],
  tasks: [
    task({ id: "wipe", ephemeral: true, uses: ["mnt"], run: () => { bump("wipe"); note("events.log", "wipe"); } }),
    task({ id: "user", deps: ["wipe"], uses: ["mnt"], inputs: [{ file: at("src/user.txt") }], run: () => { bump("user"); note("events.log", "user"); } }),
    task({ id: "side", inputs: [{ file: at("src/side.txt") }], run: () => { bump("side"); } }),
  ],
});
`);
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(p.lines("events.log")).toEqual(["setup", "wipe", "user", "teardown mounted"]);

    // No-op, and a change elsewhere: the ephemeral task does not run.
    p.write("src/side.txt", "2\n");
    let plan = await planJson(p, [MINE]);
    expect(verdict(plan, "wipe")).toMatchObject({ status: "fresh" });
    expect(verdict(plan, "user")).toMatchObject({ status: "fresh" });
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect([p.count("wipe"), p.count("user"), p.count("side"), p.count("setup")]).toEqual([1, 1, 2, 1]);

    // Its user must run: it runs first, inside the same set-up.
    p.write("src/user.txt", "2\n");
    plan = await planJson(p, [MINE]);
    expect(verdict(plan, "wipe")).toMatchObject({ status: "stale", reasons: ["needed by user, which runs inside mnt"] });
    p.write("events.log", "");
    expect((await p.cli([MINE])).exitCode).toBe(0);
    expect(p.lines("events.log")).toEqual(["setup", "wipe", "user", "teardown mounted"]);
    expect([p.count("wipe"), p.count("user"), p.count("setup")]).toEqual([2, 2, 2]);

    // Forcing only the user brings the ephemeral task along.
    expect((await p.cli(["--force=user", MINE])).exitCode).toBe(0);
    expect([p.count("wipe"), p.count("user")]).toEqual([3, 3]);
  });
});
