// A real LTSP client netboots on BIOS from what ltsp-make generated, with its root over NFS
// (see nfs-boot.ts).
import { afterEach, test } from "vitest";
import { NetbootSandbox, requirePrerequisites } from "./harness.ts";
import { bootOverNfs } from "./nfs-boot.ts";

let sandbox: NetbootSandbox | undefined;

afterEach(async () => {
  await sandbox?.cleanup();
  sandbox = undefined;
});

test("BIOS client boots its per-MAC default image over NFS (nfs-ganesha) with real DHCP", async () => {
  await requirePrerequisites(["ganesha.nfsd", "rpcbind", "unshare"]);
  sandbox = new NetbootSandbox("nfsbios");
  await bootOverNfs(sandbox, { mac: "52:54:00:67:02:22" });
}, 600_000);
