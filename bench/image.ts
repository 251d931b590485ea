// Image builds on a real chroot, in a temp prefix:
//  (a) ltsp-make's first build (default compression) against bare mksquashfs with the same
//      arguments on the same source, page cache dropped before each run, and again with the
//      source already in the page cache; likewise a rebuild after a change in the source (the
//      state of the previous build kept); and where ltsp-make's time goes;
//  (b) ltsp-make's first build with upstream's compression (gzip) against the default, and
//      against bare mksquashfs with those same (gzip) arguments;
//  (c) a no-op `ltsp-make` (all targets) after the build;
//  (d) upstream `ltsp image` on the same chroot, when it runs here.
// Everything runs on a private copy of the chroot, so its dpkg lock is ours alone.
// BENCH_CHROOT=DIR (default: test/fixtures/debian-chroot.sh), BENCH_ROUNDS (default 3: runs of
// each side of (a)), BENCH_NOOP_RUNS (default 5), BENCH_UPSTREAM=0 skips (d), BENCH_GZIP=0 skips (b).
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { execa } from "execa";
import { StampCache } from "../src/fingerprint/stamps.ts";
import { compileExcludes } from "../src/fingerprint/patterns.ts";
import { fingerprintTree } from "../src/fingerprint/tree.ts";
import { initHash } from "../src/hash.ts";
import { effectiveExcludes, writeExcludesFile } from "../tasks/lib/excludes.ts";
import {
  benchChroot,
  dropCaches,
  fmtMB,
  fmtS,
  fmtTimes,
  loadLine,
  machineLine,
  measure,
  Scratch,
  toolVersion,
  warmTree,
  type Measured,
} from "./compression.ts";
import { CLI, envInt, fmtRatio, isMain, median, nowMs, sleep } from "./lib.ts";

const IMAGE = "bookworm";

type Cache = "cold" | "warm";

interface Prefix {
  root: string;
  config: string;
  cache: string;
  base: string;
  tftp: string;
  image: string;
}

/** A prefix with the server files ltsp-make reads, and an ltspfile building one image from the chroot. */
function makePrefix(parent: string, name: string, chroot: string, compression?: string): Prefix {
  const root = join(parent, name);
  const p = (...parts: string[]) => join(root, ...parts);
  for (const dir of ["base", "tftp", "home", "etc/ltsp", "etc/ssh", "cache"]) mkdirSync(p(dir), { recursive: true });
  writeFileSync(p("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nteacher:x:1000:1000:Teacher:/home/teacher:/bin/bash\n");
  writeFileSync(p("etc/group"), "root:x:0:\nteacher:x:1000:\n");
  writeFileSync(p("etc/login.defs"), "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n");
  writeFileSync(p("etc/ssh/ssh_host_ed25519_key.pub"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchBenchBenchBenchBenchBenchBenchBenchBench root@bench\n");
  writeFileSync(p("etc/ltsp/ltsp.conf"), "[clients]\n");
  writeFileSync(p("etc/resolv.conf"), "nameserver 192.168.67.1\n");
  const image = compression ? `{ source: ${JSON.stringify(chroot)}, compression: ${JSON.stringify(compression)} }` : `{ source: ${JSON.stringify(chroot)} }`;
  writeFileSync(
    p("ltspfile.ts"),
    `import { defineConfig } from "ltsp-make";

export default defineConfig(() => ({
  discover: false,
  images: { ${IMAGE}: ${image} },
  dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },
  nfs: { home: false },
}));
`,
  );
  return { root, config: p("ltspfile.ts"), cache: p("cache"), base: p("base"), tftp: p("tftp"), image: p("base", "images", `${IMAGE}.img`) };
}

function cliCommand(prefix: Prefix, args: string[], cacheDir = prefix.cache): string[] {
  const r = prefix.root;
  return ["node", CLI, "--config", prefix.config, "--cache-dir", cacheDir, "--base-dir", prefix.base, "--tftp-dir", prefix.tftp, "--home-dir", join(r, "home"), "--etc-dir", join(r, "etc"), ...args];
}

/**
 * Forget every build of the prefix, so the next run is a first build. The record of the
 * ltspfile's type check stays: that is the cost of editing ltspfile.ts, not of building an
 * image, and is measured on its own (planRun).
 */
function resetPrefix(prefix: Prefix): void {
  const typecheck = join(prefix.cache, "typecheck.json");
  const checked = existsSync(typecheck) ? readFileSync(typecheck) : undefined;
  for (const dir of [prefix.cache, join(prefix.base, "images"), prefix.tftp]) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
  }
  if (checked) writeFileSync(typecheck, checked);
}

function prepareCache(cache: Cache, chroot: string): Promise<void> | void {
  if (cache === "cold") {
    if (!dropCaches()) throw new Error("cannot drop the page cache (/proc/sys/vm/drop_caches): run as root on a kernel that allows it");
    return;
  }
  return warmTree(chroot);
}

interface Line {
  atMs: number;
  text: string;
}

interface LtspBuild extends Measured {
  lines: Line[];
  /** The mksquashfs command ltsp-make ran, as logged. */
  squashCommand: string[];
  imageBytes: number;
  /** It had to wait for the source's dpkg lock (apt or dpkg running in it). */
  waited: boolean;
}

/** A build of the image group; a first build unless `keepState`. */
async function ltspBuild(prefix: Prefix, keepState = false, target = `image:${IMAGE}`): Promise<LtspBuild> {
  if (!keepState) resetPrefix(prefix);
  const lines: Line[] = [];
  const m = await measure(cliCommand(prefix, ["-v", target]), { onLine: (text, atMs) => lines.push({ atMs, text }) });
  const logged = lines.find((l) => /\] \$ .*\bmksquashfs /.test(l.text));
  if (!logged) throw new Error(`ltsp-make did not squash the image:\n${m.stdout}`);
  const squashCommand = logged.text.slice(logged.text.indexOf("$ ") + 2).trim().split(/\s+/);
  const waited = lines.some((l) => /\] Waiting for /.test(l.text));
  return { ...m, lines, squashCommand, imageBytes: statSync(prefix.image).size, waited };
}

/** The logged ltsp-make command with the source and output replaced, and our own copy of the exclude file. */
function bareCommand(logged: string[], source: string, output: string, excludesFile: string): string[] {
  const i = logged.indexOf("mksquashfs");
  if (i < 0) throw new Error(`not a mksquashfs command: ${logged.join(" ")}`);
  const rest = logged.slice(i + 3);
  const ef = rest.indexOf("-ef");
  if (ef < 0 || rest[ef + 1] === undefined) throw new Error(`no -ef in ${logged.join(" ")}`);
  rest[ef + 1] = excludesFile;
  return [...logged.slice(0, i), "mksquashfs", source, output, ...rest];
}

/** Where the time of a build went, from the timestamps of its `-v` lines. */
function phasesOf(build: LtspBuild): Record<string, number> {
  const at = (re: RegExp, from = 0): number => {
    const found = build.lines.slice(from).find((l) => re.test(l.text));
    if (!found) throw new Error(`no line matching ${re} in the ltsp-make output`);
    return found.atMs;
  };
  const firstStart = at(/^start\s/);
  const cleanupStart = at(new RegExp(`^start\\s+cleanup:${IMAGE}`));
  const cleanupFirst = at(new RegExp(`^\\s+\\[cleanup:${IMAGE}\\]`));
  const cleanupDone = at(new RegExp(`^done\\s+cleanup:${IMAGE}`));
  const mksquashfs = at(/\] \$ .*\bmksquashfs /);
  const published = at(new RegExp(`^\\s+\\[squash:${IMAGE}\\] (published|identical)`));
  const squashDone = at(new RegExp(`^done\\s+squash:${IMAGE}`));
  const kernelDone = build.lines.find((l) => new RegExp(`^done\\s+kernel:${IMAGE}`).test(l.text))?.atMs ?? squashDone;
  return {
    "start-up, config, plan (walk of the source)": firstStart,
    "overlay mount + dpkg lock": cleanupFirst - cleanupStart,
    "cleanup step": cleanupDone - cleanupFirst,
    "between tasks, squash set-up": mksquashfs - cleanupDone,
    "mksquashfs on the overlay + publish": published - mksquashfs,
    "unmount, source hashes not taken during mksquashfs, record outputs": squashDone - published,
    "kernel + initrd copy (chained, as `ltsp image` does)": kernelDone - squashDone,
    "after the last task (state saved, exit)": build.wallMs - kernelDone,
  };
}

interface Side {
  /** First builds of the image's group: squash, kernel and initrd (as `ltsp image` chains `ltsp kernel`). */
  ltsp: LtspBuild[];
  /** First builds of the squash task alone: what bare mksquashfs does. */
  squash: LtspBuild[];
  /** Rebuilds after a change in the source, with the state of the previous build kept. */
  rebuild: LtspBuild[];
  bare: Measured[];
  overlay: Measured[];
}

export interface ImageReport {
  chroot: string;
  rounds: number;
  first: Record<Cache, Side>;
  bareImageBytes: number;
  ltspImageBytes: number;
  fingerprint: Record<Cache, { ms: number; files: number; bytes: number }>;
  plans: Record<Cache, { full: Measured[]; typeChecked: Measured[] }>;
  gzip?: LtspBuild;
  /** Bare mksquashfs with the gzip build's arguments. */
  bareGzip?: Measured;
  noop: { ms: number[]; cpuMs: number[]; ran: number[]; allBuild: Measured };
  upstream: { ok: true; run: Measured; imageBytes: number } | { ok: false; reason: string };
  loadBefore: string;
  loadAfter: string;
  versions: string[];
}

async function overlayRun(scratch: string, chroot: string, command: (root: string) => string[]): Promise<Measured> {
  const dir = join(scratch, "overlay");
  const layers = join(dir, "tmpfs");
  const root = join(dir, "root");
  mkdirSync(layers, { recursive: true });
  mkdirSync(root, { recursive: true });
  await execa("mount", ["-t", "tmpfs", "-o", "mode=0755", "tmpfs", layers]);
  try {
    mkdirSync(join(layers, "up"));
    mkdirSync(join(layers, "work"));
    await execa("mount", ["-t", "overlay", "-o", `upperdir=${layers}/up,lowerdir=${chroot},workdir=${layers}/work`, "overlay", root]);
    try {
      return await measure(command(root));
    } finally {
      await execa("umount", [root]);
    }
  } finally {
    await execa("umount", [layers]);
  }
}

async function fingerprintOnly(chroot: string, cache: Cache): Promise<{ ms: number; files: number; bytes: number }> {
  await prepareCache(cache, chroot);
  const stamps = new StampCache({}, 1);
  const matcher = compileExcludes(effectiveExcludes());
  const start = nowMs();
  fingerprintTree(chroot, matcher, stamps);
  return { ms: nowMs() - start, files: stamps.stats.hashed, bytes: stamps.stats.bytes };
}

/**
 * `ltsp-make plan` of the image with no recorded state: start-up, the config's type check and
 * the walk of the source (a never-built image's files are hashed while it is squashed, not
 * before). With `typeChecked`, the type check result is already recorded (as after any earlier
 * run with the same ltspfile).
 */
async function planRun(prefix: Prefix, cache: Cache, chroot: string, typeChecked: boolean): Promise<Measured> {
  const dir = join(prefix.root, "plan-cache");
  rmSync(dir, { recursive: true, force: true });
  if (typeChecked) {
    mkdirSync(dir);
    copyFileSync(join(prefix.cache, "typecheck.json"), join(dir, "typecheck.json"));
  }
  await prepareCache(cache, chroot);
  try {
    return await measure(cliCommand(prefix, ["-n", `image:${IMAGE}`], dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runUpstream(scratch: string, chroot: string, log: (line: string) => void): Promise<ImageReport["upstream"]> {
  const ltsp = ["/usr/sbin/ltsp", "/usr/bin/ltsp"].find((p) => existsSync(p));
  if (!ltsp) return { ok: false, reason: "the `ltsp` package is not installed" };
  const root = join(scratch, "upstream");
  const base = join(root, "base");
  const tftp = join(root, "tftp");
  const home = join(root, "home");
  for (const d of [base, tftp, home]) mkdirSync(d, { recursive: true });
  await prepareCache("cold", chroot);
  log("upstream: ltsp image (gzip, chains ltsp kernel), page cache dropped ...");
  try {
    // The roots also go in the environment: `ltsp image` re-runs itself as `ltsp kernel` without
    // its command-line options, which would otherwise write to the real /srv/tftp.
    const roots = [`BASE_DIR=${base}`, `TFTP_DIR=${tftp}`, `HOME_DIR=${home}`];
    const run = await measure(["env", ...roots, ltsp, `--base-dir=${base}`, `--tftp-dir=${tftp}`, `--home-dir=${home}`, "image", chroot]);
    const image = join(base, "images", `${basename(chroot)}.img`);
    if (!existsSync(image)) return { ok: false, reason: `\`ltsp image\` exited 0 but wrote no ${image}` };
    return { ok: true, run, imageBytes: statSync(image).size };
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    const reason = text
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l && !/^\d+m[\d.]+s /.test(l))
      .slice(-3)
      .join(" / ");
    return { ok: false, reason: `\`ltsp image\` failed here: ${reason}` };
  }
}

export async function runImageBench(log: (line: string) => void): Promise<ImageReport> {
  const rounds = envInt("BENCH_ROUNDS", 3);
  const noopRuns = envInt("BENCH_NOOP_RUNS", 5);
  const fixture = await benchChroot(log);
  await initHash();
  const loadBefore = loadLine();
  const scratch = new Scratch("image");
  try {
    // A private copy: builds take the chroot's dpkg lock, which other users of the shared
    // fixture may hold for minutes; a copy also keeps the fixture itself out of reach.
    const chroot = join(scratch.path, "chroots", IMAGE);
    mkdirSync(join(scratch.path, "chroots"));
    log(`copying ${fixture} to ${chroot} ...`);
    await execa("cp", ["-a", fixture, chroot]);
    const zstd = makePrefix(scratch.path, "zstd", chroot);
    const bareDir = join(scratch.path, "bare");
    mkdirSync(bareDir);
    const bareOut = join(bareDir, `${IMAGE}.img.tmp`);
    const excludesFile = join(bareDir, "image.excludes");
    await writeExcludesFile(excludesFile, effectiveExcludes());

    // Records the ltspfile's type check, as any earlier run with the same ltspfile would have.
    const typeCheck = await measure(cliCommand(zstd, ["-q", "ipxe"]));
    log(`type check of the ltspfile (first run of it, building ipxe): ${fmtS(typeCheck.wallMs)}`);
    const first: Record<Cache, Side> = { cold: { ltsp: [], squash: [], rebuild: [], bare: [], overlay: [] }, warm: { ltsp: [], squash: [], rebuild: [], bare: [], overlay: [] } };
    let logged: string[] | undefined;
    let bareImageBytes = 0;
    let changes = 0;
    for (const cache of ["cold", "warm"] as const) {
      const side = first[cache];
      for (let round = 0; round < rounds; round++) {
        // Alternate the order, so neither side always runs right after the other.
        const order = round % 2 === 0 ? (["ltsp", "rebuild", "squash", "bare", "overlay"] as const) : (["overlay", "bare", "squash", "ltsp", "rebuild"] as const);
        for (const who of logged ? order : (["ltsp", "rebuild", "squash", "bare", "overlay"] as const)) {
          // A change of its own size each time, so the new image never has the size of the last one.
          if (who === "rebuild") writeFileSync(join(chroot, "etc", "ltsp-make-bench-change"), randomBytes(4096 * ++changes + 17));
          await prepareCache(cache, chroot);
          if (who === "rebuild") {
            const build = await ltspBuild(zstd, true);
            side.rebuild.push(build);
            log(`${cache} ${round + 1}/${rounds}: ltsp-make rebuild after a source change ${fmtS(build.wallMs)} (CPU ${fmtS(build.cpuMs)})`);
          } else if (who === "squash") {
            const build = await ltspBuild(zstd, false, `squash:${IMAGE}`);
            side.squash.push(build);
            log(`${cache} ${round + 1}/${rounds}: ltsp-make first build of squash:${IMAGE} alone ${fmtS(build.wallMs)} (CPU ${fmtS(build.cpuMs)})`);
          } else if (who === "ltsp") {
            const build = await ltspBuild(zstd);
            logged = build.squashCommand;
            side.ltsp.push(build);
            log(`${cache} ${round + 1}/${rounds}: ltsp-make first build ${fmtS(build.wallMs)} (CPU ${fmtS(build.cpuMs)}), load ${loadLine()}`);
          } else if (who === "bare") {
            const m = await measure(bareCommand(logged!, chroot, bareOut, excludesFile));
            bareImageBytes = statSync(bareOut).size;
            rmSync(bareOut, { force: true });
            side.bare.push(m);
            log(`${cache} ${round + 1}/${rounds}: bare mksquashfs ${fmtS(m.wallMs)} (CPU ${fmtS(m.cpuMs)})`);
          } else {
            const m = await overlayRun(scratch.path, chroot, (root) => bareCommand(logged!, root, bareOut, excludesFile));
            rmSync(bareOut, { force: true });
            side.overlay.push(m);
            log(`${cache} ${round + 1}/${rounds}: bare mksquashfs on an overlay ${fmtS(m.wallMs)} (CPU ${fmtS(m.cpuMs)})`);
          }
        }
      }
    }
    const ltspImageBytes = first.warm.ltsp.at(-1)!.imageBytes;

    const fingerprint = {
      cold: await fingerprintOnly(chroot, "cold"),
      warm: await fingerprintOnly(chroot, "warm"),
    };
    log(`source fingerprint alone: cold ${fmtS(fingerprint.cold.ms)}, warm ${fmtS(fingerprint.warm.ms)} (${fingerprint.cold.files} files)`);
    const plans: ImageReport["plans"] = { cold: { full: [], typeChecked: [] }, warm: { full: [], typeChecked: [] } };
    for (const cache of ["cold", "warm"] as const) {
      for (let i = 0; i < rounds; i++) {
        plans[cache].full.push(await planRun(zstd, cache, chroot, false));
        plans[cache].typeChecked.push(await planRun(zstd, cache, chroot, true));
        log(`${cache} plan with empty state: ${fmtS(plans[cache].full.at(-1)!.wallMs)}, type check recorded: ${fmtS(plans[cache].typeChecked.at(-1)!.wallMs)}`);
      }
    }

    // (c) The zstd prefix holds the last first build: build the rest once, then do nothing.
    const allBuild = await measure(cliCommand(zstd, ["-q"]));
    log(`all targets after the image: ${fmtS(allBuild.wallMs)}`);
    await sleep(1500); // past the racy-timestamp window, so no stamp is distrusted
    const noop = { ms: [] as number[], cpuMs: [] as number[], ran: [] as number[], allBuild };
    for (let i = 0; i < noopRuns; i++) {
      const m = await measure(cliCommand(zstd, []));
      const ran = /(\d+) run,/.exec(m.stdout);
      noop.ms.push(m.wallMs);
      noop.cpuMs.push(m.cpuMs);
      noop.ran.push(ran ? Number(ran[1]) : -1);
      log(`no-op ${i + 1}/${noopRuns}: ${fmtS(m.wallMs)} (${ran ? ran[0] : "no summary line"})`);
    }

    // (b) upstream's compression, through ltsp-make.
    let gzip: LtspBuild | undefined;
    let bareGzip: Measured | undefined;
    if (process.env.BENCH_GZIP !== "0") {
      const prefix = makePrefix(scratch.path, "gzip", chroot, "gzip");
      await prepareCache("cold", chroot);
      log("ltsp-make first build with compression gzip, page cache dropped ...");
      gzip = await ltspBuild(prefix);
      log(`gzip first build ${fmtS(gzip.wallMs)} (CPU ${fmtS(gzip.cpuMs)})`);
      await prepareCache("cold", chroot);
      bareGzip = await measure(bareCommand(gzip.squashCommand, chroot, bareOut, excludesFile));
      rmSync(bareOut, { force: true });
      log(`bare mksquashfs with the same (gzip) arguments ${fmtS(bareGzip.wallMs)} (CPU ${fmtS(bareGzip.cpuMs)})`);
      rmSync(prefix.root, { recursive: true, force: true });
    }

    // (d) upstream.
    const upstream = process.env.BENCH_UPSTREAM === "0" ? { ok: false as const, reason: "skipped (BENCH_UPSTREAM=0)" } : await runUpstream(scratch.path, chroot, log);
    if (upstream.ok) log(`upstream ltsp image ${fmtS(upstream.run.wallMs)} (CPU ${fmtS(upstream.run.cpuMs)})`);
    else log(`upstream: ${upstream.reason}`);

    const versions = [await toolVersion("mksquashfs", ["-version"]), await toolVersion("ltsp", ["--version"])];
    return { chroot: `${fixture} (private copy)`, rounds, first, bareImageBytes, ltspImageBytes, fingerprint, plans, gzip, bareGzip, noop, upstream, loadBefore, loadAfter: loadLine(), versions };
  } finally {
    scratch.dispose();
  }
}

const mark = (ok: boolean) => (ok ? "✅" : "❌");
const med = (list: readonly Measured[], pick: (m: Measured) => number = (m) => m.wallMs) => median(list.map(pick));

export function printImage(r: ImageReport, write: (line: string) => void): void {
  const cold = r.first.cold;
  const warm = r.first.warm;
  write("");
  write(`Machine: ${machineLine()}; ${r.versions.join("; ")}. Load average before/after: ${r.loadBefore} → ${r.loadAfter}.`);
  write(`Source: ${r.chroot}; prefix, images and bare output under ${tmpdir()}. Times are wall clock; CPU is user + system of all processes (wall clock depends on other load on the machine, CPU time hardly).`);
  write("");
  write("| measure | ltsp-make | reference | ratio | goal |");
  write("| --- | ---: | ---: | ---: | --- |");
  for (const [builds, what] of [
    ["squash", `\`squash:${IMAGE}\``],
    ["ltsp", `\`image:${IMAGE}\` (+ kernel, initrd)`],
  ] as const) {
    for (const [side, label] of [
      [cold, "page cache dropped"],
      [warm, "source in the page cache"],
    ] as const) {
      const l = med(side[builds]);
      const b = med(side.bare);
      const ratio = l / b;
      const cpuRatio = med(side[builds], (m) => m.cpuMs) / med(side.bare, (m) => m.cpuMs);
      write(
        `| (a) first build of ${what}, default compression, ${label} (median of ${r.rounds}) | ${fmtS(l)} (CPU ${fmtS(med(side[builds], (m) => m.cpuMs))}) | ` +
          `bare mksquashfs ${fmtS(b)} (CPU ${fmtS(med(side.bare, (m) => m.cpuMs))}) | ${fmtRatio(ratio)} (CPU ${fmtRatio(cpuRatio)}) | ≤ 1.03× ${mark(ratio <= 1.03)} (CPU ${mark(cpuRatio <= 1.03)}) |`,
      );
    }
  }
  for (const [side, label] of [
    [cold, "page cache dropped"],
    [warm, "source in the page cache"],
  ] as const) {
    const l = med(side.rebuild);
    const b = med(side.bare);
    write(
      `| (a) rebuild after a change in the source (state kept), ${label} (median of ${r.rounds}) | ${fmtS(l)} (CPU ${fmtS(med(side.rebuild, (m) => m.cpuMs))}) | ` +
        `bare mksquashfs ${fmtS(b)} | ${fmtRatio(l / b)} (CPU ${fmtRatio(med(side.rebuild, (m) => m.cpuMs) / med(side.bare, (m) => m.cpuMs))}) | |`,
    );
  }
  write(
    `| (a) fixed cost of an ltsp-make first build (ltsp-make − bare, medians) | ${fmtS(med(cold.ltsp) - med(cold.bare))} dropped, ${fmtS(med(warm.ltsp) - med(warm.bare))} in cache | | | |`,
  );
  write(`| (a) image size | ${fmtMB(r.ltspImageBytes)} (after cleanup) | bare ${fmtMB(r.bareImageBytes)} | ${fmtRatio(r.ltspImageBytes / r.bareImageBytes)} | |`);
  if (r.gzip) {
    const z = med(cold.ltsp);
    const speedup = r.gzip.wallMs / z;
    const cpuSpeedup = r.gzip.cpuMs / med(cold.ltsp, (m) => m.cpuMs);
    write(
      `| (b) first build, default (zstd:3) vs upstream's gzip, page cache dropped | ${fmtS(z)} (CPU ${fmtS(med(cold.ltsp, (m) => m.cpuMs))}) | ` +
        `gzip ${fmtS(r.gzip.wallMs)} (CPU ${fmtS(r.gzip.cpuMs)}) | ${fmtTimes(speedup)} faster (CPU ${fmtTimes(cpuSpeedup)}) | ≥ 15× ${mark(speedup >= 15)} (CPU ${mark(cpuSpeedup >= 15)}) |`,
    );
    write(`| (b) image size, zstd:3 vs gzip | ${fmtMB(r.ltspImageBytes)} | ${fmtMB(r.gzip.imageBytes)} | ${fmtRatio(r.ltspImageBytes / r.gzip.imageBytes)} | |`);
    if (r.bareGzip) {
      const ratio = r.gzip.wallMs / r.bareGzip.wallMs;
      write(
        `| (a) first build of \`image:${IMAGE}\` with upstream's compression (gzip), page cache dropped (one run) | ${fmtS(r.gzip.wallMs)} (CPU ${fmtS(r.gzip.cpuMs)}) | ` +
          `bare mksquashfs, same arguments ${fmtS(r.bareGzip.wallMs)} (CPU ${fmtS(r.bareGzip.cpuMs)}) | ${fmtRatio(ratio)} (CPU ${fmtRatio(r.gzip.cpuMs / r.bareGzip.cpuMs)}) | ≤ 1.03× ${mark(ratio <= 1.03)} |`,
      );
    }
  }
  const noop = median(r.noop.ms);
  const allFresh = r.noop.ran.every((n) => n === 0);
  write(
    `| (c) no-op \`ltsp-make\` (all targets), median of ${r.noop.ms.length} | ${fmtS(noop)} (CPU ${fmtS(median(r.noop.cpuMs))})${allFresh ? "" : ` (⚠ tasks ran: ${r.noop.ran.join(", ")})`} | | | ≤ 0.5 s ${mark(noop <= 500 && allFresh)} |`,
  );
  if (r.upstream.ok) {
    const u = r.upstream.run;
    if (r.gzip) {
      write(
        `| (d) \`ltsp image\` (upstream, gzip, chains \`ltsp kernel\`) vs ltsp-make with gzip, page cache dropped | ${fmtS(r.gzip.wallMs)} (CPU ${fmtS(r.gzip.cpuMs)}) | ` +
          `upstream ${fmtS(u.wallMs)} (CPU ${fmtS(u.cpuMs)}) | ${fmtRatio(r.gzip.wallMs / u.wallMs)} (CPU ${fmtRatio(r.gzip.cpuMs / u.cpuMs)}) | |`,
      );
    }
    const z = med(cold.ltsp);
    write(
      `| (d) \`ltsp image\` (upstream defaults) vs ltsp-make defaults, page cache dropped | ${fmtS(z)} (CPU ${fmtS(med(cold.ltsp, (m) => m.cpuMs))}) | upstream ${fmtS(u.wallMs)} (CPU ${fmtS(u.cpuMs)}) | ${fmtTimes(u.wallMs / z)} faster (CPU ${fmtTimes(u.cpuMs / med(cold.ltsp, (m) => m.cpuMs))}) | |`,
    );
    write(`| (d) image size | ${fmtMB(r.ltspImageBytes)} | upstream ${fmtMB(r.upstream.imageBytes)} | ${fmtRatio(r.ltspImageBytes / r.upstream.imageBytes)} | |`);
  } else {
    write(`| (d) upstream \`ltsp image\` | | skipped: ${r.upstream.reason.replace(/\|/g, "\\|")} | | |`);
  }
  const waits = [...cold.ltsp, ...warm.ltsp, ...cold.squash, ...warm.squash, ...cold.rebuild, ...warm.rebuild, ...(r.gzip ? [r.gzip] : [])].filter((b) => b.waited).length;
  if (waits) write(`\n⚠ ${waits} ltsp-make build(s) waited for the source's dpkg lock (apt or dpkg running in it): their times include the wait.`);
  write("");
  write(`Where a build's time goes (median of ${r.rounds}, from the timestamps of \`ltsp-make -v\`):`);
  write("");
  write("| phase | first build, page cache dropped | first build, source in the page cache | rebuild, page cache dropped | rebuild, source in the page cache |");
  write("| --- | ---: | ---: | ---: | ---: |");
  const columns = [cold.ltsp, warm.ltsp, cold.rebuild, warm.rebuild].map((builds) => builds.map(phasesOf));
  for (const name of Object.keys(columns[0]?.[0] ?? {})) {
    write(`| ${name} | ${columns.map((c) => fmtS(median(c.map((p) => p[name]!)))).join(" | ")} |`);
  }
  write(`| **ltsp-make build, total** | ${[cold.ltsp, warm.ltsp, cold.rebuild, warm.rebuild].map((b) => fmtS(med(b))).join(" | ")} |`);
  write(`| bare mksquashfs on the chroot directory | ${fmtS(med(cold.bare))} | ${fmtS(med(warm.bare))} | | |`);
  write(`| bare mksquashfs on an overlay of the chroot (tmpfs upper) | ${fmtS(med(cold.overlay))} | ${fmtS(med(warm.overlay))} | | |`);
  const p = r.plans;
  write(
    `| \`ltsp-make plan\` with no recorded state: start-up + config type check + walk of the source | ${fmtS(med(p.cold.full))} | ${fmtS(med(p.warm.full))} | | |`,
  );
  write(
    `| the same with the config's type check already recorded: start-up + walk of the source | ${fmtS(med(p.cold.typeChecked))} | ${fmtS(med(p.warm.typeChecked))} | | |`,
  );
  const f = r.fingerprint;
  write(
    `| source fingerprint alone, empty stamp cache (${f.cold.files} files, ${fmtMB(f.cold.bytes)} hashed; one run) | ${fmtS(f.cold.ms)} | ${fmtS(f.warm.ms)} | | |`,
  );
  write(`| no-op: start-up + plan, stamps known (from (c)) | | ${fmtS(noop)} | | ${fmtS(noop)} |`);
}

if (isMain(import.meta.url)) {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const report = await runImageBench(log);
  printImage(report, (line) => process.stdout.write(`${line}\n`));
}
