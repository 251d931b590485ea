// The interactive renderer: listr2's default renderer on a TTY, one row per task that runs, with
// a progress bar for long steps. Our scheduler drives it: every row waits for its task's events.
import { Listr, type ListrTaskWrapper } from "listr2";
import type { Reporter, RunSummary, TaskEnd } from "./reporter.ts";
import { summaryLine } from "./reporter.ts";

interface Row {
  started: () => void;
  ended: (end: TaskEnd) => void;
  task?: ListrTaskWrapper<unknown, any, any>;
  title: string;
}

function bar(fraction: number, width = 24): string {
  const filled = Math.round(fraction * width);
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${Math.round(fraction * 100)}%`;
}

export class ListrReporter implements Reporter {
  private readonly rows = new Map<string, Row>();
  private listr?: Promise<unknown>;
  private readonly notes: string[] = [];

  constructor(private readonly verbose: boolean) {}

  begin(tasks: Array<{ id: string; title: string; willRun: boolean }>): void {
    const entries = tasks
      .filter((t) => t.willRun)
      .map((t) => {
        let started!: () => void;
        let ended!: (end: TaskEnd) => void;
        const start = new Promise<void>((resolve) => (started = resolve));
        const end = new Promise<TaskEnd>((resolve) => (ended = resolve));
        const row: Row = { started, ended, title: t.title === t.id ? t.id : `${t.id}  ${t.title}` };
        this.rows.set(t.id, row);
        return {
          title: `${row.title} (waiting)`,
          task: async (_: unknown, task: ListrTaskWrapper<unknown, any, any>) => {
            row.task = task;
            const result = await Promise.race([start.then(() => undefined), end]);
            if (!result) task.title = row.title;
            const finished = result ?? (await end);
            const seconds = `${(finished.durationMs / 1000).toFixed(1)} s`;
            switch (finished.outcome) {
              case "done":
                task.title = `${row.title} (${seconds})`;
                return;
              case "failed":
                throw new Error(`${finished.error ?? "failed"}${finished.logTail?.length ? `\n${finished.logTail.slice(-8).join("\n")}` : ""}`);
              case "cutoff":
                task.skip(`${row.title}: up to date (upstream output unchanged)`);
                return;
              case "fresh":
                task.skip(`${row.title}: up to date`);
                return;
              default:
                task.skip(`${row.title}: ${finished.error ?? finished.outcome}`);
            }
          },
        };
      });
    this.listr = new Listr(entries, {
      concurrent: true,
      exitOnError: false,
      rendererOptions: { collapseErrors: false, showErrorMessage: true },
    })
      .run()
      .catch(() => undefined);
  }

  taskStart(id: string): void {
    this.rows.get(id)?.started();
  }

  taskLog(id: string, line: string): void {
    const row = this.rows.get(id);
    if (row?.task && this.verbose) row.task.output = line;
  }

  taskProgress(id: string, fraction: number, text?: string): void {
    const row = this.rows.get(id);
    if (row?.task) row.task.output = `${bar(fraction)}${text ? ` ${text}` : ""}`;
  }

  taskEnd(end: TaskEnd): void {
    this.rows.get(end.id)?.ended(end);
  }

  note(message: string): void {
    if (this.verbose) this.notes.push(message);
  }

  notice(id: string, message: string): void {
    this.notes.push(`note [${id}] ${message}`);
  }

  async end(summary: RunSummary): Promise<void> {
    for (const row of this.rows.values()) row.ended({ id: "", outcome: "cancelled", durationMs: 0 });
    await this.listr;
    for (const note of this.notes) process.stdout.write(`${note}\n`);
    process.stdout.write(`${summaryLine(summary)}\n`);
  }
}
