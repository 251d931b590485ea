// The state directory (design rules 1, 5): key documents stored whole, per task.
// A snapshot (state.json, replaced atomically) plus a journal (state.journal) of changes made
// during a run: a task is forgotten in the journal before it runs and recorded only after its
// outputs are complete. Every journal line carries its own hash, so a line cut short by a
// crash is recognised and ignored. The journal is folded into the snapshot at the end of a run.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomicSync } from "../atomic.ts";
import { hashString } from "../hash.ts";
import type { StampEntry } from "../fingerprint/stamps.ts";
import type { ToolRecord } from "../fingerprint/tools.ts";
import type { Json } from "../types.ts";
import type { KeyDoc } from "../key.ts";

export const STATE_FORMAT = 4;

/** Content hash of one published output (a file, a symlink's target, or a directory tree). */
export type OutputRecord = string;

export interface TaskRecord {
  /** Hash of the key document; the document itself is in keys.json (read only when needed). */
  keyHash: string;
  outputs: Record<string, OutputRecord>;
  /** What dependents see (early cutoff): the hash of the outputs' content, or of the key when there are none. */
  outputHash: string;
  value?: Json;
  finishedAt: string;
}

/** Left in place of a record while a task runs: if the run dies, the task reads as unfinished. */
export interface StartedRecord {
  started: string;
}

export interface StateSnapshot {
  format: number;
  writer: string;
  generation: number;
  tasks: Record<string, TaskRecord | StartedRecord>;
  durations: Record<string, number>;
  stamps: Record<string, StampEntry>;
  tools: Record<string, ToolRecord>;
}

type JournalEntry =
  | { op: "start"; id: string; at: string }
  | { op: "record"; id: string; record: TaskRecord; key: KeyDoc; durationMs: number }
  | { op: "forget"; id: string };

export class StateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StateError";
  }
}

export function isFinished(record: TaskRecord | StartedRecord | undefined): record is TaskRecord {
  return record !== undefined && "keyHash" in record;
}

function emptySnapshot(writer: string): StateSnapshot {
  return { format: STATE_FORMAT, writer, generation: 0, tasks: {}, durations: {}, stamps: {}, tools: {} };
}

export class StateStore {
  readonly snapshotPath: string;
  readonly journalPath: string;
  readonly keysPath: string;
  readonly snapshot: StateSnapshot;
  /** Key documents by task, loaded on first use. */
  private keys: Record<string, KeyDoc> | undefined;
  /** Key changes from the journal and this run, applied over keys.json. */
  private readonly keyChanges = new Map<string, KeyDoc | null>();
  private journalFd: number | undefined;
  /** Journal lines ignored because they were cut short. */
  readonly tornLines: number;

  private constructor(
    readonly dir: string,
    snapshot: StateSnapshot,
    tornLines: number,
  ) {
    this.snapshotPath = join(dir, "state.json");
    this.journalPath = join(dir, "state.journal");
    this.keysPath = join(dir, "keys.json");
    this.snapshot = snapshot;
    this.tornLines = tornLines;
  }

  /** Read the state directory (nothing is written). */
  static load(dir: string, writer: string): StateStore {
    const snapshotPath = join(dir, "state.json");
    let snapshot = emptySnapshot(writer);
    if (existsSync(snapshotPath)) {
      let parsed: StateSnapshot;
      try {
        parsed = JSON.parse(readFileSync(snapshotPath, "utf8")) as StateSnapshot;
      } catch (error) {
        throw new StateError(
          `the state file ${snapshotPath} is corrupted (${(error as Error).message}).\n` +
            `Published files are not affected. Move it away (mv ${snapshotPath} ${snapshotPath}.bad) and run again: every task will be checked and rebuilt.`,
        );
      }
      if (typeof parsed.format !== "number" || typeof parsed.tasks !== "object" || parsed.tasks === null) {
        throw new StateError(
          `the state file ${snapshotPath} is not an ltsp-make state file.\nMove it away (mv ${snapshotPath} ${snapshotPath}.bad) or choose another --cache-dir.`,
        );
      }
      if (parsed.format > STATE_FORMAT) {
        throw new StateError(
          `the state in ${dir} was written by a newer ltsp-make (${parsed.writer}, state format ${parsed.format}; this is ${writer}, format ${STATE_FORMAT}).\n` +
            `Use that newer version, or choose another --cache-dir.`,
        );
      }
      // Older formats record keys differently: their tasks are checked and rebuilt once.
      snapshot = parsed.format < STATE_FORMAT ? emptySnapshot(writer) : { ...emptySnapshot(writer), ...parsed };
    }
    let torn = 0;
    const keyChanges = new Map<string, KeyDoc | null>();
    const journalPath = join(dir, "state.journal");
    if (existsSync(journalPath)) {
      const lines = readFileSync(journalPath, "utf8").split("\n");
      for (const line of lines) {
        if (!line) continue;
        const space = line.indexOf(" ");
        const body = line.slice(space + 1);
        if (space !== 16 || hashString(body) !== line.slice(0, 16)) {
          torn++;
          break;
        }
        applyEntry(snapshot, keyChanges, JSON.parse(body) as JournalEntry);
      }
    }
    const store = new StateStore(dir, snapshot, torn);
    for (const [id, key] of keyChanges) store.keyChanges.set(id, key);
    return store;
  }

  get tasks(): StateSnapshot["tasks"] {
    return this.snapshot.tasks;
  }

  record(id: string): TaskRecord | undefined {
    const r = this.snapshot.tasks[id];
    return isFinished(r) ? r : undefined;
  }

  private append(entry: JournalEntry): void {
    if (this.journalFd === undefined) {
      mkdirSync(this.dir, { recursive: true });
      this.journalFd = openSync(this.journalPath, "a", 0o644);
    }
    const body = JSON.stringify(entry);
    writeSync(this.journalFd, `${hashString(body)} ${body}\n`);
    applyEntry(this.snapshot, this.keyChanges, entry);
  }

  /** The key document a finished task was recorded with. */
  recordedKey(id: string): KeyDoc | undefined {
    if (this.keyChanges.has(id)) return this.keyChanges.get(id) ?? undefined;
    return this.loadKeys()[id];
  }

  private loadKeys(): Record<string, KeyDoc> {
    if (!this.keys) {
      try {
        this.keys = JSON.parse(readFileSync(this.keysPath, "utf8")) as Record<string, KeyDoc>;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
          throw new StateError(`the key file ${this.keysPath} is corrupted (${(error as Error).message}). Move it away and run again: every task will be rebuilt.`);
        }
        this.keys = {};
      }
    }
    return this.keys;
  }

  /** Before a task runs: its old key no longer counts. */
  markStarted(id: string): void {
    this.append({ op: "start", id, at: new Date().toISOString() });
  }

  /** After a task's outputs are complete. */
  markFinished(id: string, record: TaskRecord, key: KeyDoc, durationMs: number): void {
    this.append({ op: "record", id, record, key, durationMs });
  }

  forget(id: string): void {
    if (this.snapshot.tasks[id] === undefined) return;
    this.append({ op: "forget", id });
  }

  /** Fold the journal into a new snapshot (atomic replace), then drop the journal. */
  save(extra: { stamps: Record<string, StampEntry>; tools: Record<string, ToolRecord> }): void {
    mkdirSync(this.dir, { recursive: true });
    this.snapshot.stamps = extra.stamps;
    this.snapshot.tools = extra.tools;
    if (this.keyChanges.size > 0) {
      const keys = this.loadKeys();
      for (const [id, key] of this.keyChanges) {
        if (key) keys[id] = key;
        else delete keys[id];
      }
      writeFileAtomicSync(this.keysPath, JSON.stringify(keys));
      this.keyChanges.clear();
    }
    writeFileAtomicSync(this.snapshotPath, JSON.stringify(this.snapshot));
    this.closeJournal();
    if (existsSync(this.journalPath)) unlinkSync(this.journalPath);
  }

  closeJournal(): void {
    if (this.journalFd !== undefined) {
      closeSync(this.journalFd);
      this.journalFd = undefined;
    }
  }
}

function applyEntry(snapshot: StateSnapshot, keys: Map<string, KeyDoc | null>, entry: JournalEntry): void {
  switch (entry.op) {
    case "start":
      snapshot.tasks[entry.id] = { started: entry.at };
      keys.set(entry.id, null);
      break;
    case "record":
      snapshot.tasks[entry.id] = entry.record;
      snapshot.durations[entry.id] = entry.durationMs;
      keys.set(entry.id, entry.key);
      break;
    case "forget":
      delete snapshot.tasks[entry.id];
      keys.set(entry.id, null);
      break;
  }
}
