// Tree fingerprints: how long the engine takes to tell that a 20,000-file tree is unchanged (stamp
// cache populated), against `find -printf` listing the same metadata; and how fast it hashes a
// tree it has never seen (empty stamp cache).
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { execa } from "execa";
import { StampCache } from "../src/fingerprint/stamps.ts";
import { fingerprintTree } from "../src/fingerprint/tree.ts";
import { initHash } from "../src/hash.ts";
import { benchDir, envInt, fmtMs, fmtRatio, isMain, median, seededRandom, sleep, timed } from "./lib.ts";

export interface TreeOptions {
  files: number;
  runs: number;
  log: (line: string) => void;
}

export interface TreeShape {
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
}

export interface TreeResult {
  shape: TreeShape;
  /** Entries the fingerprint counted (files, dirs and symlinks below the root). */
  entries: number;
  runs: number;
  /** First-time hashing (empty stamp cache), median of `runs`. */
  cold: { ms: number; filesHashed: number; bytes: number; mbPerSec: number; filesPerSec: number };
  engineMs: number[];
  findMs: number[];
  engineMedian: number;
  findMedian: number;
  /** engine median / find median. */
  ratio: number;
  /** Unchanged check with the stamp cache first rebuilt from its JSON form, as a real run loads it. */
  fromStateMedian: number;
}

const nothingExcluded = () => false;
const FIND_FORMAT = "%p %s %T@ %m %U %G %l\n";

/** Mostly small files, some medium, a few large: roughly what a chroot looks like. */
function pickSize(random: () => number): number {
  const r = random();
  if (r < 0.1) return 0;
  if (r < 0.75) return Math.floor(random() * 4096);
  if (r < 0.995) return 4096 + Math.floor(random() * 60 * 1024);
  return 256 * 1024 + Math.floor(random() * 1792 * 1024);
}

export function makeTree(root: string, fileCount: number): TreeShape {
  const random = seededRandom(20_000);
  const dirs: string[] = [root];
  // Directories: 24 top-level ones, each with up to three levels below.
  const grow = (parent: string, level: number) => {
    const children = level === 0 ? 24 : Math.floor(random() * (5 - level));
    for (let i = 0; i < children; i++) {
      const dir = join(parent, `d${level}-${i}`);
      mkdirSync(dir);
      dirs.push(dir);
      if (level < 3) grow(dir, level + 1);
    }
  };
  grow(root, 0);

  const pool = Buffer.alloc(2 * 1024 * 1024 + 4096);
  for (let i = 0; i < pool.length; i += 4) pool.writeUInt32LE((random() * 0xffffffff) >>> 0, i);
  let bytes = 0;
  const files: string[] = [];
  for (let i = 0; i < fileCount; i++) {
    const dir = dirs[Math.floor(random() * dirs.length)]!;
    const path = join(dir, `f${i}.${["so", "conf", "txt", "py", "h", ""][i % 6]}`);
    const size = pickSize(random);
    const offset = Math.floor(random() * 4096);
    const content = Buffer.concat([Buffer.from(`${i}\n`), pool.subarray(offset, offset + size)]).subarray(0, size);
    writeFileSync(path, content);
    files.push(path);
    bytes += content.length;
  }

  // A few symlinks: to files (relative and absolute), to a directory, and one dangling.
  let symlinks = 0;
  for (let i = 0; i < 30; i++) {
    const target = files[Math.floor(random() * files.length)]!;
    const dir = dirs[Math.floor(random() * dirs.length)]!;
    symlinkSync(i % 2 ? target : relative(dir, target), join(dir, `link${i}`));
    symlinks++;
  }
  symlinkSync(dirs[1]!, join(root, "dirlink"));
  symlinkSync("does/not/exist", join(root, "dangling"));
  symlinks += 2;
  return { files: fileCount, dirs: dirs.length - 1, symlinks, bytes };
}

async function findOnce(tree: string): Promise<number> {
  const { ms } = await timed(() => execa("find", [tree, "-printf", FIND_FORMAT], { stdout: "ignore" }));
  return ms;
}

export async function runTreeBench(options: TreeOptions): Promise<TreeResult> {
  const { runs, log } = options;
  await initHash();
  const dir = benchDir("tree");
  try {
    const tree = join(dir.path, "tree");
    mkdirSync(tree);
    log(`making a tree of ${options.files} files in ${tree} ...`);
    const shape = makeTree(tree, options.files);
    log(`  ${shape.dirs} dirs, ${shape.symlinks} symlinks, ${(shape.bytes / 1e6).toFixed(0)} MB`);
    // Nothing may be younger than the racy window, or the first pass's stamps would not be trusted.
    await sleep(1100);

    // Empty stamp cache: every file is read and hashed. Timed N times, each with a new cache.
    const coldMs: number[] = [];
    let stamps = new StampCache({}, 1);
    let first = fingerprintTree(tree, nothingExcluded, stamps)!;
    for (let i = 0; i < runs; i++) {
      stamps = new StampCache({}, 1);
      const cold = await timed(() => fingerprintTree(tree, nothingExcluded, stamps)!);
      if (cold.value.hash !== first.hash) throw new Error("the same tree fingerprinted differently");
      first = cold.value;
      coldMs.push(cold.ms);
    }
    const { hashed, bytes } = stamps.stats;
    if (hashed !== shape.files) throw new Error(`the first pass hashed ${hashed} files; expected ${shape.files}`);
    const coldMedian = median(coldMs);
    log(`cold stamp cache: median ${fmtMs(coldMedian)} for ${hashed} files, ${(bytes / 1e6).toFixed(0)} MB (files in the page cache)`);

    const check = (cache: StampCache) => {
      const before = cache.stats.hashed;
      const again = fingerprintTree(tree, nothingExcluded, cache)!;
      if (again.hash !== first.hash) throw new Error("the unchanged tree fingerprinted differently");
      if (cache.stats.hashed !== before) throw new Error(`the unchanged check re-hashed ${cache.stats.hashed - before} file(s)`);
    };

    check(stamps); // warm-up
    await findOnce(tree);
    const engineMs: number[] = [];
    const findMs: number[] = [];
    const fromStateMs: number[] = [];
    for (let i = 0; i < runs; i++) {
      engineMs.push((await timed(() => check(stamps))).ms);
      findMs.push(await findOnce(tree));
      const saved = JSON.stringify(stamps.toJSON());
      fromStateMs.push((await timed(() => check(new StampCache(JSON.parse(saved) as ReturnType<StampCache["toJSON"]>, 2)))).ms);
      log(`  run ${i + 1}/${runs}: engine ${fmtMs(engineMs.at(-1)!)}, find ${fmtMs(findMs.at(-1)!)}, engine from state JSON ${fmtMs(fromStateMs.at(-1)!)}`);
    }
    const engineMedian = median(engineMs);
    const findMedian = median(findMs);
    return {
      shape,
      entries: first.entries,
      runs,
      cold: {
        ms: coldMedian,
        filesHashed: hashed,
        bytes,
        mbPerSec: bytes / 1e6 / (coldMedian / 1000),
        filesPerSec: hashed / (coldMedian / 1000),
      },
      engineMs,
      findMs,
      engineMedian,
      findMedian,
      ratio: engineMedian / findMedian,
      fromStateMedian: median(fromStateMs),
    };
  } finally {
    dir.dispose();
  }
}

export function treeOptionsFromEnv(log: (line: string) => void): TreeOptions {
  return { files: envInt("BENCH_TREE_FILES", 20_000), runs: Math.max(5, envInt("BENCH_RUNS", 7)), log };
}

export function printTree(r: TreeResult, write: (line: string) => void): void {
  const { shape } = r;
  write(`tree of ${shape.files} files, ${shape.dirs} dirs, ${shape.symlinks} symlinks, ${(shape.bytes / 1e6).toFixed(0)} MB (${r.entries} entries), median of ${r.runs}:`);
  write(`  unchanged check: engine ${fmtMs(r.engineMedian)}   find -printf ${fmtMs(r.findMedian)}   ratio ${fmtRatio(r.ratio)}`);
  write(`  unchanged check with the stamp cache loaded from JSON: ${fmtMs(r.fromStateMedian)}`);
  write(
    `  cold stamp cache: ${fmtMs(r.cold.ms)}, ${r.cold.mbPerSec.toFixed(0)} MB/s, ${r.cold.filesPerSec.toFixed(0)} files/s (content in the page cache)`,
  );
}

if (isMain(import.meta.url)) {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const result = await runTreeBench(treeOptionsFromEnv(log));
  printTree(result, (line) => process.stdout.write(`${line}\n`));
}
