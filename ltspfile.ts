// ltsp-make configuration: keep it in git and review `ltsp-make plan` output before running.
// Everything is optional. Without this file, ltsp-make builds every chroot (BASE/NAME with proc/)
// and VM disk (BASE/NAME.img) found under the base directory, as `ltsp image` does.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { defineConfig } from "ltsp-make";

export default defineConfig(({ roots }) => ({
  // Options every image starts from.
  imageDefaults: {
    compression: "zstd", // upstream LTSP's default is "gzip": several times slower to build
    generations: 3, // image files kept; running clients keep reading the one they booted
    excludes: { add: ["var/cache/man/*"] },
    // Your own step on the writable image root, after the built-in cleanup. Changing it
    // (or its params) rebuilds the images; it never touches the source.
    customize: [
      {
        id: "motd",
        params: { text: "Welcome to an LTSP client" },
        run: (_ctx, root) => writeFileSync(join(root, "etc/motd"), "Welcome to an LTSP client\n"),
      },
    ],
  },

  // Images with their own settings. Examples:
  //   x86_64: { source: "/,,/boot,subdir=boot", title: "This server's own system" },
  //   bookworm: { title: "Debian 12", boot: { method: "nbd" } },
  images: {},

  ipxe: {
    timeout: 5000,
    // Per-client settings by MAC address:
    // clients: [{ mac: "52:54:00:12:34:56", defaultImage: "bookworm", hostname: "pc01" }],
  },

  // dnsmasq answers PXE as a proxy next to your existing DHCP server. On a real server the
  // proxy ranges come from its routes; under a test prefix, name them.
  dnsmasq: roots.etcDir === "/etc" ? {} : { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },

  nfs: { home: false },
}));
