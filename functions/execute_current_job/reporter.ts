/**
 * Reports outcomes in batches, the way databases group commits. An outcome that finds a report slot free is sent at
 * once, alone, so a quiet queue waits for nothing; outcomes that arrive while every slot is busy wait for the next
 * one and then go together, up to `maxBatch` outcomes (and `maxBatchChars` of bodies) per report. Under load the
 * database finishes many outcomes per transaction (a batch of 10 costs it about a seventh of what 10 single reports
 * cost) while no outcome waits longer than a report before it. There are no timers.
 *
 * Each report may also bring back the next calls of the queues whose workers it freed (supaqueue.complete_and_claim):
 * they go to `onCalls`, so a busy queue goes on in this instance without a wakeup through pg_net. `claimWithinMs`
 * says, at each report, how long a call this instance may still take on (0: none; the database then wakes the
 * function for them instead). Like handler.ts this module uses no Deno globals, so it runs under Node in tests.
 */

import type { Completion } from "./call.ts";
import type { ReportAnswer } from "./rpc.ts";

/** Sends one batch. Rejects when the report could not be made (its calls' leases recover them). */
export type SendReport = (outcomes: Completion[], claimWithinMs: number) => Promise<ReportAnswer>;

interface BatchReporterOptions {
  send: SendReport;
  /** How long a next call may take, asked when a report leaves (default: none are taken). */
  claimWithinMs?: () => number;
  /** Receives the next calls a report brought back. */
  onCalls?: (calls: unknown[]) => void;
  /** The most outcomes in one report; the rest go in the next. Default 100. */
  maxBatch?: number;
  /**
   * The most characters of response bodies and errors in one report (a report always carries at least one
   * outcome), so that outcomes with large bodies go in several requests of a bounded size. Default 1,000,000.
   */
  maxBatchChars?: number;
  /** Reports on their way at once. Default 2: a slow report does not hold every outcome behind it. */
  maxInFlight?: number;
}

/** One outcome waiting for its report, with what settles the caller's promise. */
interface Waiting {
  completion: Completion;
  resolve(recorded: boolean): void;
  reject(error: unknown): void;
}

interface BatchReporter {
  /**
   * Queues an outcome for the next report. Resolves to true once it is recorded, to false when its call was no
   * longer in flight (late or repeated: harmless); rejects when its batch could not be reported.
   */
  report(completion: Completion): Promise<boolean>;
  /** Outcomes waiting for a report, not counting those on their way. */
  readonly queued: number;
  /** Reports on their way. */
  readonly sending: number;
}

const DEFAULT_MAX_BATCH = 100;
const DEFAULT_MAX_BATCH_CHARS = 1_000_000;
const DEFAULT_MAX_REPORTS_IN_FLIGHT = 2;

export function createBatchReporter(options: BatchReporterOptions): BatchReporter {
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  const maxChars = options.maxBatchChars ?? DEFAULT_MAX_BATCH_CHARS;
  const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_REPORTS_IN_FLIGHT;
  for (const [name, value] of [
    ["maxBatch", maxBatch],
    ["maxBatchChars", maxChars],
    ["maxInFlight", maxInFlight],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`execute_current_job: ${name} must be a positive integer, not ${value}`);
    }
  }
  let waiting: Waiting[] = [];
  let sending = 0;

  /** Sends the next batch when a slot is free; called when an outcome arrives and when a report returns. */
  function next(): void {
    if (sending >= maxInFlight || waiting.length === 0) return;
    let size = 0;
    let chars = 0;
    for (const { completion } of waiting) {
      chars +=
        (completion.response_body?.length ?? 0) +
        (completion.chain_body?.length ?? 0) +
        (completion.error?.length ?? 0);
      if (size === maxBatch || (size > 0 && chars > maxChars)) break;
      size++;
    }
    const batch = waiting.slice(0, size);
    waiting = waiting.slice(size);
    sending++;
    void flush(batch).finally(() => {
      sending--;
      next();
    });
  }

  /** How long a next call may take; 0 when that cannot be told (a report is never lost over it). */
  function within(): number {
    try {
      return Math.max(0, Math.floor(options.claimWithinMs?.() ?? 0)) || 0;
    } catch {
      return 0;
    }
  }

  async function flush(batch: Waiting[]): Promise<void> {
    let answer: ReportAnswer;
    try {
      answer = await options.send(
        batch.map((w) => w.completion),
        within(),
      );
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    if (answer.calls.length > 0) options.onCalls?.(answer.calls);
    // The database keeps the first of two outcomes for the same call in a batch; the later one was not recorded.
    const finished = new Set(answer.finished.map(idKey));
    for (const w of batch) w.resolve(finished.delete(idKey(w.completion.current_job_id)));
  }

  return {
    report(completion) {
      return new Promise<boolean>((resolve, reject) => {
        waiting.push({ completion, resolve, reject });
        next();
      });
    },
    get queued() {
      return waiting.length;
    },
    get sending() {
      return sending;
    },
  };
}

/** A current job id as text without leading zeros, so 17, "17" and "017" name the same call. */
function idKey(id: number | string): string {
  return typeof id === "number" ? String(id) : id.replace(/^0+(?=\d)/, "");
}
