// Finds an image's kernel and initrd with LTSP's ordered rules and copies them out.
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { removeStaleTemps, tempPathFor } from "../../src/atomic.ts";
import { globView, TreePathError, type TreeView } from "./tree-view.ts";
import { compareVersions } from "./version-sort.ts";

/** How to turn the kernel's path (relative to the image root) into the initrd's: first match replaced. */
export interface InitrdDerivation {
  /** A JavaScript regular expression. */
  regex: string;
  /** Replacement, with `$1`-style references to the regex's groups. */
  replace: string;
}

/** A user rule, tried before the built-in ones. */
export interface KernelOverride {
  /** Glob for the kernel; tried under the image root and under `boot/`. */
  kernelGlob: string;
  initrdFrom: InitrdDerivation;
}

export interface KernelRule extends KernelOverride {
  name: string;
}

export interface FoundKernel {
  /** Paths relative to the image root, as matched (symlinks not resolved). */
  kernel: string;
  initrd: string;
  /** Name of the rule that matched. */
  rule: string;
}

/** Replaces `word` in the last path component only, so a directory name can't be hit. */
function inBaseName(word: string, replace: string): InitrdDerivation {
  return { regex: `${word}(?=[^/]*$)`, replace };
}

/** The built-in rules, in priority order. */
export const KERNEL_RULES: readonly KernelRule[] = [
  { name: "openSUSE live", kernelGlob: "boot/*/loader/linux", initrdFrom: inBaseName("linux", "initrd") },
  { name: "Ubuntu live (casper, initrd)", kernelGlob: "casper/vmlinuz", initrdFrom: inBaseName("vmlinuz", "initrd") },
  { name: "Ubuntu live (casper, initrd.lz)", kernelGlob: "casper/vmlinuz", initrdFrom: inBaseName("vmlinuz", "initrd.lz") },
  { name: "Ubuntu live (casper, initrd.gz)", kernelGlob: "casper/vmlinuz", initrdFrom: inBaseName("vmlinuz", "initrd.gz") },
  { name: "Debian installer DVD", kernelGlob: "install.amd/vmlinuz", initrdFrom: inBaseName("vmlinuz", "initrd.gz") },
  { name: "Fedora live (isolinux)", kernelGlob: "isolinux/vmlinuz", initrdFrom: inBaseName("vmlinuz", "initrd.img") },
  { name: "Debian live", kernelGlob: "live/vmlinuz-*", initrdFrom: inBaseName("vmlinuz", "initrd.img") },
  { name: "vmlinuz symlink", kernelGlob: "vmlinuz", initrdFrom: inBaseName("vmlinuz", "initrd.img") },
  { name: "vmlinuz-VERSION with initrd.img-VERSION", kernelGlob: "vmlinuz-*", initrdFrom: inBaseName("vmlinuz", "initrd.img") },
  {
    name: "vmlinuz-VERSION with initramfs-VERSION.img",
    kernelGlob: "vmlinuz-*",
    initrdFrom: { regex: "vmlinuz-([^/]*)$", replace: "initramfs-$1.img" },
  },
  { name: "TinyCore", kernelGlob: "vmlinuz", initrdFrom: inBaseName("vmlinuz", "core.gz") },
];

const OVERRIDE_RULE_NAME = "override";

function normaliseGlob(glob: string): string {
  return glob.replace(/^\/+/, "");
}

/** Each rule's kernel glob, under the root and under `boot/`. */
function placesOf(rule: KernelOverride): string[] {
  const glob = normaliseGlob(rule.kernelGlob);
  return [glob, `boot/${glob}`];
}

function compileDerivation(rule: KernelRule): RegExp {
  const derivation = rule.initrdFrom;
  try {
    return new RegExp(derivation.regex);
  } catch (error) {
    const which = rule.name === OVERRIDE_RULE_NAME ? "kernel override" : `kernel rule "${rule.name}"`;
    throw new Error(
      `The ${which}'s initrdFrom.regex ${JSON.stringify(derivation.regex)} is not a valid regular expression (${(error as Error).message}). Fix it in ltspfile.ts.`,
    );
  }
}

function rulesWith(override: KernelOverride | undefined): KernelRule[] {
  if (!override) return [...KERNEL_RULES];
  const { kernelGlob, initrdFrom } = override;
  if (typeof kernelGlob !== "string" || normaliseGlob(kernelGlob) === "") {
    throw new Error(`The kernel override needs a non-empty kernelGlob (e.g. "boot/Image-*"). Fix it in ltspfile.ts.`);
  }
  if (typeof initrdFrom?.regex !== "string" || typeof initrdFrom.replace !== "string") {
    throw new Error(`The kernel override needs initrdFrom: { regex: string, replace: string }. Fix it in ltspfile.ts.`);
  }
  const rule: KernelRule = { name: OVERRIDE_RULE_NAME, kernelGlob, initrdFrom: { regex: initrdFrom.regex, replace: initrdFrom.replace } };
  compileDerivation(rule);
  return [rule, ...KERNEL_RULES];
}

const OVERRIDE_EXAMPLE = `kernel: { kernelGlob: "boot/Image-*", initrdFrom: { regex: "Image-", replace: "uInitrd-" } }`;

function notFoundMessage(view: TreeView, rules: KernelRule[], notes: string[], hasOverride: boolean): string {
  const lines = [`No kernel and initrd found in ${view.description}.`, "Searched for kernel + initrd, in this order (the first rule with a match wins):"];
  rules.forEach((rule, index) => {
    const places = placesOf(rule).map((place) => {
      const initrd = initrdGlobOf(place, rule.initrdFrom) ?? `s/${rule.initrdFrom.regex}/${rule.initrdFrom.replace}/`;
      return `${place} + ${initrd}`;
    });
    lines.push(`  ${String(index + 1).padStart(2)}. ${rule.name}: ${places.join(", ")}`);
  });
  if (notes.length > 0) {
    lines.push("Noticed on the way:");
    for (const note of notes) lines.push(`  - ${note}`);
  }
  lines.push(
    "Common causes: /boot is a separate partition that the image does not include, or the kernel has non-standard names (e.g. Image-* and uInitrd-* on ARM).",
    hasOverride
      ? "This image's kernel override in ltspfile.ts matched nothing either; check its glob and regex, e.g.:"
      : "To name them yourself, give this image a kernel override in ltspfile.ts, e.g.:",
    `  ${OVERRIDE_EXAMPLE}`,
    "(kernelGlob is tried under the image root and under boot/; the regex is applied to the kernel's path relative to the image root.)",
  );
  return lines.join("\n");
}

/** Runs a lookup; a symlink loop becomes a note and the fallback value, as a shell test would skip it. */
async function noteLoops<T>(notes: string[], fallback: T, lookup: () => Promise<T>): Promise<T> {
  try {
    return await lookup();
  } catch (error) {
    if (error instanceof TreePathError && error.code === "ELOOP") {
      notes.push(error.message);
      return fallback;
    }
    throw error;
  }
}

function fileType(view: TreeView, rel: string, notes: string[]): Promise<"file" | "other" | "missing"> {
  return noteLoops(notes, "other" as const, async () => {
    const info = await view.stat(rel);
    if (!info) return "missing";
    return info.type === "file" ? "file" : "other";
  });
}

/** Candidates of one rule that have both a kernel and an initrd, newest version first. */
async function candidatesOf(view: TreeView, rule: KernelRule, notes: string[]): Promise<FoundKernel[]> {
  const derive = compileDerivation(rule);
  const found: FoundKernel[] = [];
  for (const place of placesOf(rule)) {
    for (const kernel of await noteLoops(notes, [], () => globView(view, place))) {
      if ((await fileType(view, kernel, notes)) !== "file") continue;
      const initrd = kernel.replace(derive, rule.initrdFrom.replace);
      if (initrd === kernel) continue;
      const initrdType = await fileType(view, initrd, notes);
      if (initrdType === "file") {
        found.push({ kernel, initrd, rule: rule.name });
      } else if (initrdType === "missing") {
        notes.push(`rule "${rule.name}": kernel ${kernel} found, but not its initrd ${initrd}`);
      }
    }
  }
  return found.sort((a, b) => compareVersions(b.kernel, a.kernel) || compareVersions(b.initrd, a.initrd));
}

/**
 * Finds the kernel and initrd of an image: the first candidate (by descending version) of the
 * first rule that has any. The override, if given, is tried first. Throws with the places
 * searched and how to write an override when nothing matches.
 */
export async function findKernel(view: TreeView, override?: KernelOverride): Promise<FoundKernel> {
  const rules = rulesWith(override);
  const notes: string[] = [];
  for (const rule of rules) {
    const [best] = await candidatesOf(view, rule, notes);
    if (best) return best;
  }
  throw new Error(notFoundMessage(view, rules, [...new Set(notes)], override !== undefined));
}

export interface ExtractedKernel {
  vmlinuz: string;
  initrd: string;
}

/**
 * Copies the found kernel and initrd to `destDir/vmlinuz` and `destDir/initrd.img`: content
 * dereferenced, mode 0644, modification time kept, each written to a temporary name and renamed.
 */
export async function extractKernel(view: TreeView, found: FoundKernel, destDir: string): Promise<ExtractedKernel> {
  await fs.mkdir(destDir, { recursive: true });
  const result: ExtractedKernel = { vmlinuz: path.join(destDir, "vmlinuz"), initrd: path.join(destDir, "initrd.img") };
  const copies = [
    [found.kernel, result.vmlinuz, tempPathFor(result.vmlinuz)],
    [found.initrd, result.initrd, tempPathFor(result.initrd)],
  ] as const;
  try {
    for (const [, target] of copies) removeStaleTemps(target);
    await view.copyOutMany(copies.map(([source, , temp]) => [source, temp] as const));
    for (const [, target, temp] of copies) {
      await fs.chmod(temp, 0o644);
      if (process.getuid && process.getgid) await fs.chown(temp, process.getuid(), process.getgid());
      await fs.rename(temp, target);
    }
  } catch (error) {
    for (const [, , temp] of copies) await fs.rm(temp, { force: true });
    throw error;
  }
  return result;
}

/** The initrd glob a rule implies, when its derivation maps a glob to a glob. */
function initrdGlobOf(kernelGlob: string, derivation: InitrdDerivation): string | undefined {
  const initrd = kernelGlob.replace(new RegExp(derivation.regex), derivation.replace);
  return initrd === kernelGlob ? undefined : initrd;
}

/**
 * Globs (relative to the image root, fast-glob syntax) covering every file whose presence or
 * content decides what `findKernel` returns for a directory: kernels, initrds and the symlinks to
 * them. Use them as the inputs of a task that reads a chroot.
 */
export function kernelInputGlobs(override?: KernelOverride): string[] {
  const globs = new Set<string>();
  for (const rule of rulesWith(override)) {
    for (const place of placesOf(rule)) {
      globs.add(place);
      const initrd = initrdGlobOf(place, rule.initrdFrom);
      if (initrd) globs.add(initrd);
      // A user's regex need not map a glob to a sensible glob: cover the kernel's whole directory.
      if (rule.name === OVERRIDE_RULE_NAME) globs.add(path.posix.join(path.posix.dirname(place), "*"));
    }
  }
  return [...globs];
}
