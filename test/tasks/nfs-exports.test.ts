import { describe, expect, it } from "vitest";
import { renderNfsExports, type NfsExportsOptions } from "../../tasks/lib/nfs-exports.ts";

const RO = "ro,async,crossmnt,no_subtree_check,no_root_squash,insecure";
const RW = "rw,async,no_subtree_check,no_root_squash,insecure";

/** Export lines as [path, client spec…], commented ones marked. */
function exportsOf(text: string): Array<{ active: boolean; path: string; clients: string[] }> {
  return text
    .split("\n")
    .filter((line) => /^#?\//.test(line))
    .map((line) => {
      const active = !line.startsWith("#");
      const [path = "", ...clients] = line.replace(/^#/, "").split(/\s+/);
      return { active, path, clients };
    });
}

describe("renderNfsExports", () => {
  it("exports BASE_DIR and TFTP_DIR/ltsp read-only, and only a commented home, by default", () => {
    const text = renderNfsExports();
    expect(exportsOf(text)).toEqual([
      { active: true, path: "/srv/ltsp", clients: [`*(${RO})`] },
      { active: true, path: "/srv/tftp/ltsp", clients: [`*(${RO})`] },
      { active: false, path: "/home", clients: [`*(${RW})`] },
    ]);
    expect(text.endsWith("\n")).toBe(true);
  });

  it("comments out the TFTP export when it is off", () => {
    const lines = exportsOf(renderNfsExports({ tftp: false }));
    expect(lines.find((line) => line.path === "/srv/tftp/ltsp")?.active).toBe(false);
    expect(lines.find((line) => line.path === "/srv/ltsp")?.active).toBe(true);
  });

  it("exports the home directory read-write only when enabled", () => {
    const off = exportsOf(renderNfsExports({ homeDir: "/home/nfs" }));
    expect(off.filter((line) => line.active).map((line) => line.path)).toEqual(["/srv/ltsp", "/srv/tftp/ltsp"]);
    const on = exportsOf(renderNfsExports({ home: true, homeDir: "/home/nfs" }));
    expect(on.find((line) => line.path === "/home/nfs")).toEqual({ active: true, path: "/home/nfs", clients: [`*(${RW})`] });
  });

  it("uses the configured directories and client list", () => {
    const text = renderNfsExports({
      baseDir: "/opt/ltsp",
      tftpDir: "/var/lib/tftpboot/",
      clients: ["10.0.0.0/24", "*.lab.example", "@ltsp-clients"],
    });
    const spec = (options: string) => ["10.0.0.0/24", "*.lab.example", "@ltsp-clients"].map((client) => `${client}(${options})`);
    expect(exportsOf(text).slice(0, 2)).toEqual([
      { active: true, path: "/opt/ltsp", clients: spec(RO) },
      { active: true, path: "/var/lib/tftpboot/ltsp", clients: spec(RO) },
    ]);
  });

  it("drops trailing slashes from directories", () => {
    const paths = exportsOf(renderNfsExports({ baseDir: "/opt/ltsp//", homeDir: "/home/", home: true })).map((line) => line.path);
    expect(paths).toEqual(["/opt/ltsp", "/srv/tftp/ltsp", "/home"]);
  });

  it("is deterministic", () => {
    expect(renderNfsExports({ home: true })).toBe(renderNfsExports({ home: true }));
  });

  const cases: Array<[string, NfsExportsOptions, RegExp]> = [
    ["a space in a path", { baseDir: "/srv/my ltsp" }, /nfs\.baseDir .*space/],
    ["a newline and a second export", { homeDir: "/home\n/ *(rw,no_root_squash)" }, /nfs\.homeDir .*line break/],
    ["parentheses in a path", { tftpDir: "/srv/tftp(rw)" }, /nfs\.tftpDir .*"\("/],
    ["a quote in a path", { baseDir: '/srv/"ltsp"' }, /nfs\.baseDir .*"\\""/],
    ["a relative path", { baseDir: "srv/ltsp" }, /nfs\.baseDir .*absolute/],
    ["options in a client", { clients: ["*(rw)"] }, /nfs\.clients\[0\] .*"\("/],
    ["a space in a client", { clients: ["10.0.0.0/8 *"] }, /nfs\.clients\[0\] .*space/],
    ["no clients", { clients: [] }, /nfs\.clients .*empty/],
  ];
  for (const [what, options, message] of cases) {
    it(`rejects ${what}`, () => {
      expect(() => renderNfsExports(options)).toThrow(message);
    });
  }
});
