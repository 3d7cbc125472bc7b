import type pg from "pg";
import type { JobRow, QueueStatsRow } from "../client/rows.ts";
import { formatTable, ms } from "../table.ts";
import { type CommandSpec, DB_URL_FLAG, type Parsed, requireDbUrl, UsageError } from "./args.ts";
import { withDatabase } from "./database.ts";
import { UUID } from "./job-ops.ts";

export const STATUS: CommandSpec = {
  name: "status",
  brief: "each queue's jobs, workers, call times and latest failures",
  summary:
    "show each queue's jobs (pending, scheduled, in flight, failed), workers busy/total, p50/p95 call time, and the latest failures with their errors; with a job id, that job and its chain: the job it came from (on_success), the jobs it started, the jobs it waits for and those waiting for it.",
  args: "[<job-id>]",
  maxArgs: 1,
  flags: {
    "db-url": DB_URL_FLAG,
    failures: {
      type: "string",
      value: "N",
      description: "How many of the latest failed jobs to show (default 5).",
    },
    json: { type: "boolean", description: "Print JSON instead of tables." },
  },
};

/** A row of supaqueue.queue_stats, in the database's names (the client's shape of it). */
type QueueStatus = QueueStatsRow;

interface RecentFailure {
  queue: string;
  job_id: string;
  attempts: number;
  status_code: number | null;
  error: string | null;
  finished_at: string;
}

/** Per-queue counters from supaqueue.queue_stats, and the latest failed jobs with the error of their last attempt. */
async function readStatus(
  client: pg.ClientBase,
  failures = 5,
): Promise<{ queues: QueueStatus[]; failures: RecentFailure[] }> {
  const stats = await client.query<QueueStatus>(`
    select queue, paused, pending::int, scheduled::int, in_flight::int, successful::int, failed::int, cancelled::int,
           workers::int, busy_workers::int, p50_ms::float8, p95_ms::float8, rate_limit_per_second::float8,
           slowed_to_per_second::float8, held_until::text, waiting::int, awaiting_callback::int
    from supaqueue.queue_stats order by queue`);
  const recent = await client.query<RecentFailure>(
    `select q.name as queue, j.id::text as job_id, j.attempts,
            coalesce(a.status_code, j.last_status_code) as status_code,
            coalesce(a.error, j.last_error) as error, j.finished_at::text as finished_at
     from supaqueue.job j
     join supaqueue.queue q on q.id = j.queue_id
     left join lateral (select status_code, error from supaqueue.attempt a
                        where a.job_id = j.id order by a.id desc limit 1) a on true
     where j.status = 'failed'
     order by j.finished_at desc limit $1`,
    [failures],
  );
  return { queues: stats.rows, failures: recent.rows };
}

export async function runStatus(parsed: Parsed, env: Record<string, string | undefined>): Promise<number> {
  const url = requireDbUrl("status", parsed.values, env);
  const failures = parsed.values.failures === undefined ? 5 : Number(parsed.values.failures);
  if (!Number.isInteger(failures) || failures < 0) {
    throw new UsageError(
      "status",
      `--failures must be a whole number of jobs, not "${parsed.values.failures}"`,
    );
  }
  return withDatabase(url, async (client) => {
    const installed = await client.query<{ ok: boolean }>(
      "select to_regclass('supaqueue.queue_stats') is not null as ok",
    );
    if (!installed.rows[0]?.ok) {
      process.stderr.write(
        "supaqueue status: Supaqueue is not installed in this database (no supaqueue.queue_stats); run supaqueue deploy first.\n",
      );
      return 1;
    }
    const [jobId] = parsed.positionals;
    if (jobId !== undefined) return printJob(client, jobId, parsed.values.json === true);
    const status = await readStatus(client, failures);
    if (parsed.values.json) {
      process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(`${statusText(status)}\n`);
    return 0;
  });
}

function statusText(status: { queues: QueueStatus[]; failures: RecentFailure[] }): string {
  if (status.queues.length === 0) return "No queues yet: add them to supaqueue.yml and run supaqueue deploy.";
  const out = [
    formatTable(
      [
        "queue",
        "pending",
        "scheduled",
        "in flight",
        "successful",
        "failed",
        "workers busy/total",
        "p50 ms",
        "p95 ms",
        "calls/s",
      ],
      status.queues.map((q) => [
        q.paused ? `${q.queue} (paused)` : q.queue,
        q.pending,
        q.scheduled,
        q.awaiting_callback > 0 ? `${q.in_flight} (${q.awaiting_callback} after a 202)` : q.in_flight,
        q.successful,
        q.failed,
        `${q.busy_workers}/${q.workers}`,
        ms(q.p50_ms),
        ms(q.p95_ms),
        rateText(q),
      ]),
    ),
    "(p50/p95: call time over the last hour; calls/s: the rate limit, or what the target's 429/503 lowered it to)",
  ];
  if (status.failures.length > 0) {
    out.push("", "Latest failures:");
    for (const f of status.failures) {
      const what = [f.status_code === null ? null : `HTTP ${f.status_code}`, f.error]
        .filter(Boolean)
        .join(": ");
      out.push(
        `  ${f.finished_at}  ${f.queue}  job ${f.job_id}  after ${f.attempts} attempt(s)  ${oneLine(what || "no error text")}`,
      );
    }
    out.push(
      "  Retry them with: supaqueue retry --queue <queue> (or select supaqueue.retry_failed('<queue>');)",
    );
  }
  return out.join("\n");
}

/** A job as supaqueue.get_job gives it, with the links of its chain. */
interface JobChain {
  id: string;
  queue: string;
  status: string;
  attempts: number;
  last_error: string | null;
  parent_id: string | null;
  children: string[];
  waiting_for: number | null;
  after: string[];
  waited_on_by: string[];
  call: NonNullable<JobRow["call"]> | null;
}

/** One job and its chain (supaqueue.get_job), as text or JSON; 1 when there is no such job. */
async function printJob(client: pg.ClientBase, jobId: string, json: boolean): Promise<number> {
  if (!UUID.test(jobId)) {
    throw new UsageError("status", `"${jobId}" is not a job id (a UUID such as 0192f0c4-…)`);
  }
  const { rows } = await client.query<{ job: JobChain | null }>("select supaqueue.get_job($1) as job", [
    jobId,
  ]);
  const job = rows[0]?.job ?? null;
  if (job === null) {
    process.stderr.write(
      `supaqueue status: no job ${jobId} (it never existed, or was deleted after the retention period).\n`,
    );
    return 1;
  }
  if (json) {
    process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
    return 0;
  }
  const ids = (list: string[]) => (list.length === 0 ? "none" : list.join(", "));
  const lines = [
    `job ${job.id}  ${job.queue}  ${job.status}${job.status === "waiting" ? ` (for ${job.waiting_for} more)` : ""}  after ${job.attempts} attempt(s)`,
    ...(job.last_error === null ? [] : [`  last error: ${oneLine(job.last_error)}`]),
    ...(job.call === null ? [] : [callText(job.call)]),
    `  came from (on_success): ${job.parent_id ?? "none"}`,
    `  started (on_success):   ${ids(job.children)}`,
    `  waits for (after):      ${ids(job.after)}`,
    `  waited on by:           ${ids(job.waited_on_by)}`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  return 0;
}

/** The call in flight: since when, and for a call its target took on (202), until when its callback may come. */
function callText(call: NonNullable<JobChain["call"]>): string {
  const head = `  in flight: attempt ${call.attempt} since ${call.started_at}`;
  return call.accepted_at === null
    ? `${head}, lease until ${call.lease_until}`
    : `${head}; taken on by the target (202) at ${call.accepted_at}, its callback due by ${call.lease_until}`;
}

/** "10", "slowed to 2.5 of 10", "held until …", or null without a limit. */
function rateText(q: QueueStatus): string | null {
  const limit = q.rate_limit_per_second === null ? "" : ` of ${round(q.rate_limit_per_second)}`;
  if (q.held_until !== null) return `held until ${q.held_until}`;
  if (q.slowed_to_per_second !== null) return `slowed to ${round(q.slowed_to_per_second)}${limit}`;
  return q.rate_limit_per_second === null ? null : round(q.rate_limit_per_second);
}

function round(n: number): string {
  return String(Math.round(n * 10) / 10);
}

function oneLine(text: string, max = 200): string {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
