import { describe, expect, it } from "vitest";
import {
  InvalidValueError,
  describeCharacter,
  validateCidr,
  validateDnsmasqField,
  validateDnsmasqRawLine,
  validateExportsClient,
  validateExportsPath,
  validateHost,
  validateHostname,
  validateImageName,
  validateIpAddress,
  validateIpv4,
  validateIpxeText,
  validateIpxeUrlBase,
  validateKernelParameters,
  validateKernelPath,
  validateLine,
  validateMac,
  validateNbdExportName,
  validateNbdValue,
  validatePort,
} from "../../tasks/lib/validate.ts";

function errorOf(run: () => unknown): InvalidValueError {
  try {
    run();
  } catch (error) {
    if (error instanceof InvalidValueError) return error;
    throw error;
  }
  throw new Error("expected an InvalidValueError, but nothing was thrown");
}

describe("error messages", () => {
  it("name the field, show the value and say what is wrong", () => {
    const error = errorOf(() => validateLine("ipxe.images.a.title", "one\ntwo"));
    expect(error.field).toBe("ipxe.images.a.title");
    expect(error.value).toBe("one\ntwo");
    expect(error.message).toBe('Invalid ipxe.images.a.title "one\\ntwo": contains a line break. Write it on one line, without control characters.');
  });

  it("shorten very long values", () => {
    const error = errorOf(() => validateLine("x", `${"a".repeat(500)}\n`));
    expect(error.message.length).toBeLessThan(250);
  });

  it("describe characters readably", () => {
    expect(describeCharacter("\r")).toBe("a line break");
    expect(describeCharacter("\t")).toBe("a tab");
    expect(describeCharacter("\u0007")).toBe("the control character U+0007");
    expect(describeCharacter("\u0085")).toBe("the control character U+0085");
    expect(describeCharacter(",")).toBe('","');
  });

  it("reject values that are not strings", () => {
    expect(errorOf(() => validateLine("f", 42)).message).toMatch(/must be a string, not number/);
    expect(errorOf(() => validateImageName("f", undefined)).message).toMatch(/must be a string, not undefined/);
  });
});

describe("injection attempts", () => {
  const attempts = ["a\ndhcp-boot=evil", "a\rb", "a\u2028b", "a\u0000b", "\u001b[31mred"];
  const validators: Array<[string, (field: string, value: unknown) => unknown]> = [
    ["line", validateLine],
    ["ipxe text", validateIpxeText],
    ["kernel parameters", validateKernelParameters],
    ["hostname", validateHostname],
    ["dnsmasq field", validateDnsmasqField],
    ["dnsmasq raw line", validateDnsmasqRawLine],
    ["exports path", validateExportsPath],
    ["exports client", validateExportsClient],
    ["nbd export name", validateNbdExportName],
    ["nbd value", validateNbdValue],
    ["image name", validateImageName],
    ["kernel path", validateKernelPath],
    ["mac", validateMac],
  ];
  for (const [name, validate] of validators) {
    it(`${name}: rejects line breaks and control characters, naming the field`, () => {
      for (const attempt of attempts) {
        const error = errorOf(() => validate("the.field", attempt));
        expect(error.field).toBe("the.field");
        expect(error.message).toMatch(/^Invalid the\.field /);
      }
    });
  }
});

describe("iPXE values", () => {
  it("passes plain titles through, collapsing whitespace", () => {
    expect(validateIpxeText("t", "Debian 12 (bookworm) — amd64")).toBe("Debian 12 (bookworm) — amd64");
    expect(validateIpxeText("t", " a \t b ".replace("\t", " "))).toBe("a b");
    expect(validateIpxeText("t", "cost: 5$ or 10%")).toBe("cost: 5$ or 10%");
    expect(validateIpxeText("t", "C# and a-b||c")).toBe("C# and a-b||c");
  });

  it("rejects what iPXE would interpret", () => {
    expect(errorOf(() => validateIpxeText("t", "x ${net0/mac}")).message).toMatch(/expand as a setting/);
    expect(errorOf(() => validateIpxeText("t", "x || shell")).message).toMatch(/end of a command/);
    expect(errorOf(() => validateIpxeText("t", "x && shell")).message).toMatch(/end of a command/);
    expect(errorOf(() => validateIpxeText("t", "x ; shell")).message).toMatch(/end of a command/);
    expect(errorOf(() => validateIpxeText("t", "#1 choice")).message).toMatch(/comment/);
    expect(errorOf(() => validateIpxeText("t", "ends with \\")).message).toMatch(/continuation/);
    expect(errorOf(() => validateIpxeText("t", "-x")).message).toMatch(/option/);
    expect(errorOf(() => validateIpxeText("t", "   ")).message).toMatch(/empty/);
  });

  it("accepts usual kernel parameters and rejects unbalanced quotes", () => {
    expect(validateKernelParameters("k", "quiet splash  nomodeset vga=791 ltsp.x=\"a b\"")).toBe('quiet splash nomodeset vga=791 ltsp.x="a b"');
    expect(validateKernelParameters("k", "")).toBe("");
    expect(errorOf(() => validateKernelParameters("k", 'init="/bin/sh')).message).toMatch(/unbalanced double quote/);
  });

  it("accepts tftp/http URL bases and strips a trailing slash", () => {
    expect(validateIpxeUrlBase("u", "tftp://10.0.0.9/")).toBe("tftp://10.0.0.9");
    expect(validateIpxeUrlBase("u", "http://boot.example:8080/ltsp-files")).toBe("http://boot.example:8080/ltsp-files");
    expect(validateIpxeUrlBase("u", "tftp://[fd00::9]")).toBe("tftp://[fd00::9]");
    expect(errorOf(() => validateIpxeUrlBase("u", "ftp://x")).message).toMatch(/tftp:\/\//);
    expect(errorOf(() => validateIpxeUrlBase("u", "tftp://x y")).field).toBe("u");
    expect(errorOf(() => validateIpxeUrlBase("u", "tftp://h/a b")).message).toMatch(/space/);
    expect(errorOf(() => validateIpxeUrlBase("u", "tftp://h:99999")).message).toMatch(/between 1 and 65535/);
  });
});

describe("names and addresses", () => {
  it("image names", () => {
    for (const name of ["x86_64", "bookworm", "debian-flat.vmdk", "a+b"]) expect(validateImageName("n", name)).toBe(name);
    for (const name of ["", "a b", "a,b", "-x", ".x", "a/b", "a..b", "a\tb"]) expect(() => validateImageName("n", name)).toThrow(InvalidValueError);
  });

  it("MAC addresses are normalised to lower case with colons", () => {
    expect(validateMac("m", "52:54:00:AA:bb:Cc")).toBe("52:54:00:aa:bb:cc");
    expect(validateMac("m", "52-54-00-AA-BB-CC")).toBe("52:54:00:aa:bb:cc");
    expect(errorOf(() => validateMac("m", "52:54:00:*:*:*")).message).toMatch(/wildcard/);
    expect(errorOf(() => validateMac("m", "52:54:00:aa:bb")).message).toMatch(/not a MAC address/);
  });

  it("IPv4, IP and CIDR", () => {
    expect(validateIpv4("a", "192.168.67.1")).toBe("192.168.67.1");
    for (const bad of ["256.1.1.1", "1.2.3", "010.0.0.1", "1.2.3.4 ", "1.2.3.4,5.6.7.8"]) expect(() => validateIpv4("a", bad)).toThrow(InvalidValueError);
    expect(validateIpAddress("a", "fd00::1")).toBe("fd00::1");
    expect(() => validateIpAddress("a", "fe80::1%eth0")).toThrow(InvalidValueError);
    expect(validateCidr("c", "10.0.0.0/8")).toBe("10.0.0.0/8");
    expect(validateCidr("c", "fd00::/8")).toBe("fd00::/8");
    expect(validateCidr("c", "127.0.0.1")).toBe("127.0.0.1");
    for (const bad of ["10.0.0.0/33", "10.0.0.0/x", "10.0.0.0/8/8", "host/8"]) expect(() => validateCidr("c", bad)).toThrow(InvalidValueError);
  });

  it("host names and hosts", () => {
    expect(validateHostname("h", "pc-01.lab.example")).toBe("pc-01.lab.example");
    for (const bad of ["pc_01", "-pc", "pc-", "a..b", "pc 1", 'pc"1', "pc;reboot", "a".repeat(64)]) {
      expect(() => validateHostname("h", bad)).toThrow(InvalidValueError);
    }
    expect(validateHost("h", "10.0.0.1")).toBe("10.0.0.1");
    expect(validateHost("h", "boot.example")).toBe("boot.example");
    expect(errorOf(() => validateHost("h", "10.0.0.300")).message).toMatch(/not a valid IPv4/);
  });

  it("ports", () => {
    expect(validatePort("p", 10809)).toBe(10809);
    for (const bad of [0, 65536, 1.5, "10809", Number.NaN]) expect(() => validatePort("p", bad)).toThrow(InvalidValueError);
  });
});

describe("target-specific values", () => {
  it("dnsmasq fields can't split or quote", () => {
    expect(validateDnsmasqField("d", "eth0")).toBe("eth0");
    for (const bad of ["a,b", "a=b", 'a"b', "a#b", "a b", "a\\b"]) expect(() => validateDnsmasqField("d", bad)).toThrow(InvalidValueError);
    expect(errorOf(() => validateDnsmasqRawLine("d", "  port=0")).message).toMatch(/starts with whitespace/);
    expect(validateDnsmasqRawLine("d", 'dhcp-option=option:domain-search,"lab.example"')).toBe('dhcp-option=option:domain-search,"lab.example"');
  });

  it("exports paths and clients", () => {
    expect(validateExportsPath("e", "/srv/ltsp")).toBe("/srv/ltsp");
    for (const bad of ["/srv/a b", "/srv/a(rw)", '/srv/"a"', "/srv/a#b", "relative"]) expect(() => validateExportsPath("e", bad)).toThrow(InvalidValueError);
    for (const good of ["*", "10.0.0.0/24", "*.lab.example", "@group", "fd00::/64"]) expect(validateExportsClient("e", good)).toBe(good);
    for (const bad of ["*(rw)", "a b", "a,b"]) expect(() => validateExportsClient("e", bad)).toThrow(InvalidValueError);
  });

  it("kernel paths can't carry nfsroot options or spaces", () => {
    expect(validateKernelPath("k", "/srv/ltsp")).toBe("/srv/ltsp");
    for (const bad of ["/srv/ltsp,vers=3", "/srv/my ltsp", "/srv/${x}", "srv"]) expect(() => validateKernelPath("k", bad)).toThrow(InvalidValueError);
  });

  it("nbd export names and values", () => {
    for (const good of ["bookworm", "ltsp/bookworm", "/opt/ltsp/i386"]) expect(validateNbdExportName("n", good)).toBe(good);
    for (const bad of ["[x]", "a=b", "a b", "a,b", "a:b", "-N", "generic"]) expect(() => validateNbdExportName("n", bad)).toThrow(InvalidValueError);
    expect(validateNbdValue("n", "/srv/ltsp/images/a.img")).toBe("/srv/ltsp/images/a.img");
    for (const bad of [" /a", "/a ", "/a\\b"]) expect(() => validateNbdValue("n", bad)).toThrow(InvalidValueError);
  });
});
