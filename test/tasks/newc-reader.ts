// A strict reader of newc cpio archives for tests, applying the rules the kernel's initramfs
// unpacker applies: magic 070701 at a 4-byte aligned offset, hex header fields, a NUL-terminated
// name padded with header to 4 bytes, data padded to 4 bytes, nothing but zeros after the trailer.

export interface NewcEntry {
  name: string;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  devMajor: number;
  devMinor: number;
  rdevMajor: number;
  rdevMinor: number;
  check: number;
  data: Buffer;
  /** Offset of the header in the archive. */
  offset: number;
}

const FIELDS = ["ino", "mode", "uid", "gid", "nlink", "mtime", "filesize", "devMajor", "devMinor", "rdevMajor", "rdevMinor", "namesize", "check"] as const;

function align4(n: number): number {
  return (n + 3) & ~3;
}

export function readNewc(archive: Buffer): NewcEntry[] {
  const entries: NewcEntry[] = [];
  let offset = 0;
  for (;;) {
    if (offset % 4 !== 0) throw new Error(`header at ${offset} is not 4-byte aligned`);
    if (offset + 110 > archive.length) throw new Error(`truncated header at ${offset}`);
    const magic = archive.toString("ascii", offset, offset + 6);
    if (magic !== "070701") throw new Error(`bad magic ${JSON.stringify(magic)} at ${offset}`);
    const values: Record<string, number> = {};
    FIELDS.forEach((field, i) => {
      const text = archive.toString("ascii", offset + 6 + i * 8, offset + 14 + i * 8);
      if (!/^[0-9A-Fa-f]{8}$/.test(text)) throw new Error(`field ${field} at ${offset} is not hex: ${text}`);
      values[field] = parseInt(text, 16);
    });
    const nameSize = values.namesize ?? 0;
    const fileSize = values.filesize ?? 0;
    if (nameSize < 1) throw new Error(`empty name at ${offset}`);
    const nameStart = offset + 110;
    if (archive[nameStart + nameSize - 1] !== 0) throw new Error(`name at ${offset} is not NUL-terminated`);
    const name = archive.toString("utf8", nameStart, nameStart + nameSize - 1);
    if (name.includes("\0")) throw new Error(`name at ${offset} contains NUL`);
    const dataStart = align4(nameStart + nameSize);
    for (let i = nameStart + nameSize; i < dataStart; i++) if (archive[i] !== 0) throw new Error(`non-zero name padding after ${name}`);
    const dataEnd = dataStart + fileSize;
    if (dataEnd > archive.length) throw new Error(`truncated data of ${name}`);
    const next = align4(dataEnd);
    for (let i = dataEnd; i < next; i++) if (archive[i] !== 0) throw new Error(`non-zero data padding after ${name}`);
    if (name === "TRAILER!!!") {
      for (let i = next; i < archive.length; i++) if (archive[i] !== 0) throw new Error(`non-zero byte ${i} after the trailer`);
      return entries;
    }
    entries.push({
      name,
      ino: values.ino ?? 0,
      mode: values.mode ?? 0,
      uid: values.uid ?? 0,
      gid: values.gid ?? 0,
      nlink: values.nlink ?? 0,
      mtime: values.mtime ?? 0,
      devMajor: values.devMajor ?? 0,
      devMinor: values.devMinor ?? 0,
      rdevMajor: values.rdevMajor ?? 0,
      rdevMinor: values.rdevMinor ?? 0,
      check: values.check ?? 0,
      data: archive.subarray(dataStart, dataEnd),
      offset,
    });
    offset = next;
  }
}
