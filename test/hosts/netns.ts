// Hosts for split-deployment tests: each one a network namespace reached over a veth pair from
// this namespace, running its own sshd (key auth only, its own host key, listening only on the
// namespace's address), with its own roots in a directory of this machine.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";

export interface TestHost {
  name: string;
  netns: string;
  address: string;
  dir: string;
  baseDir: string;
  tftpDir: string;
  etcDir: string;
  identityFile: string;
  knownHosts: string;
  sshdPid(): number | undefined;
  startSshd(): Promise<void>;
  stopSshd(): Promise<void>;
}

function sh(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

function quietly(file: string, args: string[]): void {
  try {
    sh(file, args);
  } catch {
    // already gone
  }
}

async function waitForPort(address: string, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect({ host: address, port, timeout: 500 });
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
      socket.once("timeout", () => {
        socket.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`sshd on ${address}:${port} did not come up`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Creates hosts; `cleanup()` stops every sshd (by PID) and deletes the namespaces and links. */
export class TestHosts {
  readonly hosts: TestHost[] = [];
  private readonly children = new Map<string, ChildProcess>();
  private readonly namespaces: string[] = [];
  private readonly links: string[] = [];

  constructor(private readonly root: string) {}

  async add(name: string): Promise<TestHost> {
    const n = this.hosts.length + 1;
    const id = `${process.pid % 100000}${String.fromCharCode(96 + n)}`;
    const netns = `lmk-${id}`;
    const outside = `lmk${id}o`;
    const inside = `lmk${id}i`;
    const octet = ((process.pid % 80) * 3 + n) % 250;
    const address = `10.199.${octet}.2`;
    const dir = path.join(this.root, `host-${name}`);
    fs.mkdirSync(dir, { recursive: true });

    sh("ip", ["netns", "add", netns]);
    this.namespaces.push(netns);
    sh("ip", ["link", "add", outside, "type", "veth", "peer", "name", inside]);
    this.links.push(outside);
    sh("ip", ["link", "set", inside, "netns", netns]);
    sh("ip", ["addr", "add", `10.199.${octet}.1/24`, "dev", outside]);
    sh("ip", ["link", "set", outside, "up"]);
    sh("ip", ["netns", "exec", netns, "ip", "addr", "add", `${address}/24`, "dev", inside]);
    sh("ip", ["netns", "exec", netns, "ip", "link", "set", inside, "up"]);
    sh("ip", ["netns", "exec", netns, "ip", "link", "set", "lo", "up"]);

    sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "host_key")]);
    sh("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "client_key")]);
    fs.copyFileSync(path.join(dir, "client_key.pub"), path.join(dir, "authorized_keys"));
    const hostKey = fs.readFileSync(path.join(dir, "host_key.pub"), "utf8").trim().split(" ").slice(0, 2).join(" ");
    fs.writeFileSync(path.join(dir, "known_hosts"), `${address} ${hostKey}\n`);
    fs.writeFileSync(
      path.join(dir, "sshd_config"),
      [
        "Port 22",
        `ListenAddress ${address}`,
        `HostKey ${path.join(dir, "host_key")}`,
        `AuthorizedKeysFile ${path.join(dir, "authorized_keys")}`,
        `PidFile ${path.join(dir, "sshd.pid")}`,
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "MaxStartups 100",
        "MaxSessions 100",
        "LogLevel ERROR",
        "",
      ].join("\n"),
    );
    fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });

    const host: TestHost = {
      name,
      netns,
      address,
      dir,
      baseDir: path.join(dir, "srv", "ltsp"),
      tftpDir: path.join(dir, "srv", "tftp"),
      etcDir: path.join(dir, "etc"),
      identityFile: path.join(dir, "client_key"),
      knownHosts: path.join(dir, "known_hosts"),
      sshdPid: () => this.children.get(name)?.pid,
      startSshd: async () => {
        // `ip netns exec` execs sshd in place: the child's PID is sshd's.
        const child = spawn("ip", ["netns", "exec", netns, "/usr/sbin/sshd", "-D", "-e", "-f", path.join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
        let stderr = "";
        child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
        this.children.set(name, child);
        try {
          await waitForPort(address, 22);
        } catch (error) {
          throw new Error(`${(error as Error).message}: ${stderr}`);
        }
      },
      stopSshd: async () => {
        const child = this.children.get(name);
        this.children.delete(name);
        if (!child || child.exitCode !== null || child.signalCode !== null) return;
        const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
        child.kill("SIGTERM");
        await gone;
      },
    };
    for (const d of [host.baseDir, host.tftpDir, host.etcDir]) fs.mkdirSync(d, { recursive: true });
    await host.startSshd();
    this.hosts.push(host);
    return host;
  }

  async cleanup(): Promise<void> {
    for (const host of this.hosts) await host.stopSshd();
    for (const [, child] of this.children) if (child.pid) quietly("kill", ["-KILL", String(child.pid)]);
    for (const netns of this.namespaces.splice(0)) {
      // Connection handlers sshd forked live in the namespace too.
      let pids: string[] = [];
      try {
        pids = sh("ip", ["netns", "pids", netns]).split("\n").filter(Boolean);
      } catch {
        // no such namespace
      }
      for (const pid of pids) quietly("kill", ["-KILL", pid]);
      quietly("ip", ["netns", "delete", netns]);
    }
    for (const link of this.links.splice(0)) quietly("ip", ["link", "delete", link]);
  }
}
