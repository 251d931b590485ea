// A real LTSP client (Debian 12 with ltsp, stock initramfs-tools initrd plus ltsp.img) netboots
// on BIOS from what ltsp-make generated, with its root image served by nbd-server.
import fs from "node:fs";
import { afterEach, expect, test } from "vitest";
import { NetbootSandbox, requirePrerequisites, SERVER_IP, SUBNET_PREFIX } from "./harness.ts";

const BOOT_TIMEOUT_MS = 300_000;
let sandbox: NetbootSandbox | undefined;

afterEach(async () => {
  await sandbox?.cleanup();
  sandbox = undefined;
});

test("BIOS client boots its per-MAC default image over NBD with real DHCP", async () => {
  await requirePrerequisites();
  sandbox = new NetbootSandbox("nbdbios");
  const mac = "52:54:00:67:01:11";
  const marker = `nbd-bios-${process.pid}`;
  await sandbox.addDebianChroot("debian", marker);
  // A second image that would be the menu's default without the per-MAC section.
  await sandbox.runLtspMake(`{
    images: { debian: { boot: { method: "nbd", server: "${SERVER_IP}" }, compression: "zstd:1", ionice: [] } },
    ipxe: { timeout: 1000, kernelParameters: "console=ttyS0", clients: [{ mac: "${mac}", defaultImage: "debian" }] },
    dnsmasq: {
      realDhcp: { start: "${SUBNET_PREFIX}.100", end: "${SUBNET_PREFIX}.150", lease: "1h" },
      interfaces: ["br0"], bindInterfaces: true, logDhcp: true,
    },
    nfs: { home: false },
  }`);
  expect(fs.readFileSync(`${sandbox.tftpDir}/ltsp/ltsp.ipxe`, "utf8")).toContain(`nbdroot=${SERVER_IP}:10809/debian`);

  await sandbox.createNetwork();
  sandbox.startDnsmasq();
  sandbox.startNbdServer();
  await sandbox.waitForPorts(["udp:67", "udp:69", "tcp:10809"]);

  const result = await sandbox.boot({ mac, marker, timeoutMs: BOOT_TIMEOUT_MS });
  console.log(`BIOS over NBD: marker after ${result.seconds.toFixed(1)} s\n  ${result.timeline.join("\n  ")}`);
  expect(result.serial).toMatch(new RegExp(`E2E-RESULT: OK ${marker} root=overlay ltsp=yes`));
  const dnsmasqLog = fs.readFileSync(sandbox.dnsmasqLog, "utf8");
  expect(dnsmasqLog).toMatch(/sent .*ltsp\/ltsp\.ipxe/);
  expect(dnsmasqLog).toMatch(/sent .*ltsp\/debian\/initrd\.img/);
  expect(dnsmasqLog).toMatch(new RegExp(`DHCPACK\\(br0\\) ${SUBNET_PREFIX.replaceAll(".", "\\.")}\\.1[0-5]\\d ${mac}`));
}, 600_000);
