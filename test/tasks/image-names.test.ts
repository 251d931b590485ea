import { mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { machine } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  architectureName,
  discoverImages,
  imageNameProblem,
  nameFromPath,
  resolveSource,
  validateImageName,
} from "../../tasks/lib/image-names.ts";
import { makeTempDir, makeTree } from "./disk-fixtures.ts";

describe("validateImageName", () => {
  it.each(["debian", "bookworm-amd64", "x86_64", "ubuntu22.04", "a+b", "A_B.c-1", "x"])("accepts %j", (name) => {
    expect(validateImageName(name)).toBe(name);
    expect(imageNameProblem(name)).toBeUndefined();
  });

  it.each([
    ["", /it is empty/],
    ["my image", /contains a space/],
    ["tab\there", /whitespace/],
    ["a,b", /comma/],
    ["a/b", /contains a "\/"/],
    ["..", /not a name/],
    [".", /not a name/],
    ["a..b", /contains "\.\."/],
    [".hidden", /starts with "\."/],
    ["-rf", /starts with "-"/],
    ["line\nbreak", /whitespace/],
    ["bell\u0007", /control character \(0x07\)/],
    ['quote"d', /contains """/],
    ["it's", /contains "'"/],
    ["$HOME", /contains "\$"/],
    ["host:path", /contains ":"/],
    ["a=b", /contains "="/],
    ["x".repeat(201), /longer than 200/],
  ])("refuses %j", (name, reason) => {
    expect(() => validateImageName(name)).toThrow(reason);
    expect(() => validateImageName(name)).toThrow(`Invalid image name ${JSON.stringify(name)}`);
    expect(() => validateImageName(name)).toThrow(/Rename the chroot, VM disk or image/);
  });
});

describe("nameFromPath", () => {
  it("takes the basename and strips .img from files only", () => {
    expect(nameFromPath("/srv/ltsp/debian", false)).toBe("debian");
    expect(nameFromPath("/srv/ltsp/images/debian.img", true)).toBe("debian");
    expect(nameFromPath("/srv/ltsp/debian.img", false)).toBe("debian.img");
    expect(nameFromPath("/home/u/VMs/debian-flat.vmdk", true)).toBe("debian-flat.vmdk");
    expect(nameFromPath("/home/u/amd64", false)).toBe("amd64");
  });

  it("names / and paths ending in / after the architecture", () => {
    expect(nameFromPath("/", false)).toBe(architectureName(machine()));
    expect(nameFromPath("/srv/ltsp/foo/", false)).toBe(architectureName());
    expect(architectureName("x86_64")).toBe("x86_64");
    expect(architectureName("i686")).toBe("x86_32");
    expect(architectureName("i386")).toBe("x86_32");
    expect(architectureName("aarch64")).toBe("aarch64");
  });

  it("refuses paths that give an invalid name", () => {
    expect(() => nameFromPath("/home/u/VirtualBox VMs/my disk.img", true)).toThrow(/Invalid image name "my disk" \(from .*my disk\.img"\)/);
    expect(() => nameFromPath("/srv/a,b", false)).toThrow(/comma/);
  });
});

describe("resolveSource and discoverImages", () => {
  let base: string;
  let cwd: string;

  beforeEach(() => {
    const top = makeTempDir();
    base = join(top, "base");
    cwd = join(top, "cwd");
    makeTree(base, {
      // chroot beats the VM disk and the image of the same name
      "both/proc": null,
      "both.img": "vm",
      "images/both.img": "squashfs",
      // VM disk beats the image
      "vm.img": "vm",
      "images/vm.img": "squashfs",
      "images/exported.img": "squashfs",
      // a directory without proc/ is no chroot
      "plain/etc": null,
      "disk.vmdk": "raw",
      "images/not-an-image.txt": "",
    });
    makeTree(cwd, { "local/proc": null, "here.raw": "raw" });
  });

  afterEach(() => {
    rmSync(join(base, ".."), { recursive: true, force: true });
  });

  it("follows the order chroot, VM disk, exported image, BASE/NAME, ./NAME", () => {
    expect(resolveSource("both", base, cwd)).toEqual({ name: "both", path: join(base, "both"), kind: "chroot" });
    expect(resolveSource("vm", base, cwd)).toEqual({ name: "vm", path: join(base, "vm.img"), kind: "vm-disk" });
    expect(resolveSource("exported", base, cwd)).toEqual({ name: "exported", path: join(base, "images/exported.img"), kind: "image" });
    expect(resolveSource("plain", base, cwd)).toEqual({ name: "plain", path: join(base, "plain"), kind: "dir" });
    expect(resolveSource("disk.vmdk", base, cwd)).toEqual({ name: "disk.vmdk", path: join(base, "disk.vmdk"), kind: "vm-disk" });
    expect(resolveSource("local", base, cwd)).toEqual({ name: "local", path: join(cwd, "local"), kind: "chroot" });
    expect(resolveSource("here.raw", base, cwd)).toEqual({ name: "here.raw", path: join(cwd, "here.raw"), kind: "vm-disk" });
  });

  it("uses only the part before the first comma", () => {
    expect(resolveSource("vm,partition=2", base, cwd).path).toBe(join(base, "vm.img"));
  });

  it("takes arguments starting with / or . as paths", () => {
    expect(resolveSource(join(base, "images/vm.img"), base, cwd)).toEqual({ name: "vm", path: join(base, "images/vm.img"), kind: "image" });
    expect(resolveSource("./here.raw", base, cwd)).toEqual({ name: "here.raw", path: join(cwd, "here.raw"), kind: "vm-disk" });
    expect(resolveSource(".", base, join(base, "both"))).toEqual({ name: "both", path: join(base, "both"), kind: "chroot" });
    expect(resolveSource(`${base}/plain/`, base, cwd).name).toBe(architectureName());
    symlinkSync(join(base, "both"), join(cwd, "amd64"));
    expect(resolveSource(join(cwd, "amd64"), base, cwd)).toEqual({ name: "amd64", path: join(cwd, "amd64"), kind: "chroot" });
  });

  it("says what it looked for when nothing matches", () => {
    expect(() => resolveSource("nothing", base, cwd)).toThrow(
      `Image "nothing" does not exist. Looked for a chroot ${base}/nothing/proc, a VM disk ${base}/nothing.img, ` +
        `an exported image ${base}/images/nothing.img, then ${base}/nothing and ${cwd}/nothing.`,
    );
    expect(() => resolveSource("/does/not/exist", base, cwd)).toThrow(/\/does\/not\/exist does not exist/);
    expect(() => resolveSource("", base, cwd)).toThrow(/Empty image source/);
  });

  it("lists chroots, VM disks and exported images once each, sorted, with chroot > VM > image priority", () => {
    writeFileSync(join(base, "zero.img"), "");
    symlinkSync(join(base, "missing-target"), join(base, "dangling.img"));
    mkdirSync(join(base, "dir.img")); // a directory named .img is not a VM disk
    expect(discoverImages(base)).toEqual([
      { name: "both", path: join(base, "both"), kind: "chroot" },
      { name: "exported", path: join(base, "images/exported.img"), kind: "image" },
      { name: "vm", path: join(base, "vm.img"), kind: "vm-disk" },
      { name: "zero", path: join(base, "zero.img"), kind: "vm-disk" },
    ]);
  });

  it("refuses an image whose name would be invalid, naming the file", () => {
    writeFileSync(join(base, "images", "bad name.img"), "");
    expect(() => discoverImages(base)).toThrow(`Invalid image name "bad name" (from ${JSON.stringify(join(base, "images", "bad name.img"))})`);
  });

  it("finds nothing in an empty or missing base directory", () => {
    expect(discoverImages(join(base, "missing"))).toEqual([]);
  });
});
