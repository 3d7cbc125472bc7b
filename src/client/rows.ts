import type { Attempt, Job, JobStatus, Payload, QueueStats } from "./types.js";

// The database answers in its own names (snake_case JSON, see supaqueue.get_job and supaqueue.queue_stats); the
// client hands out camelCase objects.

interface AttemptRow {
  attempt: number;
  succeeded: boolean;
  status_code: number | null;
  error: string | null;
  duration_ms: number | null;
  response_body: string | null;
  started_at: string;
  finished_at: string;
}

export interface JobRow {
  id: string;
  queue: string;
  status: JobStatus;
  payload: Payload;
  headers: Record<string, string>;
  attempts: number;
  run_at: string;
  dedup_key: string | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: string;
  finished_at: string | null;
  parent_id: string | null;
  children: string[];
  after: string[];
  waited_on_by: string[];
  call?: { attempt: number; started_at: string; lease_until: string; accepted_at: string | null } | null;
  attempts_history: AttemptRow[];
}

/** A row of supaqueue.queue_stats (also what `supaqueue status` reads). */
export interface QueueStatsRow {
  queue: string;
  paused: boolean;
  pending: number;
  scheduled: number;
  in_flight: number;
  successful: number;
  failed: number;
  cancelled: number;
  workers: number;
  busy_workers: number;
  p50_ms: number | null;
  p95_ms: number | null;
  rate_limit_per_second: number | null;
  /** While the target has said slow down (slow_down): the calls per second the queue may start now. */
  slowed_to_per_second: number | null;
  /** Until when a Retry-After holds the queue's new calls (honor_retry_after: queue). */
  held_until: string | null;
  /** Jobs waiting for others (enqueue's after). */
  waiting: number;
  /** Calls in flight whose target answered 202 and will report by callback (callback_timeout). */
  awaiting_callback: number;
}

function toAttempt(row: AttemptRow): Attempt {
  return {
    attempt: row.attempt,
    succeeded: row.succeeded,
    statusCode: row.status_code,
    error: row.error,
    durationMs: row.duration_ms,
    responseBody: row.response_body,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

export function toJob<P>(row: JobRow): Job<P> {
  return {
    id: row.id,
    queue: row.queue,
    status: row.status,
    payload: row.payload as P,
    headers: row.headers,
    attempts: row.attempts,
    runAt: row.run_at,
    dedupKey: row.dedup_key,
    lastStatusCode: row.last_status_code,
    lastError: row.last_error,
    createdAt: row.created_at,
    finishedAt: row.finished_at,
    parentId: row.parent_id ?? null,
    children: row.children ?? [],
    after: row.after ?? [],
    waitedOnBy: row.waited_on_by ?? [],
    call: row.call
      ? {
          attempt: row.call.attempt,
          startedAt: row.call.started_at,
          leaseUntil: row.call.lease_until,
          acceptedAt: row.call.accepted_at,
        }
      : null,
    history: row.attempts_history.map(toAttempt),
  };
}

export function toQueueStats(row: QueueStatsRow): QueueStats {
  return {
    queue: row.queue,
    paused: row.paused,
    pending: row.pending,
    scheduled: row.scheduled,
    inFlight: row.in_flight,
    successful: row.successful,
    failed: row.failed,
    cancelled: row.cancelled,
    waiting: row.waiting,
    awaitingCallback: row.awaiting_callback ?? 0,
    workers: row.workers,
    busyWorkers: row.busy_workers,
    p50Ms: row.p50_ms,
    p95Ms: row.p95_ms,
  };
}
