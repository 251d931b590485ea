// A real LTSP client (Debian 12 with ltsp, stock initramfs-tools initrd plus ltsp.img) netboots
// on BIOS from what ltsp-make generated, with its root image served by nbd-server, on upstream's
// two-NIC layout with dnsmasq's defaults: server 192.168.67.1, real DHCP 192.168.67.20-250, no proxy.
import fs from "node:fs";
import { afterEach, expect, test } from "vitest";
import { IMAGES, NetbootSandbox, requirePrerequisites, SERVER_IP } from "./harness.ts";

const BOOT_TIMEOUT_MS = 300_000;
let sandbox: NetbootSandbox | undefined;

afterEach(async () => {
  await sandbox?.cleanup();
  sandbox = undefined;
});

test("BIOS client boots over NBD on the two-NIC layout with dnsmasq's default real-DHCP range", async () => {
  await requirePrerequisites();
  sandbox = new NetbootSandbox("nbdbios");
  const mac = "52:54:00:67:01:11";
  await sandbox.usePrebuiltImages();
  const make = await sandbox.runLtspMake(`{
    discover: false,
    images: { ${sandbox.image("debian", { boot: `{ method: "nbd", server: "${SERVER_IP}" }` })} },
    ipxe: { timeout: 1000, kernelParameters: "console=ttyS0", clients: [{ mac: "${mac}", defaultImage: "debian" }] },
    dnsmasq: { logDhcp: true },
    nfs: { home: false },
  }`);
  console.log(`ltsp-make: ${make.seconds.toFixed(1)} s`);
  expect(fs.readFileSync(`${sandbox.tftpDir}/ltsp/ltsp.ipxe`, "utf8")).toContain(`nbdroot=${SERVER_IP}:10809/debian`);
  const conf = fs.readFileSync(`${sandbox.etcDir}/dnsmasq.d/ltsp-dnsmasq.conf`, "utf8");
  expect(conf).toMatch(/^dhcp-range=192\.168\.67\.20,192\.168\.67\.250,12h$/m);
  expect(conf).not.toMatch(/^dhcp-range=.*proxy/m);

  await sandbox.createNetwork();
  sandbox.startDnsmasq();
  sandbox.startNbdServer();
  await sandbox.waitForPorts(["udp:67", "udp:69", "tcp:10809"]);

  const result = await sandbox.boot({ mac, marker: IMAGES.debian.marker, timeoutMs: BOOT_TIMEOUT_MS });
  console.log(`BIOS over NBD (two-NIC defaults): marker after ${result.seconds.toFixed(1)} s\n  ${result.timeline.join("\n  ")}`);
  expect(result.serial).toMatch(new RegExp(`E2E-RESULT: OK ${IMAGES.debian.marker} root=overlay ltsp=yes`));
  const dnsmasqLog = fs.readFileSync(sandbox.dnsmasqLog, "utf8");
  expect(dnsmasqLog).toMatch(/sent .*ltsp\/ltsp\.ipxe/);
  expect(dnsmasqLog).toMatch(/sent .*ltsp\/debian\/initrd\.img/);
  const ack = new RegExp(`DHCPACK\\(br0\\) 192\\.168\\.67\\.(\\d+) ${mac}`).exec(dnsmasqLog);
  expect(ack, "dnsmasq leased the client an address").not.toBeNull();
  const host = Number(ack![1]);
  expect(host).toBeGreaterThanOrEqual(20);
  expect(host).toBeLessThanOrEqual(250);
}, 600_000);
