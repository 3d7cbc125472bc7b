/**
 * An error the database (or PostgREST) answered, with what Postgres said kept whole: `message` (without the
 * "supaqueue: " prefix of Supaqueue's own errors), `code` (the SQLSTATE, e.g. P0001 for Supaqueue's checks, 42501
 * for a permission refused, or PostgREST's PGRST… code), `hint` and `details` when there are any, the HTTP `status`
 * and the RPC (`fn`) that failed.
 */
export class SupaqueueError extends Error {
  override readonly name: string = "SupaqueueError";
  readonly code: string;
  readonly hint: string | null;
  readonly details: string | null;
  readonly status: number | null;
  readonly fn: string;

  constructor(
    message: string,
    fields: {
      code?: string;
      hint?: string | null;
      details?: string | null;
      status?: number | null;
      fn: string;
    },
  ) {
    super(message);
    this.code = fields.code ?? "";
    this.hint = fields.hint ?? null;
    this.details = fields.details ?? null;
    this.status = fields.status ?? null;
    this.fn = fields.fn;
  }
}

/**
 * A payload that does not match its queue's JSON Schema (`payload:` in supaqueue.yml), caught before it is sent:
 * `path` names the field as a JSON Pointer ("" for the payload itself, "/to" for its field `to`), `index` the job's
 * place in an enqueueMany batch (from 0; null for one job).
 */
export class PayloadError extends Error {
  override readonly name: string = "PayloadError";
  constructor(
    readonly queue: string,
    readonly path: string,
    readonly problem: string,
    readonly index: number | null = null,
  ) {
    const which = index === null ? "the payload" : `the payload of job ${index + 1}`;
    super(`${which} for queue "${queue}" is invalid at ${path === "" ? "its top" : path}: ${problem}`);
  }
}

/** `wait()` ran out of time before the job finished; `job` is how it stood at the last look. */
export class WaitTimeoutError extends Error {
  override readonly name: string = "WaitTimeoutError";
  constructor(
    readonly jobId: string,
    readonly timeoutMs: number,
    readonly lastStatus: string,
  ) {
    super(`supaqueue: job ${jobId} did not finish within ${timeoutMs} ms (still ${lastStatus})`);
  }
}
