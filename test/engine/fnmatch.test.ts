import { describe, expect, it } from "vitest";
import { fnmatchComponent, isLiteralComponent } from "../../src/fingerprint/fnmatch.ts";

// Expected values are glibc's fnmatch(pattern, name, FNM_PATHNAME|FNM_PERIOD|FNM_EXTMATCH) in the
// C locale, which is what mksquashfs -wildcards uses; excludes.test.ts checks against mksquashfs.
const CASES: [pattern: string, name: string, glibc: boolean][] = [
  ["*", "file", true],
  ["*", ".hidden", false],
  [".*", ".hidden", true],
  ["?x", ".x", false],
  ["[.]x", ".x", false],
  ["*.[1-9]", "syslog.1", true],
  ["*.[1-9]", "syslog.10", false],
  ["*.[!1-9]", "syslog.a", true],
  ["[^a]b", "cb", true],
  ["[]x]", "]", true],
  ["[ab", "[ab", true],
  ["[ab", "a", false],
  ["\\*", "*", true],
  ["\\*", "x", false],
  ["x\\", "x", false],
  ["??-persistent-*.rules", "70-persistent-net.rules", true],
  ["??-persistent-*.rules", "7-persistent-net.rules", false],
  [".!(java)", ".git", true],
  [".!(java)", ".java", false],
  ["!(java)", ".git", true],
  ["!(java)", ".java", true],
  ["!(*)", ".git", true],
  ["!(*)", "x", false],
  ["*(.)java", ".java", true],
  ["@(*)", ".x", false],
  ["@(.*|x)", ".git", true],
  ["+(a|b)", "abba", true],
  ["+(a|b)", "", false],
  ["*(a)", "", true],
  ["?(a)b", "b", true],
  ["a*@(|x)", "a", false],
  ["a*@(|x)", "ax", true],
  ["@(a", "@(a", true],
  ["[[:alpha:]]", "q", true],
  ["[[:alpha:]]", "é", false],
  ["??", "é", true],
  ["?", "é", false],
  ["[[:foo:]]*", "x", false],
  ["[[.a.]]", "a", true],
  ["[[.ab.]]", "a", false],
  ["[[.a.]-]", "a", false],
  ["[[=a=]]", "a", true],
  ["[[:al]", "l", true],
];

describe("fnmatchComponent", () => {
  for (const [pattern, name, expected] of CASES) {
    it(`${JSON.stringify(pattern)} ${expected ? "matches" : "does not match"} ${JSON.stringify(name)}`, () => {
      expect(fnmatchComponent(pattern, name)).toBe(expected);
    });
  }

  it("recognises literal patterns", () => {
    expect(isLiteralComponent("lost+found")).toBe(true);
    expect(isLiteralComponent("a!b")).toBe(true);
    expect(isLiteralComponent("!(a)")).toBe(false);
    expect(isLiteralComponent("a\\b")).toBe(false);
  });
});
