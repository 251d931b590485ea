// A real LTSP client (Debian 12 with ltsp, stock initramfs-tools initrd plus ltsp.img) netboots on
// UEFI from what ltsp-make generated: OVMF's own PXE (no iPXE ROM) gets snponly.efi from dnsmasq,
// that iPXE gets the menu, and the root image is served by nbd-server.
import fs from "node:fs";
import { afterEach, expect, test } from "vitest";
import { IMAGES, NetbootSandbox, requirePrerequisites, SERVER_IP, SUBNET_PREFIX } from "./harness.ts";

const BOOT_TIMEOUT_MS = 300_000;
let sandbox: NetbootSandbox | undefined;

afterEach(async () => {
  await sandbox?.cleanup();
  sandbox = undefined;
});

test("UEFI client (OVMF PXE → snponly.efi) boots its per-MAC default image over NBD", async () => {
  await requirePrerequisites([], { uefi: true });
  sandbox = new NetbootSandbox("nbduefi");
  const mac = "52:54:00:67:03:33";
  const marker = IMAGES.debian.marker;
  await sandbox.usePrebuiltImages();
  const make = await sandbox.runLtspMake(`{
    discover: false,
    images: { ${sandbox.image("debian", { boot: `{ method: "nbd", server: "${SERVER_IP}" }` })} },
    ipxe: { timeout: 1000, kernelParameters: "console=ttyS0", clients: [{ mac: "${mac}", defaultImage: "debian" }] },
    dnsmasq: {
      realDhcp: { start: "${SUBNET_PREFIX}.100", end: "${SUBNET_PREFIX}.150", lease: "1h" },
      interfaces: ["br0"], bindInterfaces: true, logDhcp: true,
    },
    nfs: { home: false },
  }`);
  console.log(`ltsp-make: ${make.seconds.toFixed(1)} s`);
  expect(fs.readFileSync(`${sandbox.tftpDir}/ltsp/ltsp.ipxe`, "utf8")).toContain(`nbdroot=${SERVER_IP}:10809/debian`);

  await sandbox.createNetwork();
  sandbox.startDnsmasq();
  sandbox.startNbdServer();
  await sandbox.waitForPorts(["udp:67", "udp:69", "tcp:10809"]);

  const result = await sandbox.boot({ mac, marker, uefi: true, timeoutMs: BOOT_TIMEOUT_MS });
  console.log(`UEFI over NBD: marker after ${result.seconds.toFixed(1)} s\n  ${result.timeline.join("\n  ")}`);
  expect(result.serial).toMatch(new RegExp(`E2E-RESULT: OK ${marker} root=overlay ltsp=yes`));
  const dnsmasqLog = fs.readFileSync(sandbox.dnsmasqLog, "utf8");
  // Plain UEFI PXE first gets snponly.efi, then that iPXE gets the menu.
  expect(dnsmasqLog).toMatch(/sent .*ltsp\/snponly\.efi/);
  expect(dnsmasqLog).toMatch(/sent .*ltsp\/ltsp\.ipxe/);
  expect(dnsmasqLog).toMatch(/sent .*ltsp\/debian\/initrd\.img/);
  expect(dnsmasqLog).toMatch(new RegExp(`DHCPACK\\(br0\\) ${SUBNET_PREFIX.replaceAll(".", "\\.")}\\.1[0-5]\\d ${mac}`));
}, 600_000);
