// The account databases (passwd, group, shadow, gshadow, login.defs) as text in, text out, and
// the image's account cleanup: human accounts leave, no password hash survives.

export interface PasswdEntry {
  name: string;
  /** Normally "x": the password is in shadow. */
  password: string;
  uid: number;
  gid: number;
  gecos: string;
  home: string;
  shell: string;
}

export interface GroupEntry {
  name: string;
  password: string;
  gid: number;
  members: string[];
}

export interface ShadowEntry {
  name: string;
  password: string;
  lastChange: string;
  minDays: string;
  maxDays: string;
  warnDays: string;
  inactiveDays: string;
  expire: string;
  reserved: string;
}

export interface GshadowEntry {
  name: string;
  password: string;
  admins: string[];
  members: string[];
}

/** The ranges of ordinary (human) accounts, from login.defs. */
export interface IdBounds {
  uidMin: number;
  uidMax: number;
  gidMin: number;
  gidMax: number;
}

export const DEFAULT_ID_BOUNDS: Readonly<IdBounds> = { uidMin: 1000, uidMax: 60000, gidMin: 1000, gidMax: 60000 };

function fields(line: string, count: number, file: string, lineNumber: number): string[] {
  const parts = line.split(":");
  if (parts.length !== count) {
    throw new Error(`${file} line ${lineNumber} has ${parts.length} fields instead of ${count}; fix or remove that line.`);
  }
  return parts;
}

function id(text: string, what: string, file: string, lineNumber: number): number {
  if (!/^\d+$/.test(text)) throw new Error(`${file} line ${lineNumber} has ${what} ${JSON.stringify(text)}, not a number; fix that line.`);
  return Number(text);
}

/** Non-empty lines with their 1-based numbers; surrounding white space is dropped. */
function lines(text: string): [string, number][] {
  const result: [string, number][] = [];
  text.split("\n").forEach((raw, index) => {
    const line = raw.trim();
    if (line !== "") result.push([line, index + 1]);
  });
  return result;
}

function splitList(text: string): string[] {
  return text.split(",").filter((item) => item !== "");
}

export function parsePasswd(text: string, file = "passwd"): PasswdEntry[] {
  return lines(text).map(([line, n]) => {
    const [name, password, uid, gid, gecos, home, shell] = fields(line, 7, file, n) as [string, string, string, string, string, string, string];
    return { name, password, uid: id(uid, "UID", file, n), gid: id(gid, "GID", file, n), gecos, home, shell };
  });
}

export function serializePasswd(entries: readonly PasswdEntry[]): string {
  return entries.map((e) => `${e.name}:${e.password}:${e.uid}:${e.gid}:${e.gecos}:${e.home}:${e.shell}\n`).join("");
}

export function parseGroup(text: string, file = "group"): GroupEntry[] {
  return lines(text).map(([line, n]) => {
    const [name, password, gid, members] = fields(line, 4, file, n) as [string, string, string, string];
    return { name, password, gid: id(gid, "GID", file, n), members: splitList(members) };
  });
}

export function serializeGroup(entries: readonly GroupEntry[]): string {
  return entries.map((e) => `${e.name}:${e.password}:${e.gid}:${e.members.join(",")}\n`).join("");
}

export function parseShadow(text: string, file = "shadow"): ShadowEntry[] {
  return lines(text).map(([line, n]) => {
    const [name, password, lastChange, minDays, maxDays, warnDays, inactiveDays, expire, reserved] = fields(line, 9, file, n) as [
      string, string, string, string, string, string, string, string, string,
    ];
    return { name, password, lastChange, minDays, maxDays, warnDays, inactiveDays, expire, reserved };
  });
}

export function serializeShadow(entries: readonly ShadowEntry[]): string {
  return entries
    .map((e) => `${e.name}:${e.password}:${e.lastChange}:${e.minDays}:${e.maxDays}:${e.warnDays}:${e.inactiveDays}:${e.expire}:${e.reserved}\n`)
    .join("");
}

export function parseGshadow(text: string, file = "gshadow"): GshadowEntry[] {
  return lines(text).map(([line, n]) => {
    const [name, password, admins, members] = fields(line, 4, file, n) as [string, string, string, string];
    return { name, password, admins: splitList(admins), members: splitList(members) };
  });
}

export function serializeGshadow(entries: readonly GshadowEntry[]): string {
  return entries.map((e) => `${e.name}:${e.password}:${e.admins.join(",")}:${e.members.join(",")}\n`).join("");
}

/**
 * UID_MIN, UID_MAX, GID_MIN and GID_MAX from login.defs text; absent keys keep their
 * defaults (1000 and 60000). Numbers may be decimal, 0x hexadecimal or 0 octal, as shadow's
 * tools read them; the last setting of a key wins.
 */
export function parseLoginDefs(text: string, file = "login.defs"): IdBounds {
  const keys: Record<string, keyof IdBounds> = { UID_MIN: "uidMin", UID_MAX: "uidMax", GID_MIN: "gidMin", GID_MAX: "gidMax" };
  const bounds: IdBounds = { ...DEFAULT_ID_BOUNDS };
  for (const [line, n] of lines(text)) {
    const [key, value] = line.split(/\s+/);
    const field = key === undefined ? undefined : keys[key];
    if (!field) continue;
    const parsed = value === undefined ? Number.NaN : parseCNumber(value);
    if (!Number.isSafeInteger(parsed) || parsed < 0) {
      throw new Error(`${file} line ${n}: ${key} ${JSON.stringify(value ?? "")} is not a number; fix that line.`);
    }
    bounds[field] = parsed;
  }
  return bounds;
}

function parseCNumber(text: string): number {
  if (/^0x[0-9a-f]+$/i.test(text)) return Number.parseInt(text.slice(2), 16);
  if (/^0[0-7]+$/.test(text)) return Number.parseInt(text.slice(1), 8);
  if (/^\d+$/.test(text)) return Number(text);
  return Number.NaN;
}

export interface AccountFiles {
  passwd: string;
  group: string;
}

export interface AccountCleanup {
  passwd: string;
  group: string;
  shadow: string;
  gshadow: string;
  removedUsers: string[];
  removedGroups: string[];
  /** Supplementary memberships dropped because the user no longer exists. */
  removedMembers: string[];
}

/**
 * Remove human accounts from an image's account database.
 *
 * - Users with a UID in [uidMin, uidMax] are removed; system users and those above the range
 *   (nobody, 65534) stay.
 * - Member lists lose users that do not exist and users listed in their own primary group.
 * - Groups with a GID in [gidMin, gidMax] left without members are removed, unless they are the
 *   primary group of a remaining user.
 * - shadow is regenerated from passwd: password "!" (locked) and empty aging fields for every
 *   account, root included; gshadow is rebuilt with "*" and no administrators. The old shadow
 *   and gshadow are not read, so no hash survives. A password kept in passwd or group itself
 *   would, so those fields become "x" too.
 *
 * Clients merge the server's accounts in at boot; the image needs only its system accounts.
 */
export function removeHumanAccounts(files: AccountFiles, bounds: IdBounds = DEFAULT_ID_BOUNDS): AccountCleanup {
  const users = parsePasswd(files.passwd, "etc/passwd");
  const groups = parseGroup(files.group, "etc/group");
  const isHumanUid = (uid: number) => bounds.uidMin <= uid && uid <= bounds.uidMax;
  const isHumanGid = (gid: number) => bounds.gidMin <= gid && gid <= bounds.gidMax;

  const keptUsers = users.filter((user) => !isHumanUid(user.uid));
  const removedUsers = users.filter((user) => isHumanUid(user.uid)).map((user) => user.name);
  const primaryGid = new Map(keptUsers.map((user) => [user.name, user.gid]));
  // A GID shared by several groups names the last of them, as upstream reads it.
  const groupNameOfGid = new Map(groups.map((group) => [group.gid, group.name]));
  const primaryGroupNames = new Set(keptUsers.map((user) => groupNameOfGid.get(user.gid)));

  const removedGroups: string[] = [];
  const removedMembers = new Set<string>();
  const keptGroups: GroupEntry[] = [];
  for (const group of groups) {
    const members: string[] = [];
    for (const member of group.members) {
      const gid = primaryGid.get(member);
      if (gid === undefined) removedMembers.add(member);
      else if (gid !== group.gid && !members.includes(member)) members.push(member);
    }
    if (members.length === 0 && isHumanGid(group.gid) && !primaryGroupNames.has(group.name)) {
      removedGroups.push(group.name);
      continue;
    }
    keptGroups.push({ ...group, password: "x", members });
  }

  const lockedUsers = keptUsers.map((user) => ({ ...user, password: "x" }));
  const shadow = keptUsers.map((user) => ({
    name: user.name,
    password: "!",
    lastChange: "",
    minDays: "",
    maxDays: "",
    warnDays: "",
    inactiveDays: "",
    expire: "",
    reserved: "",
  }));
  const gshadow = keptGroups.map((group) => ({ name: group.name, password: "*", admins: [], members: group.members }));
  return {
    passwd: serializePasswd(lockedUsers),
    group: serializeGroup(keptGroups),
    shadow: serializeShadow(shadow),
    gshadow: serializeGshadow(gshadow),
    removedUsers,
    removedGroups,
    removedMembers: [...removedMembers],
  };
}
