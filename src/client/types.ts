/**
 * A job's status: `pending` (due or scheduled), `waiting` (for the jobs of its `after`), `in_progress` (its call in
 * flight), or finished as `successful`, `failed` or `cancelled`.
 */
export type JobStatus = "pending" | "in_progress" | "successful" | "failed" | "cancelled" | "waiting";

/** The statuses a job ends in: `wait()` returns when the job reaches one. */
export const FINISHED: readonly JobStatus[] = ["successful", "failed", "cancelled"];

/** A payload: a JSON object (the body of a POST/PUT/PATCH, the query string of a GET/DELETE) or a JSON array. */
export type Payload = { [key: string]: unknown } | unknown[];

/** Queue name → payload type, as `supaqueue gen types` writes it; any queue and any payload without one. */
export type PayloadMap = Record<string, Payload>;

/** When a job should run, and how it is told from others: what `enqueue` takes beside the payload. */
export interface EnqueueOptions {
  /** Not before this moment (a Date or an ISO timestamp). */
  runAt?: Date | string;
  /** Not before this many milliseconds from now, by the database's clock. Give `runAt` or `delay`, not both. */
  delay?: number;
  /** While an unfinished job of the queue has this key, its id is returned instead of adding another. */
  dedupKey?: string;
  /** Headers added to the queue's own for this job's call. */
  headers?: Record<string, string>;
  /** The flow-control key (a tenant, a user): see per_key_concurrency and ordered in supaqueue.yml. */
  key?: string;
  /**
   * Job ids: the job waits (status `waiting`) until every one of them has succeeded, and is cancelled when one fails
   * for good or is cancelled. They must exist and must not have failed or been cancelled already.
   */
  after?: string[];
}

/** One attempt of a job: a call and its outcome. */
export interface Attempt {
  attempt: number;
  succeeded: boolean;
  statusCode: number | null;
  error: string | null;
  durationMs: number | null;
  /** The start of the target's answer, cut to `config.max_response_chars`. */
  responseBody: string | null;
  startedAt: string;
  finishedAt: string;
}

/** A job as the database holds it, with every attempt (times are ISO timestamps). */
export interface Job<P = Payload> {
  id: string;
  queue: string;
  status: JobStatus;
  payload: P;
  headers: Record<string, string>;
  /** Attempts made in the current run (`retry` starts a new one; `history` keeps them all). */
  attempts: number;
  runAt: string;
  dedupKey: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: string;
  finishedAt: string | null;
  /** The job whose success enqueued this one (its queue's on_success), or null. */
  parentId: string | null;
  /** The jobs this one's success enqueued (on_success). */
  children: string[];
  /** The jobs it waits for (enqueue's `after`), and those that wait for it. */
  after: string[];
  waitedOnBy: string[];
  /**
   * Its call in flight, or null: the attempt, when it started, until when its lease runs, and when the target took it
   * on with a 202 (a queue with callback_timeout: the call then waits for the target's callback until leaseUntil).
   */
  call: { attempt: number; startedAt: string; leaseUntil: string; acceptedAt: string | null } | null;
  history: Attempt[];
}

/** A row of supaqueue.queue_stats. */
export interface QueueStats {
  queue: string;
  paused: boolean;
  /** Due now. */
  pending: number;
  /** Due later. */
  scheduled: number;
  inFlight: number;
  successful: number;
  failed: number;
  cancelled: number;
  /** Waiting for other jobs (enqueue's `after`). */
  waiting: number;
  /** Of the calls in flight, those whose target answered 202 and will report by callback (callback_timeout). */
  awaitingCallback: number;
  workers: number;
  busyWorkers: number;
  /** Call durations over the last hour, or null when there was none. */
  p50Ms: number | null;
  p95Ms: number | null;
}

/** How `wait()` polls. */
export interface WaitOptions {
  /** Give up after this long (default 60,000 ms) with a WaitTimeoutError. */
  timeoutMs?: number;
  /** The first pause between two looks (default 100 ms); each next one is 1.5 times longer. */
  intervalMs?: number;
  /** The longest pause between two looks (default 2,000 ms). */
  maxIntervalMs?: number;
  /** Stops waiting: the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}
