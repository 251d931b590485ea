// `ltsp ipxe` as tasks: the menu (a generated file, so `plan` shows its diff) and the iPXE and
// memtest binaries copied from Debian's packages.
import { copyFileSync, existsSync, mkdirSync, renameSync, chmodSync, statSync, utimesSync } from "node:fs";
import { basename, join } from "node:path";
import { removeStaleTemps, tempPathFor } from "../src/atomic.ts";
import type { Roots, TaskDef } from "../src/types.ts";
import type { LtspConfig } from "./config.ts";
import { renderIpxeMenu, type IpxeImage } from "./lib/ipxe.ts";
import type { ImagePlan } from "./images.ts";

export interface BinarySource {
  target: string;
  candidates: string[];
  required: boolean;
}

export const IPXE_BINARIES: BinarySource[] = [
  { target: "undionly.kpxe", candidates: ["/usr/share/ltsp/binaries/undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe"], required: true },
  { target: "snponly.efi", candidates: ["/usr/share/ltsp/binaries/snponly.efi", "/usr/lib/ipxe/snponly.efi", "/usr/lib/ipxe/ipxe.efi"], required: true },
  { target: "ipxe.efi", candidates: ["/usr/lib/ipxe/ipxe.efi"], required: false },
  { target: "memtest.0", candidates: ["/usr/share/ltsp/binaries/memtest.0", "/boot/memtest86+ia32.bin", "/boot/memtest86+x32.bin", "/boot/memtest86+.bin"], required: false },
  { target: "memtest.efi", candidates: ["/usr/share/ltsp/binaries/memtest.efi", "/boot/memtest86+x64.efi"], required: false },
];

export function ipxeMenuTask(config: LtspConfig, roots: Roots, images: ImagePlan[], serving?: Map<string, Pick<IpxeImage, "boot" | "tftpBase">>): TaskDef {
  const menu = config.ipxe ?? {};
  const path = join(roots.tftpDir, "ltsp", "ltsp.ipxe");
  // With hosts declared, each entry points at the host that serves the image.
  const entries: IpxeImage[] = images.map((i) => ({ name: i.name, title: i.options.title, boot: i.options.boot, ...serving?.get(i.name) }));
  const chroots = menu.chroots === false ? [] : images.filter((i) => i.chroot).map((i) => ({ name: i.name, title: i.options.title }));
  const text = () =>
    renderIpxeMenu({
      baseDir: roots.baseDir,
      images: entries,
      chroots,
      defaultImage: menu.defaultImage,
      timeout: menu.timeout,
      kernelParameters: menu.kernelParameters,
      clients: menu.clients,
      memtest: menu.memtest ?? true,
      server: menu.server,
      title: menu.title,
    });
  text(); // invalid values fail when the graph is built, not halfway through a run
  return { id: "ipxe", title: "iPXE menu", render: () => ({ [path]: text() }), outputs: [path] };
}

function pick(source: BinarySource): string | undefined {
  return source.candidates.find((c) => existsSync(c));
}

export function ipxeBinariesTask(roots: Roots): TaskDef {
  const dir = join(roots.tftpDir, "ltsp");
  const found = IPXE_BINARIES.map((b) => ({ ...b, from: pick(b) }));
  const present = found.filter((b) => b.from);
  return {
    id: "ipxe-binaries",
    title: "iPXE and memtest binaries",
    inputs: present.map((b) => ({ file: b.from! })),
    params: { files: present.map((b) => `${b.from} -> ${b.target}`) },
    outputs: present.map((b) => join(dir, b.target)),
    run: async (ctx) => {
      const missing = found.filter((b) => b.required && !b.from);
      if (missing.length) {
        throw new Error(
          `missing ${missing.map((b) => b.target).join(", ")} (looked in ${missing.flatMap((b) => b.candidates).join(", ")}): install Debian's ipxe package (apt-get install ipxe)`,
        );
      }
      mkdirSync(dir, { recursive: true });
      for (const b of present) {
        const target = join(dir, b.target);
        removeStaleTemps(target);
        const temp = tempPathFor(target);
        copyFileSync(b.from!, temp);
        chmodSync(temp, 0o644);
        const st = statSync(b.from!);
        utimesSync(temp, st.atime, st.mtime);
        renameSync(temp, target);
        ctx.log(`${b.from} -> ${basename(target)}`);
      }
    },
  };
}
