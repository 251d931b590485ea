// Every subprocess goes through here: execa, its own process group, and cancellation that kills
// the whole tree (TERM, then KILL after a grace period).
import type { ExecBufferResult, ExecOptions, ExecResult, TaskContext } from "./types.ts";

const KILL_GRACE_MS = 3000;

// Loaded on first use: most no-op runs start no command at all.
let execaModule: Promise<typeof import("execa")> | undefined;
const loadExeca = () => (execaModule ??= import("execa"));
const STDERR_TAIL_LINES = 20;

export class CommandError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly exitCode: number | undefined,
    readonly stderr: string,
  ) {
    super(message);
    this.name = "CommandError";
  }
}

export class CancelledError extends Error {
  constructor(message = "cancelled") {
    super(message);
    this.name = "CancelledError";
  }
}

function killTree(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // The group is gone already.
  }
}

function tail(text: string, lines: number): string {
  const all = text.trimEnd().split("\n");
  return all.slice(-lines).join("\n");
}

export type Exec = TaskContext["exec"];

/** An exec bound to a cancellation signal and a logger. */
export function createExec(signal: AbortSignal, log: (line: string) => void = () => {}): Exec {
  async function exec(
    file: string,
    args: readonly string[] = [],
    options: ExecOptions = {},
  ): Promise<ExecResult | ExecBufferResult> {
    if (signal.aborted) throw new CancelledError();
    const commandLine = [file, ...args].join(" ");
    log(`$ ${commandLine}`);
    const { execa } = await loadExeca();
    if (signal.aborted) throw new CancelledError();
    const child = execa(file, args, {
      cwd: options.cwd,
      env: options.env,
      extendEnv: true,
      input: options.input,
      reject: false,
      stripFinalNewline: false,
      encoding: options.binary ? "buffer" : "utf8",
      // Own process group, so cancelling reaches grandchildren (nice → ionice → mksquashfs).
      detached: true,
      cleanup: true,
      maxBuffer: 1024 * 1024 * 1024,
      lines: false,
    });
    const onAbort = () => {
      killTree(child.pid, "SIGTERM");
      setTimeout(() => killTree(child.pid, "SIGKILL"), KILL_GRACE_MS).unref();
    };
    signal.addEventListener("abort", onAbort, { once: true });
    if (options.onLine) {
      const onLine = options.onLine;
      const follow = (stream: NodeJS.ReadableStream | null, name: "stdout" | "stderr") => {
        if (!stream) return;
        let rest = "";
        stream.on("data", (chunk: Buffer | string) => {
          const text = rest + chunk.toString();
          const parts = text.split(/\r?\n|\r/);
          rest = parts.pop() ?? "";
          for (const part of parts) onLine(part, name);
        });
        stream.on("end", () => {
          if (rest) onLine(rest, name);
        });
      };
      if (!options.binary) follow(child.stdout, "stdout");
      follow(child.stderr, "stderr");
    }
    try {
      const result = await child;
      if (signal.aborted) throw new CancelledError(`${file} cancelled`);
      const ok = options.okExitCodes ?? [0];
      const exitCode = result.exitCode ?? -1;
      const stderr = typeof result.stderr === "string" ? result.stderr : Buffer.from(result.stderr as Uint8Array).toString();
      if (result.failed && (result.exitCode === undefined || !ok.includes(exitCode))) {
        const why = result.exitCode === undefined ? (result.signal ? `killed by ${result.signal}` : result.shortMessage) : `exit code ${exitCode}`;
        const detail = tail(stderr, STDERR_TAIL_LINES);
        throw new CommandError(`${commandLine} failed (${why})${detail ? `:\n${detail}` : ""}`, commandLine, result.exitCode, stderr);
      }
      if (options.binary) {
        return { stdout: Buffer.from(result.stdout as Uint8Array), stderr, exitCode };
      }
      return { stdout: result.stdout as string, stderr, exitCode };
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
  return exec as Exec;
}

/** An exec for code that runs outside a task (tests, CLI helpers). */
export function standaloneExec(log?: (line: string) => void): Exec {
  return createExec(new AbortController().signal, log);
}
