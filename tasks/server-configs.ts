// `ltsp nfs`, `ltsp dnsmasq` and the per-image NBD exports as generated files: `plan` shows their
// diffs, and a run writes them atomically (dnsmasq's is checked with `dnsmasq --test` first).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { standaloneExec } from "../src/exec.ts";
import type { Roots, TaskDef } from "../src/types.ts";
import type { LtspConfig } from "./config.ts";
import { detectDnsServers, proxyRangesFromRoutes, renderDnsmasq } from "./lib/dnsmasq.ts";
import { renderNbdAllowList, renderNbdServerConfig, renderNbdServerConfigsPerPort, type NbdImageExport } from "./lib/nbd-config.ts";
import { renderNfsExports } from "./lib/nfs-exports.ts";
import type { ImagePlan } from "./images.ts";

export function nfsExportsPath(roots: Roots): string {
  return join(roots.etcDir, "exports.d", "ltsp-nfs.exports");
}

export function dnsmasqPath(roots: Roots): string {
  return join(roots.etcDir, "dnsmasq.d", "ltsp-dnsmasq.conf");
}

export function nbdConfigPath(roots: Roots, image?: string): string {
  return join(roots.etcDir, "nbd-server", image ? `ltsp-make-${image}.conf` : "ltsp-make.conf");
}

export function nfsTask(config: LtspConfig, roots: Roots): TaskDef {
  const path = nfsExportsPath(roots);
  const { enabled: _enabled, ...options } = config.nfs ?? {};
  const text = renderNfsExports({ ...options, baseDir: roots.baseDir, tftpDir: roots.tftpDir, homeDir: roots.homeDir });
  return { id: "nfs", title: "NFS exports", render: () => ({ [path]: text }), outputs: [path] };
}

function readText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return "";
  }
}

export function dnsmasqTask(config: LtspConfig, roots: Roots): TaskDef {
  const path = dnsmasqPath(roots);
  const { enabled: _enabled, proxyFromRoutes, ...options } = config.dnsmasq ?? {};
  const resolvConf = join(roots.etcDir, "resolv.conf");
  const useRoutes = proxyFromRoutes ?? (roots.etcDir === "/etc" && options.proxyRanges === undefined);
  // Values are checked now, so a bad ltspfile fails before anything runs.
  renderDnsmasq({ ...options, tftpDir: roots.tftpDir });
  return {
    id: "dnsmasq",
    title: "dnsmasq configuration",
    inputs: options.dnsServers ? [] : [{ file: resolvConf }],
    tools: [{ name: "dnsmasq", version: ["dnsmasq", "--version"] }],
    outputs: [path],
    render: async () => {
      let proxyRanges = options.proxyRanges;
      if (useRoutes) {
        const { stdout } = await standaloneExec()("ip", ["-j", "-4", "route", "show"]);
        proxyRanges = proxyRangesFromRoutes(JSON.parse(stdout || "[]"));
      }
      const dnsServers = options.dnsServers ?? detectDnsServers(readText(resolvConf));
      return { [path]: renderDnsmasq({ ...options, proxyRanges, dnsServers, tftpDir: roots.tftpDir }) };
    },
    verify: async (ctx, files) => {
      for (const file of files) {
        const result = await ctx.exec("dnsmasq", ["--test", `--conf-file=${file.draft}`], { okExitCodes: [0, 1] });
        if (result.exitCode !== 0) {
          throw new Error(`dnsmasq rejects the generated configuration:\n${(result.stderr || result.stdout).trim()}\nNothing was written; fix the dnsmasq settings in ltspfile.ts.`);
        }
      }
    },
  };
}

export function nbdExports(images: ImagePlan[]): NbdImageExport[] {
  return images
    .filter((i) => i.options.boot?.method === "nbd")
    .map((i) => {
      const boot = i.options.boot as { exportName?: string; port?: number };
      return { image: i.name, exportName: boot.exportName, file: i.imagePath, port: boot.port };
    });
}

export function wantsNbd(config: LtspConfig, images: ImagePlan[]): boolean {
  return config.nbd?.enabled ?? nbdExports(images).length > 0;
}

export function nbdTask(config: LtspConfig, roots: Roots, images: ImagePlan[]): TaskDef {
  const nbd = config.nbd ?? {};
  const exportsList = config.nbd?.enabled ? images.map((i) => ({ ...nbdExports([i])[0], image: i.name, file: i.imagePath })) : nbdExports(images);
  const allowFile = join(roots.etcDir, "nbd-server", "ltsp-make.allow");
  const options = {
    baseDir: roots.baseDir,
    exports: exportsList,
    port: nbd.port,
    listenAddresses: nbd.listenAddresses,
    authFile: nbd.allow ? allowFile : undefined,
  };
  const files = (): Record<string, string> => {
    const out: Record<string, string> = {};
    if (nbd.perPort) for (const c of renderNbdServerConfigsPerPort(options)) out[nbdConfigPath(roots, c.image)] = c.config;
    else out[nbdConfigPath(roots)] = renderNbdServerConfig(options);
    if (nbd.allow) out[allowFile] = renderNbdAllowList(nbd.allow);
    return out;
  };
  const rendered = files();
  return { id: "nbd", title: "nbd-server exports", render: () => rendered, outputs: Object.keys(rendered).sort() };
}

function defaultReload(roots: Roots, service: string): string[] | false {
  return roots.etcDir === "/etc" ? ["systemctl", "restart", service] : false;
}

export function reloadTasks(config: LtspConfig, roots: Roots, serving: { dnsmasq: boolean; nfs: boolean; nbd: boolean }): TaskDef[] {
  const tasks: TaskDef[] = [];
  const add = (service: "dnsmasq" | "nfs" | "nbd", unit: string, command: string[] | false, advice: string) => {
    tasks.push({
      id: `reload-${service}`,
      title: `make ${unit} re-read its configuration`,
      deps: [service],
      params: { command: command || null },
      run: async (ctx) => {
        if (!command) {
          ctx.notice(advice);
          return;
        }
        await ctx.exec(command[0]!, command.slice(1));
      },
    });
  };
  if (serving.dnsmasq) {
    add("dnsmasq", "dnsmasq", config.reload?.dnsmasq ?? defaultReload(roots, "dnsmasq"), `${dnsmasqPath(roots)} changed: restart dnsmasq to apply it`);
  }
  if (serving.nfs) {
    add("nfs", "the NFS server", config.reload?.nfs ?? defaultReload(roots, "nfs-kernel-server"), `${nfsExportsPath(roots)} changed: run "exportfs -ra" to apply it`);
  }
  if (serving.nbd) {
    add("nbd", "nbd-server", config.reload?.nbd ?? false, `the nbd-server configuration changed: restart nbd-server when no client is connected (a restart drops connected clients)`);
  }
  return tasks;
}
