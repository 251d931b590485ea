// The bad-input catalogue (README, "Bad input"): from a good, complete build, break one thing,
// run the real CLI, and check the exit code, that the message names the problem and the fix, and
// that every published file (and, when nothing was meant to run, the state file) is unchanged.
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { makeSmallChroot, makeDisk, makeTree, Prefix, scrub, type CliResult } from "../pipeline/helpers.ts";
import { VERSION } from "../../src/config.ts";
import { hashString } from "../../src/hash.ts";
import { fingerprintAll, pathWithout, startTimed } from "./helpers.ts";

const PROXY = `dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] }`;
const GOOD = `{ imageDefaults: { compression: "zstd", ionice: [] }, ${PROXY} }`;
/** The good config with more fields (`extra` is spliced into the object literal). */
const withExtra = (extra: string) => `{ imageDefaults: { compression: "zstd", ionice: [] }, ${PROXY}, ${extra} }`;
const userTasks = (tasks: string) => `import { defineConfig, task } from "ltsp-make";\n\nexport default defineConfig({ imageDefaults: { compression: "zstd", ionice: [] }, ${PROXY}, tasks: [${tasks}] });\n`;

interface BadInput {
  name: string;
  exit: number;
  /** Each must match the CLI's output (stderr, then stdout). */
  message: RegExp[];
  /** A config body (see Prefix.writeConfig) used for this run only, marked as type-checked. */
  config?: string;
  /** A whole ltspfile.ts used for this run only, type-checked for real unless `checked`. */
  source?: string;
  /** Record `source` as type-checked (the error under test comes after the type check). */
  checked?: boolean;
  args?: string[];
  env?: (p: Prefix, scratch: string) => Record<string, string>;
  /** Breaks something; returns how to undo it. */
  prepare?: (p: Prefix, scratch: string) => (() => void) | void;
  /** A task ran and failed: its own record may change (it is stale now); published files may not. */
  taskFails?: boolean;
}

const chrootFile = (p: Prefix, rel: string) => path.join(p.base, "small", rel);

function fakeLiveLock(p: Prefix): () => void {
  // A live process that is not ltsp-make, recorded as the lock's owner with its real start time.
  const holder = execFileSync("sh", ["-c", "sleep 60 >/dev/null 2>&1 & echo $!"], { encoding: "utf8" }).trim();
  const stat = fs.readFileSync(`/proc/${holder}/stat`, "utf8");
  const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  fs.writeFileSync(path.join(p.cache, "lock"), `${JSON.stringify({ pid: Number(holder), start, command: "ltsp-make all", since: "2024-01-01T00:00:00Z" })}\n`);
  return () => {
    process.kill(Number(holder), "SIGKILL");
    fs.rmSync(path.join(p.cache, "lock"), { force: true });
  };
}

function replaceState(p: Prefix, content: string): () => void {
  const file = path.join(p.cache, "state.json");
  const saved = fs.readFileSync(file);
  fs.writeFileSync(file, content);
  return () => fs.writeFileSync(file, saved);
}

export const CASES: BadInput[] = [
  // ---- image sources ----
  { name: "image source does not exist", exit: 2, config: withExtra(`images: { bad: { source: "/nonexistent/ltsp-source" } }`), message: [/\/nonexistent\/ltsp-source/, /does not exist|not found|no such/i] },
  {
    name: "image source is a dangling symlink (unreadable)",
    exit: 2,
    config: withExtra(`images: { bad: { source: "SCRATCH/dangling" } }`),
    prepare: (_p, s) => void fs.symlinkSync("/nonexistent/target", path.join(s, "dangling")),
    message: [/dangling/, /does not exist|not found|no such/i],
  },
  {
    name: "image source is a directory that is not an OS",
    exit: 1,
    args: ["image:bad"],
    config: withExtra(`images: { bad: { source: "SCRATCH/notanos" } }`),
    prepare: (_p, s) => void makeTree(path.join(s, "notanos"), { "photos/cat.jpg": "meow", "notes.txt": "hello\n" }),
    taskFails: true,
    message: [/FAILED\s+cleanup:bad/, /has no etc\/passwd/, /check that this is the root of an installed system/],
  },
  {
    name: "VM disk with no usable partition (only an ESP)",
    exit: 1,
    args: ["image:bad"],
    config: withExtra(`images: { bad: { source: "SCRATCH/esp-only.img" } }`),
    prepare: (_p, s) => void makeDisk(path.join(s, "esp-only.img"), "gpt", [{ sizeMiB: 8, type: "uefi", content: { fs: "vfat" } }]),
    taskFails: true,
    message: [/FAILED\s+\S+:bad/, /No partition of \S*esp-only\.img holds an operating system/, /partition=N/],
  },
  {
    name: "VM disk with an empty partition table",
    exit: 1,
    args: ["image:bad"],
    config: withExtra(`images: { bad: { source: "SCRATCH/empty-table.img" } }`),
    prepare: (_p, s) => {
      const file = path.join(s, "empty-table.img");
      execFileSync("truncate", ["-s", "4M", file]);
      execFileSync("sfdisk", ["--quiet", file], { input: "label: gpt\n" });
    },
    taskFails: true,
    message: [/FAILED\s+\S+:bad/, /empty-table\.img/, /empty partition table/],
  },
  {
    name: "unsupported disk format (random bytes)",
    exit: 1,
    args: ["image:bad"],
    config: withExtra(`images: { bad: { source: "SCRATCH/garbage.img" } }`),
    prepare: (_p, s) => void fs.writeFileSync(path.join(s, "garbage.img"), Buffer.alloc(2 * 1024 * 1024, 0x5a)),
    taskFails: true,
    message: [/FAILED\s+\S+:bad/, /garbage\.img/, /blkid -p/],
  },
  { name: "unknown compression", exit: 2, config: withExtra(`images: { small: { compression: "brotli" } }`), message: [/brotli/, /use one of/] },

  // ---- ltspfile.ts ----
  { name: "ltspfile.ts with a syntax error", exit: 2, source: `import { defineConfig } from "ltsp-make";\nexport default defineConfig({ ipxe: { timeout: 5000 } ;\n`, message: [/ltspfile\.ts:2:\d+/, /nothing was built/i] },
  { name: "ltspfile.ts with a type error", exit: 2, source: `import { defineConfig } from "ltsp-make";\nexport default defineConfig({ ipxe: { timeout: "soon" } });\n`, message: [/ltspfile\.ts:2:\d+/, /not assignable/, /Fix these lines/] },
  { name: "ltspfile.ts throws while loading", exit: 2, config: `(() => { throw new Error("no config for you"); })()`, message: [/ltspfile\.ts/, /no config for you/] },
  { name: "ltspfile.ts config function throws", exit: 2, config: `() => { throw new Error("cannot decide"); }`, message: [/evaluating the config failed/, /cannot decide/] },
  { name: "ltspfile.ts without a default export", exit: 2, source: `export const config = {};\n`, message: [/default export/, /export default defineConfig/] },
  { name: "config file given with --config does not exist", exit: 2, args: ["all", "--config", "/nonexistent/ltspfile.ts"], message: [/\/nonexistent\/ltspfile\.ts does not exist/, /--config/] },
  {
    name: "task graph with a cycle",
    exit: 2,
    checked: true,
    source: userTasks(`task({ id: "a", deps: ["b"], run: () => {} }), task({ id: "b", deps: ["a"], run: () => {} })`),
    message: [/cycle/, /a → b|b → a/],
  },
  { name: "task depends on an unknown task", exit: 2, checked: true, source: userTasks(`task({ id: "a", deps: ["squash:smal"], run: () => {} })`), message: [/depends on squash:smal, which is not a task/, /squash:small/] },
  {
    name: "two tasks declare the same output",
    exit: 2,
    checked: true,
    source: userTasks(`task({ id: "a", outputs: ["/tmp/ltsp-make-dup"], run: () => {} }), task({ id: "b", outputs: ["/tmp/ltsp-make-dup"], run: () => {} })`),
    message: [/both declare the output \/tmp\/ltsp-make-dup/, /one producer/],
  },
  {
    name: "a user task reuses a built-in task id",
    exit: 2,
    checked: true,
    source: userTasks(`task({ id: "initrd", run: () => {} })`),
    message: [/two tasks are named initrd/, /unique/],
  },
  { name: "a task with neither run nor render", exit: 2, checked: true, source: userTasks(`task({ id: "empty" } as never)`), message: [/task empty has neither run\(\) nor render\(\)/] },
  { name: "a user task with an invalid id", exit: 2, checked: true, source: userTasks(`task({ id: "bad id", run: () => {} })`), message: [/task id "bad id" is not valid/, /use letters/] },

  // ---- image names ----
  { name: 'unsafe image name "../evil"', exit: 2, config: withExtra(`images: { "../evil": { source: "BASE/small" } }`), message: [/Invalid image name "\.\.\/evil"/, /may only use letters/] },
  { name: "unsafe image name with a space", exit: 2, config: withExtra(`images: { "my image": { source: "BASE/small" } }`), message: [/Invalid image name "my image"/, /Rename/] },
  { name: "unsafe image name with a newline", exit: 2, config: withExtra(`images: { "a\\nb": { source: "BASE/small" } }`), message: [/Invalid image name "a\\nb"/] },
  { name: "unsafe image name with a shell character", exit: 2, config: withExtra(`images: { "x;reboot": { source: "BASE/small" } }`), message: [/Invalid image name "x;reboot"/] },
  {
    name: "discovered chroot with an unsafe name",
    exit: 2,
    prepare: (p) => {
      const dir = path.join(p.base, "bad name");
      fs.mkdirSync(path.join(dir, "proc"), { recursive: true });
      return () => fs.rmSync(dir, { recursive: true, force: true });
    },
    message: [/Invalid image name "bad name"/, /ln -s SOURCE/],
  },

  // ---- command line ----
  { name: "unknown target", exit: 2, args: ["squash:smal"], message: [/unknown target squash:smal/, /squash:small/, /ltsp-make graph/] },
  { name: "unknown option", exit: 2, args: ["all", "--frobnicate"], message: [/unknown option '--frobnicate'/] },
  { name: "explain an unknown task", exit: 2, args: ["explain", "kernal:small"], message: [/unknown target kernal:small/, /kernel:small/] },
  { name: "revert an image that does not exist", exit: 2, args: ["revert", "ghost"], message: [/ghost/] },

  // ---- tools ----
  {
    name: "mksquashfs missing",
    exit: 1,
    env: (_p, s) => ({ PATH: pathWithout(path.join(s, "no-mksquashfs"), ["mksquashfs"]) }),
    taskFails: true,
    message: [/FAILED\s+squash:small/, /needs mksquashfs, not found on PATH: install it/],
  },
  {
    name: "dnsmasq missing",
    exit: 1,
    env: (_p, s) => ({ PATH: pathWithout(path.join(s, "no-dnsmasq"), ["dnsmasq"]) }),
    taskFails: true,
    message: [/FAILED\s+dnsmasq/, /needs dnsmasq, not found on PATH: install it/],
  },
  {
    name: "unsquashfs missing",
    exit: 1,
    env: (_p, s) => ({ PATH: pathWithout(path.join(s, "no-unsquashfs"), ["unsquashfs"]) }),
    taskFails: true,
    message: [/FAILED\s+kernel:small/, /needs unsquashfs, not found on PATH: install it/],
  },

  // ---- state directory ----
  { name: "corrupted state file", exit: 2, prepare: (p) => replaceState(p, '{"format":1,"tasks":{"squash:sm'), message: [/state file .*state\.json is corrupted/, /mv .*state\.json .*state\.json\.bad/] },
  { name: "state file from a newer version", exit: 2, prepare: (p) => replaceState(p, JSON.stringify({ format: 99, writer: "ltsp-make 9.0.0", generation: 1, tasks: {} })), message: [/written by a newer ltsp-make \(ltsp-make 9\.0\.0/, /Use that newer version/] },
  { name: "state file that is not ltsp-make's", exit: 2, prepare: (p) => replaceState(p, JSON.stringify({ hello: "world" })), message: [/is not an ltsp-make state file/, /--cache-dir/] },
  {
    name: "state directory is not writable (a file)",
    exit: 2,
    args: ["all", "--cache-dir", "SCRATCH/cache-file/sub"],
    prepare: (_p, s) => void fs.writeFileSync(path.join(s, "cache-file"), "not a directory\n"),
    message: [/state directory .*cache-file\/sub is not writable/, /--cache-dir/],
  },
  { name: "lock held by a live run", exit: 2, prepare: (p) => fakeLiveLock(p), message: [/another ltsp-make run \(PID \d+/, /Wait for it to finish, or stop it/] },
  {
    name: "stale lock of a dead run (taken over)",
    exit: 0,
    prepare: (p) => {
      fs.writeFileSync(path.join(p.cache, "lock"), `${JSON.stringify({ pid: 999999, start: "1", command: "ltsp-make all", since: "2024-01-01T00:00:00Z" })}\n`);
    },
    args: ["all", "-v"],
    message: [/took over the lock of a run that is gone \(PID 999999\)/, /0 run, \d+ up to date, 0 failed/],
  },

  // ---- generated-file values ----
  { name: "invalid MAC address in an iPXE client section", exit: 2, config: withExtra(`ipxe: { clients: [{ mac: "52:54:00:zz:00:01", hostname: "pc01" }] }`), message: [/52:54:00:zz:00:01/] },
  { name: "invalid proxy DHCP network", exit: 2, config: `{ imageDefaults: { compression: "zstd", ionice: [] }, dnsmasq: { proxyRanges: [{ network: "192.168.300.0", netmask: "255.255.255.0" }] } }`, message: [/192\.168\.300\.0/] },
];

const scratchSub = (p: Prefix, s: string, text: string) => text.replaceAll("SCRATCH", s).replaceAll("BASE", p.base);

describe("bad input: exit code, a message with the problem and the fix, nothing published changes", () => {
  let prefix: Prefix;
  let scratch: string;
  let goodConfig: Buffer;
  let goodTypecheck: Buffer;

  beforeAll(async () => {
    prefix = new Prefix(fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-")));
    scratch = prefix.path("scratch");
    fs.mkdirSync(scratch);
    makeSmallChroot(chrootFile(prefix, ""));
    prefix.writeConfig(GOOD);
    const first = await prefix.cli(["all"]);
    if (first.exitCode !== 0) throw new Error(`good build failed\n${first.stdout}\n${first.stderr}`);
    goodConfig = fs.readFileSync(prefix.configPath);
    goodTypecheck = fs.readFileSync(path.join(prefix.cache, "typecheck.json"));
  });

  afterAll(async () => {
    if (prefix) scrub(prefix.dir);
  });

  test("the catalogue has at least 30 cases", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(30);
    expect(new Set(CASES.map((c) => c.name)).size).toBe(CASES.length);
  });

  test.each(CASES.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    const before = fingerprintAll(prefix);
    const stateBefore = JSON.parse(fs.readFileSync(path.join(prefix.cache, "state.json"), "utf8")) as { tasks: Record<string, unknown> };
    const undo = c.prepare?.(prefix, scratch);
    if (c.config !== undefined) prefix.writeConfig(scratchSub(prefix, scratch, c.config));
    if (c.source !== undefined) fs.writeFileSync(prefix.configPath, c.source);
    if (c.source !== undefined && c.checked) {
      fs.writeFileSync(path.join(prefix.cache, "typecheck.json"), JSON.stringify({ ok: hashString(`${VERSION}\n${prefix.configPath}\n${c.source}`) }));
    }
    let result: CliResult;
    try {
      const args = (c.args ?? ["all"]).map((a) => scratchSub(prefix, scratch, a));
      result = await startTimed(prefix, args, undefined, c.env?.(prefix, scratch) ?? {}).done;
    } finally {
      undo?.();
      fs.writeFileSync(prefix.configPath, goodConfig);
      fs.writeFileSync(path.join(prefix.cache, "typecheck.json"), goodTypecheck);
    }
    const output = `${result.stderr}\n${result.stdout}`;
    expect(result.exitCode, output).toBe(c.exit);
    for (const pattern of c.message) expect(output, `message names the problem and the fix`).toMatch(pattern);
    expect(output, "no stack trace for a user error").not.toMatch(/^\s+at .*\.ts:\d+:\d+\)?$/m);

    const after = fingerprintAll(prefix);
    const state = path.join(prefix.cache, "state.json");
    if (c.taskFails) {
      // The failed task is stale now; every other record and every published file is as it was.
      const { [state]: _s, ...published } = after;
      const { [state]: _b, ...publishedBefore } = before;
      expect(published).toEqual(publishedBefore);
      const stateAfter = JSON.parse(fs.readFileSync(state, "utf8")) as { tasks: Record<string, unknown> };
      const failed = [...output.matchAll(/^FAILED {2}(\S+)/gm)].map((m) => m[1]!);
      for (const [id, record] of Object.entries(stateBefore.tasks)) {
        // (cleanup and customize steps are ephemeral: they re-run with the squash they serve)
        if (!failed.includes(id) && !/^(cleanup|customize-[^:]+):/.test(id)) expect(stateAfter.tasks[id], `record of ${id}`).toEqual(record);
      }
      // Put the good state back for the next case.
      const again = await prefix.cli(["all"]);
      expect(again.exitCode, `${again.stdout}\n${again.stderr}`).toBe(0);
    } else {
      expect(after).toEqual(before);
    }
    expect(fs.existsSync(path.join(prefix.cache, "lock")), "no lock left").toBe(false);
  });
});
