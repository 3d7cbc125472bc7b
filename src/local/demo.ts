import type pg from "pg";
import { ConfigError, type QueueFile } from "../config/types.ts";
import { validateConfigText } from "../config/validate.ts";
import { formatTable, ms } from "../table.ts";
import { type Diagnosis, diagnoseStall, stallLine } from "./stall.ts";

const DEMO_FILE = "demo.supaqueue.yml (built in)";

/**
 * The demo's queue file. Its queues call endpoints of the local stack itself (see demo-target.ts), through both
 * kinds of target: edge functions of the "project" (`function:`) and plain URLs (`url:`).
 */
function demoConfigText(origin: string): string {
  return `queues:
  fast:                       # many quick calls, 5 at a time
    function: demo-fast
    workers: 5
    timeout: 5s
  slow:                       # ~300 ms answers, 2 at a time; a stalled first attempt times out and is retried
    url: ${origin}/demo/slow
    workers: 2
    timeout: 1s
    backoff: { base: 200ms, max: 1s }
  flaky:                      # 503 on ~30% of calls: retried with backoff; a 422 fails at once
    function: demo-flaky
    workers: 3
    max_attempts: 4
    backoff: { base: 200ms, max: 1s }
  rate-limited:               # 10 workers, but at most 20 calls a second (supaqueue.queue.rate_limit_per_second)
    url: ${origin}/demo/fast
    workers: 10
  render:                     # long work: a 202 now, the outcome by callback 0.3-1 s later (callback_timeout)
    url: ${origin}/demo/render
    workers: 4
    callback_timeout: 30s
`;
}

/** How many jobs the demo enqueues, per queue. */
const DEMO_JOBS: Record<string, number> = { fast: 200, slow: 40, flaky: 90, "rate-limited": 60, render: 10 };
const RATE_LIMITED_PER_SECOND = 20;

export function demoConfig(origin: string): QueueFile {
  const { config, problems } = validateConfigText(demoConfigText(origin), DEMO_FILE, { env: {} });
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/** Sets what supaqueue.yml has no key for (the rate limit) and enqueues the demo's jobs, interleaved across queues. */
export async function enqueueDemoJobs(pool: pg.Pool): Promise<number> {
  await pool.query("update supaqueue.queue set rate_limit_per_second = $1 where name = 'rate-limited'", [
    RATE_LIMITED_PER_SECOND,
  ]);
  const jobs: { queue: string; payload: Record<string, unknown> }[] = [];
  const longest = Math.max(...Object.values(DEMO_JOBS));
  for (let i = 0; i < longest; i++) {
    for (const [queue, count] of Object.entries(DEMO_JOBS)) {
      if (i >= count) continue;
      const payload: Record<string, unknown> = { n: i + 1 };
      if (queue === "slow" && i % 10 === 5) payload.stall = true;
      if (queue === "flaky" && i % 30 === 29) payload.invalid = true;
      if (queue === "render") payload.seconds = i + 1;
      jobs.push({ queue, payload });
    }
  }
  await pool.query(
    "select supaqueue.enqueue(j.queue, j.payload) from jsonb_to_recordset($1::jsonb) as j(queue text, payload jsonb)",
    [JSON.stringify(jobs)],
  );
  return jobs.length;
}

interface QueueProgress {
  queue: string;
  total: number;
  done: number;
  failed: number;
  in_flight: number;
  retries: number;
}

async function readProgress(pool: pg.Pool): Promise<QueueProgress[]> {
  const { rows } = await pool.query<QueueProgress>(`
    select q.name as queue, count(j.id)::int as total,
           count(j.id) filter (where j.status in ('successful', 'failed', 'cancelled'))::int as done,
           count(j.id) filter (where j.status = 'failed')::int as failed,
           count(j.id) filter (where j.status = 'in_progress')::int as in_flight,
           coalesce(sum(greatest(j.attempts - 1, 0)), 0)::int as retries
    from supaqueue.queue q left join supaqueue.job j on j.queue_id = q.id
    group by q.name order by q.name`);
  return rows;
}

function progressLine(progress: QueueProgress[], elapsedMs: number): string {
  const done = progress.reduce((n, q) => n + q.done, 0);
  const total = progress.reduce((n, q) => n + q.total, 0);
  const inFlight = progress.reduce((n, q) => n + q.in_flight, 0);
  const queues = progress.map(
    (q) => `${q.queue} ${q.done}/${q.total}${q.retries ? ` (${q.retries} retries)` : ""}`,
  );
  return `[${(elapsedMs / 1000).toFixed(0).padStart(3)}s] ${done}/${total} done, ${inFlight} in flight | ${queues.join(" | ")}`;
}

export interface QueueReport {
  queue: string;
  jobs: number;
  successful: number;
  retried: number;
  failed: number;
  calls: number;
  p50_ms: number | null;
  p95_ms: number | null;
}

/** Per queue: jobs, successful, retried (took more than one call), failed, calls made, p50/p95 call time. */
export async function readReport(pool: pg.Pool): Promise<QueueReport[]> {
  const { rows } = await pool.query<QueueReport>(`
    with calls as (select a.job_id, count(*)::int as n from supaqueue.attempt a group by a.job_id)
    select q.name as queue, count(j.id)::int as jobs,
           count(j.id) filter (where j.status = 'successful')::int as successful,
           count(j.id) filter (where c.n > 1)::int as retried,
           count(j.id) filter (where j.status = 'failed')::int as failed,
           coalesce(sum(c.n), 0)::int as calls,
           d.p50_ms::float8 as p50_ms, d.p95_ms::float8 as p95_ms
    from supaqueue.queue q
    left join supaqueue.job j on j.queue_id = q.id
    left join calls c on c.job_id = j.id
    left join lateral (
      select percentile_cont(0.5) within group (order by a.duration_ms) as p50_ms,
             percentile_cont(0.95) within group (order by a.duration_ms) as p95_ms
      from supaqueue.attempt a join supaqueue.job aj on aj.id = a.job_id where aj.queue_id = q.id) d on true
    group by q.name, d.p50_ms, d.p95_ms order by q.name`);
  return rows;
}

export function reportTable(report: QueueReport[]): string {
  const sum = (key: "jobs" | "successful" | "retried" | "failed" | "calls") =>
    report.reduce((n, q) => n + q[key], 0);
  return formatTable(
    ["queue", "jobs", "successful", "retried", "failed", "calls", "p50 ms", "p95 ms"],
    [
      ...report.map((q) => [
        q.queue,
        q.jobs,
        q.successful,
        q.retried,
        q.failed,
        q.calls,
        ms(q.p50_ms),
        ms(q.p95_ms),
      ]),
      ["total", sum("jobs"), sum("successful"), sum("retried"), sum("failed"), sum("calls"), null, null],
    ],
  );
}

export interface DemoWaitOptions {
  /** Give up after this long in all. */
  timeoutMs: number;
  /** Rewrite one progress line in place (a terminal), or print a line each second (a pipe, a log). */
  tty: boolean;
  write: (text: string) => void;
  /** How long without a finished job before the stuck link is looked for and named (default 10 s). */
  stallMs?: number;
  /** How often a diagnosis that has not changed is printed again (default 30 s). */
  repeatMs?: number;
  /** How long without a finished job before the demo gives up (default 120 s). */
  giveUpMs?: number;
  /** Finds the stuck link (default: diagnoseStall on the same pool), at most every few seconds while stalled. */
  diagnose?: () => Promise<Diagnosis>;
}

/** How waiting for the demo ended; when it did not finish, the stuck link last seen (null when nothing stalled). */
export type DemoOutcome =
  | { finished: true }
  | { finished: false; why: "timeout" | "stalled"; diagnosis: Diagnosis | null; stalledMs: number };

/**
 * Waits until every demo job has finished (successful or failed), printing progress once a second: one line each
 * time on a pipe or a log, a line rewritten in place on a terminal. When no job finishes for `stallMs`, it names the
 * link that holds the jobs up (stall.ts), again when that changes or every `repeatMs`; it gives up when nothing has
 * finished for `giveUpMs`, or when `timeoutMs` has passed.
 */
export async function waitForDemo(pool: pg.Pool, options: DemoWaitOptions): Promise<DemoOutcome> {
  const stallMs = options.stallMs ?? 10_000;
  const repeatMs = options.repeatMs ?? 30_000;
  const giveUpMs = options.giveUpMs ?? 120_000;
  const diagnose = options.diagnose ?? (() => diagnoseStall(pool));
  // A diagnosis sends a probe through the loop: not more often than this while stalled.
  const diagnoseEveryMs = Math.min(5_000, stallMs);
  const started = Date.now();
  let done = -1;
  let progressAt = started;
  // The diagnosis runs beside the progress lines (a probe of a broken loop takes seconds); `round` drops one that
  // comes back after a job has finished.
  let round = 0;
  let looking = false;
  const last: {
    diagnosis: { found: Diagnosis; at: number } | null;
    printed: { said: string; at: number } | null;
  } = { diagnosis: null, printed: null };
  const lookForStuckLink = () => {
    looking = true;
    const asked = round;
    diagnose()
      .catch(
        (error): Diagnosis => ({
          link: "unknown",
          message: `looking for it failed: ${(error as Error).message}`,
        }),
      )
      .then((found) => {
        looking = false;
        if (asked === round) last.diagnosis = { found, at: Date.now() };
      });
  };
  const end = (why: "timeout" | "stalled"): DemoOutcome => {
    if (options.tty) options.write("\n");
    return {
      finished: false,
      why,
      diagnosis: last.diagnosis?.found ?? null,
      stalledMs: Date.now() - progressAt,
    };
  };
  for (;;) {
    const progress = await readProgress(pool);
    const line = progressLine(progress, Date.now() - started);
    const finished = progress.every((q) => q.done === q.total);
    options.write(options.tty ? `\r\x1b[K${line}${finished ? "\n" : ""}` : `${line}\n`);
    if (finished) return { finished: true };
    const nowDone = progress.reduce((n, q) => n + q.done, 0);
    if (nowDone !== done) {
      done = nowDone;
      progressAt = Date.now();
      round++;
      last.diagnosis = null;
      last.printed = null;
    }
    const stalledMs = Date.now() - progressAt;
    if (stalledMs >= stallMs) {
      const { diagnosis, printed } = last;
      if (!looking && (!diagnosis || Date.now() - diagnosis.at >= diagnoseEveryMs)) lookForStuckLink();
      const said = diagnosis && `${diagnosis.found.link}: ${diagnosis.found.message}`;
      if (diagnosis && said && (printed?.said !== said || Date.now() - printed.at >= repeatMs)) {
        const stall = stallLine(diagnosis.found, stalledMs);
        options.write(options.tty ? `\r\x1b[K${stall}\n` : `${stall}\n`);
        last.printed = { said, at: Date.now() };
      }
      if (stalledMs >= giveUpMs && diagnosis) return end("stalled");
    }
    if (Date.now() - started > options.timeoutMs) return end("timeout");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
