import type pg from "pg";

/**
 * What the dashboard reads, each a bounded query that walks an index the schema already has: the dashboard adds no
 * index on supaqueue.job (every claim and completion would write it) and never counts every job of a queue on a
 * refresh (supaqueue.queue_stats does, which is fine once in a while but not every two seconds on a busy database).
 *
 * - backlog: job_pending_due_idx (queue_id, run_at, seq) where pending, counted up to BACKLOG_CAP ("10000+");
 * - the last minutes: job_finished_at_idx (finished_at), at most RECENT_CAP finished jobs (a chart says when capped);
 * - call durations: the attempts (attempt_job_idx) of the last DURATION_SAMPLE finished jobs;
 * - a queue's jobs: pending ones through job_pending_due_idx, in-flight ones through current_job (one row per busy
 *   worker), the rest by walking the time-ordered primary key (UUIDv7) backwards, at most SCAN_CAP rows per page:
 *   a page that found fewer jobs than asked says where it stopped, and the next page goes on from there.
 */
const BACKLOG_CAP = 10_000;
const RECENT_CAP = 20_000;
const DURATION_SAMPLE = 2_000;
const SCAN_CAP = 20_000;
const PAGE_SIZE = 50;
/** Minutes shown in the charts, the current one included. */
const MINUTES = 15;

interface QueueRow {
  name: string;
  paused: boolean;
  managed_by: string | null;
  target: string;
  rate_limit: number | null;
  /** While the target has said slow down (slow_down): the calls per second the queue may start now. */
  slowed_to: number | null;
  /** Until when a Retry-After holds the queue (honor_retry_after: queue). */
  held_until: string | null;
  /** Its open alert episodes (supaqueue.yml's alerts:): what crossed its threshold, with the value that did. */
  alerts: { kind: string; value: number; threshold: number; opened_at: string }[];
  dead_letter_queue: string | null;
  workers: number;
  busy: number;
  due: number;
  scheduled: number;
  oldest_due_s: number | null;
  /** [minute (epoch seconds), successful, failed] for each of the last MINUTES minutes, oldest first. */
  minutes: [number, number, number][];
  p50_ms: number | null;
  p95_ms: number | null;
}

export interface Overview {
  now: string;
  backlog_cap: number;
  /** The minute charts hold only the last RECENT_CAP finished jobs (a busier database shows fewer minutes whole). */
  charts_capped: boolean;
  queues: QueueRow[];
}

/** One row per queue (at most 500), with its backlog, workers, last minutes and call durations. */
export async function readOverview(client: pg.ClientBase): Promise<Overview> {
  const queues = await client.query(
    `select q.id::text as id, q.name, q.paused, q.managed_by,
            coalesce(q.url, 'function:' || q.function_name) as target,
            q.rate_limit_per_second as rate_limit, q.dead_letter_queue, w.workers, w.busy,
            (select supaqueue._throttled_rate(t, now())::float8 from supaqueue.throttle t
               where t.queue_id = q.id) as slowed_to,
            (select t.paused_until from supaqueue.throttle t
               where t.queue_id = q.id and t.paused_until > now()) as held_until,
            coalesce((select jsonb_agg(jsonb_build_object('kind', e.kind, 'value', e.value, 'threshold', e.threshold,
                                                          'opened_at', e.opened_at) order by e.kind)
                      from supaqueue.alert_episode e where e.queue_id = q.id), '[]') as alerts,
            (select count(*)::int from (select from supaqueue.job j
               where j.queue_id = q.id and j.status = 'pending' and j.run_at <= now() limit $1) d) as due,
            (select count(*)::int from (select from supaqueue.job j
               where j.queue_id = q.id and j.status = 'pending' and j.run_at > now() limit $1) s) as scheduled,
            (select extract(epoch from now() - min(j.run_at))::float8 from supaqueue.job j
               where j.queue_id = q.id and j.status = 'pending' and j.run_at <= now()) as oldest_due_s
     from supaqueue.queue q
     cross join lateral (select (count(*) filter (where not wk.retiring))::int as workers,
                                (count(*) filter (where wk.locked))::int as busy
                         from supaqueue.worker wk where wk.queue_id = q.id) w
     order by q.name limit 500`,
    [BACKLOG_CAP],
  );
  const since = `date_trunc('minute', now()) - interval '${MINUTES - 1} minutes'`;
  const minutes = await client.query(
    `select r.queue_id::text as id, (floor(extract(epoch from r.finished_at) / 60) * 60)::bigint as minute,
            (count(*) filter (where r.status = 'successful'))::int as ok,
            (count(*) filter (where r.status = 'failed'))::int as failed, count(*)::int as finished
     from (select j.queue_id, j.status, j.finished_at from supaqueue.job j
           where j.finished_at >= ${since} order by j.finished_at desc limit $1) r
     group by 1, 2`,
    [RECENT_CAP],
  );
  const durations = await client.query(
    `select r.queue_id::text as id,
            percentile_cont(0.5) within group (order by a.duration_ms)::float8 as p50_ms,
            percentile_cont(0.95) within group (order by a.duration_ms)::float8 as p95_ms
     from (select j.id, j.queue_id from supaqueue.job j
           where j.finished_at >= ${since} order by j.finished_at desc limit $1) r
     join supaqueue.attempt a on a.job_id = r.id
     where a.duration_ms is not null
     group by 1`,
    [DURATION_SAMPLE],
  );
  const { rows: clock } = await client.query<{ now: string; first: string }>(
    `select now()::text as now, extract(epoch from ${since})::bigint::text as first`,
  );
  const first = Number(clock[0]?.first);
  const finished = minutes.rows.reduce((n, r) => n + r.finished, 0);
  return {
    now: clock[0]?.now ?? "",
    backlog_cap: BACKLOG_CAP,
    charts_capped: finished >= RECENT_CAP,
    queues: queues.rows.map(({ id, ...q }) => {
      const duration = durations.rows.find((d) => d.id === id);
      return {
        ...q,
        minutes: Array.from({ length: MINUTES }, (_, i): [number, number, number] => {
          const minute = first + i * 60;
          const m = minutes.rows.find((r) => r.id === id && Number(r.minute) === minute);
          return [minute, m?.ok ?? 0, m?.failed ?? 0];
        }),
        p50_ms: duration?.p50_ms ?? null,
        p95_ms: duration?.p95_ms ?? null,
      };
    }),
  };
}

export const STATUSES = [
  "all",
  "pending",
  "waiting",
  "in_progress",
  "successful",
  "failed",
  "cancelled",
] as const;
export type StatusFilter = (typeof STATUSES)[number];

export interface JobsPage {
  jobs: Record<string, unknown>[];
  /** Where the next page starts, or null when there is nothing older. */
  next: string | null;
  /** How many jobs this page looked at to find these (bounded by SCAN_CAP). */
  scanned: number;
}

/** A page of a queue's jobs, newest first; `cursor` is a previous page's `next`. */
export async function readJobs(
  client: pg.ClientBase,
  queue: string,
  status: StatusFilter,
  cursor: string | null,
): Promise<JobsPage | null> {
  const { rows: found } = await client.query<{ id: string }>(
    "select q.id::text as id from supaqueue.queue q where q.name = $1",
    [queue],
  );
  const queueId = found[0]?.id;
  if (queueId === undefined) return null;
  const kind = status === "pending" ? "p" : status === "in_progress" ? "c" : "i";
  const at = cursor === null ? null : decodeCursor(cursor, kind);
  if (status === "pending") return pendingJobs(client, queueId, at);
  if (status === "in_progress") return inFlightJobs(client, queueId, at);
  return scannedJobs(client, queueId, status, at);
}

const JOB_COLUMNS = `j.id, j.status, j.attempts, j.run_at, j.created_at, j.finished_at, j.last_status_code,
  left(j.last_error, 200) as last_error`;

/** Pending jobs, the latest due first, straight from job_pending_due_idx. */
async function pendingJobs(client: pg.ClientBase, queueId: string, at: string[] | null): Promise<JobsPage> {
  const after = at ? "and (j.run_at, j.seq) < ($3::timestamptz, $4::bigint)" : "";
  const { rows } = await client.query(
    `select ${JOB_COLUMNS}, j.run_at::text as cursor_at, j.seq::text as cursor_seq from supaqueue.job j
     where j.queue_id = $1 and j.status = 'pending' ${after}
     order by j.run_at desc, j.seq desc limit $2`,
    [queueId, PAGE_SIZE, ...(at ?? [])],
  );
  const last = rows.at(-1);
  return {
    jobs: rows.map(({ cursor_at: _, cursor_seq: __, ...job }) => job),
    next: rows.length === PAGE_SIZE && last ? encodeCursor(["p", last.cursor_at, last.cursor_seq]) : null,
    scanned: rows.length,
  };
}

/** Jobs with a call in flight, through current_job (one row per busy worker), the latest started first. */
async function inFlightJobs(client: pg.ClientBase, queueId: string, at: string[] | null): Promise<JobsPage> {
  const after = at ? "and c.id < $3::bigint" : "";
  const { rows } = await client.query(
    `select ${JOB_COLUMNS}, c.started_at, c.id::text as cursor_id
     from supaqueue.current_job c join supaqueue.job j on j.id = c.job_id
     where j.queue_id = $1 and j.status = 'in_progress' ${after}
     order by c.id desc limit $2`,
    [queueId, PAGE_SIZE, ...(at ?? [])],
  );
  const last = rows.at(-1);
  return {
    jobs: rows.map(({ cursor_id: _, ...job }) => job),
    next: rows.length === PAGE_SIZE && last ? encodeCursor(["c", last.cursor_id]) : null,
    scanned: rows.length,
  };
}

/**
 * Any other filter walks the primary key backwards (job ids are time-ordered, so newest first) over at most SCAN_CAP
 * jobs of every queue, keeping those of this queue and status.
 */
async function scannedJobs(
  client: pg.ClientBase,
  queueId: string,
  status: StatusFilter,
  at: string[] | null,
): Promise<JobsPage> {
  const after = at ? "where j.id < $5::uuid" : "";
  const { rows } = await client.query<{
    scanned: number;
    last_id: string | null;
    jobs: Record<string, unknown>[];
  }>(
    `with scanned as materialized (
       select j.id, j.queue_id, j.status from supaqueue.job j ${after} order by j.id desc limit $2
     ), hits as (
       select s.id from scanned s
       where s.queue_id = $1 and ($4::text = 'all' or s.status::text = $4)
       order by s.id desc limit $3
     )
     select (select count(*)::int from scanned) as scanned,
            case when (select count(*) from hits) = $3 then (select h.id from hits h order by h.id limit 1)
                 when (select count(*) from scanned) = $2 then (select s.id from scanned s order by s.id limit 1)
            end::text as last_id,
            coalesce((select json_agg(x order by x.id desc) from (
              select ${JOB_COLUMNS} from hits h join supaqueue.job j on j.id = h.id) x), '[]') as jobs`,
    [queueId, SCAN_CAP, PAGE_SIZE, status, ...(at ?? [])],
  );
  const row = rows[0];
  return {
    jobs: row?.jobs ?? [],
    next: row?.last_id ? encodeCursor(["i", row.last_id]) : null,
    scanned: row?.scanned ?? 0,
  };
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A page's position: ["p", run_at, seq] for pending jobs, ["c", current job id] in flight, ["i", job id] else. */
function encodeCursor(parts: string[]): string {
  return Buffer.from(JSON.stringify(parts)).toString("base64url");
}

/** Thrown for a request this server cannot answer as asked (a cursor it did not make): answered 400. */
export class BadRequest extends Error {}

const CURSOR_PARTS: Record<string, RegExp[]> = {
  p: [/^\d{4}-\d\d-\d\d [\d:.]+[+-]\d\d(:\d\d)?$/, /^\d{1,18}$/],
  c: [/^\d{1,18}$/],
  i: [UUID],
};

/** The values of a cursor of this kind; a BadRequest for anything else. */
function decodeCursor(cursor: string, kind: string): string[] {
  let parts: unknown;
  try {
    parts = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
  } catch {
    parts = null;
  }
  const expected = CURSOR_PARTS[kind] ?? [];
  if (
    !Array.isArray(parts) ||
    parts[0] !== kind ||
    parts.length !== expected.length + 1 ||
    !expected.every((pattern, i) => typeof parts[i + 1] === "string" && pattern.test(parts[i + 1]))
  ) {
    throw new BadRequest("the cursor is not one this dashboard made for this list");
  }
  return parts.slice(1) as string[];
}

/**
 * The failed attempts of a queue's latest jobs (at most 500 of them, found among the last SCAN_CAP jobs of every
 * queue), grouped by status code and error, the most frequent first.
 */
export async function readErrors(client: pg.ClientBase, queue: string): Promise<Record<string, unknown>[]> {
  const { rows } = await client.query(
    `with recent as materialized (
       select s.id from (select j.id, j.queue_id from supaqueue.job j order by j.id desc limit $2) s
       join supaqueue.queue q on q.id = s.queue_id where q.name = $1 limit 500
     )
     select a.status_code, left(a.error, 300) as error, count(*)::int as count, max(a.finished_at) as last_seen,
            (array_agg(a.job_id::text order by a.finished_at desc))[1] as example_job
     from recent r join supaqueue.attempt a on a.job_id = r.id
     where not a.succeeded
     group by 1, 2 order by count(*) desc, max(a.finished_at) desc limit 20`,
    [queue, SCAN_CAP],
  );
  return rows;
}

export interface JobDetail {
  job: Record<string, unknown>;
  attempts: Record<string, unknown>[];
}

/**
 * A job, its queue's headers and every attempt. Header values (the job's and the queue's plain ones) come back only
 * when `reveal` is set; secret headers live in Vault and only their names are ever read.
 */
export async function readJob(client: pg.ClientBase, id: string, reveal: boolean): Promise<JobDetail | null> {
  const { rows } = await client.query(
    `select j.id, q.name as queue, j.status, j.attempts, q.max_attempts, j.run_at, j.created_at, j.finished_at,
            j.last_status_code, j.last_error, j.dedup_key, q.managed_by,
            left(j.payload::text, 100000) as payload, octet_length(j.payload::text) > 100000 as payload_cut,
            j.headers as job_headers, q.headers as queue_headers,
            (select coalesce(json_agg(k order by k), '[]') from jsonb_object_keys(q.secret_headers) k)
              as secret_headers,
            cj.id is not null as in_flight,
            -- A call its target took on (202): when, and until when its callback may come.
            cj.accepted_at, case when cj.accepted_at is not null then cj.lease_until end as callback_due,
            -- Its chain: the job it came from (on_success), the first 100 it started, and fan-in both ways.
            j.parent_id, j.waiting_for,
            (select coalesce(json_agg(c.id order by c.seq), '[]')
             from (select c.id, c.seq from supaqueue.job c where c.parent_id = j.id order by c.seq limit 100) c)
              as children,
            (select coalesce(json_agg(a.parent_id order by a.parent_id), '[]')
             from (select a.parent_id from supaqueue.job_after a where a.job_id = j.id order by 1 limit 100) a)
              as after,
            (select coalesce(json_agg(a.job_id order by a.job_id), '[]')
             from (select a.job_id from supaqueue.job_after a where a.parent_id = j.id order by 1 limit 100) a)
              as waited_on_by
     from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
     left join supaqueue.current_job cj on cj.job_id = j.id
     where j.id = $1`,
    [id],
  );
  const job = rows[0];
  if (!job) return null;
  for (const key of ["job_headers", "queue_headers"]) {
    const headers = job[key] as Record<string, string>;
    job[key] = Object.fromEntries(
      Object.entries(headers).map(([name, value]) => [name, reveal ? value : null]),
    );
  }
  const attempts = await client.query(
    `select a.attempt, a.started_at, a.finished_at, a.succeeded, a.status_code, a.duration_ms, a.error,
            a.response_body
     from supaqueue.attempt a where a.job_id = $1 order by a.id limit 200`,
    [id],
  );
  return { job, attempts: attempts.rows };
}
