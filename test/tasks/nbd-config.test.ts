import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { standaloneExec } from "../../src/exec.ts";
import {
  DEFAULT_NBD_ALLOW_LIST,
  renderNbdAllowList,
  renderNbdServerConfig,
  renderNbdServerConfigsPerPort,
  type NbdServerOptions,
} from "../../tasks/lib/nbd-config.ts";

const exec = standaloneExec();
let dir: string;

interface Server {
  pid: number;
  done: Promise<unknown>;
}
let servers: Server[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-"));
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stop(server: Server): Promise<void> {
  if (alive(server.pid)) {
    process.kill(server.pid, "SIGTERM");
    const deadline = Date.now() + 2000;
    while (alive(server.pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    if (alive(server.pid)) process.kill(server.pid, "SIGKILL");
  }
  await server.done;
}

afterEach(async () => {
  const started = servers;
  servers = [];
  for (const server of started) await stop(server);
  fs.rmSync(dir, { recursive: true, force: true });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

/** Starts `nbd-server -C CONFIG -d` (foreground) and waits until it accepts connections. */
async function startNbdServer(configText: string, port: number): Promise<Server> {
  const config = path.join(dir, `nbd-server-${port}.conf`);
  fs.writeFileSync(config, configText);
  const output: string[] = [];
  let announce: (pid: number) => void = () => {};
  const pidLine = new Promise<number>((resolve) => (announce = resolve));
  // The shell prints its PID, then becomes nbd-server, which keeps that PID.
  const done = exec("sh", ["-c", 'echo "$$"; exec nbd-server -C "$1" -d', "sh", config], {
    onLine: (line, stream) => {
      if (stream === "stdout" && /^[0-9]+$/.test(line)) announce(Number(line));
      else output.push(line);
    },
  }).catch((error: unknown) => error);
  const pid = await Promise.race([pidLine, done.then(() => 0)]);
  if (pid === 0) throw new Error(`nbd-server did not start:\n${output.join("\n")}`);
  const server = { pid, done };
  servers.push(server);
  // Wait with real NBD clients: in foreground mode nbd-server stops serving after a client that
  // connects and hangs up without the NBD handshake, so a bare TCP probe would break it.
  const deadline = Date.now() + 5000;
  for (;;) {
    const { exitCode } = await exec("nbd-client", ["-l", "127.0.0.1", "-p", String(port)], { okExitCodes: [0, 1] });
    if (exitCode === 0) return server;
    if (!alive(pid) || Date.now() > deadline) throw new Error(`nbd-server is not serving on port ${port}:\n${output.join("\n")}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function listExports(port: number): Promise<string[]> {
  const { stdout } = await exec("nbd-client", ["-l", "127.0.0.1", "-p", String(port)]);
  return stdout
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("Negotiation"));
}

/** Export names and whether the server flags them read-only, from `qemu-nbd --list`. */
async function exportFlags(port: number): Promise<Map<string, boolean>> {
  const { stdout } = await exec("qemu-nbd", ["--list", "-b", "127.0.0.1", "-p", String(port)]);
  const flags = new Map<string, boolean>();
  let current: string | undefined;
  for (const line of stdout.split("\n")) {
    const name = /^\s*export: '(.*)'$/.exec(line)?.[1];
    if (name !== undefined) current = name;
    const flagText = /^\s*flags: .*\((.*)\)/.exec(line)?.[1];
    if (flagText !== undefined && current !== undefined) flags.set(current, flagText.split(/\s+/).includes("readonly"));
  }
  return flags;
}

function smallImages(): { alpha: string; beta: string } {
  const alpha = path.join(dir, "alpha.img");
  const beta = path.join(dir, "beta.img");
  fs.writeFileSync(alpha, Buffer.alloc(64 * 1024, 1));
  fs.writeFileSync(beta, Buffer.alloc(128 * 1024, 2));
  return { alpha, beta };
}

describe("renderNbdServerConfig with a real nbd-server", () => {
  it("serves two images as named read-only exports that nbd-client lists", async () => {
    const files = smallImages();
    const port = await freePort();
    const allow = path.join(dir, "nbd-server.allow");
    fs.writeFileSync(allow, renderNbdAllowList(["127.0.0.1", ...DEFAULT_NBD_ALLOW_LIST]));
    const config = renderNbdServerConfig({
      exports: [
        { image: "beta", file: files.beta, exportName: "ltsp/beta" },
        { image: "alpha", file: files.alpha },
      ],
      listenAddresses: ["127.0.0.1"],
      port,
      authFile: allow,
    });
    await startNbdServer(config, port);
    expect((await listExports(port)).sort()).toEqual(["alpha", "ltsp/beta"]);
    expect(await exportFlags(port)).toEqual(new Map([["alpha", true], ["ltsp/beta", true]]));
  });

  it("runs one nbd-server per port in the per-port layout", async () => {
    const files = smallImages();
    const [portA, portB] = [await freePort(), await freePort()];
    if (portA === portB) throw new Error("got the same free port twice");
    const configs = renderNbdServerConfigsPerPort({
      exports: [
        { image: "beta", file: files.beta, port: portB },
        { image: "alpha", file: files.alpha, port: portA },
      ],
      listenAddresses: ["127.0.0.1"],
    });
    expect(configs.map((entry) => [entry.image, entry.exportName, entry.port])).toEqual([
      ["alpha", "alpha", portA],
      ["beta", "beta", portB],
    ]);
    for (const entry of configs) await startNbdServer(entry.config, entry.port);
    expect(await listExports(portA)).toEqual(["alpha"]);
    expect(await listExports(portB)).toEqual(["beta"]);
  });
});

describe("renderNbdServerConfig text", () => {
  it("writes [generic] first with the defaults, then one section per image", () => {
    const text = renderNbdServerConfig({ exports: [{ image: "bookworm" }, { image: "bionic", authFile: "/etc/ltsp/nbd-server.allow" }] });
    const body = text.split("\n").filter((line) => line !== "" && !line.startsWith("#"));
    expect(body).toEqual([
      "[generic]",
      "port = 10809",
      "allowlist = true",
      "[bionic]",
      "exportname = /srv/ltsp/images/bionic.img",
      "readonly = true",
      "authfile = /etc/ltsp/nbd-server.allow",
      "[bookworm]",
      "exportname = /srv/ltsp/images/bookworm.img",
      "readonly = true",
    ]);
  });

  it("writes user, group, listen addresses and includedir when set", () => {
    const text = renderNbdServerConfig({
      baseDir: "/opt/ltsp/",
      exports: [{ image: "x" }],
      listenAddresses: ["10.0.0.1", "fd00::1"],
      user: "nbd",
      group: "nbd",
      includeDir: "/etc/nbd-server/conf.d",
      allowList: false,
    });
    expect(text).toContain("[generic]\nport = 10809\nlistenaddr = 10.0.0.1,fd00::1\nallowlist = false\nuser = nbd\ngroup = nbd\nincludedir = /etc/nbd-server/conf.d\n");
    expect(text).toContain("exportname = /opt/ltsp/images/x.img\n");
  });

  it("renders the allow list", () => {
    expect(renderNbdAllowList().split("\n").filter((line) => line && !line.startsWith("#"))).toEqual([...DEFAULT_NBD_ALLOW_LIST]);
  });

  const cases: Array<[string, () => unknown, RegExp]> = [
    ["a bracket in an export name", () => renderNbdServerConfig({ exports: [{ image: "a", exportName: "a]\n[b" }] }), /nbd\.exports\.a\.exportName .*line break/],
    ["a section header as export name", () => renderNbdServerConfig({ exports: [{ image: "a", exportName: "[generic]" }] }), /nbd\.exports\.a\.exportName .*"\["/],
    ["= in an export name", () => renderNbdServerConfig({ exports: [{ image: "a", exportName: "a=b" }] }), /nbd\.exports\.a\.exportName .*"="/],
    ["the generic section's name", () => renderNbdServerConfig({ exports: [{ image: "a", exportName: "Generic" }] }), /\[generic\]/],
    ["an option-like export name", () => renderNbdServerConfig({ exports: [{ image: "a", exportName: "-swap" }] }), /nbd-client would read as an option/],
    ["a newline in a file path", () => renderNbdServerConfig({ exports: [{ image: "a", file: "/srv/a.img\nreadonly = false" }] }), /nbd\.exports\.a\.file .*line break/],
    ["a relative file path", () => renderNbdServerConfig({ exports: [{ image: "a", file: "a.img" }] }), /nbd\.exports\.a\.file .*absolute/],
    ["a backslash in a path", () => renderNbdServerConfig({ exports: [{ image: "a", file: "/srv/a\\n.img" }] }), /nbd\.exports\.a\.file .*escape/],
    ["trailing whitespace in a path", () => renderNbdServerConfig({ exports: [{ image: "a", file: "/srv/a.img " }] }), /nbd\.exports\.a\.file .*whitespace/],
    ["a bad image name", () => renderNbdServerConfig({ exports: [{ image: "a b" }] }), /nbd\.exports\[0\]\.image "a b"/],
    ["a bad listen address", () => renderNbdServerConfig({ exports: [{ image: "a" }], listenAddresses: ["0.0.0.0,evil"] }), /nbd\.listenAddresses\[0\]/],
    ["a user with a newline", () => renderNbdServerConfig({ exports: [{ image: "a" }], user: "nbd\n[x]" }), /nbd\.user .*line break/],
    ["two images with one export name", () => renderNbdServerConfig({ exports: [{ image: "a", exportName: "x" }, { image: "b", exportName: "x" }] }), /nbd\.exports\.b\.exportName "x": is also the export name of image "a"/],
    ["no exports", () => renderNbdServerConfig({ exports: [] }), /nbd\.exports .*empty/],
    ["a per-image port in the single config", () => renderNbdServerConfig({ exports: [{ image: "a", port: 2000 }] }), /nbd\.exports\.a\.port 2000/],
    ["a missing port in the per-port layout", () => renderNbdServerConfigsPerPort({ exports: [{ image: "a" }] }), /nbd\.exports\.a\.port .*required/],
    ["a shared port in the per-port layout", () => renderNbdServerConfigsPerPort({ exports: [{ image: "a", port: 2000 }, { image: "b", port: 2000 }] }), /nbd\.exports\.b\.port 2000: is also the port of image "a"/],
    ["a bad allow list entry", () => renderNbdAllowList(["10.0.0.0/33"]), /nbd\.allowList\[0\]/],
    ["a newline in the allow list", () => renderNbdAllowList(["10.0.0.0/8\n0.0.0.0/0"]), /nbd\.allowList\[0\] .*line break/],
    ["an empty allow list", () => renderNbdAllowList([]), /nbd\.allowList .*no client/],
  ];
  for (const [what, render, message] of cases) {
    it(`rejects ${what}`, () => {
      expect(render).toThrow(message);
    });
  }

  it("is deterministic whatever the input order", () => {
    const options: NbdServerOptions = { exports: [{ image: "b" }, { image: "a" }, { image: "c" }] };
    expect(renderNbdServerConfig(options)).toBe(renderNbdServerConfig({ exports: [...options.exports].reverse() }));
  });
});
