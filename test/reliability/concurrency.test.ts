// Two `ltsp-make all` on one state directory with a real image build: the second is refused
// with the first one's PID while the first runs; after a crash, the dead run's lock is taken over.
import fs from "node:fs";
import path from "node:path";
import { expect, test } from "vitest";
import { leftoversSince, makeSmallChroot, snapshotSystem, usePrefixes, waitFor } from "../pipeline/helpers.ts";
import { crash, startTimed } from "./helpers.ts";

const newPrefix = usePrefixes();

// The customize step waits for a file, so the first run holds the lock (and the mount) until told.
const CONFIG = (release: string) => `{
  imageDefaults: {
    compression: "zstd",
    ionice: [],
    customize: [{
      id: "hold",
      run: async () => {
        const fs = await import("node:fs");
        while (!fs.existsSync(${JSON.stringify(release)})) await new Promise((r) => setTimeout(r, 20));
      },
    }],
  },
  dnsmasq: { proxyRanges: [{ network: "192.168.67.0", netmask: "255.255.255.0" }] },
}`;

test("a second image build while one runs is refused with the first one's PID; the first completes", async () => {
  const prefix = newPrefix();
  makeSmallChroot(path.join(prefix.base, "small"));
  const release = prefix.path("release");
  prefix.writeConfig(CONFIG(release));
  const first = startTimed(prefix, ["all"]);
  await waitFor("the first run to hold the image mount", () => first.lines.some((l) => l.text === "start   customize-hold:small"), 30_000);

  const second = await startTimed(prefix, ["all"]).done;
  expect(second.exitCode, second.stderr).toBe(2);
  expect(second.stderr).toContain(`PID ${first.pid}`);
  expect(second.stderr).toContain(path.join(prefix.cache, "lock"));
  expect(second.stderr).toMatch(/Wait for it to finish, or stop it/);
  expect(second.stdout).not.toMatch(/^start /m);

  fs.writeFileSync(release, "");
  const done = await first.done;
  expect(done.exitCode, `${done.stdout}\n${done.stderr}`).toBe(0);
  expect(fs.existsSync(prefix.image("small"))).toBe(true);
  expect(fs.existsSync(path.join(prefix.cache, "lock"))).toBe(false);
});

test("the lock of a crashed image build is taken over; the new run cleans up and completes", async () => {
  const prefix = newPrefix();
  const system = snapshotSystem();
  makeSmallChroot(path.join(prefix.base, "small"));
  const release = prefix.path("release");
  prefix.writeConfig(CONFIG(release));
  const first = startTimed(prefix, ["all"]);
  await waitFor("the first run to hold the image mount", () => first.lines.some((l) => l.text === "start   customize-hold:small"), 30_000);
  crash(prefix, first.pid);
  await first.done;
  const lock = JSON.parse(fs.readFileSync(path.join(prefix.cache, "lock"), "utf8")) as { pid: number };
  expect(lock.pid).toBe(first.pid);

  fs.writeFileSync(release, "");
  const second = await startTimed(prefix, ["all", "-v"]).done;
  expect(second.exitCode, `${second.stdout}\n${second.stderr}`).toBe(0);
  expect(second.stdout).toContain(`took over the lock of a run that is gone (PID ${first.pid})`);
  expect(fs.existsSync(path.join(prefix.cache, "lock"))).toBe(false);
  // (the dpkg-lock helper exits on its own shortly after its run)
  await waitFor("no mount, loop device or process left", () => leftoversSince(system, prefix.dir).length === 0, 5000, 50);
  const work = path.join(prefix.cache, "work");
  expect(fs.existsSync(work) ? fs.readdirSync(work) : []).toEqual([]);
  expect(await prefix.stale()).toEqual([]);
});
