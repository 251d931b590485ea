// VM disks and filesystem images, read-only, without the kernel's partition scan: the partition
// table is read in user space (sfdisk), each partition is probed at its offset (blkid -O/-S) and
// mounted through a loop device limited to its byte range (mount -o offset=,sizelimit=). Loop
// devices set up by mount are auto-cleared, so unmounting frees them.
//
// qcow2, VDI, sparse VMDK and the like are first turned into a raw read-only view: a FUSE export
// of qemu-storage-daemon, or, where FUSE is unavailable, a raw copy made with qemu-img convert.
import { closeSync, lstatSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CancelledError } from "../../src/exec.ts";
import type { Exec } from "../../src/exec.ts";
import { isRunning, stopHelper } from "./helper-process.ts";
import { isMountPoint, unmountPath } from "./mountinfo.ts";

export type ProbeResult =
  /** A filesystem spanning the whole file (squashfs, ext4, iso9660, …). */
  | { kind: "filesystem"; fstype: string }
  /** A raw disk with a partition table (`gpt` or `dos`). */
  | { kind: "partition-table"; pttype: string }
  /** A disk image format that needs translating to raw sectors first (qcow2, vdi, vmdk, …). */
  | { kind: "container"; format: string }
  | { kind: "unknown"; detail: string };

export interface Partition {
  /** As in the partition table: 1, 2, … (logical MBR partitions start at 5). */
  number: number;
  /** Byte offset of the partition in the disk. */
  start: number;
  /** Size in bytes. */
  size: number;
  /** Lower-case GPT type GUID, or the MBR type in hex without "0x" (`83`, `ef`, …). */
  type: string;
  table: "gpt" | "dos";
}

export interface DiskContext {
  exec: Exec;
  log: (message: string) => void;
}

const GPT = {
  esp: "c12a7328-f81f-11d2-ba4b-00a0c93ec93b",
  biosBoot: "21686148-6449-6e6f-744e-656564454649",
  swap: "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f",
  lvm: "e6d6d379-f507-44c2-a23c-238f2a3df928",
  raid: "a19d880f-05fc-4d3b-a006-743f0f84911e",
};

const MBR_SKIPPED: Record<string, string> = {
  "5": "extended partition container",
  f: "extended partition container",
  "85": "extended partition container",
  "82": "swap",
  ef: "EFI system partition",
  "8e": "LVM physical volume (unsupported: give the logical volume's device or a copy of it)",
  fd: "RAID member (unsupported)",
};

const GPT_SKIPPED: Record<string, string> = {
  [GPT.esp]: "EFI system partition",
  [GPT.biosBoot]: "BIOS boot partition",
  [GPT.swap]: "swap",
  [GPT.lvm]: "LVM physical volume (unsupported: give the logical volume's device or a copy of it)",
  [GPT.raid]: "RAID member (unsupported)",
};

/** Filesystem types blkid reports that are not mountable filesystems. */
const TYPE_SKIPPED: Record<string, string> = {
  swap: "swap",
  LVM2_member: "LVM physical volume (unsupported: give the logical volume's device or a copy of it)",
  linux_raid_member: "RAID member (unsupported)",
  crypto_LUKS: "LUKS encrypted (unsupported: unlock it and give the mapped device)",
};

/** Files that show a filesystem holds an operating system (lstat: absolute symlinks count too). */
const OS_MARKERS = ["etc/os-release", "usr/lib/os-release", "sbin/init"];

export function parseBlkidExport(text: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const equals = line.indexOf("=");
    if (equals > 0) values[line.slice(0, equals)] = line.slice(equals + 1).replace(/\\(.)/g, "$1");
  }
  return values;
}

/** blkid's low-level probe of `file`, or of the byte range `at` inside it. Exit code 2 means "nothing found". */
export async function blkidProbe(file: string, exec: Exec, at?: { start: number; size: number }): Promise<Record<string, string>> {
  const range = at ? ["-O", String(at.start), "-S", String(at.size)] : [];
  const result = await exec("blkid", ["-p", ...range, "-o", "export", file], { okExitCodes: [0, 2] });
  return result.exitCode === 2 ? {} : parseBlkidExport(result.stdout);
}

function readHeader(file: string, length: number): Buffer {
  const header = Buffer.alloc(length);
  const fd = openSync(file, "r");
  try {
    const read = readSync(fd, header, 0, length, 0);
    return header.subarray(0, read);
  } finally {
    closeSync(fd);
  }
}

/** Disk image formats recognised by their first bytes. Raw disks have no such header. */
export function containerFormatOf(header: Buffer): string | undefined {
  const ascii = (start: number, text: string) => header.subarray(start, start + text.length).toString("latin1") === text;
  if (ascii(0, "QFI\xfb")) return "qcow2";
  if (ascii(0, "QED\0")) return "qed";
  if (header.length >= 0x44 && header.readUInt32LE(0x40) === 0xbeda107f) return "vdi";
  if (ascii(0, "KDMV")) return "vmdk";
  if (ascii(0, "# Disk DescriptorFile")) return "vmdk";
  if (ascii(0, "vhdxfile")) return "vhdx";
  if (ascii(0, "conectix")) return "vpc";
  return undefined;
}

/** What `file` holds: a filesystem, a partitioned raw disk, or a disk image format needing translation. */
export async function probe(file: string, exec: Exec): Promise<ProbeResult> {
  if (statSync(file).isFile()) {
    const format = containerFormatOf(readHeader(file, 512));
    if (format !== undefined) return { kind: "container", format };
  }
  const found = await blkidProbe(file, exec);
  // A filesystem wins over a partition table: hybrid ISOs carry both.
  if (found.TYPE) return { kind: "filesystem", fstype: found.TYPE };
  if (found.PTTYPE) return { kind: "partition-table", pttype: found.PTTYPE };
  const info = await exec("qemu-img", ["info", "--output=json", "-U", file], { okExitCodes: [0, 1] });
  if (info.exitCode === 0) {
    const format = (JSON.parse(info.stdout) as { format?: string }).format;
    if (format && format !== "raw") return { kind: "container", format };
  }
  return { kind: "unknown", detail: "blkid finds no filesystem or partition table, and qemu-img sees raw data" };
}

interface SfdiskTable {
  partitiontable?: {
    label?: string;
    device?: string;
    sectorsize?: number;
    partitions?: { node?: string; start?: number; size?: number; type?: string }[];
  };
}

/** The partition table of a raw disk file, read in user space. */
export async function readPartitions(file: string, exec: Exec): Promise<Partition[]> {
  const { stdout } = await exec("sfdisk", ["--json", file]);
  const table = (JSON.parse(stdout) as SfdiskTable).partitiontable;
  if (!table) throw new Error(`${file} has no partition table sfdisk can read.`);
  const label = table.label === "gpt" ? "gpt" : "dos";
  const sector = table.sectorsize ?? 512;
  const device = table.device ?? file;
  return (table.partitions ?? []).map((entry) => {
    const suffix = (entry.node ?? "").slice(device.length).replace(/^p/, "");
    const number = Number(suffix);
    if (!Number.isInteger(number) || number < 1) throw new Error(`Unexpected partition name ${entry.node} in sfdisk's listing of ${file}.`);
    return {
      number,
      start: (entry.start ?? 0) * sector,
      size: (entry.size ?? 0) * sector,
      type: (entry.type ?? "").toLowerCase(),
      table: label,
    };
  });
}

/** Why a partition cannot be the root by its table type alone, or undefined. */
export function partitionSkipReason(partition: Partition): string | undefined {
  return partition.table === "gpt" ? GPT_SKIPPED[partition.type] : MBR_SKIPPED[partition.type];
}

/** The marker file showing `dir` is an operating system's root, or undefined. */
export function operatingSystemMarker(dir: string): string | undefined {
  return OS_MARKERS.find((marker) => {
    try {
      lstatSync(join(dir, marker));
      return true;
    } catch {
      return false;
    }
  });
}

let kernelFilesystems: Set<string> | undefined;

/** ext2/ext3 are served by the ext4 driver on kernels that register only "ext4". */
function mountType(fstype: string): string {
  if (!/^ext[23]$/.test(fstype)) return fstype;
  kernelFilesystems ??= new Set(
    readFileSync("/proc/filesystems", "utf8")
      .split("\n")
      .map((line) => line.split("\t").pop() ?? ""),
  );
  return kernelFilesystems.has(fstype) ? fstype : "ext4";
}

export interface FilesystemMount {
  fstype: string;
  /** User options; when given they replace the defaults (`noload` for ext*). `ro` is always added. */
  options?: readonly string[];
  /** Byte range inside the file (a partition). */
  offset?: number;
  size?: number;
}

/** The `mount -o` list: always read-only, never journal replay by default, loop range when given. */
export function mountOptions(file: string, how: FilesystemMount): string {
  const given = (how.options ?? []).filter((option) => option !== "rw" && option !== "ro" && option !== "loop");
  const defaults = /^ext/.test(how.fstype) ? ["noload"] : [];
  const loop = how.offset !== undefined ? ["loop", `offset=${how.offset}`, `sizelimit=${how.size ?? 0}`] : statSync(file).isFile() ? ["loop"] : [];
  return ["ro", ...loop, ...(how.options && how.options.length > 0 ? given : defaults)].join(",");
}

/** Mounts a filesystem (a whole file, or a byte range of it) read-only at `target`. */
export async function mountFilesystem(file: string, target: string, how: FilesystemMount, exec: Exec): Promise<void> {
  await exec("mount", ["-t", mountType(how.fstype), "-o", mountOptions(file, how), file, target]);
}

export interface RootPartition {
  partition: Partition;
  fstype: string;
}

function label(partition: Partition): string {
  return `p${partition.number}`;
}

/** The most telling line of a command's failure: the last line of its stderr tail. */
function lastLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const lines = message.split("\n").filter((line) => line.trim() !== "");
  return (lines.length > 1 ? lines[lines.length - 1] : lines[0]) ?? message;
}

/**
 * Mounts the root partition of a partitioned raw disk read-only at `target`: the first candidate
 * (no swap, ESP, BIOS boot, LVM, RAID or extended container) whose filesystem holds an operating
 * system, or partition `partition` when given.
 */
export async function mountDiskRoot(
  disk: string,
  target: string,
  choice: { partition?: number; fstype?: string; options?: readonly string[]; shownAs?: string },
  { exec, log }: DiskContext,
): Promise<RootPartition> {
  const partitions = await readPartitions(disk, exec);
  // Messages name the disk the user gave, not a raw view of it.
  const name = choice.shownAs ?? disk;
  if (partitions.length === 0) throw new Error(`${name} has an empty partition table: there is nothing to mount.`);
  const listing = () => partitions.map((p) => `p${p.number} (type ${p.type})`).join(", ");

  if (choice.partition !== undefined) {
    const partition = partitions.find((p) => p.number === choice.partition);
    if (!partition) {
      throw new Error(`${name} has no partition ${choice.partition}; it has ${listing()}. Fix "partition=" in the image source.`);
    }
    const fstype = choice.fstype ?? (await blkidProbe(disk, exec, partition)).TYPE;
    if (!fstype) {
      throw new Error(`blkid finds no filesystem on partition ${choice.partition} of ${name}. Choose another partition, or give its type with "fstype=".`);
    }
    await mountFilesystem(disk, target, { fstype, options: choice.options, offset: partition.start, size: partition.size }, exec);
    log(`${name}: mounted partition ${choice.partition} (${fstype}) as given`);
    return { partition, fstype };
  }

  const looked: string[] = [];
  for (const partition of partitions) {
    const tableReason = partitionSkipReason(partition);
    if (tableReason) {
      looked.push(`${label(partition)} ${tableReason}: skipped`);
      continue;
    }
    const probed = (await blkidProbe(disk, exec, partition)).TYPE;
    if (!probed) {
      looked.push(`${label(partition)}: no filesystem`);
      continue;
    }
    const typeReason = TYPE_SKIPPED[probed];
    if (typeReason) {
      looked.push(`${label(partition)} ${typeReason}: skipped`);
      continue;
    }
    const fstype = choice.fstype ?? probed;
    try {
      await mountFilesystem(disk, target, { fstype, options: choice.options, offset: partition.start, size: partition.size }, exec);
    } catch (error) {
      if (error instanceof CancelledError) throw error;
      looked.push(`${label(partition)} ${fstype}: cannot be mounted (${lastLine(error)})`);
      continue;
    }
    const marker = operatingSystemMarker(target);
    if (marker) {
      log(`${name}: root is partition ${partition.number} (${fstype}, has ${marker})`);
      return { partition, fstype };
    }
    await unmountPath(target, exec, log);
    looked.push(`${label(partition)} ${fstype}: no ${OS_MARKERS.join(", ")}`);
  }
  throw new Error(
    `No partition of ${name} holds an operating system (looked at ${looked.join("; ")}). ` +
      `If the root is there, give it with ",partition=N" in the image source; otherwise check that this is the right disk.`,
  );
}

export interface RawView {
  /** A file holding the disk's raw sectors. */
  path: string;
  method: "fuse" | "convert";
  /** The qemu-storage-daemon serving a FUSE view. */
  pid?: number;
  /** Stops the daemon (which unmounts the view) or deletes the raw copy. Idempotent. */
  close(exec?: Exec): Promise<void>;
}

/** qemu refuses to open a disk that a running VM holds (its image locking). */
export class DiskInUseError extends Error {
  constructor(file: string, cause: unknown) {
    super(`${file} is in use (${lastLine(cause)}). Power the VM off before building from its disk.`);
    this.name = "DiskInUseError";
  }
}

function lockHint(error: unknown, file: string): Error {
  const message = error instanceof Error ? error.message : String(error);
  if (/lock/i.test(message)) return new DiskInUseError(file, error);
  return error instanceof Error ? error : new Error(message);
}

async function fuseView(file: string, format: string, dir: string, { exec, log }: DiskContext): Promise<RawView> {
  const path = join(dir, "disk.raw");
  const pidFile = join(dir, "qemu-storage-daemon.pid");
  writeFileSync(path, "", { mode: 0o600 });
  const blockdev = { driver: format, "node-name": "disk", "read-only": true, file: { driver: "file", filename: file } };
  const exportSpec = { type: "fuse", id: "raw", "node-name": "disk", mountpoint: path, writable: false };
  try {
    await exec("qemu-storage-daemon", [
      "--blockdev", JSON.stringify(blockdev),
      "--export", JSON.stringify(exportSpec),
      "--pidfile", pidFile,
      "--daemonize",
    ]);
  } catch (error) {
    rmSync(path, { force: true });
    throw lockHint(error, file);
  }
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  log(`${file}: ${format} served as raw sectors at ${path} by qemu-storage-daemon (PID ${pid})`);
  let closed = false;
  return {
    path,
    method: "fuse",
    pid,
    async close(closingExec = exec) {
      if (closed) return;
      await stopHelper(pid, { marker: path });
      if (isRunning(pid)) throw new Error(`qemu-storage-daemon (PID ${pid}) serving ${path} does not stop.`);
      if (isMountPoint(path)) await unmountPath(path, closingExec, log);
      rmSync(path, { force: true });
      closed = true;
    },
  };
}

async function convertedView(file: string, format: string, dir: string, { exec, log }: DiskContext): Promise<RawView> {
  const path = join(dir, "disk.raw");
  log(`${file}: copying the ${format} disk to raw sectors in ${path}`);
  try {
    await exec("qemu-img", ["convert", "-f", format, "-O", "raw", file, path]);
  } catch (error) {
    rmSync(path, { force: true });
    throw lockHint(error, file);
  }
  return {
    path,
    method: "convert",
    async close() {
      rmSync(path, { force: true });
    },
  };
}

/**
 * A read-only raw view of a qcow2/VDI/VMDK/… disk in `dir` (which must be private to the caller).
 * FUSE (qemu-storage-daemon) is tried first; when it is unavailable, the disk is copied with
 * `qemu-img convert` (sparse, but it costs the time of a full read).
 */
export async function openRawView(
  file: string,
  format: string,
  dir: string,
  context: DiskContext,
  method?: "fuse" | "convert",
): Promise<RawView> {
  if (method === "convert") return convertedView(file, format, dir, context);
  if (method === "fuse") return fuseView(file, format, dir, context);
  try {
    return await fuseView(file, format, dir, context);
  } catch (error) {
    if (error instanceof DiskInUseError || error instanceof CancelledError) throw error;
    context.log(`warning: no FUSE view of ${file} (${lastLine(error)}); making a raw copy instead`);
    return convertedView(file, format, dir, context);
  }
}
