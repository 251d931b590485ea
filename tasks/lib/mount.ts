// Mounting an image source chain as a writable view whose writes never reach the source:
// every entry becomes an overlay whose upper layer lives on a private tmpfs.
//
// Work directory layout (mode 0700):
//   root/          the view: the first entry's overlay, later entries on root/<subdir>
//   tmpfs/         our own tmpfs, always, never a shared /tmp (upstream LTSP #659)
//   tmpfs/<i>/up, work, looproot   the overlay layers of entry i, and where a file entry is mounted
//   disk-<i>/      the raw view of a qcow2/VDI/VMDK entry (a FUSE file, or a raw copy on disk)
//   pids           helper processes, for sweeping after a killed run
import { chmodSync, existsSync, lstatSync, mkdirSync, rmSync, statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { standaloneExec } from "../../src/exec.ts";
import type { Exec } from "../../src/exec.ts";
import { mountDiskRoot, mountFilesystem, openRawView, probe } from "./disk.ts";
import { lockPackageManager } from "./dpkg-lock.ts";
import { recordedHelperPids, recordHelperPid, stopHelper } from "./helper-process.ts";
import { resolveSourcePath } from "./image-names.ts";
import type { ResolvedSource } from "./image-names.ts";
import { isMountPoint, mountsBelow, unmountPath } from "./mountinfo.ts";
import { parseSourceSpec } from "./source-spec.ts";
import type { SourceEntry } from "./source-spec.ts";

export interface MountSourceOptions {
  /** A private directory for this mount; created if missing, removed by `unmount()`. */
  workDir: string;
  /** Where image NAMEs are looked up (BASE_DIR, e.g. /srv/ltsp). */
  baseDir: string;
  exec: Exec;
  log: (message: string) => void;
  /** For `./NAME` lookups; defaults to the process's working directory. */
  cwd?: string;
  /** How qcow2/VDI/VMDK disks are read: FUSE view first, falling back to a raw copy (default), or only one. */
  rawView?: "fuse" | "convert";
  /**
   * Runs the unmounts. It must not be cancelled with the work (teardown also runs after Ctrl+C);
   * defaults to an exec of its own that logs to `log`.
   */
  teardownExec?: Exec;
}

export interface MountedSource {
  /** The writable view of the whole chain. */
  root: string;
  /** The first entry, resolved (its NAME, path and kind). */
  source: ResolvedSource;
  entries: SourceEntry[];
  /** The source directory whose dpkg lock is held while mounted, if any. */
  lockRoot?: string;
  /** Undoes everything in reverse order and removes the work directory. Idempotent. */
  unmount(): Promise<void>;
}

interface Step {
  what: string;
  undo: (exec: Exec) => Promise<void>;
}

/** Characters that mount option parsing (libmount, then overlayfs) would split on or unescape. */
const OPTION_BREAKERS = /[,\\"\s]/;
const LOWERDIR_BREAKERS = /[,:\\"\s]/;

function checkWorkDir(workDir: string): void {
  if (OPTION_BREAKERS.test(workDir)) {
    throw new Error(
      `The work directory ${JSON.stringify(workDir)} contains a comma, quote, backslash or whitespace, which overlayfs mount options cannot carry. ` +
        `Use a state directory whose path has none of them.`,
    );
  }
}

/**
 * Makes `root/subdir` a directory inside the view, refusing to follow symlinks: a link such as
 * `boot -> /boot` would otherwise put the mount on the host's own directory.
 */
function prepareTarget(root: string, subdir: string): string {
  let path = root;
  for (const part of subdir.split("/").filter((p) => p !== "")) {
    path = join(path, part);
    let stats;
    try {
      stats = lstatSync(path);
    } catch {
      mkdirSync(path, { mode: 0o755 });
      continue;
    }
    if (stats.isSymbolicLink()) {
      throw new Error(
        `subdir=${subdir}: ${path.slice(root.length + 1)} is a symlink in the image; give the directory it points to as subdir= instead.`,
      );
    }
    if (!stats.isDirectory()) throw new Error(`subdir=${subdir}: ${path.slice(root.length + 1)} exists in the image but is not a directory.`);
  }
  return path;
}

/** Mounts the chain described by `spec` (text or parsed) into `workDir/root`. */
export async function mountSource(spec: string | readonly SourceEntry[], options: MountSourceOptions): Promise<MountedSource> {
  const { exec, log, baseDir } = options;
  const teardownExec = options.teardownExec ?? standaloneExec(log);
  const entries = typeof spec === "string" ? parseSourceSpec(spec) : [...spec];
  const first = entries[0];
  if (!first) throw new Error("An image source needs at least one entry.");
  const workDir = resolve(options.workDir);
  checkWorkDir(workDir);
  const marker = `${workDir}/`;
  const root = join(workDir, "root");
  const tmpfs = join(workDir, "tmpfs");
  const source = resolveSourcePath(first.path, baseDir, options.cwd);
  const steps: Step[] = [];
  let lockRoot: string | undefined;

  const mount = async (what: string, args: string[], target: string) => {
    await exec("mount", [...args, target]);
    steps.push({ what, undo: (undoExec) => unmountPath(target, undoExec, log) });
  };

  // Concurrent calls share one teardown; after a failed one, a new call retries what is left.
  let running: Promise<void> | undefined;
  const unmount = () => {
    running ??= tearDown(workDir, steps, teardownExec, log).catch((error: unknown) => {
      running = undefined;
      throw error;
    });
    return running;
  };

  try {
    mkdirSync(workDir, { recursive: true, mode: 0o700 });
    chmodSync(workDir, 0o700);
    mkdirSync(root, { recursive: true });
    mkdirSync(tmpfs, { recursive: true });
    await mount("private tmpfs", ["-t", "tmpfs", "-o", "mode=0755", "tmpfs"], tmpfs);

    for (const [i, entry] of entries.entries()) {
      const path = i === 0 ? source.path : isAbsolute(entry.path) ? entry.path : join(root, entry.path);
      if (!existsSync(path)) {
        throw new Error(`Image source entry ${JSON.stringify(entry.path)} does not exist (looked at ${path}). Fix the image source.`);
      }
      const layer = join(tmpfs, String(i));
      mkdirSync(join(layer, "up"), { recursive: true });
      mkdirSync(join(layer, "work"), { recursive: true });

      let lower: string;
      if (statSync(path).isDirectory()) {
        if (entry.options.length > 0) log(`note: mount options ${entry.options.join(",")} are ignored for the directory ${path}`);
        lower = path;
        if (LOWERDIR_BREAKERS.test(path)) {
          lower = join(layer, "lower");
          mkdirSync(lower);
          await mount(`bind of ${path}`, ["--bind", path], lower);
        }
        if (i === 0) lockRoot = path;
      } else {
        lower = join(layer, "looproot");
        mkdirSync(lower);
        await mountFile(path, lower, entry, join(workDir, `disk-${i}`), { exec, log, workDir, steps, rawView: options.rawView });
      }
      const target = prepareTarget(root, entry.subdir);
      await mount(
        `overlay of ${path}`,
        ["-t", "overlay", "-o", `upperdir=${join(layer, "up")},lowerdir=${lower},workdir=${join(layer, "work")}`, "overlay"],
        target,
      );
    }

    if (lockRoot !== undefined) {
      const lock = await lockPackageManager(lockRoot, { exec, log, marker });
      if (lock) {
        recordHelperPid(workDir, lock.pid);
        steps.push({ what: `dpkg lock on ${lockRoot}`, undo: () => lock.release() });
      } else {
        lockRoot = undefined;
      }
    }
  } catch (error) {
    try {
      await unmount();
    } catch (cleanupError) {
      log(`warning: cleaning up after a failed mount: ${cleanupError instanceof Error ? cleanupError.message : String(cleanupError)}`);
    }
    throw error;
  }

  return { root, source, entries, ...(lockRoot !== undefined ? { lockRoot } : {}), unmount };
}

/** Mounts a file entry (filesystem image, partitioned disk, or qcow2/VDI/VMDK disk) read-only at `target`. */
async function mountFile(
  file: string,
  target: string,
  entry: SourceEntry,
  viewDir: string,
  context: { exec: Exec; log: (message: string) => void; workDir: string; steps: Step[]; rawView?: "fuse" | "convert" },
): Promise<void> {
  const { exec, log, steps } = context;
  const mounted = () => steps.push({ what: `mount of ${file}`, undo: (undoExec) => unmountPath(target, undoExec, log) });
  const how = { fstype: entry.fstype ?? "", options: entry.options };

  if (entry.fstype !== undefined && entry.partition === undefined) {
    await mountFilesystem(file, target, how, exec);
    mounted();
    return;
  }
  let disk = file;
  let found = await probe(file, exec);
  if (found.kind === "container") {
    mkdirSync(viewDir, { mode: 0o700 });
    const view = await openRawView(file, found.format, viewDir, { exec, log }, context.rawView);
    if (view.pid !== undefined) recordHelperPid(context.workDir, view.pid);
    steps.push({ what: `raw view of ${file}`, undo: (undoExec) => view.close(undoExec) });
    disk = view.path;
    found = await probe(disk, exec);
  }
  if (found.kind === "filesystem") {
    if (entry.partition !== undefined) {
      throw new Error(`${file} holds a single ${found.fstype} filesystem, not a partitioned disk: remove "partition=${entry.partition}".`);
    }
    await mountFilesystem(disk, target, { ...how, fstype: found.fstype }, exec);
    mounted();
    return;
  }
  if (found.kind === "partition-table") {
    // Registered first: while trying partitions one is mounted at a time, and an interruption
    // must not leave it behind.
    steps.push({
      what: `mount of a partition of ${file}`,
      undo: async (undoExec) => {
        if (isMountPoint(target)) await unmountPath(target, undoExec, log);
      },
    });
    await mountDiskRoot(disk, target, { partition: entry.partition, fstype: entry.fstype, options: entry.options, shownAs: file }, { exec, log });
    return;
  }
  throw new Error(
    `I don't know how to mount ${file}: ${found.kind === "unknown" ? found.detail : `its raw sectors hold yet another ${found.format} disk`}. ` +
      `It should be a directory, a raw or partitioned disk, a filesystem image, or a qcow2/VDI/VMDK disk; check it with "blkid -p" and "qemu-img info", or give its type with "fstype=".`,
  );
}

/** Undoes `steps` newest first; steps that fail stay in the list for another try. */
async function tearDown(workDir: string, steps: Step[], exec: Exec, log: (message: string) => void): Promise<void> {
  const failures: string[] = [];
  const failed: Step[] = [];
  for (const step of [...steps].reverse()) {
    try {
      await step.undo(exec);
    } catch (error) {
      failed.unshift(step);
      failures.push(`${step.what}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  steps.splice(0, steps.length, ...failed);
  // Anything still there was mounted by a step interrupted half-way (e.g. cancelled while
  // trying partitions) or is a step that failed above.
  const left = await clearWorkDir(workDir, exec, log);
  if (left.length === 0) {
    for (const failure of failures) log(`warning: ${failure} (cleaned up afterwards)`);
    steps.length = 0;
    return;
  }
  failures.push(`still mounted: ${left.join(", ")}`);
  throw new Error(`Could not fully unmount ${workDir}:\n${failures.join("\n")}\nUnmount what is listed by hand, then remove ${workDir}.`);
}

/**
 * Unmounts whatever is mounted inside `dir` (newest mount first, so a mount goes before what it
 * sits on), stops the helper processes recorded there, and removes `dir`. Returns the mount
 * points that could not be unmounted; then `dir` is left in place.
 */
async function clearWorkDir(dir: string, exec: Exec, log: (message: string) => void): Promise<string[]> {
  const unmountAll = async () => {
    for (const entry of mountsBelow(dir).reverse()) {
      try {
        await unmountPath(entry.mountPoint, exec, log);
      } catch (error) {
        log(`warning: could not unmount ${entry.mountPoint}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  };
  await unmountAll();
  for (const pid of recordedHelperPids(dir)) {
    if (!(await stopHelper(pid, { marker: `${dir}/` }))) log(`warning: helper process ${pid} of ${dir} does not stop`);
  }
  await unmountAll();
  const left = mountsBelow(dir).map((entry) => entry.mountPoint);
  if (left.length === 0) rmSync(dir, { recursive: true, force: true });
  return left;
}

/**
 * Cleans the work directories of runs that died: their mounts, their helper processes, the
 * directories themselves. Nothing outside the given directories is touched; a directory that
 * still has mounts is left in place with a warning.
 */
export async function sweepStaleWorkDirs(dirs: readonly string[], exec: Exec, log: (message: string) => void): Promise<void> {
  for (const given of dirs) {
    const dir = resolve(given);
    if (!existsSync(dir)) continue;
    const left = await clearWorkDir(dir, exec, log);
    if (left.length > 0) {
      log(`warning: leaving ${dir} in place: ${left.join(", ")} still mounted`);
    } else {
      log(`removed ${dir} left by an interrupted run`);
    }
  }
}
