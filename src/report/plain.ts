// One line per event, for logs, cron and CI.
import type { Reporter, RunSummary, TaskEnd } from "./reporter.ts";
import { summaryLine } from "./reporter.ts";

export interface PlainOptions {
  verbose: boolean;
  quiet: boolean;
  write?: (line: string) => void;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

export class PlainReporter implements Reporter {
  private readonly write: (line: string) => void;
  private readonly lastProgress = new Map<string, { fraction: number; at: number }>();

  constructor(private readonly options: PlainOptions) {
    this.write = options.write ?? ((line) => process.stdout.write(`${line}\n`));
  }

  begin(): void {}

  taskStart(id: string): void {
    if (!this.options.quiet) this.write(`start   ${id}`);
  }

  taskLog(id: string, line: string): void {
    if (this.options.verbose) this.write(`        [${id}] ${line}`);
  }

  taskProgress(id: string, fraction: number, text?: string): void {
    if (this.options.quiet) return;
    const last = this.lastProgress.get(id);
    const now = Date.now();
    if (last && fraction - last.fraction < 0.1 && now - last.at < 10_000 && fraction < 1) return;
    this.lastProgress.set(id, { fraction, at: now });
    this.write(`        [${id}] ${Math.round(fraction * 100)}%${text ? ` ${text}` : ""}`);
  }

  taskEnd(end: TaskEnd): void {
    const { id, outcome } = end;
    if (outcome === "failed") {
      process.stderr.write(`FAILED  ${id} (${seconds(end.durationMs)}): ${end.error ?? "failed"}\n`);
      if (!this.options.verbose && end.logTail?.length) {
        for (const line of end.logTail) process.stderr.write(`        | ${line}\n`);
      }
      return;
    }
    if (this.options.quiet) return;
    if (outcome === "done") this.write(`done    ${id} (${seconds(end.durationMs)})`);
    else if (outcome === "cutoff") this.write(`cutoff  ${id} (upstream output unchanged)`);
    else if (outcome === "blocked") this.write(`skipped ${id}: ${end.error ?? "not started"}`);
    else if (outcome === "cancelled") this.write(`cancel  ${id}`);
    else if (this.options.verbose) this.write(`fresh   ${id}`);
  }

  note(message: string): void {
    if (this.options.verbose) this.write(`        ${message}`);
  }

  notice(id: string, message: string): void {
    this.write(`note    [${id}] ${message}`);
  }

  end(summary: RunSummary): void {
    if (!this.options.quiet || summary.failed.length) this.write(summaryLine(summary));
  }
}
