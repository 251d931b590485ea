// End-to-end netboot harness: a private network namespace with a bridge and a tap, ltsp-make run
// through its real CLI, dnsmasq / nbd-server / nfs-ganesha started from the generated configs,
// and a QEMU (TCG) client booted from the network until the image's marker shows on its serial log.
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { standaloneExec } from "../../src/exec.ts";

const exec = standaloneExec();
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

export const SUBNET_PREFIX = "192.168.67";
export const SERVER_IP = `${SUBNET_PREFIX}.1`;
export const BRIDGE = "br0";
export const TAP = "tap0";
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

/** Fails (never skips) when something the e2e tests need is not on this machine. */
export async function requirePrerequisites(extra: string[] = []): Promise<void> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push("root (the tests create network namespaces)");
  const tools = ["ip", "dnsmasq", "nbd-server", "qemu-system-x86_64", ...extra];
  for (const tool of tools) {
    const found = await exec("sh", ["-c", `command -v ${tool}`], { okExitCodes: [0, 1, 127] });
    if (found.exitCode !== 0) missing.push(`the command ${tool}`);
  }
  for (const file of ["/dev/net/tun", "/usr/lib/ipxe/qemu/pxe-virtio.rom"]) {
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
    this.writeServerEtc();
  }

  /** The server's own account files and settings that ltsp-make reads from the etc dir. */
  private writeServerEtc(): void {
    const etc = (name: string, text: string) => fs.writeFileSync(path.join(this.etcDir, name), text);
    etc("passwd", "root:x:0:0:root:/root:/bin/bash\nteacher:x:1000:1000:Teacher:/home/teacher:/bin/bash\n");
    etc("group", "root:x:0:\nteacher:x:1000:\n");
    etc("login.defs", "UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n");
    etc("resolv.conf", `nameserver ${SERVER_IP}\n`);
    etc("ltsp/ltsp.conf", "[clients]\n");
    etc("ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE2eE root@e2e\n");
  }

  /**
   * Copies the Debian fixture to BASE/NAME and adds a unit that prints `E2E-RESULT: OK MARKER ...`
   * on the serial port once the LTSP client reached multi-user, then powers off.
   */
  async addDebianChroot(name: string, marker: string): Promise<void> {
    const fixture = await debianFixture();
    const root = path.join(this.baseDir, name);
    await exec("cp", ["-a", fixture, root]);
    fs.writeFileSync(path.join(root, "etc/e2e-marker"), `${marker}\n`);
    const unit = [
      "[Unit]",
      "Description=Report a finished netboot on the serial port",
      "After=multi-user.target ltsp.service",
      "",
      "[Service]",
      "Type=oneshot",
      // `ltsp=` proves LTSP's client init ran; `root=` shows what the root is mounted from.
      "ExecStart=/bin/sh -c 'echo \"E2E-RESULT: OK $(cat /etc/e2e-marker) root=$(findmnt -no FSTYPE /) ltsp=$(test -d /run/ltsp && echo yes || echo no)\" >/dev/ttyS0'",
      "ExecStartPost=/bin/systemctl --no-block poweroff",
      "",
      "[Install]",
      "WantedBy=multi-user.target",
      "",
    ].join("\n");
    fs.writeFileSync(path.join(root, "etc/systemd/system/e2e-marker.service"), unit);
    const wants = path.join(root, "etc/systemd/system/multi-user.target.wants");
    fs.mkdirSync(wants, { recursive: true });
    fs.symlinkSync("/etc/systemd/system/e2e-marker.service", path.join(wants, "e2e-marker.service"));
  }

  /** Writes ltspfile.ts (the text after `export default defineConfig(`) and runs the real CLI. */
  async runLtspMake(configBody: string): Promise<void> {
    const configPath = path.join(this.dir, "ltspfile.ts");
    fs.writeFileSync(configPath, `import { defineConfig } from "ltsp-make";\nexport default defineConfig(${configBody});\n`);
    const result = await exec(
      "node",
      [
        path.join(REPO, "bin/ltsp-make.js"),
        "--config", configPath,
        "--cache-dir", this.cacheDir,
        "--base-dir", this.baseDir,
        "--tftp-dir", this.tftpDir,
        "--home-dir", this.homeDir,
        "--etc-dir", this.etcDir,
      ],
      { okExitCodes: [0, 1, 2] },
    );
    if (result.exitCode !== 0) {
      throw new Error(`ltsp-make failed (exit ${result.exitCode}):\n${result.stdout.slice(-3000)}\n${result.stderr.slice(-3000)}`);
    }
  }

  private async ipNs(...args: string[]): Promise<void> {
    await exec("ip", ["-n", this.ns, ...args]);
  }

  /** The namespace with a bridge (SERVER_IP/24 and a ULA for router advertisements) and one tap. */
  async createNetwork(): Promise<void> {
    await exec("ip", ["netns", "add", this.ns]);
    this.nsCreated = true;
    await this.ipNs("link", "set", "lo", "up");
    await this.ipNs("link", "add", BRIDGE, "type", "bridge", "forward_delay", "0", "stp_state", "0");
    await this.ipNs("addr", "add", `${SERVER_IP}/24`, "dev", BRIDGE);
    await this.ipNs("addr", "add", "fd67::1/64", "dev", BRIDGE, "nodad");
    await this.ipNs("link", "set", BRIDGE, "up");
    await this.ipNs("tuntap", "add", "dev", TAP, "mode", "tap");
    await this.ipNs("link", "set", TAP, "master", BRIDGE);
    await this.ipNs("link", "set", TAP, "up");
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

  /**
   * Boots a QEMU client from the network and waits for `E2E-RESULT: OK MARKER` on its serial log.
   * On failure the error carries the serial tail and the dnsmasq log.
   */
  async boot(opts: { mac: string; marker: string; uefi?: boolean; timeoutMs: number }): Promise<BootResult> {
    const serialLog = path.join(this.runDir, `serial-${opts.mac.replaceAll(":", "")}.log`);
    const args = ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "1", "-nographic", "-monitor", "none", "-no-reboot", "-serial", `file:${serialLog}`, "-boot", "n",
      "-netdev", `tap,id=n0,ifname=${TAP},script=no,downscript=no`];
    if (opts.uefi) {
      const vars = path.join(this.runDir, "OVMF_VARS.fd");
      fs.copyFileSync(OVMF_VARS, vars);
      // romfile= leaves out the iPXE ROM, so OVMF's own PXE client loads snponly.efi.
      args.push("-machine", "q35", "-drive", `if=pflash,format=raw,readonly=on,file=${OVMF_CODE}`, "-drive", `if=pflash,format=raw,file=${vars}`,
        "-device", `virtio-net-pci,netdev=n0,mac=${opts.mac},romfile=`);
    } else {
      args.push("-device", `virtio-net-pci,netdev=n0,mac=${opts.mac}`);
    }
    const started = Date.now();
    const qemu = this.startDaemon("qemu", args);
    const expected = `E2E-RESULT: OK ${opts.marker}`;
    const deadline = started + opts.timeoutMs;
    let serial = "";
    const timeline: string[] = [];
    const seen = new Set<string>();
    for (;;) {
      serial = fs.existsSync(serialLog) ? fs.readFileSync(serialLog, "latin1") : "";
      for (const stage of STAGES) {
        if (seen.has(stage.name) || !stage.pattern.test(serial)) continue;
        seen.add(stage.name);
        timeline.push(`${((Date.now() - started) / 1000).toFixed(1)}s ${stage.name}`);
      }
      if (serial.includes(expected)) break;
      const failure = FAILURE_PATTERNS.find((re) => re.test(serial));
      const exited = qemu.exitCode !== null || qemu.signalCode !== null;
      if (failure || exited || Date.now() > deadline) {
        const why = failure ? `the serial log shows ${failure}` : exited ? `QEMU exited (${qemu.exitCode ?? qemu.signalCode})` : `no marker within ${opts.timeoutMs / 1000} s`;
        throw new Error(
          `Netboot failed: ${why}.\n--- serial log tail ---\n${serial.slice(-4000)}\n--- dnsmasq log tail ---\n${this.readTail(this.dnsmasqLog, 3000)}\n--- qemu output ---\n${this.readTail(path.join(this.runDir, "qemu.out"), 1000)}`,
        );
      }
      await sleep(250);
    }
    const seconds = (Date.now() - started) / 1000;
    if (process.env.E2E_KEEP_LOGS) fs.copyFileSync(serialLog, path.join(os.tmpdir(), `e2e-${path.basename(serialLog)}`));
    // The guest powers itself off; give it a moment so QEMU leaves on its own.
    await waitForExit(qemu, 15_000);
    return { seconds, serial, timeline };
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
