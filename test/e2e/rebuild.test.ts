// Rebuilding an image while a client runs from it: the running client (NFS, LTSP's "images"
// method) keeps reading its image, because the rebuild is published as a new generation file
// and the old one stays; a client booted afterwards gets the new image.
import fs from "node:fs";
import path from "node:path";
import { afterEach, expect, test } from "vitest";
import { IMAGES, NetbootSandbox, requirePrerequisites, SUBNET_PREFIX } from "./harness.ts";

const BOOT_TIMEOUT_MS = 300_000;
const NEW_MARKER = "E2E-READER-2";
let sandbox: NetbootSandbox | undefined;

afterEach(async () => {
  await sandbox?.cleanup();
  sandbox = undefined;
});

interface Read {
  n: number;
  ok: boolean;
  sum: string;
}

function reads(serial: string): Read[] {
  return [...serial.matchAll(/E2E-READ (\d+) (OK|FAIL) ?([0-9a-f]*)/g)].map((m) => ({ n: Number(m[1]), ok: m[2] === "OK", sum: m[3] ?? "" }));
}

test("a running client keeps reading its image through a rebuild; a new client boots the new image", async () => {
  await requirePrerequisites(["ganesha.nfsd", "rpcbind", "unshare"]);
  sandbox = new NetbootSandbox("rebuild");
  const box = sandbox;
  const first = "52:54:00:67:05:51";
  const second = "52:54:00:67:05:52";
  await box.usePrebuiltImages();
  const config = (marker: string) => `{
    discover: false,
    images: { ${box.image("reader", { marker })} },
    ipxe: { timeout: 1000, kernelParameters: "console=ttyS0", defaultImage: "reader" },
    dnsmasq: {
      realDhcp: { start: "${SUBNET_PREFIX}.100", end: "${SUBNET_PREFIX}.150", lease: "1h" },
      interfaces: ["br0"], bindInterfaces: true, logDhcp: true,
    },
    nfs: { home: false },
  }`;
  const make = await box.runLtspMake(config(IMAGES.reader.marker));
  console.log(`ltsp-make: ${make.seconds.toFixed(1)} s`);
  const stable = path.join(box.baseDir, "images/reader.img");
  const bootedGeneration = fs.realpathSync(stable);

  await box.createNetwork();
  box.startDnsmasq();
  box.startNfsGanesha();
  await box.waitForPorts(["udp:67", "udp:69", "tcp:111", "tcp:2049", "tcp:20048"], 20_000);

  const running = box.startClient({ mac: first, tap: "tap0" });
  await box.waitForSerial(running, "first read from the image", (s) => reads(s).length >= 1, BOOT_TIMEOUT_MS);
  console.log(`first client (old image, NFS): reading after ${((Date.now() - running.started) / 1000).toFixed(1)} s\n  ${running.timeline.join("\n  ")}`);
  expect(box.serial(running)).toMatch(new RegExp(`E2E-RESULT: OK ${IMAGES.reader.marker} root=overlay ltsp=yes`));

  const rebuild = await box.runLtspMake(config(NEW_MARKER));
  console.log(`rebuild with the new marker while the client runs: ${rebuild.seconds.toFixed(1)} s`);
  expect(rebuild.stdout).toMatch(/done\s+squash:reader/);
  const newGeneration = fs.realpathSync(stable);
  expect(newGeneration).not.toBe(bootedGeneration);
  expect(fs.existsSync(bootedGeneration), "the generation the client booted from is kept").toBe(true);
  const readsBefore = reads(box.serial(running)).length;

  const fresh = box.startClient({ mac: second, tap: "tap1" });
  // Reads from the old generation go on after the rebuild, with the same content.
  const after = await box.waitForSerial(running, "three reads after the rebuild", (s) => reads(s).length >= readsBefore + 3, 120_000);
  const all = reads(after);
  expect(all.filter((r) => !r.ok)).toEqual([]);
  expect(new Set(all.map((r) => r.sum)).size).toBe(1);
  console.log(`first client: ${all.length} reads, ${all.length - readsBefore} after the rebuild, all OK`);
  await box.stopClient(running);

  await box.waitForSerial(fresh, `marker "${NEW_MARKER}"`, (s) => s.includes(`E2E-RESULT: OK ${NEW_MARKER} `), BOOT_TIMEOUT_MS);
  console.log(`second client (new image): marker after ${((Date.now() - fresh.started) / 1000).toFixed(1)} s\n  ${fresh.timeline.join("\n  ")}`);
  expect(box.serial(fresh)).toMatch(new RegExp(`E2E-RESULT: OK ${NEW_MARKER} root=overlay ltsp=yes`));
  expect(box.serial(fresh)).not.toContain(IMAGES.reader.marker);
  await box.stopClient(fresh);
}, 900_000);
