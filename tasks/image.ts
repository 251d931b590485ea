// `ltsp image` as task nodes: a scoped overlay mount of the source, cleanup and the user's own
// steps on it, then mksquashfs into a new image generation. The source is never modified, and an
// unchanged source (outside the exclude list) is never squashed again.
import { chmodSync, mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { InputSpec, ResourceDef, Roots, Sweeper, TaskDef } from "../src/types.ts";
import { removeStaleTemps, tempPathFor } from "../src/atomic.ts";
import { standaloneExec } from "../src/exec.ts";
import { cleanupImage, defaultCleanup } from "./lib/cleanup.ts";
import { effectiveExcludes, writeExcludesFile } from "./lib/excludes.ts";
import { mountSource, sweepStaleWorkDirs, type MountedSource } from "./lib/mount.ts";
import { imagesDir, type ImagePlan } from "./images.ts";
import { isDirectory } from "./lib/paths.ts";
import { publishGeneration } from "./generations.ts";

export const DEFAULT_GENERATIONS = 3;
const DEFAULT_IONICE = ["nice", "ionice", "-c3"];

const { loginDefs: _serverLoginDefs, ...DEFAULT_CLEANUP } = defaultCleanup;

export function mountId(name: string): string {
  return `mount:${name}`;
}

/** mksquashfs arguments for a compression setting ("zstd", "zstd:9", "gzip", "xz", …). */
export function compressionArgs(setting: string | undefined): string[] {
  const [algorithm, level] = (setting ?? "zstd").split(":");
  if (algorithm === "gzip" && level === undefined) return []; // upstream: mksquashfs's own default (gzip 9)
  const known = ["gzip", "zstd", "xz", "lzo", "lz4", "lzma"];
  if (!known.includes(algorithm!)) throw new Error(`compression "${setting}" is not known: use one of ${known.join(", ")}, optionally with :LEVEL (e.g. "zstd:3")`);
  const args = ["-comp", algorithm!];
  const effectiveLevel = level ?? (algorithm === "zstd" ? "3" : undefined);
  if (effectiveLevel !== undefined) {
    if (!/^\d+$/.test(effectiveLevel)) throw new Error(`compression level in "${setting}" must be a number`);
    args.push("-Xcompression-level", effectiveLevel);
  }
  return args;
}

export function excludesOf(image: ImagePlan): string[] {
  const e = image.options.excludes ?? {};
  return effectiveExcludes({ base: e.replace, add: e.add, omit: e.omit });
}

/** What the image is built from, as engine inputs: trees (excludes applied, never walked) and disk files. */
export function sourceInputs(image: ImagePlan, excludes: string[]): InputSpec[] {
  const inputs: InputSpec[] = [];
  for (const entry of image.entries ?? []) {
    if (!entry.path.startsWith("/")) continue; // inside an earlier entry, covered by that entry's content
    if (isDirectory(entry.path)) inputs.push({ tree: entry.path, exclude: excludes, under: entry.subdir || undefined });
    else inputs.push({ file: entry.path });
  }
  return inputs;
}

export function mountResource(image: ImagePlan, roots: Roots): ResourceDef<MountedSource> {
  return {
    id: mountId(image.name),
    title: `overlay mount of ${image.name}`,
    setup: (ctx) => mountSource(image.entries!, { workDir: join(ctx.workDir, "m"), baseDir: roots.baseDir, exec: ctx.exec, log: ctx.log }),
    teardown: (mounted) => mounted.unmount(),
  };
}

export function mountSweeper(): Sweeper {
  return {
    id: "mounts",
    sweep: (dirs, log) => sweepStaleWorkDirs(dirs, standaloneExec(), log),
  };
}

export function imageTasks(image: ImagePlan, roots: Roots): { tasks: TaskDef[]; resources: ResourceDef<any>[] } {
  const name = image.name;
  const group = `image:${name}`;
  const excludes = excludesOf(image);
  const cleanup = image.options.cleanup === false ? false : { ...DEFAULT_CLEANUP, ...(image.options.cleanup ?? {}) };
  const loginDefs = join(roots.etcDir, "login.defs");
  const tasks: TaskDef[] = [];
  const steps: string[] = [];

  if (cleanup) {
    tasks.push({
      id: `cleanup:${name}`,
      title: `clean ${name} (users, keys, logs)`,
      groups: [group],
      ephemeral: true,
      uses: [mountId(name)],
      params: { ...cleanup },
      inputs: [{ file: loginDefs }],
      tools: cleanup.sshHostKeys === "regenerate" ? [{ name: "ssh-keygen", version: ["ssh", "-V"] }] : [],
      run: async (ctx) => {
        const { root } = ctx.resource<MountedSource>(mountId(name));
        await cleanupImage(root, { ...cleanup, loginDefs }, ctx.exec, ctx.log);
      },
    });
    steps.push(`cleanup:${name}`);
  }
  for (const step of image.options.customize ?? []) {
    const id = `customize-${step.id}:${name}`;
    tasks.push({
      id,
      title: `${step.id} on ${name}`,
      groups: [group],
      ephemeral: true,
      uses: [mountId(name)],
      deps: [...steps],
      params: { ...(step.params ?? {}) },
      run: async (ctx) => step.run(ctx, ctx.resource<MountedSource>(mountId(name)).root),
    });
    steps.push(id);
  }

  const compression = compressionArgs(image.options.compression);
  const extra = image.options.mksquashfsParams ?? [];
  const prefix = image.options.ionice ?? DEFAULT_IONICE;
  const keep = image.options.generations ?? DEFAULT_GENERATIONS;
  tasks.push({
    id: `squash:${name}`,
    title: `squash ${name}`,
    groups: [group],
    uses: [mountId(name)],
    deps: steps,
    resourceClass: "squash",
    estimate: 60_000,
    inputs: sourceInputs(image, excludes),
    params: { source: (image.entries ?? []).map((e) => ({ ...e })) as never, excludes, compression, extra, prefix },
    tools: [{ name: "mksquashfs", version: ["mksquashfs", "-version"] }],
    outputs: [image.imagePath],
    run: async (ctx) => {
      const { root } = ctx.resource<MountedSource>(mountId(name));
      const dir = imagesDir(roots);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      chmodSync(dir, 0o700);
      const excludesFile = join(ctx.workDir, "image.excludes");
      await writeExcludesFile(excludesFile, excludes);
      // A killed run leaves its partial image behind: as large as a whole image.
      removeStaleTemps(image.imagePath);
      const temp = tempPathFor(image.imagePath);
      const command = [...prefix, "mksquashfs", root, temp, "-noappend", "-wildcards", "-ef", excludesFile, ...compression, ...extra];
      try {
        await ctx.exec(command[0]!, command.slice(1), {
          onLine: (line) => {
            const m = /\]\s+(\d+)\/(\d+)\s+(\d+)%/.exec(line);
            if (m) ctx.progress(Number(m[1]) / Math.max(1, Number(m[2])), "mksquashfs");
          },
        });
        const published = publishGeneration(image.imagePath, temp, keep, ctx.log);
        ctx.log(published.unchanged ? `identical to the current image; kept ${published.generation}` : `published ${published.generation}`);
        for (const removed of published.removed) ctx.log(`removed old generation ${removed}`);
      } finally {
        rmSync(temp, { force: true });
      }
    },
  });
  return { tasks, resources: [mountResource(image, roots)] };
}
