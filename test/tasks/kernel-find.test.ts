import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import fg from "fast-glob";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { standaloneExec } from "../../src/exec.ts";
import { extractKernel, findKernel, kernelInputGlobs, KERNEL_RULES, type FoundKernel } from "../../tasks/lib/kernel-find.ts";
import { DirView, globView, SquashfsView, TreePathError, type TreeView } from "../../tasks/lib/tree-view.ts";
import { compareVersions } from "../../tasks/lib/version-sort.ts";

const exec = standaloneExec();

/** A file's content, or a symlink. */
type Entry = string | { link: string };

function makeTree(root: string, entries: Record<string, Entry>): void {
  fs.mkdirSync(root, { recursive: true });
  for (const [rel, entry] of Object.entries(entries)) {
    const full = path.join(root, rel);
    fs.mkdirSync(path.dirname(full), { recursive: true });
    if (typeof entry === "string") fs.writeFileSync(full, entry);
    else fs.symlinkSync(entry.link, full);
  }
}

async function squash(dir: string, image: string): Promise<void> {
  await exec("mksquashfs", [dir, image, "-noappend", "-quiet", "-no-progress"]);
}

const DEBIAN_VERSION = "6.1.0-1-amd64";
const debianChroot: Record<string, Entry> = {
  [`boot/vmlinuz-${DEBIAN_VERSION}`]: "kernel 6.1.0-1\n",
  [`boot/initrd.img-${DEBIAN_VERSION}`]: "initrd 6.1.0-1\n",
  [`boot/config-${DEBIAN_VERSION}`]: "CONFIG\n",
  vmlinuz: { link: `boot/vmlinuz-${DEBIAN_VERSION}` },
  "initrd.img": { link: `boot/initrd.img-${DEBIAN_VERSION}` },
  "etc/os-release": "ID=debian\n",
};

let tmp: string;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ltsp-make-test-"));
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Every path findKernel looked at must be covered by kernelInputGlobs, targets of symlinks included. */
async function expectCoveredByInputGlobs(root: string, found: FoundKernel, override?: Parameters<typeof kernelInputGlobs>[0]) {
  const view = new DirView(root);
  const matched = new Set(await fg(kernelInputGlobs(override), { cwd: root, dot: false, onlyFiles: false, followSymbolicLinks: false }));
  for (const rel of [found.kernel, found.initrd, await view.resolve(found.kernel), await view.resolve(found.initrd)]) {
    expect(matched, `${rel} is not covered by kernelInputGlobs`).toContain(rel);
  }
}

describe("findKernel on a directory", () => {
  it("prefers the Debian vmlinuz symlink", async () => {
    const root = path.join(tmp, "debian");
    makeTree(root, debianChroot);
    const view = new DirView(root);
    const found = await findKernel(view);
    expect(found).toEqual({ kernel: "vmlinuz", initrd: "initrd.img", rule: "vmlinuz symlink" });
    expect(await view.resolve(found.kernel)).toBe(`boot/vmlinuz-${DEBIAN_VERSION}`);
    await expectCoveredByInputGlobs(root, found);
  });

  it("picks the newest boot/vmlinuz-VERSION that has an initrd, in version order", async () => {
    const root = path.join(tmp, "versions");
    makeTree(root, {
      "boot/vmlinuz-6.1.0-9-amd64": "kernel 9",
      "boot/initrd.img-6.1.0-9-amd64": "initrd 9",
      "boot/vmlinuz-6.1.0-10-amd64": "kernel 10",
      "boot/initrd.img-6.1.0-10-amd64": "initrd 10",
      // Newer, but without an initrd: not a candidate.
      "boot/vmlinuz-6.1.0-11-amd64": "kernel 11",
    });
    const found = await findKernel(new DirView(root));
    expect(found).toEqual({
      kernel: "boot/vmlinuz-6.1.0-10-amd64",
      initrd: "boot/initrd.img-6.1.0-10-amd64",
      rule: "vmlinuz-VERSION with initrd.img-VERSION",
    });
    await expectCoveredByInputGlobs(root, found);
  });

  it("resolves absolute symlinks inside the image, never on the host", async () => {
    const root = path.join(tmp, "absolute");
    const version = `0.0.0-ltsp-make-test-${path.basename(tmp)}`;
    makeTree(root, {
      [`boot/vmlinuz-${version}`]: "kernel inside the image",
      [`boot/initrd.img-${version}`]: "initrd inside the image",
      vmlinuz: { link: `/boot/vmlinuz-${version}` },
      "initrd.img": { link: `/boot/initrd.img-${version}` },
    });
    expect(fs.existsSync(`/boot/vmlinuz-${version}`)).toBe(false);
    const view = new DirView(root);
    const found = await findKernel(view);
    expect(found.rule).toBe("vmlinuz symlink");
    expect(await view.resolve("vmlinuz")).toBe(`boot/vmlinuz-${version}`);
    const out = await extractKernel(view, found, path.join(tmp, "tftp"));
    expect(fs.readFileSync(out.vmlinuz, "utf8")).toBe("kernel inside the image");
    expect(fs.readFileSync(out.initrd, "utf8")).toBe("initrd inside the image");
  });

  it("uses the image's file when the host has a different one at the same absolute path", async () => {
    const hostDir = path.join(tmp, "host-boot");
    makeTree(hostDir, { "vmlinuz-X": "HOST kernel", "initrd.img-X": "HOST initrd" });
    const root = path.join(tmp, "shadow");
    // Inside the image, the same absolute path holds the image's own files.
    makeTree(root, {
      [path.join(hostDir, "vmlinuz-X")]: "IMAGE kernel",
      [path.join(hostDir, "initrd.img-X")]: "IMAGE initrd",
      vmlinuz: { link: path.join(hostDir, "vmlinuz-X") },
      "initrd.img": { link: path.join(hostDir, "initrd.img-X") },
    });
    const view = new DirView(root);
    const found = await findKernel(view);
    const out = await extractKernel(view, found, path.join(tmp, "tftp"));
    expect(fs.readFileSync(out.vmlinuz, "utf8")).toBe("IMAGE kernel");
    expect(fs.readFileSync(out.initrd, "utf8")).toBe("IMAGE initrd");

    // And when only the host has it, the image has no kernel.
    const bare = path.join(tmp, "bare");
    makeTree(bare, {
      vmlinuz: { link: path.join(hostDir, "vmlinuz-X") },
      "initrd.img": { link: path.join(hostDir, "initrd.img-X") },
    });
    const bareView = new DirView(bare);
    expect(await bareView.stat("vmlinuz")).toBeUndefined();
    await expect(findKernel(bareView)).rejects.toThrow(/No kernel and initrd found/);
  });

  it("keeps ../ in symlinks and paths inside the root", async () => {
    const root = path.join(tmp, "dotdot");
    makeTree(root, {
      "boot/vmlinuz-5": "kernel",
      "boot/initrd.img-5": "initrd",
      vmlinuz: { link: "../../../../../boot/vmlinuz-5" },
      "initrd.img": { link: "boot/../../../boot/initrd.img-5" },
      "etc/escape": { link: "../../../../../etc" },
    });
    const view = new DirView(root);
    expect(await view.resolve("vmlinuz")).toBe("boot/vmlinuz-5");
    expect(await view.resolve("initrd.img")).toBe("boot/initrd.img-5");
    expect(await view.resolve("../../boot")).toBe("boot");
    // The host's /etc/passwd exists; the image's does not.
    expect(fs.existsSync("/etc/passwd")).toBe(true);
    expect(await view.stat("../../etc/passwd")).toBeUndefined();
    expect(await view.stat("etc/escape/passwd")).toBeUndefined();
    expect(await view.resolve("etc/escape")).toBe("etc");
    expect(await findKernel(view)).toEqual({ kernel: "vmlinuz", initrd: "initrd.img", rule: "vmlinuz symlink" });
  });

  it("finds CentOS-style vmlinuz-VERSION with initramfs-VERSION.img", async () => {
    const root = path.join(tmp, "centos");
    makeTree(root, {
      "boot/vmlinuz-5.14.0-362.el9.x86_64": "kernel 362",
      "boot/initramfs-5.14.0-362.el9.x86_64.img": "initramfs 362",
      "boot/vmlinuz-5.14.0-70.el9.x86_64": "kernel 70",
      "boot/initramfs-5.14.0-70.el9.x86_64.img": "initramfs 70",
      "boot/vmlinuz-0-rescue-0123456789abcdef": "rescue",
      "boot/initramfs-0-rescue-0123456789abcdef.img": "rescue initramfs",
    });
    const found = await findKernel(new DirView(root));
    expect(found).toEqual({
      kernel: "boot/vmlinuz-5.14.0-362.el9.x86_64",
      initrd: "boot/initramfs-5.14.0-362.el9.x86_64.img",
      rule: "vmlinuz-VERSION with initramfs-VERSION.img",
    });
    await expectCoveredByInputGlobs(root, found);
  });

  it("finds live media layouts (casper, openSUSE loader)", async () => {
    const casper = path.join(tmp, "casper");
    makeTree(casper, { "casper/vmlinuz": "k", "casper/initrd.lz": "i" });
    expect(await findKernel(new DirView(casper))).toEqual({
      kernel: "casper/vmlinuz",
      initrd: "casper/initrd.lz",
      rule: "Ubuntu live (casper, initrd.lz)",
    });
    makeTree(casper, { "casper/initrd": "newer layout" });
    const found = await findKernel(new DirView(casper));
    expect(found.rule).toBe("Ubuntu live (casper, initrd)");
    expect(found.initrd).toBe("casper/initrd");

    const suse = path.join(tmp, "suse");
    makeTree(suse, { "boot/x86_64/loader/linux": "k", "boot/x86_64/loader/initrd": "i" });
    expect(await findKernel(new DirView(suse))).toEqual({
      kernel: "boot/x86_64/loader/linux",
      initrd: "boot/x86_64/loader/initrd",
      rule: "openSUSE live",
    });
  });

  it("tries the override first, with a regex on the path relative to the image root", async () => {
    const root = path.join(tmp, "arm");
    makeTree(root, {
      "boot/Image-6.6.1": "arm kernel old",
      "boot/uInitrd-6.6.1": "arm initrd old",
      "boot/Image-6.6.12": "arm kernel",
      "boot/uInitrd-6.6.12": "arm initrd",
    });
    const view = new DirView(root);
    await expect(findKernel(view)).rejects.toThrow(/No kernel and initrd found/);
    const override = { kernelGlob: "Image-*", initrdFrom: { regex: "Image-(.*)$", replace: "uInitrd-$1" } };
    const found = await findKernel(view, override);
    expect(found).toEqual({ kernel: "boot/Image-6.6.12", initrd: "boot/uInitrd-6.6.12", rule: "override" });
    await expectCoveredByInputGlobs(root, found, override);

    // The override wins over the built-in rules.
    makeTree(root, debianChroot);
    expect((await findKernel(view, override)).rule).toBe("override");
    expect((await findKernel(view)).rule).toBe("vmlinuz symlink");

    await expect(findKernel(view, { kernelGlob: "Image-*", initrdFrom: { regex: "Image-(", replace: "x" } })).rejects.toThrow(
      /initrdFrom\.regex "Image-\(" is not a valid regular expression.*ltspfile\.ts/s,
    );
  });

  it("fails with the places searched and an override hint when nothing matches", async () => {
    const root = path.join(tmp, "nokernel");
    makeTree(root, { "etc/os-release": "ID=debian\n", "boot/vmlinuz-6.1.0-3-arm64": "kernel without initrd" });
    const error = await findKernel(new DirView(root, "image nokernel")).catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(Error);
    const message = (error as Error).message;
    expect(message).toContain("No kernel and initrd found in image nokernel");
    for (const rule of KERNEL_RULES) {
      expect(message).toContain(rule.kernelGlob);
      expect(message).toContain(`boot/${rule.kernelGlob}`);
    }
    expect(message).toContain("kernel boot/vmlinuz-6.1.0-3-arm64 found, but not its initrd boot/initrd.img-6.1.0-3-arm64");
    expect(message).toMatch(/ltspfile\.ts/);
    expect(message).toMatch(/kernel: \{ kernelGlob: "boot\/Image-\*", initrdFrom: \{ regex: .*replace: .*\} \}/);
  });

  it("reports symlink loops clearly instead of hanging", async () => {
    const root = path.join(tmp, "loop");
    makeTree(root, {
      vmlinuz: { link: "boot/vmlinuz-loop" },
      "boot/vmlinuz-loop": { link: "/vmlinuz" },
      "initrd.img": { link: "initrd.img" },
      "boot/self": { link: "." },
      // Loops in directories that globs walk through.
      live: { link: "live" },
      "boot/arch": { link: "../boot/arch" },
    });
    const view = new DirView(root);
    const loop = await view.resolve("vmlinuz").catch((e: unknown) => e);
    expect(loop).toBeInstanceOf(TreePathError);
    expect((loop as TreePathError).code).toBe("ELOOP");
    expect((loop as Error).message).toMatch(/Symlink loop while resolving vmlinuz .*more than 40 symlinks.*vmlinuz -> boot\/vmlinuz-loop/);
    // A link to "." is not a loop.
    expect(await view.resolve("boot/self/self/self")).toBe("boot");
    const notFound = (await findKernel(view).catch((e: unknown) => e)) as Error;
    expect(notFound.message).toMatch(/No kernel and initrd found[\s\S]*Symlink loop while resolving vmlinuz/);
    expect(notFound.message).toMatch(/Symlink loop while resolving live /);
    expect(notFound.message).toMatch(/Symlink loop while resolving boot\/arch\/loader\/linux /);

    // A loop does not hide a valid kernel found by a later rule.
    makeTree(root, { "boot/vmlinuz-6.1": "k", "boot/initrd.img-6.1": "i" });
    expect((await findKernel(view)).kernel).toBe("boot/vmlinuz-6.1");
  });
});

describe("extractKernel", () => {
  it("copies dereferenced content with mode 0644 and the source mtime, replacing old files", async () => {
    const root = path.join(tmp, "debian");
    makeTree(root, debianChroot);
    const kernelPath = path.join(root, `boot/vmlinuz-${DEBIAN_VERSION}`);
    fs.chmodSync(kernelPath, 0o600);
    const mtime = new Date("2023-06-01T12:34:56Z");
    fs.utimesSync(kernelPath, mtime, mtime);
    const dest = path.join(tmp, "tftp/ltsp/debian");
    makeTree(dest, { vmlinuz: "old kernel" });
    const view = new DirView(root);
    const out = await extractKernel(view, await findKernel(view), dest);
    expect(out).toEqual({ vmlinuz: path.join(dest, "vmlinuz"), initrd: path.join(dest, "initrd.img") });
    const stats = fs.lstatSync(out.vmlinuz);
    expect(stats.isFile()).toBe(true);
    expect(stats.mode & 0o7777).toBe(0o644);
    expect(stats.mtime.getTime()).toBe(mtime.getTime());
    expect(fs.readFileSync(out.vmlinuz, "utf8")).toBe("kernel 6.1.0-1\n");
    expect(fs.readFileSync(out.initrd, "utf8")).toBe("initrd 6.1.0-1\n");
    expect(fs.readdirSync(dest).sort()).toEqual(["initrd.img", "vmlinuz"]);
  });
});

describe("SquashfsView", () => {
  const tricky: Record<string, Entry> = {
    "a dir/file with spaces": "spaces",
    "weird -> name": { link: "/a b -> c" },
    "new\nline": "newline in name",
    "link\nwith newline": { link: "target\nwith newline" },
    "etc/absolute": { link: "/boot" },
    "dangling": { link: "nowhere" },
  };

  it("finds and extracts the same kernel as the directory it was made from", async () => {
    const root = path.join(tmp, "debian");
    makeTree(root, { ...debianChroot, ...tricky });
    const kernelPath = path.join(root, `boot/vmlinuz-${DEBIAN_VERSION}`);
    fs.writeFileSync(kernelPath, Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251)));
    fs.chmodSync(kernelPath, 0o600);
    const mtime = new Date("2022-02-02T02:02:02Z");
    fs.utimesSync(kernelPath, mtime, mtime);
    const image = path.join(tmp, "debian.img");
    await squash(root, image);

    const dirView = new DirView(root);
    const squashView = new SquashfsView(image, exec);
    const found = await findKernel(squashView);
    expect(found).toEqual(await findKernel(dirView));
    expect(found.rule).toBe("vmlinuz symlink");

    const out = await extractKernel(squashView, found, path.join(tmp, "tftp"));
    expect(fs.readFileSync(out.vmlinuz).equals(fs.readFileSync(kernelPath))).toBe(true);
    expect(fs.readFileSync(out.initrd).equals(fs.readFileSync(path.join(root, `boot/initrd.img-${DEBIAN_VERSION}`)))).toBe(true);
    for (const file of [out.vmlinuz, out.initrd]) expect(fs.statSync(file).mode & 0o7777).toBe(0o644);
    expect(fs.statSync(out.vmlinuz).mtime.getTime()).toBe(mtime.getTime());
    expect(fs.readdirSync(path.join(tmp, "tftp")).sort()).toEqual(["initrd.img", "vmlinuz"]);
  });

  it("sees the same tree as the directory: types, sizes, symlink targets, odd names", async () => {
    const root = path.join(tmp, "tree");
    makeTree(root, { ...debianChroot, ...tricky });
    fs.mkdirSync(path.join(root, "empty"));
    const image = path.join(tmp, "tree.img");
    await squash(root, image);
    const dirView = new DirView(root);
    const squashView = new SquashfsView(image, exec);

    async function walk(view: TreeView, dir: string, into: Map<string, unknown>) {
      for (const name of (await view.list(dir)).sort()) {
        const rel = dir === "" ? name : `${dir}/${name}`;
        const info = await view.lstat(rel);
        const target = info?.type === "symlink" ? await view.readlink(rel) : undefined;
        into.set(rel, { ...info, size: info?.type === "dir" ? 0 : info?.size, target });
        if (info?.type === "dir") await walk(view, rel, into);
      }
      return into;
    }
    const fromDir = await walk(dirView, "", new Map());
    const fromSquash = await walk(squashView, "", new Map());
    expect(fromSquash).toEqual(fromDir);
    expect(fromDir.get("weird -> name")).toMatchObject({ type: "symlink", target: "/a b -> c" });
    expect(fromDir.get("link\nwith newline")).toMatchObject({ type: "symlink", target: "target\nwith newline" });
    expect(fromDir.get("new\nline")).toMatchObject({ type: "file" });

    expect(await squashView.resolve("etc/absolute/vmlinuz-6.1.0-1-amd64")).toBe(`boot/vmlinuz-${DEBIAN_VERSION}`);
    expect(await squashView.stat("dangling")).toBeUndefined();
    expect(await globView(squashView, "boot/*-6.1.0-1-amd64")).toEqual([
      `boot/config-${DEBIAN_VERSION}`,
      `boot/initrd.img-${DEBIAN_VERSION}`,
      `boot/vmlinuz-${DEBIAN_VERSION}`,
    ]);
    const copied = path.join(tmp, "copied");
    await squashView.copyOut("a dir/file with spaces", copied);
    expect(fs.readFileSync(copied, "utf8")).toBe("spaces");
    await expect(squashView.copyOut("a dir", path.join(tmp, "x"))).rejects.toThrow(/not a regular file/);
  });

  it("reports loops in a squashfs too", async () => {
    const root = path.join(tmp, "loop");
    makeTree(root, { vmlinuz: { link: "vmlinuz" }, "boot/x": "x" });
    const image = path.join(tmp, "loop.img");
    await squash(root, image);
    await expect(new SquashfsView(image, exec).resolve("vmlinuz")).rejects.toThrow(/Symlink loop while resolving vmlinuz in .*loop\.img/);
  });
});

describe("compareVersions", () => {
  it("orders like GNU sort -V", async () => {
    const names = [
      "vmlinuz-6.1.0-9-amd64",
      "vmlinuz-6.1.0-10-amd64",
      "vmlinuz-6.1.0-10-rt-amd64",
      "vmlinuz-5.10.0-28-amd64",
      "vmlinuz-6.1.0-rc1",
      "vmlinuz-6.1.0~rc1",
      "vmlinuz-6.1.0",
      "vmlinuz-6.1",
      "vmlinuz-0-rescue-0123abc",
      "vmlinuz-5.14.0-362.el9.x86_64",
      "vmlinuz-5.14.0-70.13.1.el9_0.x86_64",
      "initrd.img-6.1.0-10-amd64",
      "initrd.img",
      "a01",
      "a1",
      "a001b",
      "file.tar.gz",
      "file-1.tar.gz",
      "file-1.2.tar.gz",
      "file-1.10.tar.gz",
      ".hidden",
      "..",
      ".",
      "x~",
      "x",
      "x.0",
      "x-",
      "ÄÖ-2",
      "ÄÖ-10",
      "boot/vmlinuz",
      "vmlinuz",
    ];
    const { stdout } = await exec("sort", ["-V"], { input: `${names.join("\n")}\n`, env: { LC_ALL: "C" } });
    const expected = stdout.trimEnd().split("\n");
    expect([...names].sort(compareVersions)).toEqual(expected);
    expect([...names].reverse().sort(compareVersions)).toEqual(expected);
  });
});

describe("kernelInputGlobs", () => {
  it("lists each rule's kernel globs and the initrd globs they imply", () => {
    const globs = kernelInputGlobs();
    for (const glob of ["vmlinuz", "initrd.img", "boot/vmlinuz-*", "boot/initrd.img-*", "boot/initramfs-*.img", "casper/initrd.lz", "boot/core.gz"]) {
      expect(globs).toContain(glob);
    }
    expect(kernelInputGlobs({ kernelGlob: "/boot/Image-*", initrdFrom: { regex: "Image", replace: "uInitrd" } })).toEqual(
      expect.arrayContaining(["boot/Image-*", "boot/uInitrd-*", "boot/*", "boot/boot/Image-*"]),
    );
  });
});
