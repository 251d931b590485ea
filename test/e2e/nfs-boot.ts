// The NFS case the BIOS and UEFI tests share: ltsp-make renders the menu and dnsmasq config with
// real DHCP, the client mounts BASE over NFSv3 (nfs-ganesha) and loop-mounts images/NAME.img from
// it, as LTSP's default "images" method does.
import fs from "node:fs";
import { expect } from "vitest";
import { IMAGES, SUBNET_PREFIX, type BootResult, type NetbootSandbox } from "./harness.ts";

const BOOT_TIMEOUT_MS = 300_000;

export async function bootOverNfs(sandbox: NetbootSandbox, options: { mac: string; uefi?: boolean }): Promise<{ result: BootResult; dnsmasqLog: string }> {
  const { mac } = options;
  const marker = IMAGES.debian.marker;
  await sandbox.usePrebuiltImages();
  const make = await sandbox.runLtspMake(`{
    discover: false,
    images: { ${sandbox.image("debian")} },
    ipxe: { timeout: 1000, kernelParameters: "console=ttyS0", clients: [{ mac: "${mac}", defaultImage: "debian" }] },
    dnsmasq: {
      realDhcp: { start: "${SUBNET_PREFIX}.100", end: "${SUBNET_PREFIX}.150", lease: "1h" },
      interfaces: ["br0"], bindInterfaces: true, logDhcp: true,
    },
    nfs: { home: false },
  }`);
  console.log(`ltsp-make: ${make.seconds.toFixed(1)} s`);
  expect(fs.readFileSync(`${sandbox.tftpDir}/ltsp/ltsp.ipxe`, "utf8")).toContain(`nfsroot=\${srv}:${sandbox.baseDir} ltsp.image=images/debian.img`);

  await sandbox.createNetwork();
  sandbox.startDnsmasq();
  sandbox.startNfsGanesha();
  await sandbox.waitForPorts(["udp:67", "udp:69", "tcp:111", "tcp:2049", "tcp:20048"], 20_000);

  const result = await sandbox.boot({ mac, marker, uefi: options.uefi, timeoutMs: BOOT_TIMEOUT_MS });
  console.log(`${options.uefi ? "UEFI" : "BIOS"} over NFS: marker after ${result.seconds.toFixed(1)} s\n  ${result.timeline.join("\n  ")}`);
  expect(result.serial).toMatch(new RegExp(`E2E-RESULT: OK ${marker} root=overlay ltsp=yes`));
  const dnsmasqLog = fs.readFileSync(sandbox.dnsmasqLog, "utf8");
  expect(dnsmasqLog).toMatch(/sent .*ltsp\/ltsp\.ipxe/);
  expect(dnsmasqLog).toMatch(new RegExp(`DHCPACK\\(br0\\) ${SUBNET_PREFIX.replaceAll(".", "\\.")}\\.1[0-5]\\d ${mac}`));
  return { result, dnsmasqLog };
}
