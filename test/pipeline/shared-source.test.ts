// Several images built from one source in one run: their mounts share the source's dpkg lock
// (held once by this process) instead of waiting on each other, even with fewer job slots than
// images.
import fs from "node:fs";
import { describe, expect, test } from "vitest";
import { catImage, makeSmallChroot, runSummary, usePrefixes } from "./helpers.ts";

const newPrefix = usePrefixes();

describe("images sharing one source", () => {
  test("all build with -j 2 instead of waiting on each other for the lock", async () => {
    const prefix = newPrefix();
    const root = makeSmallChroot(prefix.path("sources", "shared"), { withBoot: true, withProc: true });
    fs.mkdirSync(`${root}/var/lib/dpkg`, { recursive: true });
    fs.writeFileSync(`${root}/var/lib/dpkg/lock`, "");
    const src = JSON.stringify(root);
    prefix.writeConfig(`{
  discover: false,
  images: {
    one: { source: ${src} },
    two: { source: ${src}, compression: "gzip" },
    three: { source: ${src}, compression: "xz" },
  },
  dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },
}`);
    const result = await prefix.build(["-j", "2"], { timeout: 60_000 });
    expect(result.exitCode).toBe(0);
    expect(runSummary(result.stdout).failed).toBe(0);
    for (const name of ["one", "two", "three"]) expect(catImage(prefix.image(name), "etc/hostname")).toBe(fs.readFileSync(`${root}/etc/hostname`, "utf8"));
  });
});
