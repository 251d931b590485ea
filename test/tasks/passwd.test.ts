import { describe, expect, it } from "vitest";
import {
  DEFAULT_ID_BOUNDS,
  parseGroup,
  parseGshadow,
  parseLoginDefs,
  parsePasswd,
  parseShadow,
  removeHumanAccounts,
  serializeGroup,
  serializeGshadow,
  serializePasswd,
  serializeShadow,
} from "../../tasks/lib/passwd.ts";

const passwd = [
  "root:x:0:0:root:/root:/bin/bash",
  "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
  "www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin",
  "sshd:*:105:65534::/run/sshd:/usr/sbin/nologin",
  "svc:$6$leaked$hash:998:1020:service with a human-range group:/srv/svc:/usr/sbin/nologin",
  "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash",
  "bob:x:1001:1001:Bob:/home/bob:/bin/bash",
  "edge:x:60000:60000:upper bound:/home/edge:/bin/sh",
  "carol:x:60001:60001:above the range:/home/carol:/bin/sh",
  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
  "",
].join("\n");

const group = [
  "root:x:0:",
  "daemon:x:1:daemon",
  "sudo:x:27:alice,daemon,ghost",
  "www-data:x:33:",
  "shadow:x:42:",
  "users:x:100:alice,bob",
  "alice:x:1000:alice",
  "bob:x:1001:",
  "team:x:1005:alice,bob",
  "mixed:$1$grouphash:1006:alice,www-data,www-data",
  "svcgroup:x:1020:",
  "carolfriends:x:1030:carol,ghost",
  "edge:x:60000:",
  "carol:x:60001:",
  "nogroup:x:65534:",
  "",
].join("\n");

describe("parse and serialise", () => {
  it("round-trips the four databases", () => {
    expect(serializePasswd(parsePasswd(passwd))).toBe(passwd);
    expect(serializeGroup(parseGroup(group))).toBe(group);
    const shadow = "root:$y$j9T$abc:19000:0:99999:7:::\nalice:!:19001::::::\n";
    expect(serializeShadow(parseShadow(shadow))).toBe(shadow);
    const gshadow = "sudo:*:alice:alice,bob\nusers:!::\n";
    expect(serializeGshadow(parseGshadow(gshadow))).toBe(gshadow);
  });

  it("reads fields and member lists", () => {
    const [alice] = parsePasswd("alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n");
    expect(alice).toEqual({ name: "alice", password: "x", uid: 1000, gid: 1000, gecos: "Alice,,,", home: "/home/alice", shell: "/bin/bash" });
    expect(parseGroup("sudo:x:27:a,,b\n")[0]?.members).toEqual(["a", "b"]);
    expect(parseGroup("empty:x:5:\n")[0]?.members).toEqual([]);
  });

  it("names the file and line of a malformed entry", () => {
    expect(() => parsePasswd("root:x:0:0:root:/root:/bin/bash\nbroken:x:1\n", "etc/passwd")).toThrow(/etc\/passwd line 2 has 3 fields instead of 7/);
    expect(() => parseGroup("g:x:abc:\n", "etc/group")).toThrow(/etc\/group line 1 has GID "abc"/);
  });
});

describe("parseLoginDefs", () => {
  it("defaults to 1000-60000", () => {
    expect(parseLoginDefs("")).toEqual({ uidMin: 1000, uidMax: 60000, gidMin: 1000, gidMax: 60000 });
    expect(parseLoginDefs("# UID_MIN 5\nMAIL_DIR /var/mail\n")).toEqual(DEFAULT_ID_BOUNDS);
  });

  it("reads the four keys, with white space, comments, hex and octal", () => {
    const text = "# comment\nUID_MIN\t\t 500\nUID_MAX 0xFFFF\n  GID_MIN 010\nGID_MAX 29999\nUID_MIN 501\nSYS_UID_MAX 499\n";
    expect(parseLoginDefs(text)).toEqual({ uidMin: 501, uidMax: 65535, gidMin: 8, gidMax: 29999 });
  });

  it("rejects a value that is not a number", () => {
    expect(() => parseLoginDefs("UID_MIN many\n", "/etc/login.defs")).toThrow(/\/etc\/login.defs line 1: UID_MIN "many" is not a number/);
  });
});

describe("removeHumanAccounts", () => {
  const result = removeHumanAccounts({ passwd, group }, DEFAULT_ID_BOUNDS);
  const users = parsePasswd(result.passwd);
  const groups = new Map(parseGroup(result.group).map((g) => [g.name, g]));

  it("removes users in UID_MIN..UID_MAX and keeps the others", () => {
    expect(users.map((u) => u.name)).toEqual(["root", "daemon", "www-data", "sshd", "svc", "carol", "nobody"]);
    expect(result.removedUsers).toEqual(["alice", "bob", "edge"]);
    expect(users.find((u) => u.name === "nobody")?.uid).toBe(65534);
  });

  it("removes human groups left without members, keeps system groups and primary groups", () => {
    expect(result.removedGroups).toEqual(["alice", "bob", "team", "edge"]);
    // System groups stay even when empty.
    expect(groups.get("users")?.members).toEqual([]);
    expect(groups.has("root") && groups.has("nogroup") && groups.has("shadow")).toBe(true);
    // A kept user's primary group stays although nobody is listed in it.
    expect(groups.get("svcgroup")?.members).toEqual([]);
    // Outside the GID range.
    expect(groups.has("carol")).toBe(true);
  });

  it("keeps a human group that still has a member, and fixes member lists", () => {
    expect(groups.get("mixed")?.members).toEqual(["www-data"]);
    expect(groups.get("carolfriends")?.members).toEqual(["carol"]);
    expect(groups.get("sudo")?.members).toEqual(["daemon"]);
    // daemon is listed in its own primary group.
    expect(groups.get("daemon")?.members).toEqual([]);
    expect(result.removedMembers.sort()).toEqual(["alice", "bob", "ghost"]);
  });

  it("locks every account in a regenerated shadow, root included", () => {
    const shadow = parseShadow(result.shadow);
    expect(shadow.map((s) => s.name)).toEqual(users.map((u) => u.name));
    for (const entry of shadow) {
      expect(entry).toEqual({ name: entry.name, password: "!", lastChange: "", minDays: "", maxDays: "", warnDays: "", inactiveDays: "", expire: "", reserved: "" });
    }
    expect(result.shadow.split("\n")[0]).toBe("root:!:::::::");
  });

  it("leaves no hash in passwd or group either", () => {
    expect(users.every((u) => u.password === "x")).toBe(true);
    expect([...groups.values()].every((g) => g.password === "x")).toBe(true);
    expect(result.passwd + result.group + result.shadow + result.gshadow).not.toMatch(/\$/);
  });

  it("rebuilds gshadow with * and no administrators", () => {
    const gshadow = parseGshadow(result.gshadow);
    expect(gshadow.map((g) => g.name)).toEqual([...groups.keys()]);
    for (const entry of gshadow) {
      expect(entry.password).toBe("*");
      expect(entry.admins).toEqual([]);
      expect(entry.members).toEqual(groups.get(entry.name)?.members);
    }
  });

  it("follows the bounds it is given", () => {
    const narrow = removeHumanAccounts({ passwd, group }, { uidMin: 1001, uidMax: 1001, gidMin: 1001, gidMax: 1001 });
    expect(narrow.removedUsers).toEqual(["bob"]);
    expect(narrow.removedGroups).toEqual(["bob"]);
    expect(parseGroup(narrow.group).find((g) => g.name === "team")?.members).toEqual(["alice"]);
  });
});
