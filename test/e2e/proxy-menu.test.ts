// proxyDHCP: the site's own DHCP server (a second dnsmasq with only an address range) leases the
// addresses, and the dnsmasq ltsp-make generated (proxyRanges for the subnet, no real DHCP) only
// answers PXE. The menu has two images; its default is the first, and a per-MAC section picks the
// second for this client, which must boot into the second image.
import fs from "node:fs";
import { afterEach, expect, test } from "vitest";
import { IMAGES, NetbootSandbox, requirePrerequisites, SERVER_IP, SUBNET_PREFIX } from "./harness.ts";

const BOOT_TIMEOUT_MS = 300_000;
let sandbox: NetbootSandbox | undefined;

afterEach(async () => {
  await sandbox?.cleanup();
  sandbox = undefined;
});

test("proxyDHCP next to another DHCP server; a per-MAC section picks the menu's second image", async () => {
  await requirePrerequisites();
  sandbox = new NetbootSandbox("proxymenu");
  const mac = "52:54:00:67:04:44";
  await sandbox.usePrebuiltImages();
  const nbd = `{ method: "nbd", server: "${SERVER_IP}" }`;
  const make = await sandbox.runLtspMake(`{
    discover: false,
    images: { ${sandbox.image("debian", { boot: nbd })}, ${sandbox.image("alt", { boot: nbd })} },
    ipxe: { timeout: 1000, kernelParameters: "console=ttyS0", defaultImage: "debian", clients: [{ mac: "${mac}", defaultImage: "alt" }] },
    dnsmasq: {
      realDhcp: false,
      proxyRanges: [{ network: "${SUBNET_PREFIX}.0", netmask: "255.255.255.0" }],
      interfaces: ["br0"], bindInterfaces: true, logDhcp: true,
    },
    nfs: { home: false },
  }`);
  console.log(`ltsp-make: ${make.seconds.toFixed(1)} s`);
  const menu = fs.readFileSync(`${sandbox.tftpDir}/ltsp/ltsp.ipxe`, "utf8");
  expect(menu).toContain(`nbdroot=${SERVER_IP}:10809/alt`);
  // The menu's default is the first image; the client's own section switches to the second.
  expect(menu).toMatch(/^set img debian$/m);
  expect(menu).toContain(`:mac-${mac.replaceAll(":", "-")}\nset img alt\n`);
  const conf = fs.readFileSync(`${sandbox.etcDir}/dnsmasq.d/ltsp-dnsmasq.conf`, "utf8");
  expect(conf).toMatch(new RegExp(`^dhcp-range=set:proxy,${SUBNET_PREFIX.replaceAll(".", "\\.")}\\.0,proxy,255\\.255\\.255\\.0$`, "m"));
  expect(conf).not.toMatch(/^dhcp-range=(?!.*proxy)/m);

  await sandbox.createNetwork();
  sandbox.startSiteDhcpServer(`${SUBNET_PREFIX}.100`, `${SUBNET_PREFIX}.150`);
  sandbox.startDnsmasq();
  sandbox.startNbdServer();
  await sandbox.waitForPorts(["udp:67", "udp:69", "tcp:10809"]);

  const result = await sandbox.boot({ mac, marker: IMAGES.alt.marker, timeoutMs: BOOT_TIMEOUT_MS });
  console.log(`proxyDHCP, per-MAC second image over NBD: marker after ${result.seconds.toFixed(1)} s\n  ${result.timeline.join("\n  ")}`);
  expect(result.serial).toMatch(new RegExp(`E2E-RESULT: OK ${IMAGES.alt.marker} root=overlay ltsp=yes`));
  expect(result.serial).not.toContain(IMAGES.debian.marker);
  // The addresses came from the site's server; LTSP's dnsmasq leased none and served the boot files.
  const site = fs.readFileSync(sandbox.siteDhcpLog, "utf8");
  expect(site).toMatch(new RegExp(`DHCPACK\\(br0\\) ${SUBNET_PREFIX.replaceAll(".", "\\.")}\\.1[0-5]\\d ${mac}`));
  const ltsp = fs.readFileSync(sandbox.dnsmasqLog, "utf8");
  expect(ltsp).not.toMatch(/DHCPACK/);
  expect(ltsp).toMatch(/proxy/i);
  expect(ltsp).toMatch(/sent .*ltsp\/ltsp\.ipxe/);
  expect(ltsp).toMatch(/sent .*ltsp\/alt\/initrd\.img/);
  expect(ltsp).not.toMatch(/sent .*ltsp\/debian\/initrd\.img/);
}, 600_000);
