// Kill `ltsp-make all` at seeded random points and check what it leaves: published files whole,
// a state that claims only what finished, and a next run that rebuilds exactly the rest, leaves
// no mount, loop device, process or work directory, and ends equal to a clean build.
import fs from "node:fs";
import path from "node:path";
import { expect } from "vitest";
import { catImage, listImage, makeSmallChroot, leftoversSince, snapshotSystem, startedTasks, waitFor, type Prefix } from "../pipeline/helpers.ts";
import { seededRandom } from "../../bench/lib.ts";
import { crash, hiddenEntries, publishedSnapshot, sh, startTimed, type PublishedEntry } from "./helpers.ts";

// Delay knobs so every kind of task has a window to be killed in: a customize step that sleeps,
// mksquashfs behind a wrapper that waits before and after it (the temp image complete but not
// yet published), reload commands that sleep.
export const KILL_CONFIG = `{
  imageDefaults: {
    compression: "zstd",
    ionice: ["sh", "-c", 'sleep 0.08; "$@" && sleep 0.08', "slow-squash"],
    customize: [{
      id: "slow",
      params: { motd: "reliability" },
      run: async (_ctx, root) => {
        const fs = await import("node:fs");
        await new Promise((r) => setTimeout(r, 60));
        fs.writeFileSync(root + "/etc/motd", "reliability\\n");
        await new Promise((r) => setTimeout(r, 60));
      },
    }],
  },
  images: { small: { boot: { method: "nbd" } } },
  ipxe: { timeout: 5000 },
  dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },
  reload: { dnsmasq: ["sleep", "0.1"], nfs: ["sleep", "0.1"], nbd: ["sleep", "0.1"] },
}`;

export const TASKS = [
  "cleanup:small", "customize-slow:small", "squash:small", "kernel:small", "initrd", "ipxe", "ipxe-binaries",
  "nfs", "dnsmasq", "nbd", "reload-dnsmasq", "reload-nfs", "reload-nbd",
].sort();
const EPHEMERAL = new Set(["cleanup:small", "customize-slow:small"]);

export function kindOf(id: string): string {
  return id.split(":")[0]!;
}

interface Reference {
  /** Published non-image files: path → content hash. */
  files: Map<string, string>;
  /** The image's entries (type, mode, owner, size, path) and a few contents. */
  image: string[];
  /** Per task: start and end (ms since the run began) in a clean build. */
  timeline: Map<string, { start: number; end: number }>;
}

const imagesDir = (prefix: Prefix) => path.join(prefix.base, "images");
const isImageFile = (prefix: Prefix, p: string) => path.dirname(p) === imagesDir(prefix);

function imageContent(image: string): string[] {
  const entries = [...listImage(image).values()].map((e) => `${e.type}${e.mode} ${e.owner} ${e.type === "d" ? "" : e.size} ${e.path}${e.target ? ` -> ${e.target}` : ""}`);
  return [...entries.sort(), catImage(image, "etc/motd"), catImage(image, "etc/shadow")];
}

function nonImageFiles(prefix: Prefix, snapshot: Map<string, PublishedEntry>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [p, e] of snapshot) {
    if (isImageFile(prefix, p) || e.kind === "dir") continue;
    out.set(p, e.kind === "file" ? e.hash! : `-> ${e.target}`);
  }
  return out;
}

function resetOutputs(prefix: Prefix): void {
  for (const dir of [imagesDir(prefix), prefix.tftp, path.join(prefix.etc, "dnsmasq.d"), path.join(prefix.etc, "exports.d"), path.join(prefix.etc, "nbd-server")]) {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  fs.mkdirSync(prefix.tftp, { recursive: true });
  for (const name of ["state.json", "state.journal", "lock"]) fs.rmSync(path.join(prefix.cache, name), { force: true });
}

/** A clean build, timed: what every killed run is compared with. */
async function referenceBuild(prefix: Prefix): Promise<Reference> {
  const run = startTimed(prefix, ["all", "-j", "2"]);
  const result = await run.done;
  if (result.exitCode !== 0) throw new Error(`reference build failed\n${result.stdout}\n${result.stderr}`);
  const timeline = new Map<string, { start: number; end: number }>();
  for (const line of run.lines) {
    const start = /^start {3}(\S+)$/.exec(line.text);
    if (start) timeline.set(start[1]!, { start: line.at, end: line.at });
    const end = /^done {4}(\S+) /.exec(line.text);
    if (end) timeline.get(end[1]!)!.end = line.at;
  }
  expect([...timeline.keys()].sort()).toEqual(TASKS);
  return { files: nonImageFiles(prefix, publishedSnapshot(prefix)), image: imageContent(prefix.image("small")), timeline };
}

/** Published files right after a kill: each one whole (and, for configs, equal to the clean build's). */
function expectNothingHalfWritten(prefix: Prefix, ref: Reference, where: string): void {
  const snapshot = publishedSnapshot(prefix);
  for (const [p, e] of snapshot) {
    if (p.split("/").some((part) => part.startsWith(".")) || e.kind === "dir") continue; // temporaries are not published
    if (isImageFile(prefix, p)) {
      if (e.kind === "link") {
        const target = path.join(imagesDir(prefix), e.target!);
        expect(fs.existsSync(target), `${where}: ${p} points at an existing generation`).toBe(true);
        continue;
      }
      expect(() => sh("unsquashfs", ["-s", p]), `${where}: ${p} is a whole squashfs`).not.toThrow();
      continue;
    }
    if (p.endsWith("ltsp-dnsmasq.conf")) {
      expect(() => sh("dnsmasq", ["--test", `--conf-file=${p}`]), `${where}: dnsmasq --test ${p}`).not.toThrow();
    }
    if (p.endsWith("ltsp.img")) {
      expect(() => sh("cpio", ["-t", "--quiet"], fs.readFileSync(p)), `${where}: cpio -t ${p}`).not.toThrow();
    }
    const now = e.kind === "file" ? e.hash : `-> ${e.target}`;
    expect(now, `${where}: ${p} is exactly the clean build's (not cut short)`).toBe(ref.files.get(p));
  }
}

async function planStatuses(prefix: Prefix): Promise<Map<string, string>> {
  const plan = await prefix.plan();
  return new Map([...plan].map(([id, v]) => [id, v.status]));
}

/** Stale only because of an upstream task (it runs, or its output changed): nothing of its own is missing. */
function conditional(reasons: string[]): boolean {
  return reasons.length > 0 && reasons.every((r) => /^upstream \S+ /.test(r));
}

export interface KillStats {
  landed: number;
  missed: number;
  byKind: Map<string, number>;
  inFlightKinds: Set<string>;
  bySignal: Map<string, number>;
}

/**
 * Runs `count` landed kills with the given signals, from a seed. Each kill: pick a mode (from
 * nothing, or `--force` over a complete build), a task, and a delay within that task's duration
 * in the reference timeline; start `ltsp-make all`; when the task's start line shows, wait the
 * delay and send the signal.
 */
export async function runKills(prefix: Prefix, options: { seed: number; count: number; signals: NodeJS.Signals[] }): Promise<KillStats> {
  makeSmallChroot(path.join(prefix.base, "small"));
  fs.mkdirSync(path.join(prefix.base, "small", "srv"), { recursive: true });
  prefix.writeConfig(KILL_CONFIG);
  const system = snapshotSystem();
  const ref = await referenceBuild(prefix);
  const random = seededRandom(options.seed);
  const stats: KillStats = { landed: 0, missed: 0, byKind: new Map(), inFlightKinds: new Set(), bySignal: new Map() };
  let attempt = 0;
  let missedInRow = 0;
  const kinds = [...new Set(TASKS.map(kindOf))].sort();

  while (stats.landed < options.count) {
    attempt++;
    if (attempt > options.count * 2) throw new Error(`only ${stats.landed} of ${options.count} kills landed in ${attempt - 1} attempts`);
    // Every kind is aimed at in turn; within a kind, a random task; the delay is random.
    // (a kill that missed, because the run ended first, is aimed again at the same kind, earlier)
    const kind = kinds[stats.landed % kinds.length]!;
    const candidates = TASKS.filter((t) => kindOf(t) === kind);
    const target = candidates[Math.floor(random() * candidates.length)]!;
    const span = ref.timeline.get(target)!;
    const delay = Math.floor((random() * Math.max(5, span.end - span.start)) / 2 ** missedInRow);
    const signal = options.signals[Math.floor(random() * options.signals.length)]!;
    const force = random() < 0.35;
    const where = `kill #${attempt} (seed ${options.seed}): ${signal} ${delay} ms after "start ${target}"${force ? " in a --force run" : " from nothing"}`;

    if (!force) resetOutputs(prefix);

    let killedAt: number | undefined;
    let sawTarget = false;
    const killed = startTimed(prefix, force ? ["all", "-j", "2", "--force"] : ["all", "-j", "2"], (line) => {
      if (sawTarget || line.text !== `start   ${target}`) return;
      sawTarget = true;
      setTimeout(() => {
        if (killed.exited()) return;
        killedAt = Date.now();
        if (signal === "SIGKILL") crash(prefix, killed.pid);
        else process.kill(killed.pid, signal);
      }, delay);
    });
    const result = await killed.done;
    if (killedAt === undefined) {
      // The run ended before the signal could be sent: not a kill; the state is complete.
      expect(result.exitCode, `${where}: run without kill\n${result.stdout}\n${result.stderr}`).toBe(0);
      stats.missed++;
      missedInRow++;
      continue;
    }
    if (signal === "SIGKILL") crash(prefix, killed.pid);

    const out = result.stdout;
    const done = new Set([...out.matchAll(/^done {4}(\S+) /gm)].map((m) => m[1]!));
    const started = new Set(startedTasks(out));
    const inFlight = [...started].filter((t) => !done.has(t));
    const finishedRun = /^\d+ run, \d+ up to date/m.test(out);

    // The killed run's own exit.
    if (signal === "SIGKILL") {
      if (result.signal !== "SIGKILL" && result.exitCode === 0 && finishedRun && inFlight.length === 0) {
        // It exited on its own in the moment between the check above and the kill: not a kill.
        stats.missed++;
        missedInRow++;
        continue;
      }
      expect(result.signal, `${where}: died by SIGKILL`).toBe("SIGKILL");
    } else {
      const expected = signal === "SIGINT" ? 130 : 143;
      if (finishedRun && inFlight.length === 0 && done.size === started.size && !/cancel/.test(out)) {
        // The signal came after the run had finished: 0, the signal's code, or (once the handlers
        // are gone, after the state is saved and the lock released) death by the signal itself.
        expect([0, expected].includes(result.exitCode) || result.signal === signal, `${where}: exit ${result.exitCode} ${result.signal}\n${out}\n${result.stderr}`).toBe(true);
      } else {
        expect(result.exitCode, `${where}\n${out}\n${result.stderr}`).toBe(expected);
      }
      // A graceful stop cleans up after itself: no mount, loop device, process or work directory.
      let left: string[] = [];
      await waitFor(`${where}: nothing left after ${signal}`, () => (left = leftoversSince(system, prefix.dir)).length === 0, 5000, 50).catch(() => {
        throw new Error(`${where}: the interrupted run left behind:\n${left.join("\n")}`);
      });
      const work = path.join(prefix.cache, "work");
      expect(fs.existsSync(work) ? fs.readdirSync(work) : [], `${where}: work directories after ${signal}`).toEqual([]);
    }

    missedInRow = 0;
    stats.landed++;
    stats.byKind.set(kind, (stats.byKind.get(kind) ?? 0) + 1);
    stats.bySignal.set(signal, (stats.bySignal.get(signal) ?? 0) + 1);
    for (const t of inFlight) stats.inFlightKinds.add(kindOf(t));

    // 1. Nothing published is half-written.
    expectNothingHalfWritten(prefix, ref, where);

    // 2. The state claims exactly what finished.
    const plan = await prefix.plan();
    const after = new Map([...plan].map(([id, v]) => [id, v.status]));
    const squashFresh = after.get("squash:small") === "fresh";
    for (const id of TASKS) {
      const status = after.get(id);
      const context = `${where}: ${id} is ${status} (${plan.get(id)!.reasons.join("; ")}); killed run said:\n${out}`;
      if (EPHEMERAL.has(id)) {
        expect(status, context).toBe(squashFresh ? "fresh" : "stale");
      } else if (done.has(id)) {
        expect(status, context).toBe("fresh");
      } else if (started.has(id)) {
        // Cut off while running: stale, unless it had recorded its complete outputs just before
        // the signal and only the "done" line was lost (checked against the clean build below).
        if (status === "fresh") expect(id === "squash:small" || signal === "SIGKILL", context).toBe(true);
      } else if (force) {
        // Never started in a forced run: its old record stands, unless an upstream task lost its own.
        if (status === "stale") expect(conditional(plan.get(id)!.reasons), `${context}\n${plan.get(id)!.reasons.join("; ")}`).toBe(true);
      } else {
        expect(status, context).toBe("stale");
      }
    }
    if (after.get("squash:small") === "fresh") expect(imageContent(prefix.image("small")), `${where}: a fresh squash has a whole image`).toEqual(ref.image);
    for (const id of TASKS) if (after.get(id) === "fresh" && !EPHEMERAL.has(id)) expectOutputsOfTask(prefix, ref, id, where);

    // 3. The next run rebuilds exactly what is stale, cleans up what the killed run left, and
    // ends equal to a clean build.
    const stale = TASKS.filter((id) => after.get(id) === "stale");
    const next = await prefix.cli(["all", "-j", "2"]);
    expect(next.exitCode, `${where}: next run\n${next.stdout}\n${next.stderr}`).toBe(0);
    const cutoff = [...next.stdout.matchAll(/^cutoff {2}(\S+) /gm)].map((m) => m[1]!);
    expect(
      [...startedTasks(next.stdout), ...cutoff].sort(),
      `${where}: the next run runs exactly the stale tasks (or skips ones whose upstream output came out unchanged)\n${next.stdout}`,
    ).toEqual(stale);
    for (const id of cutoff) expect(conditional(plan.get(id)!.reasons), `${where}: ${id} skipped by early cutoff`).toBe(true);
    let left: string[] = [];
    await waitFor(`${where}: nothing left`, () => (left = leftoversSince(system, prefix.dir)).length === 0, 5000, 50).catch(() => {
      throw new Error(`${where}: after the next run, left behind:\n${left.join("\n")}`);
    });
    const work = path.join(prefix.cache, "work");
    expect(fs.existsSync(work) ? fs.readdirSync(work) : [], `${where}: work directories after the next run`).toEqual([]);
    expect(hiddenEntries(prefix), `${where}: temporaries after the next run`).toEqual([]);
    expect(fs.existsSync(path.join(prefix.cache, "lock")), `${where}: lock after the next run`).toBe(false);
    if (stats.landed % 3 === 0 || stats.landed === options.count) {
      // (every third kill: a plan costs half a second)
      const final = await planStatuses(prefix);
      expect([...final].filter(([, s]) => s !== "fresh"), `${where}: everything fresh after the next run`).toEqual([]);
    }
    expect(nonImageFiles(prefix, publishedSnapshot(prefix)), `${where}: published files equal a clean build's`).toEqual(ref.files);
    expect(imageContent(prefix.image("small")), `${where}: the image equals a clean build's`).toEqual(ref.image);
  }
  return stats;
}

const OUTPUTS: Record<string, (prefix: Prefix) => string[]> = {
  "kernel:small": (p) => [p.tftpFile("small", "vmlinuz"), p.tftpFile("small", "initrd.img")],
  initrd: (p) => [p.tftpFile("ltsp.img")],
  ipxe: (p) => [p.tftpFile("ltsp.ipxe")],
  "ipxe-binaries": (p) => [p.tftpFile("undionly.kpxe"), p.tftpFile("snponly.efi")],
  nfs: (p) => [path.join(p.etc, "exports.d", "ltsp-nfs.exports")],
  dnsmasq: (p) => [path.join(p.etc, "dnsmasq.d", "ltsp-dnsmasq.conf")],
  nbd: (p) => [path.join(p.etc, "nbd-server", "ltsp-make.conf")],
};

/** A task the state calls fresh has its outputs, whole. */
function expectOutputsOfTask(prefix: Prefix, ref: Reference, id: string, where: string): void {
  for (const file of OUTPUTS[id]?.(prefix) ?? []) {
    expect(ref.files.has(file), `reference has ${file}`).toBe(true);
    const now = fs.existsSync(file) ? publishedSnapshot(prefix).get(file) : undefined;
    expect(now?.hash, `${where}: ${id} is fresh, so ${file} is complete`).toBe(ref.files.get(file));
  }
}

export function reportStats(name: string, stats: KillStats): void {
  const kinds = [...stats.byKind].map(([k, n]) => `${k}=${n}`).join(" ");
  const signals = [...stats.bySignal].map(([k, n]) => `${k}=${n}`).join(" ");
  console.log(`${name}: ${stats.landed} kills landed (${stats.missed} runs ended first); aimed at: ${kinds}; signals: ${signals}; cut off while running: ${[...stats.inFlightKinds].sort().join(" ")}`);
}
