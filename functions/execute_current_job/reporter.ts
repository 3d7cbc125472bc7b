/**
 * Reports outcomes in batches, the way databases group commits: one report (a call of
 * public.supaqueue_complete_current_jobs) is on its way at a time. An outcome that finds none on its way is sent at
 * once, alone, so a quiet queue waits for nothing; outcomes that arrive meanwhile wait for it to return and then go
 * together, up to `maxBatch` outcomes (and `maxBatchChars` of bodies) per report. Under load the database finishes many outcomes per transaction (a batch of
 * 10 costs it about a seventh of what 10 single reports cost) while no outcome waits longer than the report before
 * it. There are no timers. postgrestSender makes the call itself. Like handler.ts this module uses no Deno globals,
 * so it runs under Node in tests.
 */

import { type Completion, describeError, readBounded } from "./handler.ts";

/**
 * Sends one batch and resolves to the ids of the current jobs the database finished; the others were no longer in
 * flight. Ids may come back as numbers or strings. Rejects when the report could not be made.
 */
export type SendBatch = (outcomes: Completion[]) => Promise<ReadonlyArray<number | string>>;

export interface BatchReporterOptions {
  send: SendBatch;
  /** The most outcomes in one report; the rest go in the next. Default 100. */
  maxBatch?: number;
  /**
   * The most characters of response bodies and errors in one report (a report always carries at least one
   * outcome), so that outcomes with large bodies go in several requests of a bounded size. Default 1,000,000.
   */
  maxBatchChars?: number;
}

/** One outcome waiting for its report, with what settles the caller's promise. */
interface Waiting {
  completion: Completion;
  resolve(recorded: boolean): void;
  reject(error: unknown): void;
}

export interface BatchReporter {
  /**
   * Queues an outcome for the next report. Resolves to true once it is recorded, to false when its call was no
   * longer in flight (late or repeated: harmless); rejects when its batch could not be reported.
   */
  report(completion: Completion): Promise<boolean>;
  /** Outcomes waiting for a report, not counting those on their way. */
  readonly queued: number;
  /** Whether a report is on its way. */
  readonly sending: boolean;
}

export const DEFAULT_MAX_BATCH = 100;
export const DEFAULT_MAX_BATCH_CHARS = 1_000_000;

export function createBatchReporter(options: BatchReporterOptions): BatchReporter {
  const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
  const maxChars = options.maxBatchChars ?? DEFAULT_MAX_BATCH_CHARS;
  for (const [name, value] of [
    ["maxBatch", maxBatch],
    ["maxBatchChars", maxChars],
  ] as const) {
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`execute_current_job: ${name} must be a positive integer, not ${value}`);
    }
  }
  let waiting: Waiting[] = [];
  let sending = false;

  /** Sends the next batch unless one is on its way; called when an outcome arrives and when a report returns. */
  function next(): void {
    if (sending || waiting.length === 0) return;
    let size = 0;
    let chars = 0;
    for (const { completion } of waiting) {
      chars += (completion.response_body?.length ?? 0) + (completion.error?.length ?? 0);
      if (size === maxBatch || (size > 0 && chars > maxChars)) break;
      size++;
    }
    const batch = waiting.slice(0, size);
    waiting = waiting.slice(size);
    sending = true;
    void flush(batch).finally(() => {
      sending = false;
      next();
    });
  }

  async function flush(batch: Waiting[]): Promise<void> {
    let finished: Set<string>;
    try {
      const ids = await options.send(batch.map((w) => w.completion));
      finished = new Set(ids.map(idKey));
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    // The database keeps the first of two outcomes for the same call in a batch; the later one was not recorded.
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

export interface PostgrestSenderOptions {
  fetch: typeof fetch;
  /** The project's URL (SUPABASE_URL). */
  supabaseUrl: string;
  /** The service-role key, sent as `apikey` and `Authorization: Bearer`, as supabase-js sends it. */
  key: string;
  /** A report that has not answered by then fails (its outcomes' leases recover the jobs). Default 30 s. */
  timeoutMs?: number;
}

/** The function that records a batch: public.supaqueue_complete_current_jobs (sql/0002_batched_completion.sql). */
export const COMPLETE_RPC = "supaqueue_complete_current_jobs";

/**
 * Sends batches as `POST /rest/v1/rpc/supaqueue_complete_current_jobs {"outcomes": [...]}`: the request supabase-js
 * `rpc()` makes, without the client, whose per-call objects were a third of the function's peak memory. Rejects
 * with PostgREST's code and message when it answers an error, and when no answer comes within the timeout: one
 * report is on its way at a time, so a hung one must not hold back the others.
 */
export function postgrestSender(options: PostgrestSenderOptions): SendBatch {
  const url = `${options.supabaseUrl.replace(/\/+$/, "")}/rest/v1/rpc/${COMPLETE_RPC}`;
  const headers = {
    "Content-Type": "application/json",
    apikey: options.key,
    Authorization: `Bearer ${options.key}`,
  };
  const timeoutMs = options.timeoutMs ?? 30_000;
  return async (outcomes) => {
    // Not AbortSignal.timeout: its timer would keep every report's signal alive for the whole timeout.
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    let response: Response;
    let read: Awaited<ReturnType<typeof readBounded>>;
    try {
      response = await options.fetch(url, {
        method: "POST",
        headers,
        body: JSON.stringify({ outcomes }),
        signal: controller.signal,
      });
      read = await readBounded(response, Number.POSITIVE_INFINITY);
    } finally {
      clearTimeout(timer);
    }
    const { text, error } = read;
    if (error) throw new Error(`${COMPLETE_RPC}: the answer was cut off: ${error}`);
    let answer: unknown;
    try {
      answer = JSON.parse(text ?? "");
    } catch (e) {
      throw new Error(`${COMPLETE_RPC}: HTTP ${response.status}, not JSON: ${describeError(e)}`);
    }
    if (!response.ok) {
      const { code, message } = (answer ?? {}) as { code?: unknown; message?: unknown };
      throw new Error(`${COMPLETE_RPC}: HTTP ${response.status} ${code ?? "error"}: ${message ?? text}`);
    }
    if (!Array.isArray(answer)) throw new Error(`${COMPLETE_RPC} answered ${text}, not an array of ids`);
    return answer;
  };
}

/** A current job id as text without leading zeros, so 17, "17" and "017" name the same call. */
function idKey(id: number | string): string {
  return typeof id === "number" ? String(id) : id.replace(/^0+(?=\d)/, "");
}
