import { describe, expect, it } from "vitest";
import { formatSourceSpec, parseSourceSpec } from "../../tasks/lib/source-spec.ts";

describe("parseSourceSpec", () => {
  it("parses a plain name", () => {
    expect(parseSourceSpec("debian")).toEqual([{ path: "debian", subdir: "", options: [] }]);
  });

  it("parses a chrootless chain with a separate /boot", () => {
    expect(parseSourceSpec("/,,/boot,subdir=boot")).toEqual([
      { path: "/", subdir: "", options: [] },
      { path: "/boot", subdir: "boot", options: [] },
    ]);
  });

  it("parses a forced partition", () => {
    expect(parseSourceSpec("name,partition=2")).toEqual([{ path: "name", partition: 2, subdir: "", options: [] }]);
  });

  it("parses a live CD chain, passing the remaining options to mount", () => {
    expect(parseSourceSpec("image.iso,fstype=iso9660,loop,ro,,casper/filesystem.squashfs,fstype=squashfs")).toEqual([
      { path: "image.iso", fstype: "iso9660", subdir: "", options: ["loop", "ro"] },
      { path: "casper/filesystem.squashfs", fstype: "squashfs", subdir: "", options: [] },
    ]);
  });

  it("takes the special options in any order before the mount options", () => {
    expect(parseSourceSpec("vm.img,subdir=boot/efi,partition=1,fstype=vfat,umask=077,noexec")).toEqual([
      { path: "vm.img", fstype: "vfat", partition: 1, subdir: "boot/efi", options: ["umask=077", "noexec"] },
    ]);
  });

  it("normalises subdir", () => {
    expect(parseSourceSpec("/,,/boot/efi,subdir=./boot//efi/")[1]?.subdir).toBe("boot/efi");
    expect(parseSourceSpec("/,,/x,subdir=")[1]?.subdir).toBe("");
  });

  it("splits entries at every double comma", () => {
    expect(parseSourceSpec("vm,ro,,x,a,,b").map((entry) => [entry.path, entry.options])).toEqual([
      ["vm", ["ro"]],
      ["x", ["a"]],
      ["b", []],
    ]);
  });

  it("formats a parsed chain back to its canonical text", () => {
    const text = "vm.img,fstype=ext4,partition=2,subdir=opt,errors=continue,,/boot,subdir=boot";
    expect(formatSourceSpec(parseSourceSpec(text))).toBe(text);
    expect(formatSourceSpec(parseSourceSpec("x,subdir=a,fstype=ext4"))).toBe("x,fstype=ext4,subdir=a");
  });

  it.each([
    ["", /it is empty/],
    ["/,,/boot,subdir=/boot", /subdir=\/boot is absolute.*subdir=boot\./],
    ["/,,/boot,subdir=../boot", /subdir=\.\.\/boot contains "\.\."/],
    ["/,,/boot,subdir=a/../../b", /contains "\.\."/],
    ["vm,partition=0", /partition=0 is not a partition number/],
    ["vm,partition=-1", /partition=-1 is not a partition number/],
    ["vm,partition=two", /partition=two is not a partition number/],
    ["vm,partition=1.5", /not a partition number/],
    ["vm,partition=", /not a partition number/],
    ["vm,partition=1,partition=2", /partition= is given twice/],
    ["vm,fstype=", /fstype= is not a filesystem type/],
    ["vm,fstype=ext4;rm", /not a filesystem type/],
    ["/,,", /the entry "" has no path/],
    [",,/boot", /has no path/],
    ["/,,,/boot", /the entry ",\/boot" has no path/],
    ["vm,ro,,", /has no path/],
    ["vm,,", /has no path/],
    ["vm,ro,subdir=boot", /subdir= comes after the mount option "ro".*right after the path/],
    ["vm,a,,,", /has no path/],
    ["vm,a,", /empty mount option/],
    ["a\nb", /line break/],
  ])("refuses %j", (spec, reason) => {
    expect(() => parseSourceSpec(spec)).toThrow(reason);
    expect(() => parseSourceSpec(spec)).toThrow(`Invalid image source ${JSON.stringify(spec)}`);
  });
});
