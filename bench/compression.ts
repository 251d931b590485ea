// Image compression on a real chroot: every squashfs compressor ltsp-make can be told to use,
// built with the same mksquashfs arguments as an image (built-in excludes), and timed for
// build time, image size and read speed. Prints a Markdown table and a recommendation.
//
// Build: the source is in the page cache and the image is written to a tmpfs, so the build time
// is mksquashfs's own work. Read: the image (on the tmpfs) is loop-mounted and every file is
// read through the kernel's squashfs, as a client reads it, with the page cache dropped first;
// and `unsquashfs` extracts it all into the tmpfs (user space, all CPUs).
// BENCH_CHROOT=DIR (default: test/fixtures/debian-chroot.sh), BENCH_RUNS (default 3: runs of
// each build shorter than 20 s, and of each read), BENCH_COMPRESSIONS=zstd,xz,… (default: all).
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { compressionArgs } from "../tasks/image.ts";
import { BUILTIN_EXCLUDES, writeExcludesFile } from "../tasks/lib/excludes.ts";
import { envInt, fmtRatio, isMain, median, nowMs, REPO_ROOT } from "./lib.ts";

// ---------------------------------------------------------------------------------------------
// Shared with bench/image.ts

/** A temp dir that may hold mounts: disposing unmounts whatever is mounted under it, then removes it. */
export class Scratch {
  readonly path: string;
  private readonly onSignal = (signal: NodeJS.Signals) => {
    this.dispose();
    process.kill(process.pid, signal);
  };

  constructor(prefix: string) {
    this.path = mkdtempSync(join(tmpdir(), `ltsp-make-bench-${prefix}-`));
    process.once("SIGINT", this.onSignal);
    process.once("SIGTERM", this.onSignal);
  }

  /** Mount points at or under this dir, deepest first (from /proc/self/mountinfo). */
  mountsUnder(): string[] {
    const found: string[] = [];
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const field = line.split(" ")[4];
      if (field === undefined) continue;
      const point = field.replace(/\\([0-7]{3})/g, (_m, octal: string) => String.fromCharCode(parseInt(octal, 8)));
      if (point === this.path || point.startsWith(`${this.path}/`)) found.push(point);
    }
    return found.sort((a, b) => b.length - a.length);
  }

  dispose(): void {
    process.off("SIGINT", this.onSignal);
    process.off("SIGTERM", this.onSignal);
    for (const point of this.mountsUnder()) spawnSync("umount", ["-l", point], { stdio: "ignore" });
    rmSync(this.path, { recursive: true, force: true });
  }
}

export interface Measured {
  wallMs: number;
  /** User + system CPU time of the command and every process it waited for. */
  cpuMs: number;
  stdout: string;
}

const WITH_TIMES = 'status=0; "$@" || status=$?; times >&2; exit $status';

/**
 * Runs a command and measures its wall time and its CPU time (bash's `times` for the children),
 * so figures stay meaningful when other work shares the CPUs. `onLine` sees each stdout line
 * with the milliseconds since the start.
 */
export async function measure(
  command: readonly string[],
  options: { cwd?: string; onLine?: (line: string, atMs: number) => void } = {},
): Promise<Measured> {
  const start = nowMs();
  const onLine = options.onLine;
  const result = await execa("bash", ["-c", WITH_TIMES, "bash", ...command], {
    cwd: options.cwd,
    reject: false,
    stdin: "ignore",
    stdout: onLine
      ? function* (line: unknown) {
          onLine(String(line), nowMs() - start);
          yield line;
        }
      : "pipe",
  });
  const wallMs = nowMs() - start;
  const stdout = String(result.stdout ?? "");
  const stderr = String(result.stderr ?? "");
  if (result.exitCode !== 0) {
    const tail = stderr.split("\n").slice(-15).join("\n");
    throw new Error(`${command.join(" ")} exited with ${result.exitCode}:\n${tail}\n${stdout.split("\n").slice(-10).join("\n")}`);
  }
  const times = /(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(stderr);
  if (!times) throw new Error(`no CPU times from bash for ${command.join(" ")}`);
  const seconds = (m: string, s: string) => Number(m) * 60 + Number(s);
  return { wallMs, cpuMs: 1000 * (seconds(times[1]!, times[2]!) + seconds(times[3]!, times[4]!)), stdout };
}

/** Empties the page cache (root only). False when the kernel does not allow it here. */
export function dropCaches(): boolean {
  spawnSync("sync");
  try {
    writeFileSync("/proc/sys/vm/drop_caches", "3\n");
    return true;
  } catch {
    return false;
  }
}

/** The chroot the image benchmarks use: BENCH_CHROOT, or the cached Debian fixture. */
export async function benchChroot(log: (line: string) => void): Promise<string> {
  const given = process.env.BENCH_CHROOT;
  if (given) return given;
  log("finding (or building) the Debian chroot fixture ...");
  const { stdout } = await execa("bash", [join(REPO_ROOT, "test/fixtures/debian-chroot.sh")], { stderr: "inherit" });
  return stdout.trim();
}

/** Reads every file of a tree once, to bring it into the page cache. */
export async function warmTree(dir: string): Promise<void> {
  await execa("bash", ["-c", 'find "$1" -xdev -type f -print0 | xargs -0 -r cat >/dev/null', "bash", dir]);
}

export function fmtS(ms: number): string {
  const s = ms / 1000;
  return s >= 100 ? `${s.toFixed(0)} s` : s >= 10 ? `${s.toFixed(1)} s` : `${s.toFixed(2)} s`;
}

export function fmtMB(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

export function machineLine(): string {
  const cpu = cpus()[0]?.model.trim() ?? "unknown CPU";
  return `${cpus().length} CPUs (${cpu}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}`;
}

export function loadLine(): string {
  return loadavg()
    .map((n) => n.toFixed(1))
    .join(" / ");
}

export async function toolVersion(command: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execa(command, args);
    return stdout.split("\n")[0]?.trim() ?? "unknown";
  } catch {
    return "not found";
  }
}

// ---------------------------------------------------------------------------------------------

export interface Candidate {
  /** The ltsp-make `compression` setting. */
  setting: string;
  note?: string;
}

export const CANDIDATES: readonly Candidate[] = [
  { setting: "gzip", note: "upstream LTSP: no -comp, mksquashfs's gzip level 9" },
  { setting: "gzip:6" },
  { setting: "zstd:1" },
  { setting: "zstd", note: "ltsp-make's default, level 3" },
  { setting: "zstd:9" },
  { setting: "zstd:15", note: "mksquashfs's own zstd default" },
  { setting: "xz" },
  { setting: "lz4" },
  { setting: "lzo" },
];

export interface CompressionResult {
  candidate: Candidate;
  args: string[];
  buildWallMs: number;
  buildCpuMs: number;
  buildRuns: number;
  imageBytes: number;
  /** Bytes of the regular files in the image (what a full read returns). */
  contentBytes: number;
  kernelReadMs: number;
  kernelReadCpuMs: number;
  unsquashfsMs: number;
  unsquashfsCpuMs: number;
}

export interface CompressionReport {
  chroot: string;
  sourceBytes: number;
  results: CompressionResult[];
  cachesDropped: boolean;
  runs: number;
  loadBefore: string;
  loadAfter: string;
  mksquashfs: string;
}

function regularFileBytes(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile()) total += st.size;
    }
  };
  walk(dir);
  return total;
}

async function sourceBytes(chroot: string): Promise<number> {
  const { stdout } = await execa("du", ["-sb", "-x", chroot]);
  return Number(stdout.split(/\s/)[0]);
}

export async function runCompressionBench(log: (line: string) => void): Promise<CompressionReport> {
  const runs = envInt("BENCH_RUNS", 3);
  const only = process.env.BENCH_COMPRESSIONS?.split(",").filter(Boolean);
  const candidates = only ? CANDIDATES.filter((c) => only.includes(c.setting)) : [...CANDIDATES];
  if (candidates.length === 0) throw new Error(`BENCH_COMPRESSIONS=${process.env.BENCH_COMPRESSIONS} names none of ${CANDIDATES.map((c) => c.setting).join(", ")}`);
  const chroot = await benchChroot(log);
  const loadBefore = loadLine();
  const scratch = new Scratch("compression");
  try {
    const tmpfs = join(scratch.path, "tmpfs");
    mkdirSync(tmpfs);
    await execa("mount", ["-t", "tmpfs", "-o", "mode=0700", "tmpfs", tmpfs]);
    const excludes = join(scratch.path, "image.excludes");
    await writeExcludesFile(excludes, BUILTIN_EXCLUDES);
    const image = join(tmpfs, "image.sqfs");
    const mnt = join(scratch.path, "mnt");
    const extracted = join(tmpfs, "extracted");
    mkdirSync(mnt);
    const source = await sourceBytes(chroot);
    log(`source ${chroot}: ${fmtMB(source)}`);
    let cachesDropped = true;
    const results: CompressionResult[] = [];

    for (const candidate of candidates) {
      const args = compressionArgs(candidate.setting);
      const command = ["mksquashfs", chroot, image, "-noappend", "-wildcards", "-ef", excludes, ...args, "-quiet", "-no-progress"];
      const builds: Measured[] = [];
      do {
        await warmTree(chroot);
        builds.push(await measure(command));
        log(`${candidate.setting}: build ${builds.length}: ${fmtS(builds.at(-1)!.wallMs)} (CPU ${fmtS(builds.at(-1)!.cpuMs)})`);
      } while (builds.length < runs && builds[0]!.wallMs < 20_000);
      const imageBytes = statSync(image).size;

      const kernelReads: Measured[] = [];
      let contentBytes = 0;
      for (let i = 0; i < runs; i++) {
        await execa("mount", ["-t", "squashfs", "-o", "loop,ro", image, mnt]);
        try {
          if (i === 0) contentBytes = regularFileBytes(mnt);
          cachesDropped = dropCaches() && cachesDropped;
          kernelReads.push(await measure(["bash", "-c", 'find "$1" -type f -print0 | xargs -0 -r cat >/dev/null', "bash", mnt]));
        } finally {
          await execa("umount", [mnt]);
        }
      }
      const extractions: Measured[] = [];
      for (let i = 0; i < runs; i++) {
        rmSync(extracted, { recursive: true, force: true });
        extractions.push(await measure(["unsquashfs", "-q", "-n", "-d", extracted, "-f", image]));
      }
      rmSync(extracted, { recursive: true, force: true });
      rmSync(image, { force: true });

      const result: CompressionResult = {
        candidate,
        args,
        buildWallMs: median(builds.map((m) => m.wallMs)),
        buildCpuMs: median(builds.map((m) => m.cpuMs)),
        buildRuns: builds.length,
        imageBytes,
        contentBytes,
        kernelReadMs: median(kernelReads.map((m) => m.wallMs)),
        kernelReadCpuMs: median(kernelReads.map((m) => m.cpuMs)),
        unsquashfsMs: median(extractions.map((m) => m.wallMs)),
        unsquashfsCpuMs: median(extractions.map((m) => m.cpuMs)),
      };
      results.push(result);
      log(
        `${candidate.setting}: ${fmtMB(imageBytes)}, kernel read ${fmtS(result.kernelReadMs)}, unsquashfs ${fmtS(result.unsquashfsMs)} (load ${loadLine()})`,
      );
    }
    return {
      chroot,
      sourceBytes: source,
      results,
      cachesDropped,
      runs,
      loadBefore,
      loadAfter: loadLine(),
      mksquashfs: await toolVersion("mksquashfs", ["-version"]),
    };
  } finally {
    scratch.dispose();
  }
}

/** How much faster `value` is than `reference` (times), or slower, as text. */
function relative(reference: number, value: number): string {
  if (value <= reference) return `${fmtTimes(reference / value)} faster`;
  return `${fmtTimes(value / reference)} slower`;
}

/** A ratio as "45×" or "1.78×": two decimals only where they matter. */
export function fmtTimes(ratio: number): string {
  return ratio >= 10 ? `${ratio.toFixed(0)}×` : fmtRatio(ratio);
}

function percent(reference: number, value: number): string {
  const p = (100 * (value - reference)) / reference;
  return `${p >= 0 ? "+" : ""}${p.toFixed(1)} %`;
}

/** Tolerance for "about as small as upstream's image": a few percent more bytes per boot. */
const SIZE_TOLERANCE = 0.03;

export function printCompression(report: CompressionReport, write: (line: string) => void): void {
  const { results } = report;
  const upstream = results.find((r) => r.candidate.setting === "gzip");
  const mbps = (r: CompressionResult, ms: number) => `${(r.contentBytes / 1e6 / (ms / 1000)).toFixed(0)} MB/s`;
  write("");
  write(`Machine: ${machineLine()}; ${report.mksquashfs}. Load average before/after: ${report.loadBefore} → ${report.loadAfter}.`);
  write(
    `Source: ${report.chroot} (${fmtMB(report.sourceBytes)}), built-in excludes. Builds: source in the page cache, image on a tmpfs` +
      `; median of up to ${report.runs} (one run for builds over 20 s). Reads: median of ${report.runs}, ` +
      (report.cachesDropped ? "page cache dropped before each." : "page cache NOT dropped (not permitted here); each read is on a fresh mount."),
  );
  write("");
  write("| compression | mksquashfs arguments | build (wall) | build CPU | image | vs upstream | client read (kernel, cold) | unsquashfs → tmpfs |");
  write("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of results) {
    const name = `\`${r.candidate.setting}\`${r.candidate.note ? ` (${r.candidate.note})` : ""}`;
    const args = r.args.length ? `\`${r.args.join(" ")}\`` : "(none)";
    const build = upstream && r !== upstream ? `${fmtS(r.buildWallMs)} (${relative(upstream.buildWallMs, r.buildWallMs)})` : fmtS(r.buildWallMs);
    const cpu = upstream && r !== upstream ? `${fmtS(r.buildCpuMs)} (${relative(upstream.buildCpuMs, r.buildCpuMs)})` : fmtS(r.buildCpuMs);
    const size = upstream && r !== upstream ? percent(upstream.imageBytes, r.imageBytes) : "";
    const read = `${fmtS(r.kernelReadMs)}, ${mbps(r, r.kernelReadMs)}`;
    const unsq = `${fmtS(r.unsquashfsMs)}, ${mbps(r, r.unsquashfsMs)}`;
    write(`| ${name} | ${args} | ${build} | ${cpu} | ${fmtMB(r.imageBytes)} | ${size} | ${read} | ${unsq} |`);
  }
  write("");
  for (const line of recommendation(results, upstream)) write(line);
}

/**
 * The recommendation for a netboot image, from the measured figures. Clients decompress on every
 * read and download the image on every boot, so neither may get worse than upstream's: the
 * image at most SIZE_TOLERANCE larger, client reads at least as fast. Among those, the fastest
 * build wins (by CPU time, which other load on the machine does not distort).
 */
function recommendation(results: CompressionResult[], upstream: CompressionResult | undefined): string[] {
  if (!upstream) return ["(No recommendation: the upstream `gzip` candidate was not measured.)"];
  const lines: string[] = [];
  const eligible = results.filter((r) => r.imageBytes <= upstream.imageBytes * (1 + SIZE_TOLERANCE) && r.kernelReadMs <= upstream.kernelReadMs);
  const best = [...eligible].sort((a, b) => a.buildCpuMs - b.buildCpuMs)[0];
  lines.push(
    `Rule: for a netboot image, an image no more than ${SIZE_TOLERANCE * 100} % larger than upstream's (bytes on every boot) ` +
      "that clients read at least as fast as upstream's (decompression on every read); among those, the cheapest build.",
  );
  if (!best) {
    lines.push("", "**Recommendation:** none of the candidates is as small and as fast to read as upstream's gzip; keep `gzip`.");
    return lines;
  }
  lines.push(
    "",
    `**Recommendation: \`${best.candidate.setting}\`** — builds ${relative(upstream.buildWallMs, best.buildWallMs)} than upstream's gzip ` +
      `(${fmtS(best.buildWallMs)} vs ${fmtS(upstream.buildWallMs)}; CPU ${fmtS(best.buildCpuMs)} vs ${fmtS(upstream.buildCpuMs)}), ` +
      `image ${percent(upstream.imageBytes, best.imageBytes)} (${fmtMB(best.imageBytes)} vs ${fmtMB(upstream.imageBytes)}), ` +
      `client reads ${relative(upstream.kernelReadMs, best.kernelReadMs)}.`,
  );
  const smallerFastRead = results
    .filter((r) => r !== best && r.imageBytes < best.imageBytes && r.kernelReadMs <= upstream.kernelReadMs)
    .sort((a, b) => a.buildCpuMs - b.buildCpuMs)[0];
  if (smallerFastRead) {
    lines.push(
      `- Smaller, still fast to read: \`${smallerFastRead.candidate.setting}\` — image ${percent(best.imageBytes, smallerFastRead.imageBytes)} against ` +
        `\`${best.candidate.setting}\`, build CPU ${fmtRatio(smallerFastRead.buildCpuMs / best.buildCpuMs)}; worth it when many clients boot at once on a busy network and rebuilds are rare.`,
    );
  }
  const smallest = [...results].sort((a, b) => a.imageBytes - b.imageBytes)[0];
  if (smallest && smallest !== best && smallest !== smallerFastRead) {
    lines.push(
      `- Smallest: \`${smallest.candidate.setting}\` — image ${percent(best.imageBytes, smallest.imageBytes)} against \`${best.candidate.setting}\`, ` +
        `but build ${relative(best.buildWallMs, smallest.buildWallMs)} and client reads ${relative(best.kernelReadMs, smallest.kernelReadMs)}.`,
    );
  }
  const fastestRead = [...results].sort((a, b) => a.kernelReadMs - b.kernelReadMs)[0];
  if (fastestRead && fastestRead !== best) {
    lines.push(
      `- Fastest to read: \`${fastestRead.candidate.setting}\` — client reads ${relative(best.kernelReadMs, fastestRead.kernelReadMs)} than \`${best.candidate.setting}\`, ` +
        `but the image is ${percent(best.imageBytes, fastestRead.imageBytes)}: more bytes over the network on every boot.`,
    );
  }
  return lines;
}

if (isMain(import.meta.url)) {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const report = await runCompressionBench(log);
  printCompression(report, (line) => process.stdout.write(`${line}\n`));
}
