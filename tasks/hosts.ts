// Split deployments: hosts declared in ltspfile.ts serve what this machine builds. Images go to
// the hosts that serve them over NBD or NFS (as generations, the stable NAME.img flipped
// atomically), the menu, kernels and ltsp.img to the TFTP hosts, and each host gets its own
// dnsmasq, NFS and nbd-server configuration, rendered here for its roots and addresses. What a
// host holds is part of each publish task's key (one ssh call per host when a plan is made).
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import { basename, join, relative } from "node:path";
import { writeFileAtomicSync } from "../src/atomic.ts";
import { standaloneExec } from "../src/exec.ts";
import type { Json, ResourceDef, Roots, TaskContext, TaskDef } from "../src/types.ts";
import type { LtspConfig } from "./config.ts";
import { currentGeneration } from "./generations.ts";
import type { ImagePlan } from "./images.ts";
import { renderDnsmasq } from "./lib/dnsmasq.ts";
import type { ImageBoot } from "./lib/ipxe.ts";
import { renderNbdAllowList, renderNbdServerConfig, renderNbdServerConfigsPerPort } from "./lib/nbd-config.ts";
import { renderNfsExports } from "./lib/nfs-exports.ts";
import { rsyncFile, rsyncFiles } from "./lib/rsync.ts";
import {
  HostError,
  remoteStamps,
  remoteState,
  runRemote,
  sha256File,
  startMaster,
  stopMaster,
  type KnownRemote,
  type RemoteEntry,
  type SshMaster,
  type SshTarget,
} from "./lib/ssh.ts";
import { validateImageName, validateIpAddress, validateKernelPath } from "./lib/validate.ts";

export type HostRole = "tftp" | "dhcp" | "nbd" | "nfs";
const ROLES: readonly HostRole[] = ["tftp", "dhcp", "nbd", "nfs"];

export interface HostOptions {
  /** SSH destination, user@host. */
  ssh: string;
  /** The address clients use to reach this host. Default: the host part of `ssh`. */
  address?: string;
  /** SSH port. */
  port?: number;
  /** SSH private key. */
  identityFile?: string;
  /** known_hosts file holding this host's key (then no other key is accepted). */
  knownHosts?: string;
  roles: HostRole[];
  /** Images this host serves (nbd, nfs) or holds kernels of (tftp). Default: all. */
  images?: string[];
  /** Roots on the host. Defaults: /srv/ltsp, /srv/tftp, /etc. */
  baseDir?: string;
  tftpDir?: string;
  etcDir?: string;
  /** Commands run on the host when its file changed; false: only print what to do. Defaults as for this server. */
  reload?: { dnsmasq?: string[] | false; nfs?: string[] | false; nbd?: string[] | false };
  /** Extra rsync arguments, e.g. ["--bwlimit=20m"]. */
  rsyncArgs?: string[];
}

export interface HostPlan {
  name: string;
  options: HostOptions;
  target: SshTarget;
  address: string;
  roles: Set<HostRole>;
  /** Images this host serves or holds kernels of. */
  images: string[];
  baseDir: string;
  tftpDir: string;
  etcDir: string;
}

/** How one image's menu entry reaches its servers. */
export interface ImageServing {
  boot: ImageBoot;
  /** Where its kernel comes from when not every TFTP host has it, e.g. "tftp://10.0.0.2". */
  tftpBase?: string;
}

const HOST_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const DEFAULT_NBD_PORT = 10809;

function hostError(name: string, problem: string): Error {
  return new Error(`hosts.${name}: ${problem}`);
}

function hostPart(ssh: string): string {
  const at = ssh.lastIndexOf("@");
  const host = at >= 0 ? ssh.slice(at + 1) : ssh;
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

export function planHosts(config: LtspConfig, images: ImagePlan[]): HostPlan[] {
  const names = new Set(images.map((i) => i.name));
  return Object.entries(config.hosts ?? {})
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([name, options]) => {
      if (!HOST_NAME.test(name)) throw hostError(name, `"${name}" is not a usable host name: use letters, digits, ".", "_" and "-"`);
      if (typeof options.ssh !== "string" || !/^[^\s-][^\s]*$/.test(options.ssh)) {
        throw hostError(name, `ssh must be a destination such as "root@10.0.0.2" (no spaces, not starting with "-")`);
      }
      const roles = new Set<HostRole>();
      for (const role of options.roles ?? []) {
        if (!ROLES.includes(role)) throw hostError(name, `unknown role "${role}": use ${ROLES.join(", ")}`);
        roles.add(role);
      }
      if (roles.size === 0) throw hostError(name, `give the host at least one role (${ROLES.join(", ")})`);
      for (const image of options.images ?? []) {
        validateImageName(`hosts.${name}.images`, image);
        if (!names.has(image)) throw hostError(name, `serves image "${image}", which is not an image of this server (known: ${[...names].join(", ") || "none"})`);
      }
      const address = validateIpAddress(`hosts.${name}.address`, options.address ?? hostPart(options.ssh));
      const root = (field: "baseDir" | "tftpDir" | "etcDir", fallback: string) => {
        const value = options[field] ?? fallback;
        return value === "/" ? value : validateKernelPath(`hosts.${name}.${field}`, value).replace(/\/+$/, "");
      };
      return {
        name,
        options,
        target: { name, destination: options.ssh, port: options.port, identityFile: options.identityFile, knownHosts: options.knownHosts },
        address,
        roles,
        images: options.images ? [...new Set(options.images)].sort() : [...names].sort(),
        baseDir: root("baseDir", "/srv/ltsp"),
        tftpDir: root("tftpDir", "/srv/tftp"),
        etcDir: root("etcDir", "/etc"),
      };
    });
}

function serves(host: HostPlan, role: HostRole, image: string): boolean {
  return host.roles.has(role) && host.images.includes(image);
}

/** The NBD port clients connect to for an image. */
function nbdPort(config: LtspConfig, image: ImagePlan): number {
  const boot = image.options.boot;
  return (boot?.method === "nbd" ? boot.port : undefined) ?? config.nbd?.port ?? DEFAULT_NBD_PORT;
}

/**
 * Each image's boot entry, pointed at the host that serves it: the image's own boot method,
 * or NBD when an NBD host serves it and NFS otherwise.
 */
export function imageServing(config: LtspConfig, hosts: HostPlan[], images: ImagePlan[]): Map<string, ImageServing> {
  const out = new Map<string, ImageServing>();
  const tftpHosts = hosts.filter((h) => h.roles.has("tftp"));
  for (const image of images) {
    const own = image.options.boot;
    const byNbd = hosts.find((h) => serves(h, "nbd", image.name));
    const byNfs = hosts.find((h) => serves(h, "nfs", image.name));
    const method = own?.method ?? (byNbd ? "nbd" : "nfs");
    const server = method === "nbd" ? byNbd : byNfs;
    if (!server) {
      throw new Error(
        `image ${image.name} boots over ${method.toUpperCase()}, but no host with role "${method}" serves it. ` +
          `Add it to the images of such a host in ltspfile.ts (or leave that host's images unset to serve all).`,
      );
    }
    const boot: ImageBoot =
      method === "nbd"
        ? { method: "nbd", server: server.address, port: nbdPort(config, image), exportName: own?.method === "nbd" ? own.exportName : undefined }
        : { method: "nfs", server: server.address, baseDir: server.baseDir };
    let tftpBase: string | undefined;
    if (tftpHosts.length > 0) {
      const holders = tftpHosts.filter((h) => h.images.includes(image.name));
      if (holders.length === 0) throw new Error(`image ${image.name} is on no host with role "tftp": add it to the images of a TFTP host in ltspfile.ts`);
      if (holders.length < tftpHosts.length) tftpBase = `tftp://${holders[0]!.address}`;
    }
    out.set(image.name, { boot, tftpBase });
  }
  return out;
}

// ---- What was published, and what the host holds now ----

interface PublishRecord {
  /** `stamp`: the file's stamp on the host once published; while it holds, plans do not read the file. */
  files: Record<string, { size: number; sha256: string; stamp?: string }>;
  links: Record<string, string>;
  /** Changes only when the published content changed: reloads follow it. */
  changeId?: string;
}

function safeName(id: string): string {
  return id.replace(/[^A-Za-z0-9._-]/g, "_");
}

function recordsDir(roots: Roots, host: string): string {
  return join(roots.cacheDir, "hosts", host, "records");
}

function readRecord(path: string): PublishRecord | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as PublishRecord;
  } catch {
    return undefined;
  }
}

/** The host's copies of everything recorded for it, read with one ssh call and shared by its tasks. */
class HostState {
  private pending?: Promise<Map<string, RemoteEntry>>;
  get hostName(): string {
    return this.host.name;
  }
  constructor(
    private readonly host: HostPlan,
    private readonly dir: string,
  ) {}

  read(): Promise<Map<string, RemoteEntry>> {
    this.pending ??= (async () => {
      const files = new Set<string>();
      const links = new Set<string>();
      const known: KnownRemote = new Map();
      let names: string[] = [];
      try {
        names = readdirSync(this.dir).filter((n) => n.endsWith(".json"));
      } catch {
        // nothing published yet
      }
      for (const name of names) {
        const record = readRecord(join(this.dir, name));
        for (const [path, file] of Object.entries(record?.files ?? {})) {
          files.add(path);
          if (file.stamp) known.set(path, { stamp: file.stamp, sha256: file.sha256 });
        }
        for (const path of Object.keys(record?.links ?? {})) links.add(path);
      }
      return remoteState(standaloneExec(), this.host.target, { files: [...files].sort(), links: [...links].sort(), known });
    })();
    return this.pending;
  }
}

// Problems are the keys, so that `plan` names them when it says why the probe changed.
const IN_SYNC: Json = {};

/**
 * The publish task's view of the host as a key field. The first evaluation (when the plan is
 * made) compares the host's copies with what was recorded at the last publish. The engine
 * evaluates it once more just before the task runs, and that key is the one recorded when the
 * task succeeds: it then holds the state the task has just established, so the next plan finds
 * the host as published and the task fresh.
 */
function remoteProbe(state: HostState, recordPath: string): () => Promise<Json> {
  const host = state.hostName;
  let evaluated = false;
  return async () => {
    if (evaluated) return IN_SYNC;
    evaluated = true;
    const record = readRecord(recordPath);
    if (!record) return { "never published to this host": true };
    const remote = await state.read();
    const problems: string[] = [];
    for (const [path, want] of Object.entries(record.files)) {
      const have = remote.get(`f:${path}`);
      if (!have || have.kind !== "file") problems.push(`${path} is missing`);
      else if (have.size !== want.size || have.sha256 !== want.sha256) problems.push(`${path} differs from what was published`);
    }
    for (const [path, want] of Object.entries(record.links)) {
      const have = remote.get(`l:${path}`);
      if (!have || have.kind !== "link") problems.push(`${path} is not the published symlink`);
      else if (have.target !== want) problems.push(`${path} points at ${have.target}, not ${want}`);
    }
    return Object.fromEntries(problems.sort().map((p) => [`on ${host}: ${p}`, true]));
  };
}

/** Record what was published, with each file's stamp on the host (see remoteStamps). */
async function saveRecord(ctx: TaskContext, target: SshTarget, path: string, record: PublishRecord): Promise<void> {
  const files = Object.keys(record.files);
  let stamps = await remoteStamps(ctx.exec, target, files);
  if (stamps.size < files.length) {
    // Some changed just now: once they are past the racy window, their stamps can be trusted.
    await new Promise((resolve) => setTimeout(resolve, 100));
    stamps = await remoteStamps(ctx.exec, target, files);
  }
  for (const [file, stamp] of stamps) record.files[file]!.stamp = stamp;
  mkdirSync(join(path, ".."), { recursive: true });
  writeFileAtomicSync(path, `${JSON.stringify(record, null, 2)}\n`);
}

// ---- Remote scripts (arguments come quoted; the scripts themselves are constant) ----

/** Check files against their SHA-256: args are PATH SHA256 pairs. */
const VERIFY_SCRIPT = `
set -e
while [ $# -ge 2 ]; do
  h=$(sha256sum < "$1")
  if [ "\${h%% *}" != "$2" ]; then echo "$1: checksum mismatch after the transfer" >&2; exit 3; fi
  shift 2
done
`;

/**
 * Make a copied generation the served image. Args: DIR NAME.img GENERATION SHA256 KEEP.
 * An upstream-style regular NAME.img is kept as a generation (hard link) before NAME.img
 * becomes a symlink; the symlink is replaced atomically (rename over it); the oldest
 * generations beyond KEEP are removed unless a process on the host still has them open.
 */
const ACTIVATE_SCRIPT = `
set -e
cd "$1"
stable=$2 gen=$3 sum=$4 keep=$5
h=$(sha256sum < "$gen")
if [ "\${h%% *}" != "$sum" ]; then echo "$gen: checksum mismatch after the transfer" >&2; exit 3; fi
if [ -f "$stable" ] && [ ! -L "$stable" ]; then
  ln -f -- "$stable" "$stable.$(date -u -r "$stable" +%Y%m%d-%H%M%S)"
fi
tmp=.$stable.link-$$
rm -f -- "$tmp"
ln -s -- "$gen" "$tmp"
mv -T -- "$tmp" "$stable"
current=$(readlink -- "$stable")
all=$(ls -1 | grep -E "^$(printf '%s' "$stable" | sed 's/[.[\\*^$]/\\\\&/g')\\.[0-9]{8}-[0-9]{6}(-[0-9]+)?$" | sort || true)
count=$(printf '%s\\n' "$all" | grep -c . || true)
excess=$((count - (keep < 1 ? 1 : keep)))
for g in $all; do
  [ "$excess" -gt 0 ] || break
  [ "$g" = "$current" ] && continue
  excess=$((excess - 1))
  if find /proc/[0-9]*/fd -maxdepth 1 -lname "$PWD/$g" 2>/dev/null | grep -q .; then
    echo "kept $g: a process on this host still has it open"
    continue
  fi
  rm -f -- "$g"
  echo "removed $g"
done
`;

const RUN_SCRIPT = `exec "$@"`;

// ---- Tasks ----

function wrapHostErrors(host: HostPlan, run: (ctx: TaskContext) => Promise<Json | void>): (ctx: TaskContext) => Promise<Json | void> {
  return async (ctx) => {
    try {
      return await run(ctx);
    } catch (error) {
      if (error instanceof HostError || !(error instanceof Error) || error.name === "CancelledError") throw error;
      throw new HostError(host.name, `host "${host.name}": ${error.message}`);
    }
  };
}

function stampOf(date: Date): string {
  return date.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
}

/** The resource holding a host's master connection for the length of a run. */
function masterResource(host: HostPlan): ResourceDef<SshMaster> {
  return {
    id: `ssh@${host.name}`,
    title: `SSH connection to ${host.name}`,
    setup: (ctx) => startMaster(ctx.exec, host.target, ctx.workDir),
    teardown: (master, ctx) => stopMaster(ctx.exec, host.target, master),
  };
}

function targetFor(ctx: TaskContext, host: HostPlan): SshTarget {
  return { ...host.target, controlPath: ctx.resource<SshMaster>(`ssh@${host.name}`).controlPath };
}

export interface HostTaskInput {
  config: LtspConfig;
  roots: Roots;
  images: ImagePlan[];
  hosts: HostPlan[];
  serving: Map<string, ImageServing>;
  /** The built-in tasks by id: their outputs are what gets copied. */
  built: Map<string, TaskDef>;
}

export function hostGraph(input: HostTaskInput): { tasks: TaskDef[]; resources: ResourceDef<any>[] } {
  const tasks: TaskDef[] = [];
  const resources: ResourceDef<any>[] = [];
  for (const host of input.hosts) {
    const state = new HostState(host, recordsDir(input.roots, host.name));
    const own: TaskDef[] = [
      ...imagePublishTasks(input, host, state),
      ...tftpPublishTasks(input, host, state),
      ...configPublishTasks(input, host, state),
    ];
    for (const task of own) {
      task.groups = [...(task.groups ?? []), `host:${host.name}`];
      task.uses = [...(task.uses ?? []), `ssh@${host.name}`];
    }
    if (own.length) resources.push(masterResource(host));
    tasks.push(...own);
  }
  return { tasks, resources };
}

function imagePublishTasks(input: HostTaskInput, host: HostPlan, state: HostState): TaskDef[] {
  const { roots, images } = input;
  const remoteImages = join(host.baseDir, "images");
  return images
    .filter((image) => serves(host, "nbd", image.name) || serves(host, "nfs", image.name))
    .map((image): TaskDef => {
      const id = `publish-image:${image.name}@${host.name}`;
      const recordPath = join(recordsDir(roots, host.name), `${safeName(id)}.json`);
      const keep = image.options.generations ?? 3;
      const stable = `${image.name}.img`;
      return {
        id,
        title: `copy image ${image.name} to ${host.name}`,
        kind: "publish-image",
        groups: [`image:${image.name}`],
        deps: image.entries ? [`squash:${image.name}`] : [],
        inputs: image.entries ? [] : [{ file: image.imagePath }],
        params: { destination: host.options.ssh, dir: remoteImages, keep, rsyncArgs: host.options.rsyncArgs ?? [] },
        probe: remoteProbe(state, recordPath),
        tools: [{ name: "rsync", version: ["rsync", "--version"] }],
        run: wrapHostErrors(host, async (ctx) => {
          const local = currentGeneration(image.imagePath);
          if (!local || !existsSync(local)) throw new Error(`${image.imagePath} does not exist: build the image first (ltsp-make squash:${image.name})`);
          const generation = local === image.imagePath ? `${stable}.${stampOf(statSync(local).mtime)}` : basename(local);
          const size = statSync(local).size;
          const sha256 = await sha256File(local);
          const target = targetFor(ctx, host);
          ctx.log(`copying ${basename(local)} (${size} bytes) to ${host.name}:${remoteImages}/${generation}`);
          await rsyncFile(ctx.exec, target, local, join(remoteImages, generation), {
            extraArgs: host.options.rsyncArgs,
            onProgress: (f) => ctx.progress(f, "copying"),
            log: ctx.log,
          });
          const { stdout } = await runRemote(ctx.exec, target, ACTIVATE_SCRIPT, [remoteImages, stable, generation, sha256, String(keep)], `activating ${generation}`);
          for (const line of stdout.split("\n").filter(Boolean)) ctx.log(line);
          await saveRecord(ctx, target, recordPath, { files: { [join(remoteImages, generation)]: { size, sha256 } }, links: { [join(remoteImages, stable)]: generation } });
          return { generation, sha256 };
        }),
      };
    });
}

function tftpPublishTasks(input: HostTaskInput, host: HostPlan, state: HostState): TaskDef[] {
  if (!host.roles.has("tftp")) return [];
  const { roots, built } = input;
  const localDir = join(roots.tftpDir, "ltsp");
  const sources = ["ipxe", "ipxe-binaries", "initrd", ...host.images.map((n) => `kernel:${n}`)].filter((id) => built.has(id));
  const files = sources
    .flatMap((id) => built.get(id)!.outputs ?? [])
    .filter((p) => p.startsWith(`${localDir}/`))
    .map((p) => relative(localDir, p))
    .sort();
  const remoteDir = join(host.tftpDir, "ltsp");
  const id = `publish-tftp@${host.name}`;
  const recordPath = join(recordsDir(roots, host.name), `${safeName(id)}.json`);
  return [
    {
      id,
      title: `copy the menu, kernels and ltsp.img to ${host.name}`,
      kind: "publish-tftp",
      deps: sources,
      params: { destination: host.options.ssh, dir: remoteDir, files, rsyncArgs: host.options.rsyncArgs ?? [] },
      probe: remoteProbe(state, recordPath),
      tools: [{ name: "rsync", version: ["rsync", "--version"] }],
      run: wrapHostErrors(host, async (ctx) => {
        const record: PublishRecord = { files: {}, links: {} };
        const verify: string[] = [];
        for (const rel of files) {
          const path = join(localDir, rel);
          const sha256 = await sha256File(path);
          record.files[join(remoteDir, rel)] = { size: statSync(path).size, sha256 };
          verify.push(join(remoteDir, rel), sha256);
        }
        const target = targetFor(ctx, host);
        await rsyncFiles(ctx.exec, target, localDir, files, remoteDir, { extraArgs: host.options.rsyncArgs, onProgress: (f) => ctx.progress(f, "copying"), log: ctx.log });
        await runRemote(ctx.exec, target, VERIFY_SCRIPT, verify, "checking the copied files");
        await saveRecord(ctx, target, recordPath, record);
      }),
    },
  ];
}

function proxyRangeOf(address: string): { network: string; netmask: string } | undefined {
  const parts = address.split(".");
  if (parts.length !== 4) return undefined;
  return { network: `${parts[0]}.${parts[1]}.${parts[2]}.0`, netmask: "255.255.255.0" };
}

function defaultReload(host: HostPlan, command: string[]): string[] | false {
  return host.etcDir === "/etc" ? command : false;
}

/** A config file rendered here for one host, published there, and the reload that follows it. */
function configPublishTasks(input: HostTaskInput, host: HostPlan, state: HostState): TaskDef[] {
  const { config, roots, images, serving } = input;
  const mirror = (remotePath: string) => join(roots.cacheDir, "hosts", host.name, "files", remotePath);
  const tasks: TaskDef[] = [];
  /** Publish `texts` (remote path → content) for one service; its reload follows any change. */
  const add = (service: "dnsmasq" | "nfs" | "nbd", texts: Record<string, () => string>, reload: string[] | false, advice: string, verify?: TaskDef["verify"]) => {
    const id = `publish-${service}@${host.name}`;
    const remotePaths = Object.keys(texts).sort();
    const recordPath = join(recordsDir(roots, host.name), `${safeName(id)}.json`);
    for (const text of Object.values(texts)) text(); // invalid values fail when the graph is built
    tasks.push({
      id,
      title: `write ${remotePaths.join(", ")} on ${host.name}`,
      kind: `publish-${service}`,
      params: { destination: host.options.ssh, paths: remotePaths },
      probe: remoteProbe(state, recordPath),
      tools: [{ name: "rsync", version: ["rsync", "--version"] }],
      render: () => Object.fromEntries(remotePaths.map((path) => [mirror(path), texts[path]!()])),
      verify,
      outputs: remotePaths.map(mirror),
      run: wrapHostErrors(host, async (ctx) => {
        const before = readRecord(recordPath);
        const target = targetFor(ctx, host);
        const remote = await remoteState(ctx.exec, target, { files: remotePaths, links: [] });
        const record: PublishRecord = { files: {}, links: {} };
        const sums: string[] = [];
        let changed = false;
        for (const remotePath of remotePaths) {
          const local = mirror(remotePath);
          const sha256 = await sha256File(local);
          record.files[remotePath] = { size: statSync(local).size, sha256 };
          sums.push(sha256);
          const had = remote.get(`f:${remotePath}`);
          if (had?.kind === "file" && had.sha256 === sha256) {
            ctx.log(`${host.name}:${remotePath} already has this content`);
            continue;
          }
          await rsyncFile(ctx.exec, target, local, remotePath, { extraArgs: host.options.rsyncArgs, log: ctx.log });
          await runRemote(ctx.exec, target, VERIFY_SCRIPT, [remotePath, sha256], `checking ${remotePath}`);
          changed = true;
        }
        // Unchanged files keep the change id, so the reload task does not run for nothing.
        record.changeId = changed || !before?.changeId ? `${sums.join("+")}@${new Date().toISOString()}` : before.changeId;
        await saveRecord(ctx, target, recordPath, record);
        return { changeId: record.changeId };
      }),
    });
    tasks.push({
      id: `reload-${service}@${host.name}`,
      title: `make ${service} on ${host.name} re-read its configuration`,
      kind: `reload-${service}`,
      deps: [id],
      params: { destination: host.options.ssh, command: reload || null },
      run: wrapHostErrors(host, async (ctx) => {
        if (!reload) {
          ctx.notice(`${host.name}: ${advice}`);
          return;
        }
        await runRemote(ctx.exec, targetFor(ctx, host), RUN_SCRIPT, reload, `reloading ${service} (${reload.join(" ")})`);
      }),
    });
  };

  if (host.roles.has("dhcp") && config.dnsmasq?.enabled !== false) {
    const { enabled: _e, proxyFromRoutes: _p, ...options } = config.dnsmasq ?? {};
    const tftpHost = host.roles.has("tftp") ? undefined : input.hosts.find((h) => h.roles.has("tftp"));
    const range = proxyRangeOf(host.address);
    const text = () =>
      renderDnsmasq({
        ...options,
        proxyRanges: options.proxyRanges ?? (range ? [range] : undefined),
        tftpDir: host.tftpDir,
        tftp: options.tftp ?? host.roles.has("tftp"),
        tftpServer: options.tftpServer ?? tftpHost?.address,
      });
    const path = join(host.etcDir, "dnsmasq.d", "ltsp-dnsmasq.conf");
    add("dnsmasq", { [path]: text }, host.options.reload?.dnsmasq ?? defaultReload(host, ["systemctl", "restart", "dnsmasq"]), `${path} changed: restart dnsmasq there to apply it`, async (ctx, files) => {
      for (const file of files) {
        const result = await ctx.exec("dnsmasq", ["--test", `--conf-file=${file.draft}`], { okExitCodes: [0, 1] });
        if (result.exitCode !== 0) {
          throw new Error(`dnsmasq rejects the configuration generated for ${host.name}:\n${(result.stderr || result.stdout).trim()}\nNothing was copied; fix the dnsmasq settings in ltspfile.ts.`);
        }
      }
    });
  }
  if (host.roles.has("nfs") && config.nfs?.enabled !== false) {
    const { enabled: _e, ...options } = config.nfs ?? {};
    const text = () => renderNfsExports({ ...options, baseDir: host.baseDir, tftpDir: host.tftpDir, homeDir: roots.homeDir });
    const path = join(host.etcDir, "exports.d", "ltsp-nfs.exports");
    add("nfs", { [path]: text }, host.options.reload?.nfs ?? defaultReload(host, ["exportfs", "-ra"]), `${path} changed: run "exportfs -ra" there to apply it`);
  }
  if (host.roles.has("nbd")) {
    const exportsList = images
      .filter((i) => serves(host, "nbd", i.name) && serving.get(i.name)?.boot.method === "nbd")
      .map((i) => {
        const boot = serving.get(i.name)!.boot as { exportName?: string; port?: number };
        return { image: i.name, exportName: boot.exportName, file: join(host.baseDir, "images", `${i.name}.img`), port: boot.port };
      });
    if (exportsList.length) {
      const nbd = config.nbd ?? {};
      const dir = join(host.etcDir, "nbd-server");
      // The same files as on this server (nbdTask), for the host's paths.
      const allowFile = join(dir, "ltsp-make.allow");
      const options = { baseDir: host.baseDir, exports: exportsList, port: nbd.port, listenAddresses: nbd.listenAddresses, authFile: nbd.allow ? allowFile : undefined };
      const texts: Record<string, () => string> = {};
      if (nbd.perPort) {
        for (const c of renderNbdServerConfigsPerPort(options)) texts[join(dir, `ltsp-make-${c.image}.conf`)] = () => renderNbdServerConfigsPerPort(options).find((o) => o.image === c.image)!.config;
      } else {
        texts[join(dir, "ltsp-make.conf")] = () => renderNbdServerConfig(options);
      }
      if (nbd.allow) texts[allowFile] = () => renderNbdAllowList(nbd.allow);
      add(
        "nbd",
        texts,
        host.options.reload?.nbd ?? false,
        `${Object.keys(texts).sort().join(", ")} changed: restart nbd-server there when no client is connected (a restart drops connected clients)`,
      );
    }
  }
  return tasks;
}
