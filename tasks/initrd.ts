// `ltsp initrd` as a task: ltsp.img from exactly the files it contains, so adding a user on the
// server rebuilds ltsp.img and nothing else.
import { join } from "node:path";
import { mkdirSync, renameSync, rmSync } from "node:fs";
import { removeStaleTemps, tempPathFor } from "../src/atomic.ts";
import type { Roots, TaskDef } from "../src/types.ts";
import type { LtspConfig } from "./config.ts";
import { buildLtspImg, ltspImgInputs, type LtspImgOptions } from "./lib/ltsp-img.ts";

export function initrdTask(config: LtspConfig, roots: Roots): TaskDef {
  const options: LtspImgOptions = {
    ltspShareDir: config.initrd?.ltspShareDir ?? "/usr/share/ltsp",
    etcDir: roots.etcDir,
    includeEpoptes: config.initrd?.includeEpoptes ?? true,
  };
  const output = join(roots.tftpDir, "ltsp", "ltsp.img");
  return {
    id: "initrd",
    title: "ltsp.img",
    inputs: ltspImgInputs(options),
    params: { ...options } as never,
    outputs: [output],
    run: async (ctx) => {
      mkdirSync(join(roots.tftpDir, "ltsp"), { recursive: true });
      removeStaleTemps(output);
      const temp = tempPathFor(output);
      try {
        await buildLtspImg(options, temp, ctx.exec);
        renameSync(temp, output);
      } finally {
        rmSync(temp, { force: true });
      }
    },
  };
}
