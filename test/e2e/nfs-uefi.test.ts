// A real LTSP client netboots on UEFI from what ltsp-make generated: OVMF's own PXE gets
// snponly.efi from dnsmasq, that iPXE gets the menu, and the root comes over NFS (see nfs-boot.ts).
import { afterEach, expect, test } from "vitest";
import { NetbootSandbox, requirePrerequisites } from "./harness.ts";
import { bootOverNfs } from "./nfs-boot.ts";

let sandbox: NetbootSandbox | undefined;

afterEach(async () => {
  await sandbox?.cleanup();
  sandbox = undefined;
});

test("UEFI client (OVMF PXE → snponly.efi) boots its per-MAC default image over NFS (nfs-ganesha)", async () => {
  await requirePrerequisites(["ganesha.nfsd", "rpcbind", "unshare"], { uefi: true });
  sandbox = new NetbootSandbox("nfsuefi");
  const { dnsmasqLog } = await bootOverNfs(sandbox, { mac: "52:54:00:67:05:55", uefi: true });
  expect(dnsmasqLog).toMatch(/sent .*ltsp\/snponly\.efi/);
}, 600_000);
