// Which images exist: the ones ltspfile.ts names, plus (unless turned off) the chroots, VM disks
// and exported images found under the base directory, as upstream LTSP finds them.
import { existsSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import type { Roots } from "../src/types.ts";
import type { ImageOptions, LtspConfig } from "./config.ts";
import { discoverImages, resolveSource, validateImageName, type ResolvedSource } from "./lib/image-names.ts";
import { parseSourceSpec, type SourceEntry } from "./lib/source-spec.ts";

export interface ImagePlan {
  name: string;
  options: ImageOptions;
  /** The parsed source chain; undefined for an exported image that has no source to build from. */
  entries?: SourceEntry[];
  source?: ResolvedSource;
  /** BASE/images/NAME.img */
  imagePath: string;
  /** A chroot directory clients may also boot as an NFS root (menu entry r_NAME). */
  chroot?: string;
}

function merge(defaults: ImageOptions | undefined, own: ImageOptions | undefined): ImageOptions {
  return { ...(defaults ?? {}), ...(own ?? {}) };
}

export function imagesDir(roots: Roots): string {
  return join(roots.baseDir, "images");
}

export function planImages(config: LtspConfig, roots: Roots): ImagePlan[] {
  const byName = new Map<string, ImagePlan>();
  const add = (name: string, options: ImageOptions, sourceSpec: string | undefined) => {
    validateImageName(name, sourceSpec ?? name);
    const imagePath = join(imagesDir(roots), `${name}.img`);
    let entries: SourceEntry[] | undefined;
    let source: ResolvedSource | undefined;
    const spec = sourceSpec ?? name;
    entries = parseSourceSpec(spec);
    source = resolveSource(entries[0]!.path, roots.baseDir);
    if (source.kind === "image" && source.path === imagePath) {
      // Only the exported image exists: serve it, nothing to build it from.
      entries = undefined;
      source = undefined;
    } else {
      entries[0] = { ...entries[0]!, path: source.path };
      for (const entry of entries.slice(1)) {
        if (isAbsolute(entry.path) && !existsSync(entry.path)) {
          throw new Error(`image ${name}: the source entry ${entry.path} does not exist. Fix the source "${spec}" in ltspfile.ts.`);
        }
      }
    }
    const chroot = source?.kind === "chroot" ? source.path : undefined;
    byName.set(name, { name, options, entries, source, imagePath, chroot });
  };

  if (config.discover !== false) {
    for (const found of discoverImages(roots.baseDir)) {
      if (config.images?.[found.name]) continue;
      add(found.name, merge(config.imageDefaults, undefined), found.kind === "image" ? found.path : undefined);
    }
  }
  for (const [name, own] of Object.entries(config.images ?? {})) {
    add(name, merge(config.imageDefaults, own), own.source);
  }
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

