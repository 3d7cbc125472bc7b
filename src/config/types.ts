import type { JsonSchema } from "../client/payload.ts";
/** Where a problem is in supaqueue.yml: 1-based line and column, as GitHub annotations want them. */
export interface Position {
  file: string;
  line: number;
  column: number;
}

/** One problem in supaqueue.yml: where it is, which field, and what to write instead. */
export interface ConfigProblem {
  position: Position;
  /** Dotted path of the field, e.g. `queues.send-email.method`. */
  field: string;
  message: string;
}

/** What a Retry-After holds back: its own job, or the whole queue. */
export type RetryAfterScope = "job" | "queue";
/** What the next job of an on_success step carries: the JSON response, the original payload, or both merged. */
export type OnSuccessPayload = "response" | "payload" | "merged";

export const HTTP_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

/** A header whose value comes from the environment through `${VAR}`: stored in Vault, never in a table. */
export interface SecretHeader {
  header: string;
  /** The resolved value. Secret: mask it, never print it. */
  value: string;
  /** The environment variables the value was built from (for messages). */
  variables: string[];
}

/** A queue URL that holds `${VAR}`, filled in from the environment: stored in Vault, never in a table. */
export interface UrlSecret {
  /** The filled-in URL. Secret: mask it, never print it. */
  value: string;
  /** The environment variables it was built from (for messages). */
  variables: string[];
}

/** A queue's alerts webhook: its URL as written (`${VAR}` kept) and, when it holds `${VAR}`, filled in for Vault. */
interface AlertWebhook {
  url: string;
  urlSecret: UrlSecret | null;
}

/** One queue of supaqueue.yml with its defaults filled in and durations in milliseconds. */
export interface QueueSpec {
  name: string;
  /** The URL as written, `${VAR}` not filled in: safe to store and print. */
  url: string | null;
  /** The filled-in URL when `url` holds `${VAR}` (null otherwise, and for function queues). */
  urlSecret: UrlSecret | null;
  functionName: string | null;
  method: HttpMethod;
  /** Plain headers, stored as they are in supaqueue.queue.headers. */
  headers: Record<string, string>;
  secretHeaders: SecretHeader[];
  workers: number;
  maxAttempts: number;
  timeoutMs: number;
  /**
   * callback_timeout: a target may answer 202 and report the outcome later through the call's callback URL; the
   * call stays in flight this long after the 202 (null: a 202 is a success like any 2xx).
   */
  callbackTimeoutMs: number | null;
  backoffBaseMs: number;
  backoffMaxMs: number;
  successCodes: number[] | null;
  retryCodes: number[] | null;
  /** At most this many calls per second, from `rate_limit: 10/s` (null: no limit beyond the workers). */
  rateLimitPerSecond: number | null;
  /** A 429 or 503 halves the calls per second the queue may start, which then grow back (supaqueue.throttle). */
  slowDown: boolean;
  /** Whether a Retry-After delays only its job, or also holds the queue's new calls until then. */
  honorRetryAfter: RetryAfterScope;
  /** At most this many calls in flight per job key (null: no cap per key). */
  perKeyConcurrency: number | null;
  /** A key's jobs run one at a time, in enqueue order. */
  ordered: boolean;
  /** An ordered key whose job fails for good stops until that job is retried or the key released. */
  holdKeyOnFailure: boolean;
  /** The payload field enqueue() takes a job's key from when it is given none. */
  keyField: string | null;
  /** Whether calls carry Supaqueue-Signature: the installer makes the queue's first key in Vault. */
  signed: boolean;
  /** Another queue that receives this queue's jobs that fail for good (null: none). */
  deadLetterQueue: string | null;
  /** on_success.queue: another queue each successful job enqueues a job into (null: none). */
  onSuccessQueue: string | null;
  /** on_success.payload: what that job carries. */
  onSuccessPayload: OnSuccessPayload;
  /** on_success.field: the field of the JSON response used instead of the whole response (null: the whole). */
  onSuccessField: string | null;
  /** on_success.fan_out: the response (or field) is a JSON array, one job per item. */
  fanOut: boolean;
  /** on_success.fan_out_max: at most this many items; more fails the step. */
  fanOutMax: number;
  /** The JSON Schema of its payloads (`payload:`), which the client and `supaqueue enqueue` check (null: any). */
  payloadSchema: JsonSchema | null;
  /** alerts.webhook: where its alerts are POSTed, as written and filled in (null: no alerts). */
  alertWebhook: AlertWebhook | null;
  /** alerts.failure_rate as a fraction (0.5 for 50%): jobs failed for good among those finished in 5 minutes. */
  alertFailureRate: number | null;
  /** alerts.oldest_due: the age of its oldest due job that alerts. */
  alertOldestDueMs: number | null;
  /** alerts.dead_letters: jobs failed for good in 5 minutes that alert. */
  alertDeadLetters: number | null;
  /** The queue's page of the dashboard (the file's dashboard_url), which its alerts link to; null: none. */
  alertLink: string | null;
  /** Where dead_letter_queue is in the file (or the queue's name), to point at it from later checks. */
  deadLetterPosition: Position;
  /** Where on_success.queue is in the file (or the queue's name). */
  onSuccessPosition: Position;
  paused: boolean;
  /** Where the queue's name is in the file, to point at it from later checks (e.g. against the database). */
  position: Position;
  /** Where its timeout is (or the queue's name when the default applies). */
  timeoutPosition: Position;
}

/** One recurring call of supaqueue.yml: a pg_cron job that enqueues `payload` into `queue`. */
export interface ScheduleSpec {
  name: string;
  /** pg_cron syntax: five cron fields, or "N seconds". */
  cron: string;
  queue: string;
  payload: unknown;
  /** Where the schedule's name is in the file. */
  position: Position;
  /** Where its queue is named, to point at it when the queue does not exist. */
  queuePosition: Position;
  /** Where its cron is, to point at it when the database's pg_cron cannot run it. */
  cronPosition: Position;
}

export interface QueueFile {
  file: string;
  /** The dashboard's address that alerts link to (top-level dashboard_url), null when the file names none. */
  dashboardUrl?: string | null;
  queues: QueueSpec[];
  schedules: ScheduleSpec[];
}

export interface ValidateOptions {
  /** The environment that `${VAR}` is resolved from. */
  env: Record<string, string | undefined>;
  /** The longest timeout a queue may ask for (supaqueue.config.max_call_timeout_ms). */
  maxCallTimeoutMs?: number;
  /** The largest schedule payload, in bytes of its jsonb text (supaqueue.config.max_payload_bytes; 1 MiB). */
  maxPayloadBytes?: number;
}

/** The longest per-call timeout when the database does not say otherwise (supaqueue.config.max_call_timeout_ms). */
export const DEFAULT_MAX_CALL_TIMEOUT_MS = 140_000;

/** supaqueue.yml has problems; nothing was changed. Each problem carries its file position. */
export class ConfigError extends Error {
  constructor(readonly problems: ConfigProblem[]) {
    super(
      `supaqueue: ${problems.length === 1 ? "1 problem" : `${problems.length} problems`} in ${problems[0]?.position.file ?? "the queue file"}; nothing was changed:\n` +
        problems.map(formatProblem).join("\n"),
    );
    this.name = "ConfigError";
  }
}

export function formatProblem(problem: ConfigProblem): string {
  const { file, line, column } = problem.position;
  return `${file}:${line}:${column}: ${problem.field}: ${problem.message}`;
}
