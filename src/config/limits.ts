// The upper bound of every number in supaqueue.yml, each with the reason a message gives for it. The JSON Schema
// (schema/supaqueue.schema.json) states the same bounds and reasons; test/config-bounds.test.ts keeps them equal.

export interface Limit {
  max: number;
  /** The bound as a message writes it after "at most". */
  label: string;
  why: string;
}

const HOUR_MS = 3_600_000;

export const LIMITS = {
  workers: {
    max: 1000,
    label: "1,000",
    why: "a queue's calls in flight are bounded by what one project's edge functions can run at once, and each worker is a row the deploy writes",
  },
  perKeyConcurrency: {
    max: 1000,
    label: "1,000",
    why: "a key's calls in flight are also bounded by the queue's workers (at most 1,000)",
  },
  maxAttempts: {
    max: 1000,
    label: "1,000",
    why: "each attempt is a call and a row of the job's attempt history; retry a job that ran out by hand (supaqueue.retry) instead",
  },
  callbackTimeoutMs: {
    max: 168 * HOUR_MS,
    label: "168h (7 days)",
    why: 'a call waiting for its callback holds one of the queue\'s workers; a target that needs longer sends {"status": 202} callbacks as heartbeats, each giving it callback_timeout again',
  },
  backoffMs: {
    max: 576 * HOUR_MS,
    label: "576h (24 days)",
    why: "the database keeps it in milliseconds in a 32-bit integer, which ends at 24.8 days",
  },
  ratePerSecond: {
    max: 10_000,
    label: "10,000/s",
    why: "more than Supaqueue dispatches (about 6,600 calls a second in the benchmark), so a higher limit would limit nothing",
  },
  statusCodes: {
    max: 100,
    label: "100",
    why: "IANA registers about 60 HTTP statuses, so a longer list is a mistake (list the statuses you mean)",
  },
  fanOut: {
    max: 10_000,
    label: "10,000",
    why: "every job of a fan-out is enqueued in the transaction that records the success (supaqueue.queue.fan_out_max)",
  },
  queues: {
    max: 10_000,
    label: "10,000",
    why: "the deploy plans and reconciles every queue of the file in one transaction; create more queues by hand in SQL (insert into supaqueue.queue), which the deploy never touches",
  },
  schedules: {
    max: 1000,
    label: "1,000",
    why: "each is a pg_cron job, and each run adds a row to cron.job_run_details (1,000 schedules every minute add 1.4 million rows a day)",
  },
  alertOldestDueMs: {
    max: 576 * HOUR_MS,
    label: "576h (24 days)",
    why: "the database keeps it in milliseconds in a 32-bit integer, which ends at 24.8 days",
  },
  alertDeadLetters: {
    max: 10_000,
    label: "10,000",
    why: "alerts count them among the 10,000 latest jobs that finished in the last 5 minutes, so a higher threshold could never be reached",
  },
  payloadBytes: {
    max: 1_048_576,
    label: "1,048,576 (1 MiB)",
    why: "supaqueue.config.max_payload_bytes, above which the database refuses a job, so every run of the schedule would fail; keep large data in a table or in Storage and send its id",
  },
} satisfies Record<string, Limit>;

/** "at most 1,000: <why>", the words every bound's message ends with. */
export function atMost(limit: Limit): string {
  return `at most ${limit.label}: ${limit.why}`;
}

/** A count with thousands separators, as the messages write numbers: 10,001. */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}
