// The LTSP part of ltspfile.ts: images, boot artifacts and server settings. Every field is
// optional: with none, ltsp-make finds the chroots and VM disks under the base directory as
// upstream LTSP does and builds everything for them.
import type { TaskContext } from "../src/types.ts";
import type { DnsmasqOptions } from "./lib/dnsmasq.ts";
import type { ImageBoot, IpxeClient } from "./lib/ipxe.ts";
import type { KernelOverride } from "./lib/kernel-find.ts";
import type { HostOptions } from "./hosts.ts";
import type { NfsExportsOptions } from "./lib/nfs-exports.ts";

/** Which cleanup steps run on the image's overlay before it is squashed (all on by default). */
export interface CleanupSettings {
  /** Remove human accounts (UID_MIN..UID_MAX of the server's login.defs), lock every password. */
  users?: boolean;
  /** Empty the CUPS printer list. */
  printers?: boolean;
  /** Point resolv.conf at systemd-resolved's stub. */
  resolvConf?: boolean;
  /** SSH host private keys: "remove" (default; clients get their own), "regenerate", or false to keep. */
  sshHostKeys?: "remove" | "regenerate" | false;
  /** The snakeoil TLS key: "regenerate" (default), "remove", or false to keep. */
  snakeoil?: "regenerate" | "remove" | false;
  /** Empty the top-level files of var/log. */
  logs?: boolean;
  /** Empty etc/fstab (clients get theirs at boot). */
  fstab?: boolean;
  /** Empty debconf's passwords.dat. */
  debconfPasswords?: boolean;
}

/** A step of your own, run on the writable image root after the built-in cleanup. */
export interface CustomizeStep {
  /** Becomes the task id `customize-<id>:<image>`. */
  id: string;
  /** Anything the step's result depends on (becomes part of the image's key). */
  params?: Record<string, string | number | boolean>;
  run(ctx: TaskContext, root: string): Promise<void> | void;
}

export interface ImageOptions {
  /**
   * Where the image comes from: a NAME under the base directory, a path, a VM disk, or a chain
   * such as "/,,/boot,subdir=boot". Default: the image's own name, resolved as upstream does.
   */
  source?: string;
  /** Menu title. */
  title?: string;
  /** How clients reach the image: NFS (default) or NBD, and on which server. */
  boot?: ImageBoot;
  /**
   * Compression: "zstd" (default, level 3), "zstd:LEVEL", "gzip" (upstream's default: mksquashfs
   * without -comp), "xz", "lzo", "lz4".
   */
  compression?: string;
  /** More mksquashfs arguments, e.g. ["-b", "1M"]. */
  mksquashfsParams?: string[];
  /** Prefix for mksquashfs (default ["nice", "ionice", "-c3"]); [] runs it unthrottled. */
  ionice?: string[];
  /** The exclude list: replace the built-in one, or add and omit lines. */
  excludes?: { replace?: string[]; add?: string[]; omit?: string[] };
  /** Cleanup steps, or false to squash the source as it is. */
  cleanup?: CleanupSettings | false;
  /** Your own steps on the writable root before squashing. */
  customize?: CustomizeStep[];
  /** Image files kept (the stable NAME.img points at the newest). Default 3. */
  generations?: number;
  /** Where the kernel and initrd are in the image, when the built-in rules don't find them. */
  kernel?: KernelOverride;
}

export interface LtspConfig {
  /** Images by name, each with its own options. */
  images?: Record<string, ImageOptions>;
  /** Also build the chroots and VM disks found under the base directory (default true). */
  discover?: boolean;
  /** Options every image starts from. */
  imageDefaults?: ImageOptions;
  /** The iPXE menu. */
  ipxe?: {
    title?: string;
    defaultImage?: string;
    /** Milliseconds; 0 waits forever; -1 boots the default at once. Default 5000. */
    timeout?: number;
    kernelParameters?: string;
    clients?: IpxeClient[];
    /** Server address used in boot entries when an image names none. Default: decided by the client. */
    server?: string;
    memtest?: boolean;
    /** Also list chroots for NFS-root boot (entry r_NAME). Default true. */
    chroots?: boolean;
  };
  /** dnsmasq: set `enabled: false` to not generate it. */
  dnsmasq?: DnsmasqOptions & { enabled?: boolean; proxyFromRoutes?: boolean };
  /** NFS exports: set `enabled: false` to not generate them. */
  nfs?: Omit<NfsExportsOptions, "baseDir" | "tftpDir" | "homeDir"> & { enabled?: boolean };
  /** nbd-server: one named read-only export per image. Generated when an image boots over NBD or `enabled: true`. */
  nbd?: {
    enabled?: boolean;
    port?: number;
    listenAddresses?: string[];
    /** One nbd-server config and port per image, for clients that can't name an export. */
    perPort?: boolean;
    /** Addresses allowed to connect (written to an allow-list file). Default: everyone. */
    allow?: string[];
  };
  /** ltsp.img: where the LTSP client code is, and whether to include the epoptes certificate. */
  initrd?: { enabled?: boolean; ltspShareDir?: string; includeEpoptes?: boolean };
  /**
   * Commands that make services re-read their configs; they run only when the file changed.
   * Defaults (only when the etc dir is /etc): dnsmasq and NFS are restarted with systemctl;
   * nbd-server is never restarted automatically (that would drop connected clients).
   */
  reload?: { dnsmasq?: string[] | false; nfs?: string[] | false; nbd?: string[] | false };
  /**
   * Split deployments: hosts (reached over SSH) that serve what this machine builds, by role
   * (tftp, dhcp, nbd, nfs). The menu points each image at the host that serves it; this
   * machine then only builds, and writes no dnsmasq, NFS or nbd-server configuration of its own.
   */
  hosts?: Record<string, HostOptions>;
}
