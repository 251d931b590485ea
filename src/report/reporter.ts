// What the scheduler tells the user about. Renderers: listr2 (TTY), plain lines (cron, CI), quiet.
export type TaskOutcome =
  | "done" // ran and recorded
  | "fresh" // up to date, not run
  | "cutoff" // upstream re-ran but its output did not change: not run
  | "failed"
  | "blocked" // an upstream task failed, or the run stopped after a failure
  | "cancelled"; // interrupted

export interface TaskEnd {
  id: string;
  outcome: TaskOutcome;
  durationMs: number;
  error?: string;
  /** The last lines the task logged, shown on failure. */
  logTail?: string[];
}

export interface RunSummary {
  ran: number;
  fresh: number;
  cutoff: number;
  failed: string[];
  blocked: string[];
  cancelled: string[];
  durationMs: number;
  interrupted?: NodeJS.Signals;
}

export interface Reporter {
  /** The tasks that will be considered, with titles, before anything starts. */
  begin(tasks: Array<{ id: string; title: string; willRun: boolean }>): void;
  taskStart(id: string): void;
  taskLog(id: string, line: string): void;
  taskProgress(id: string, fraction: number, text?: string): void;
  taskEnd(end: TaskEnd): void;
  /** Engine detail, shown with -v. */
  note(message: string): void;
  /** A message a task wants every user to read. */
  notice(id: string, message: string): void;
  end(summary: RunSummary): Promise<void> | void;
}

export function summaryLine(s: RunSummary): string {
  const seconds = (s.durationMs / 1000).toFixed(s.durationMs < 10_000 ? 2 : 1);
  const parts = [`${s.ran} run`, `${s.fresh + s.cutoff} up to date`, `${s.failed.length} failed`];
  if (s.cutoff) parts[1] += ` (${s.cutoff} by early cutoff)`;
  if (s.blocked.length) parts.push(`${s.blocked.length} not started`);
  if (s.cancelled.length) parts.push(`${s.cancelled.length} cancelled`);
  return `${parts.join(", ")} in ${seconds} s${s.interrupted ? ` (interrupted by ${s.interrupted})` : ""}`;
}
