// `ltsp kernel` as a task: find the kernel and initrd inside the built image (read straight from
// the squashfs, no mount) and copy them to TFTP/ltsp/NAME/{vmlinuz,initrd.img}.
import { join } from "node:path";
import type { Roots, TaskDef } from "../src/types.ts";
import { extractKernel, findKernel } from "./lib/kernel-find.ts";
import { SquashfsView } from "./lib/tree-view.ts";
import type { ImagePlan } from "./images.ts";

export function tftpImageDir(roots: Roots, name: string): string {
  return join(roots.tftpDir, "ltsp", name);
}

export function kernelTask(image: ImagePlan, roots: Roots): TaskDef {
  const dest = tftpImageDir(roots, image.name);
  const built = image.entries !== undefined;
  return {
    id: `kernel:${image.name}`,
    title: `kernel and initrd of ${image.name}`,
    groups: [`image:${image.name}`],
    deps: built ? [`squash:${image.name}`] : [],
    inputs: built ? [] : [{ file: image.imagePath }],
    params: { override: (image.options.kernel ?? null) as never },
    tools: [{ name: "unsquashfs", version: ["unsquashfs", "-version"] }],
    outputs: [join(dest, "vmlinuz"), join(dest, "initrd.img")],
    run: async (ctx) => {
      const view = new SquashfsView(image.imagePath, ctx.exec);
      const found = await findKernel(view, image.options.kernel);
      ctx.log(`found ${found.kernel} and ${found.initrd} (${found.rule})`);
      await extractKernel(view, found, dest);
    },
  };
}
