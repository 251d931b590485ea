// End-to-end netboot harness: a private network namespace with a bridge and a tap, ltsp-make run
// through its real CLI, dnsmasq / nbd-server / nfs-ganesha started from the generated configs,
// and a QEMU (TCG) client booted from the network until the image's marker shows on its serial log.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createHash } from "node:crypto";
import { standaloneExec } from "../../src/exec.ts";

const exec = standaloneExec();
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export const SUBNET_PREFIX = "192.168.67";
export const SERVER_IP = `${SUBNET_PREFIX}.1`;
export const BRIDGE = "br0";
export const TAPS = ["tap0", "tap1"] as const;
const OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/** Lines on the serial console that mean the boot has failed, so the wait can stop early. */
const FAILURE_PATTERNS = [/Kernel panic/, /\(initramfs\)/, /LTSP boot error/, /E2E-RESULT: FAIL/, /Booting \S+ failed, opening the iPXE shell/];

/** Boot stages in the order they show on the serial console. */
const STAGES = [
  { name: "iPXE menu script loaded", pattern: /ltsp\.ipxe : \d+ bytes/ },
  { name: "kernel started", pattern: /Linux version/ },
  { name: "initramfs mounts the root", pattern: /Begin: Mounting root file system/ },
  { name: "LTSP initrd-bottom (overlay)", pattern: /ltsp initrd-bottom/ },
  { name: "systemd started", pattern: /Welcome to|systemd\[1\]/ },
  { name: "ltsp.service started", pattern: /Started .*ltsp\.service/ },
  { name: "marker", pattern: /E2E-RESULT: OK/ },
];

/** Fails (never skips) when something the e2e tests need is not on this machine (`uefi`: OVMF too). */
export async function requirePrerequisites(extra: string[] = [], options: { uefi?: boolean } = {}): Promise<void> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (the tests create network namespaces)");
  const tools = ["ip", "dnsmasq", "nbd-server", "qemu-system-x86_64", ...extra];
  for (const tool of tools) {
    const found = await exec("sh", ["-c", `command -v ${tool}`], { okExitCodes: [0, 1, 127] });
    if (found.exitCode !== 0) missing.push(`the command ${tool}`);
  }
  const files = ["/dev/net/tun", "/usr/lib/ipxe/qemu/pxe-virtio.rom"];
  if (options.uefi) files.push("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd");
  for (const file of files) {
    if (!fs.existsSync(file)) missing.push(file);
  }
  if (missing.length > 0) {
    throw new Error(
      `The e2e netboot tests cannot run here; missing: ${missing.join(", ")}. ` +
        "Install qemu-system-x86, ipxe-qemu, ovmf, dnsmasq-base, nbd-server, nfs-ganesha, nfs-ganesha-vfs and rpcbind, and run as root.",
    );
  }
}

/** The cached Debian client chroot (built once by test/fixtures/debian-chroot.sh). */
export async function debianFixture(): Promise<string> {
  const result = await exec("bash", [path.join(REPO, "test/fixtures/debian-chroot.sh")]);
  const dir = result.stdout.trim().split("\n").pop() ?? "";
  if (!fs.existsSync(path.join(dir, "boot"))) throw new Error(`The Debian fixture at "${dir}" has no boot/ directory: delete it and rerun.`);
  return dir;
}

/**
 * The images every case can boot, all built from the Debian fixture by a customize step
 * (image-steps.ts) that adds the marker unit: they differ only in the marker, and `reader`
 * keeps reading from its image instead of powering off.
 */
export const IMAGES = {
  debian: { marker: "E2E-DEBIAN", reader: false },
  alt: { marker: "E2E-ALT", reader: false },
  reader: { marker: "E2E-READER-1", reader: true },
} as const;
export type ImageName = keyof typeof IMAGES;

/**
 * The ltspfile.ts entry of one image. Everything that decides the squashed image is the same in
 * every case (so the prebuilt one is reused); `boot` and a changed `marker` are the case's own.
 */
export function imageEntry(name: ImageName, fixture: string, opts: { boot?: string; marker?: string } = {}): string {
  const image = IMAGES[name];
  const fields = [
    `source: ${JSON.stringify(fixture)}`,
    `compression: "zstd:1"`,
    "ionice: []",
    // The fixture has no accounts or keys of a real server to remove.
    "cleanup: false",
    `customize: [markerStep(${JSON.stringify(opts.marker ?? image.marker)}, ${image.reader})]`,
  ];
  if (opts.boot) fields.push(`boot: ${opts.boot}`);
  return `${name}: { ${fields.join(", ")} }`;
}

const LTSPFILE_IMPORTS = `import { defineConfig } from "ltsp-make";\nimport { markerStep } from ${JSON.stringify(path.join(REPO, "test/e2e/image-steps.ts"))};\n`;

/** Everything a change of which would change the prebuilt images or ltsp-make's recorded state. */
function prebuiltKey(fixture: string, ltspfile: string): string {
  const files = [path.join(REPO, "package.json"), path.join(REPO, "test/e2e/image-steps.ts")];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".ts") || entry.name.endsWith(".js")) files.push(full);
    }
  };
  for (const dir of ["src", "tasks", "bin"]) walk(path.join(REPO, dir));
  const hash = createHash("sha256").update(fixture).update(String(fs.statSync(`${fixture}.complete`, { throwIfNoEntry: false })?.mtimeMs ?? 0)).update(ltspfile);
  for (const file of files.sort()) hash.update(file).update(fs.readFileSync(file));
  return hash.digest("hex").slice(0, 16);
}

/** Runs the real CLI on a config file with the given directories. */
async function runCli(configPath: string, dirs: { cache: string; base: string; tftp: string; home: string; etc: string }, targets: string[] = []): Promise<string> {
  const result = await exec(
    "node",
    [path.join(REPO, "bin/ltsp-make.js"), "--config", configPath, "--cache-dir", dirs.cache, "--base-dir", dirs.base, "--tftp-dir", dirs.tftp, "--home-dir", dirs.home, "--etc-dir", dirs.etc, ...targets],
    { okExitCodes: [0, 1, 2] },
  );
  if (result.exitCode !== 0) {
    throw new Error(`ltsp-make failed (exit ${result.exitCode}):\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-3000)}`);
  }
  return result.stdout;
}

/**
 * The images of IMAGES, squashed once per fixture and ltsp-make version by ltsp-make itself into
 * /var/cache/ltsp-make-fixtures/e2e-KEY (base/, tftp/, cache/), shared by the cases: each one
 * copies the recorded state and links the images, so its own `ltsp-make` run finds them up to date.
 */
export async function prebuiltImages(): Promise<{ dir: string; fixture: string }> {
  const fixture = await debianFixture();
  const cacheRoot = path.dirname(fixture);
  const ltspfile = `${LTSPFILE_IMPORTS}export default defineConfig({
  discover: false,
  images: { ${(Object.keys(IMAGES) as ImageName[]).map((name) => imageEntry(name, fixture)).join(",\n    ")} },
  nfs: { home: false },
});
`;
  const dir = path.join(cacheRoot, `e2e-${prebuiltKey(fixture, ltspfile)}`);
  if (fs.existsSync(`${dir}.complete`)) return { dir, fixture };
  const release = await lockDir(path.join(cacheRoot, ".e2e-lock"));
  try {
    // Another case may have built it while this one waited.
    if (fs.existsSync(`${dir}.complete`)) return { dir, fixture };
    // Older sets (another fixture or ltsp-make version) are no longer used, unless a run that
    // started before the code changed may still be copying from them.
    for (const name of fs.readdirSync(cacheRoot)) {
      const old = path.join(cacheRoot, name);
      if (name.startsWith("e2e-") && Date.now() - fs.statSync(old).mtimeMs > 3_600_000) fs.rmSync(old, { recursive: true, force: true });
    }
    const dirs = { cache: `${dir}/cache`, base: `${dir}/base`, tftp: `${dir}/tftp`, home: `${dir}/home`, etc: `${dir}/etc` };
    for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true });
    writeServerEtc(dirs.etc);
    const configPath = path.join(dir, "ltspfile.ts");
    fs.writeFileSync(configPath, ltspfile);
    const started = Date.now();
    // One image per run: images of one source each lock its package database while mounted.
    for (const name of Object.keys(IMAGES)) await runCli(configPath, dirs, [`image:${name}`]);
    await runCli(configPath, dirs);
    console.log(`e2e: built the shared images in ${((Date.now() - started) / 1000).toFixed(1)} s (${dir})`);
    fs.writeFileSync(`${dir}.complete`, "");
    return { dir, fixture };
  } finally {
    release();
  }
}

/** A lock directory holding its owner's PID; a lock whose owner is gone is taken over. */
async function lockDir(lock: string): Promise<() => void> {
  const deadline = Date.now() + 900_000;
  for (;;) {
    try {
      fs.mkdirSync(lock);
      fs.writeFileSync(path.join(lock, "pid"), String(process.pid));
      return () => fs.rmSync(lock, { recursive: true, force: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    const owner = Number(fs.readFileSync(path.join(lock, "pid"), { encoding: "utf8", flag: "a+" }).trim());
    if (Number.isInteger(owner) && owner > 0 && !isAlive(owner)) {
      fs.rmSync(lock, { recursive: true, force: true });
      continue;
    }
    if (Date.now() > deadline) throw new Error(`${lock} is still held by process ${owner}: remove it if that process is not an e2e test.`);
    await sleep(1000);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The server's own account files and settings that ltsp-make reads from the etc dir. */
function writeServerEtc(etcDir: string): void {
  for (const dir of [etcDir, path.join(etcDir, "ltsp"), path.join(etcDir, "ssh")]) fs.mkdirSync(dir, { recursive: true });
  const etc = (name: string, text: string) => fs.writeFileSync(path.join(etcDir, name), text);
  etc("passwd", "root:x:0:0:root:/root:/bin/bash\nteacher:x:1000:1000:Teacher:/home/teacher:/bin/bash\n");
  etc("group", "root:x:0:\nteacher:x:1000:\n");
  etc("login.defs", "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n");
  etc("resolv.conf", `nameserver ${SERVER_IP}\n`);
  etc("ltsp/ltsp.conf", "[clients]\n");
  etc("ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE root@e2e\n");
}

export interface Client {
  mac: string;
  child: ChildProcess;
  serialLog: string;
  started: number;
  timeline: string[];
  seenStages: Set<string>;
}

interface Daemon {
  name: string;
  child: ChildProcess;
}

export interface BootResult {
  seconds: number;
  serial: string;
  /** When each boot stage first showed on the serial log (seconds after QEMU started). */
  timeline: string[];
}

/** One test's sandbox. Call cleanup() in afterEach/finally: it is safe to call at any stage. */
export class NetbootSandbox {
  readonly dir: string;
  readonly ns: string;
  readonly baseDir: string;
  readonly tftpDir: string;
  readonly homeDir: string;
  readonly etcDir: string;
  readonly cacheDir: string;
  readonly runDir: string;
  private daemons: Daemon[] = [];
  /** Processes started by a daemon's wrapper, known only by their pid files. */
  private pidFiles: string[] = [];
  private nsCreated = false;
  private fixture: string | undefined;

  constructor(label: string) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-"));
    this.ns = `ltspe2e-${label}-${process.pid}`.slice(0, 40);
    this.baseDir = path.join(this.dir, "srv/ltsp");
    this.tftpDir = path.join(this.dir, "srv/tftp");
    this.homeDir = path.join(this.dir, "home");
    this.etcDir = path.join(this.dir, "etc");
    this.cacheDir = path.join(this.dir, "cache");
    this.runDir = path.join(this.dir, "run");
    for (const dir of [this.baseDir, this.tftpDir, this.homeDir, this.cacheDir, this.runDir, path.join(this.etcDir, "ltsp"), path.join(this.etcDir, "ssh")]) {
      fs.mkdirSync(dir, { recursive: true });
    }
    // dnsmasq drops privileges: the TFTP tree must be reachable by everyone.
    fs.chmodSync(this.dir, 0o755);
    writeServerEtc(this.etcDir);
  }

  /**
   * Starts from the shared prebuilt images: ltsp-make's recorded state is copied and the images
   * linked (never changed in place: a rebuild publishes a new generation file), so this case's
   * own `ltsp-make` run only renders its configs. Returns the fixture path for imageEntry().
   */
  async usePrebuiltImages(): Promise<string> {
    const { dir, fixture } = await prebuiltImages();
    this.fixture = fixture;
    fs.rmSync(this.cacheDir, { recursive: true, force: true });
    await exec("cp", ["-a", `${dir}/cache`, this.cacheDir]);
    await exec("cp", ["-al", `${dir}/base/images`, `${this.baseDir}/images`]);
    await exec("cp", ["-a", `${dir}/tftp/ltsp`, `${this.tftpDir}/ltsp`]);
    return fixture;
  }

  /** The ltspfile.ts entry of a prebuilt image (after usePrebuiltImages()). */
  image(name: ImageName, opts: { boot?: string; marker?: string } = {}): string {
    if (!this.fixture) throw new Error("Call usePrebuiltImages() first.");
    return imageEntry(name, this.fixture, opts);
  }

  /**
   * Writes ltspfile.ts (the text after `export default defineConfig(`; markerStep is in scope) and
   * runs the real CLI. Returns its output and how long it took.
   */
  async runLtspMake(configBody: string): Promise<{ stdout: string; seconds: number }> {
    const configPath = path.join(this.dir, "ltspfile.ts");
    fs.writeFileSync(configPath, `${LTSPFILE_IMPORTS}export default defineConfig(${configBody});\n`);
    const started = Date.now();
    const stdout = await runCli(configPath, { cache: this.cacheDir, base: this.baseDir, tftp: this.tftpDir, home: this.homeDir, etc: this.etcDir });
    return { stdout, seconds: (Date.now() - started) / 1000 };
  }

  private async ipNs(...args: string[]): Promise<void> {
    await exec("ip", ["-n", this.ns, ...args]);
  }

  /** The namespace with a bridge (SERVER_IP/24 and a ULA for router advertisements) and two taps. */
  async createNetwork(): Promise<void> {
    await exec("ip", ["netns", "add", this.ns]);
    this.nsCreated = true;
    await this.ipNs("link", "set", "lo", "up");
    await this.ipNs("link", "add", BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0");
    await this.ipNs("addr", "add", `${SERVER_IP}/24`, "dev", BRIDGE);
    await this.ipNs("addr", "add", "fd67::1/64", "dev", BRIDGE, "nodad");
    await this.ipNs("link", "set", BRIDGE, "up");
    for (const tap of TAPS) {
      await this.ipNs("tuntap", "add", "dev", tap, "mode", "tap");
      await this.ipNs("link", "set", tap, "master", BRIDGE);
      await this.ipNs("link", "set", tap, "up");
    }
  }

  private startDaemon(name: string, args: string[]): ChildProcess {
    const log = fs.openSync(path.join(this.runDir, `${name}.out`), "a");
    // `ip netns exec` execs the command, so the child's PID is the daemon's own.
    const child = spawn("ip", ["netns", "exec", this.ns, ...args], { stdio: ["ignore", log, log] });
    fs.closeSync(log);
    this.daemons.push({ name, child });
    return child;
  }

  /** dnsmasq from the generated config, plus test-only settings (RA, leases, pid and log files). */
  startDnsmasq(): void {
    const generated = path.join(this.etcDir, "dnsmasq.d/ltsp-dnsmasq.conf");
    if (!fs.existsSync(generated)) throw new Error(`ltsp-make did not write ${generated}`);
    const extra = path.join(this.runDir, "dnsmasq-test.conf");
    fs.writeFileSync(
      extra,
      [
        // Router advertisements, so that iPXE's IPv6 autoconfiguration ends at once.
        "enable-ra",
        "dhcp-range=fd67::,ra-only,64",
        `ra-param=${BRIDGE},60,0`,
        "dhcp-authoritative",
        `dhcp-leasefile=${path.join(this.runDir, "dnsmasq.leases")}`,
        "",
      ].join("\n"),
    );
    this.startDaemon("dnsmasq", [
      "dnsmasq",
      `--conf-file=${generated}`,
      `--conf-file=${extra}`,
      "--keep-in-foreground",
      `--pid-file=${path.join(this.runDir, "dnsmasq.pid")}`,
      `--log-facility=${this.dnsmasqLog}`,
    ]);
  }

  get dnsmasqLog(): string {
    return path.join(this.runDir, "dnsmasq.log");
  }

  /** nbd-server in the foreground from the generated config. */
  startNbdServer(): void {
    const generated = path.join(this.etcDir, "nbd-server/ltsp-make.conf");
    if (!fs.existsSync(generated)) throw new Error(`ltsp-make did not write ${generated}`);
    this.startDaemon("nbd-server", ["nbd-server", "-C", generated, "-d"]);
  }

  /** Waits until the namespace has listeners on all these ports (e.g. "udp:67", "tcp:10809"). */
  async waitForPorts(ports: string[], timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const d of this.daemons) {
        if (d.child.exitCode !== null) throw new Error(`${d.name} exited with ${d.child.exitCode}:\n${this.readTail(path.join(this.runDir, `${d.name}.out`), 2000)}\n${this.readTail(this.dnsmasqLog, 2000)}`);
      }
      const result = await exec("ip", ["netns", "exec", this.ns, "ss", "-lntuH"]);
      const listening = ports.filter((p) => {
        const [proto, port] = p.split(":");
        return result.stdout.split("\n").some((line) => line.startsWith(proto ?? "") && new RegExp(`:${port}\\s`).test(line));
      });
      if (listening.length === ports.length) return;
      if (Date.now() > deadline) throw new Error(`Servers did not listen on ${ports.join(", ")} within ${timeoutMs} ms:\n${result.stdout}`);
      await sleep(100);
    }
  }

  readTail(file: string, chars: number): string {
    try {
      return fs.readFileSync(file, "latin1").slice(-chars);
    } catch {
      return `(${file} does not exist)`;
    }
  }

  /** Starts a QEMU client that boots from the network on one of the taps. */
  startClient(opts: { mac: string; tap?: (typeof TAPS)[number]; uefi?: boolean }): Client {
    const id = opts.mac.replaceAll(":", "");
    const serialLog = path.join(this.runDir, `serial-${id}.log`);
    const args = ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "1", "-nographic", "-monitor", "none", "-no-reboot", "-serial", `file:${serialLog}`, "-boot", "n",
      "-netdev", `tap,id=n0,ifname=${opts.tap ?? TAPS[0]},script=no,downscript=no`];
    if (opts.uefi) {
      const vars = path.join(this.runDir, `OVMF_VARS-${id}.fd`);
      fs.copyFileSync(OVMF_VARS, vars);
      // romfile= leaves out the iPXE ROM, so OVMF's own PXE client loads snponly.efi.
      args.push("-machine", "q35", "-drive", `if=pflash,format=raw,readonly=on,file=${OVMF_CODE}`, "-drive", `if=pflash,format=raw,file=${vars}`,
        "-device", `virtio-net-pci,netdev=n0,mac=${opts.mac},romfile=`);
    } else {
      args.push("-device", `virtio-net-pci,netdev=n0,mac=${opts.mac}`);
    }
    const started = Date.now();
    const child = this.startDaemon(`qemu-${id}`, args);
    return { mac: opts.mac, child, serialLog, started, timeline: [], seenStages: new Set() };
  }

  /** The client's serial log so far. */
  serial(client: Client): string {
    return fs.existsSync(client.serialLog) ? fs.readFileSync(client.serialLog, "latin1") : "";
  }

  /**
   * Waits until `done` holds for the client's serial log, recording the boot stages on the way.
   * Fails early on a failure line or when QEMU exits; the error carries the logs.
   */
  async waitForSerial(client: Client, what: string, done: (serial: string) => boolean, timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const serial = this.serial(client);
      for (const stage of STAGES) {
        if (client.seenStages.has(stage.name) || !stage.pattern.test(serial)) continue;
        client.seenStages.add(stage.name);
        client.timeline.push(`${((Date.now() - client.started) / 1000).toFixed(1)}s ${stage.name}`);
      }
      if (done(serial)) return serial;
      const failure = FAILURE_PATTERNS.find((re) => re.test(serial));
      const exited = client.child.exitCode !== null || client.child.signalCode !== null;
      if (failure || exited || Date.now() > deadline) {
        const why = failure ? `the serial log shows ${failure}` : exited ? `QEMU exited (${client.child.exitCode ?? client.child.signalCode})` : `no ${what} within ${timeoutMs / 1000} s`;
        throw new Error(
          `Netboot of ${client.mac} failed: ${why}.\n--- serial log tail ---\n${serial.slice(-4000)}\n--- dnsmasq log tail ---\n${this.readTail(this.dnsmasqLog, 3000)}\n--- qemu output ---\n${this.readTail(path.join(this.runDir, `qemu-${client.mac.replaceAll(":", "")}.out`), 1000)}`,
        );
      }
      await sleep(250);
    }
  }

  /** Stops a client at once (its guest is not shut down). */
  async stopClient(client: Client): Promise<void> {
    if (client.child.exitCode !== null || client.child.signalCode !== null) return;
    client.child.kill("SIGKILL");
    await waitForExit(client.child, 5000);
  }

  /**
   * Boots a QEMU client from the network and waits for `E2E-RESULT: OK MARKER` on its serial log,
   * then for the guest to power off.
   */
  async boot(opts: { mac: string; marker: string; uefi?: boolean; tap?: (typeof TAPS)[number]; timeoutMs: number }): Promise<BootResult> {
    const client = this.startClient(opts);
    const expected = `E2E-RESULT: OK ${opts.marker} `;
    const serial = await this.waitForSerial(client, `marker "${opts.marker}"`, (text) => text.includes(expected), opts.timeoutMs);
    const seconds = (Date.now() - client.started) / 1000;
    if (process.env.E2E_KEEP_LOGS) fs.copyFileSync(client.serialLog, path.join(os.tmpdir(), `e2e-${path.basename(client.serialLog)}`));
    // The guest powers itself off; give it a moment so QEMU leaves on its own.
    if (!(await waitForExit(client.child, 15_000))) await this.stopClient(client);
    return { seconds, serial, timeline: client.timeline };
  }

  /**
   * A DHCP server of the site's own (not LTSP's): a second dnsmasq that only leases addresses
   * from this range, with no boot options, so LTSP's dnsmasq must answer PXE as proxyDHCP.
   */
  startSiteDhcpServer(start: string, end: string): void {
    const conf = path.join(this.runDir, "site-dhcp.conf");
    fs.writeFileSync(
      conf,
      [
        "port=0",
        `interface=${BRIDGE}`,
        "bind-interfaces",
        `dhcp-range=${start},${end},255.255.255.0,1h`,
        "dhcp-authoritative",
        "log-dhcp",
        `dhcp-leasefile=${path.join(this.runDir, "site-dhcp.leases")}`,
        "",
      ].join("\n"),
    );
    this.startDaemon("site-dhcp", [
      "dnsmasq",
      `--conf-file=${conf}`,
      "--keep-in-foreground",
      `--pid-file=${path.join(this.runDir, "site-dhcp.pid")}`,
      `--log-facility=${this.siteDhcpLog}`,
    ]);
  }

  get siteDhcpLog(): string {
    return path.join(this.runDir, "site-dhcp.log");
  }

  /** Kills everything this sandbox started (by PID), deletes the namespace and the temp dir. */
  async cleanup(): Promise<void> {
    for (const d of this.daemons.reverse()) {
      if (d.child.exitCode !== null || d.child.signalCode !== null) continue;
      d.child.kill("SIGTERM");
      // nbd-server ignores TERM while a client connection is open.
      if (!(await waitForExit(d.child, d.name === "nbd-server" ? 1000 : 5000))) {
        d.child.kill("SIGKILL");
        await waitForExit(d.child, 5000);
      }
    }
    this.daemons = [];
    for (const file of this.pidFiles) {
      const pid = Number(this.readTail(file, 100).trim());
      if (Number.isInteger(pid) && pid > 1) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
    this.pidFiles = [];
    if (this.nsCreated) {
      await exec("ip", ["netns", "del", this.ns], { okExitCodes: [0, 1] });
      this.nsCreated = false;
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /**
   * nfs-ganesha (NFSv3 + MOUNT for klibc's nfsmount, and v4) exporting BASE read-only, with rpcbind,
   * both in a private mount namespace whose /run is a tmpfs, so nothing of theirs shows on the host.
   */
  startNfsGanesha(): void {
    const conf = path.join(this.runDir, "ganesha.conf");
    const recovery = path.join(this.runDir, "ganesha-recovery");
    fs.mkdirSync(recovery, { recursive: true });
    fs.writeFileSync(
      conf,
      `NFS_CORE_PARAM { Protocols = 3, 4; NFS_Port = 2049; MNT_Port = 20048; Bind_addr = ${SERVER_IP};
  Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = Mount; }
NFSv4 { Graceless = true; Lease_Lifetime = 10; Minor_Versions = 1, 2; RecoveryBackend = fs;
  RecoveryRoot = "${recovery}"; Only_Numeric_Owners = true; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT { Export_Id = 1; Path = "${this.baseDir}"; Pseudo = "${this.baseDir}"; Access_Type = RO;
  Squash = No_Root_Squash; SecType = sys; Protocols = 3, 4; Transports = TCP, UDP; FSAL { Name = VFS; } }
`,
    );
    this.pidFiles.push(path.join(this.runDir, "rpcbind.pid"));
    // Enter the namespace first: `ip netns exec` needs the host's /run/netns.
    const script = [
      "set -e",
      "mount -t tmpfs tmpfs /run",
      `rpcbind -f & echo $! > ${path.join(this.runDir, "rpcbind.pid")}`,
      // ganesha registers with rpcbind as it starts.
      "for i in $(seq 100); do [ -S /run/rpcbind.sock ] && break; sleep 0.1; done",
      `exec ganesha.nfsd -F -f ${conf} -L ${path.join(this.runDir, "ganesha.log")} -p /run/ganesha.pid -N NIV_EVENT`,
    ].join("\n");
    this.startDaemon("ganesha", ["unshare", "-m", "--propagation", "private", "bash", "-c", script]);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function waitForExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
