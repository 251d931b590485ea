// Test projects: a temp dir with an ltspfile.ts, run through the real CLI (bin/ltsp-make.js) with
// execa. State always goes to a cache dir inside the temp dir, and every root points inside it too.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa, type ResultPromise } from "execa";
import { afterEach } from "vitest";
import { VERSION } from "../../src/config.ts";
import { hashString, initHash } from "../../src/hash.ts";
import { killChildren } from "../support.ts";

await initHash();

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const CLI = path.join(PACKAGE_ROOT, "bin", "ltsp-make.js");

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  env?: Record<string, string>;
  /** Kill the CLI after this many ms (default 90 s: type-checking a config on a busy machine is slow). */
  timeout?: number;
}

/**
 * The group every task of a test ltspfile joins: the built-in task library adds tasks of its own
 * to every graph, so tests select theirs with this target (or by id).
 */
export const MINE = "mine";

/**
 * Put at the top of every test ltspfile: imports, `DIR` (the project dir), `task` (the engine's,
 * adding the task to the MINE group) and small recorders the tasks use to leave evidence of what
 * ran, when and in which order.
 */
function prelude(dir: string): string {
  return `import { defineConfig, task as engineTask, resource, type TaskDef } from "ltsp-make";
const task = (def: TaskDef): TaskDef => engineTask({ ...def, groups: [...(def.groups ?? []), ${JSON.stringify(MINE)}] });
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
const DIR = ${JSON.stringify(dir)};
const at = (name: string): string => \`\${DIR}/\${name}\`;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** One more run of \`name\`: counters are files of "x"s. */
const bump = (name: string): void => appendFileSync(at(\`\${name}.count\`), "x");
/** Append a line to a log file in the project dir. */
const note = (log: string, line: string): void => appendFileSync(at(log), \`\${line}\\n\`);
const now = (): number => performance.timeOrigin + performance.now();
`;
}

export class TestProject {
  readonly cacheDir: string;
  readonly configPath: string;
  private readonly children: ResultPromise[] = [];

  constructor(readonly dir: string) {
    this.cacheDir = path.join(dir, "cache");
    this.configPath = path.join(dir, "ltspfile.ts");
  }

  path(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /**
   * Write ltspfile.ts: the prelude (see above), then `body`. Returns the prelude's line count.
   * Type-checking a config takes seconds; unless `typecheck` is set, the file is recorded as
   * already checked (as the CLI itself would after a first run), so only the tests about type
   * checking pay for it.
   */
  writeConfig(body: string, options: { typecheck?: boolean } = {}): number {
    const head = prelude(this.dir);
    this.writeRawConfig(`${head}${body}`, options);
    return head.split("\n").length - 1;
  }

  /** Write ltspfile.ts exactly as given. */
  writeRawConfig(source: string, options: { typecheck?: boolean } = {}): void {
    fs.writeFileSync(this.configPath, source);
    // LTSP_MAKE_TEST_TYPECHECK=1 type-checks every test config for real (slow).
    if (!options.typecheck && !process.env.LTSP_MAKE_TEST_TYPECHECK) {
      // The CLI's own cache entry (config.ts): keyed by version, path and source.
      fs.mkdirSync(this.cacheDir, { recursive: true });
      fs.writeFileSync(path.join(this.cacheDir, "typecheck.json"), JSON.stringify({ ok: hashString(`${VERSION}\n${this.configPath}\n${source}`) }));
    }
  }

  write(rel: string, content: string | Buffer): string {
    const file = this.path(rel);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, content);
    return file;
  }

  read(rel: string): string {
    return fs.readFileSync(this.path(rel), "utf8");
  }

  exists(rel: string): boolean {
    return fs.existsSync(this.path(rel));
  }

  /** How many times `bump(name)` was called. */
  count(name: string): number {
    try {
      return fs.readFileSync(this.path(`${name}.count`), "utf8").length;
    } catch {
      return 0;
    }
  }

  /** The lines `note(log, …)` appended. */
  lines(log: string): string[] {
    try {
      return fs.readFileSync(this.path(log), "utf8").split("\n").filter(Boolean);
    } catch {
      return [];
    }
  }

  private argv(args: string[]): string[] {
    const roots = ["--base-dir", this.path("srv/ltsp"), "--tftp-dir", this.path("srv/tftp"), "--home-dir", this.path("home"), "--etc-dir", this.path("etc")];
    return [...args, "--config", this.configPath, "--cache-dir", this.cacheDir, ...roots];
  }

  private start(args: string[], options: CliOptions): ResultPromise {
    const child = execa("node", [CLI, ...this.argv(args)], {
      cwd: this.dir,
      env: { NO_COLOR: "1", ...options.env },
      reject: false,
      timeout: options.timeout ?? 90_000,
      stdin: "ignore",
    });
    this.children.push(child);
    return child;
  }

  /** Run the CLI to completion. */
  async cli(args: string[], options: CliOptions = {}): Promise<CliResult> {
    const result = await this.start(args, options);
    return {
      exitCode: result.exitCode ?? (result.signal ? 128 : -1),
      stdout: String(result.stdout),
      stderr: String(result.stderr),
    };
  }

  /** Start the CLI in the background (to signal it or race it); await the result for {exitCode,…}. */
  spawn(args: string[], options: CliOptions = {}): { pid: number; child: ResultPromise; done: Promise<CliResult> } {
    const child = this.start(args, options);
    const done = child.then((result) => ({
      exitCode: result.exitCode ?? -1,
      stdout: String(result.stdout),
      stderr: String(result.stderr),
    }));
    return { pid: child.pid!, child, done };
  }

  /** Names, sizes and mtimes of everything under the cache dir (to prove nothing was written). */
  cacheListing(): string[] {
    return listing(this.cacheDir);
  }

  async dispose(): Promise<void> {
    await killChildren(this.children);
    for (const mountPoint of mountsUnder(this.dir)) execFileSync("umount", ["-l", mountPoint]);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

export function listing(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      return;
    }
    for (const name of names) {
      const full = path.join(dir, name);
      const st = fs.lstatSync(full);
      out.push(`${rel}${name} ${st.isDirectory() ? "d" : st.size} ${st.mtimeMs} ${st.ctimeMs}`);
      if (st.isDirectory()) walk(full, `${rel}${name}/`);
    }
  };
  if (fs.existsSync(root)) out.push(`. ${fs.statSync(root).isDirectory() ? "d" : fs.statSync(root).size} ${fs.statSync(root).mtimeMs}`);
  walk(root, "");
  return out;
}

function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .sort((a, b) => b.length - a.length);
}

export function makeTempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-"));
}

/** Call once per test file: returns a factory of projects that are removed after each test. */
export function useProjects(): () => TestProject {
  const made: TestProject[] = [];
  afterEach(async () => {
    for (const project of made.splice(0)) await project.dispose();
  });
  return () => {
    const project = new TestProject(makeTempDir());
    made.push(project);
    return project;
  };
}

/** Poll until `check` holds (or fail after `timeoutMs`). */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A process is alive unless it is gone or a zombie nobody reaped yet. */
export function processAlive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

/** Parse `plan --json`. */
export interface PlanJson {
  tasks: Array<{ id: string; status: "stale" | "fresh"; reasons: string[]; conditional?: boolean; files?: Array<{ path: string; kind: string; diff: string }> }>;
  summary: { stale: number; fresh: number };
}

export async function planJson(project: TestProject, args: string[] = [], options: CliOptions = {}): Promise<PlanJson> {
  const result = await project.cli(["plan", "--json", ...args], options);
  if (result.exitCode !== 0) throw new Error(`plan failed (${result.exitCode}): ${result.stderr}`);
  return JSON.parse(result.stdout) as PlanJson;
}

export function verdict(plan: PlanJson, id: string): PlanJson["tasks"][number] {
  const found = plan.tasks.find((t) => t.id === id);
  if (!found) throw new Error(`task ${id} is not in the plan: ${plan.tasks.map((t) => t.id).join(", ")}`);
  return found;
}
