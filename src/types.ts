// The engine's public contract: what a task, a resource and an input are.
// Nothing here knows about LTSP; the built-in task library in tasks/ uses the same API as users.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Something a task reads. Every input is fingerprinted and becomes a field of the task's key. */
export type InputSpec =
  /** One file (or symlink, or directory entry). A missing file is an input too: creating it makes the task stale. */
  | { file: string }
  /** Files matched by fast-glob patterns under `cwd`. The set of matches and each file's content are inputs. */
  | { glob: string | string[]; cwd: string; ignore?: string[] }
  /**
   * A directory tree: every entry's type, mode, owner, size, symlink target and content.
   * `exclude` patterns (mksquashfs -wildcards syntax, relative to the tree) are never walked.
   * `under` is where the tree appears inside an image (e.g. "boot"): patterns then match "boot/...".
   */
  | { tree: string; exclude?: string[]; under?: string };

/** A tool whose version is part of the key, e.g. `{ name: "mksquashfs", version: ["mksquashfs", "-version"] }`. */
export interface ToolSpec {
  name: string;
  /** Command whose first output line is the version; defaults to `[name, "--version"]`. */
  version?: string[];
}

/** Files a task generates from data: the engine writes them atomically and `plan` diffs them. */
export type RenderedFiles = Record<string, string | { content: string | Buffer; mode?: number }>;

export interface ExecOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  /** Called with each line the command prints on stdout or stderr. */
  onLine?: (line: string, stream: "stdout" | "stderr") => void;
  /** Allow these exit codes without failing (default: only 0). */
  okExitCodes?: number[];
  /** Return stdout as a Buffer instead of a string. */
  binary?: boolean;
}

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export interface ExecBufferResult {
  stdout: Buffer;
  stderr: string;
  exitCode: number;
}

/** What `run` receives. */
export interface TaskContext {
  readonly id: string;
  /** Aborted on SIGINT/SIGTERM or, without --keep-going, when another task fails. */
  readonly signal: AbortSignal;
  /** A private, empty scratch directory for this run of this task, removed afterwards. */
  readonly workDir: string;
  /** Run a command (execa). Cancelling kills its whole process tree. Fails with the command's stderr tail. */
  exec(file: string, args?: readonly string[], options?: ExecOptions & { binary?: false }): Promise<ExecResult>;
  exec(file: string, args: readonly string[], options: ExecOptions & { binary: true }): Promise<ExecBufferResult>;
  /** A line for the log (shown with -v, and on failure). */
  log(message: string): void;
  /** Something the user must read even in a quiet run (e.g. a restart left to them). */
  notice(message: string): void;
  /** Progress of a long step, 0..1, shown in the task's bar. */
  progress(fraction: number, text?: string): void;
  /** The value a scoped resource's setup returned. The task must list it in `uses`. */
  resource<T = unknown>(id: string): T;
  /** Write a file atomically: temporary name in the same directory, then rename. */
  writeFile(path: string, content: string | Buffer, mode?: number): Promise<void>;
  /** What an upstream task published (its outputs with content hashes). */
  upstream(id: string): UpstreamResult;
}

export interface UpstreamResult {
  id: string;
  outputs: Record<string, string>;
  /** Values an upstream task chose to pass on (see `TaskContext` return of `run`). */
  value: Json | undefined;
}

/** A node of the graph. */
export interface TaskDef {
  /** `<operation>:<image>` for per-image tasks, `<operation>` for server-wide ones. */
  id: string;
  /** One line for humans; defaults to the id. */
  title?: string;
  /** What kind of task this is and its implementation version; both are key fields. */
  kind?: string;
  version?: number;
  /** Upstream tasks: they run first, and the content of their outputs is part of this task's key. */
  deps?: string[];
  /** Files, globs and trees read. Functions are evaluated when the plan is made. */
  inputs?: InputSpec[];
  /**
   * State outside this machine that the task's result depends on (e.g. what a remote host holds),
   * read when the plan is made; its value is a key field like any input. Must not change anything.
   */
  probe?: () => Promise<Json> | Json;
  /** Literal parameters (JSON) that shape what the task does. */
  params?: Record<string, Json>;
  /** Environment variables read. */
  env?: string[];
  /** Tools whose versions are part of the key. */
  tools?: ToolSpec[];
  /** Files or directories the task publishes (absolute paths). Verified on every plan. */
  outputs?: string[];
  /** A resource class limiting concurrency (see Config.resourceClasses). */
  resourceClass?: string;
  /** Scoped resources (mounts, …) this task needs while it runs. */
  uses?: string[];
  /** Groups the task belongs to, addressable as targets (e.g. `image:bookworm`). `all` is implicit. */
  groups?: string[];
  /**
   * The task's effects live only inside a scoped resource it uses (e.g. cleaning an overlay):
   * it has no lasting outputs, so it runs exactly when a later user of the same resource runs.
   */
  ephemeral?: boolean;
  /** Run only when explicitly targeted, never as part of `all` (e.g. a reload with a side effect). */
  explicitOnly?: boolean;
  /** Expected duration in ms for the first run's critical-path priority. */
  estimate?: number;
  /** Generate files from data; the engine writes them atomically and `plan` shows their diff. */
  render?: (ctx: RenderContext) => RenderedFiles | Promise<RenderedFiles>;
  /** Check generated files before they are published (they are in `ctx.workDir` under their base names too). */
  verify?: (ctx: TaskContext, files: GeneratedFile[]) => Promise<void>;
  /** Do the work. May return a JSON value that dependents read with `ctx.upstream(id).value`. */
  run?: (ctx: TaskContext) => Promise<Json | void> | Json | void;
}

export interface GeneratedFile {
  path: string;
  content: Buffer;
  mode: number;
  /** A copy in the task's work directory, for checkers that read files (e.g. dnsmasq --test). */
  draft: string;
}

export interface RenderContext {
  readonly id: string;
  upstream(id: string): UpstreamResult | undefined;
}

/**
 * A scoped resource (design rule 6): set up only when a task that uses it must run, torn down
 * after its last user, and always torn down on failure, SIGINT and SIGTERM.
 */
export interface ResourceDef<T = unknown> {
  id: string;
  title?: string;
  setup(ctx: ResourceContext): Promise<T>;
  teardown(value: T, ctx: ResourceContext): Promise<void>;
}

export interface ResourceContext {
  readonly id: string;
  readonly signal: AbortSignal;
  /** A private directory under the state directory's work area, recognisable as this run's. */
  readonly workDir: string;
  exec: TaskContext["exec"];
  log(message: string): void;
}

/** Called at the start of every run that may execute tasks, to remove what killed runs left behind. */
export interface Sweeper {
  id: string;
  /** Work directories of runs whose process is gone. */
  sweep(deadWorkDirs: string[], log: (message: string) => void): Promise<void>;
}

/** The roots every path derives from. */
export interface Roots {
  baseDir: string;
  tftpDir: string;
  homeDir: string;
  etcDir: string;
  cacheDir: string;
}

export interface Graph {
  tasks: TaskDef[];
  resources: ResourceDef<any>[];
  sweepers: Sweeper[];
  resourceClasses: Record<string, number>;
}
