import type pg from "pg";
import { diagnose, type ProbeOptions, runProbe } from "./probe.ts";

/**
 * `supaqueue doctor` and the checks a deploy adds to its summary: what stops a project's queues, each found from the
 * database's own evidence and said with what to do. Reads only, but for the probe (one wakeup naming no call).
 */
export interface Check {
  name: string;
  ok: boolean;
  /** What was found. */
  detail: string;
  /** What to do, when not ok. */
  fix?: string;
}

export interface DoctorOptions {
  /** Send a probe through the whole loop (default true). */
  probe?: boolean;
  probeOptions?: ProbeOptions;
  /** How long tick may have been silent before it counts as stopped. Default 10 s. */
  tickSilenceMs?: number;
  /** How long a due job may wait before it counts as stuck. Default 60 s. */
  dueAgeMs?: number;
}

export async function runDoctor(client: pg.ClientBase, options: DoctorOptions = {}): Promise<Check[]> {
  const checks: Check[] = [];
  if (options.probe ?? true) checks.push(await probeCheck(client, options.probeOptions));
  checks.push(await tickCheck(client, options.tickSilenceMs ?? 10_000));
  checks.push(await lapsedLeases(client));
  checks.push(await oldestDue(client, options.dueAgeMs ?? 60_000));
  checks.push(await failingQueues(client));
  checks.push(await wakeupErrors(client));
  return checks;
}

async function probeCheck(client: pg.ClientBase, options?: ProbeOptions): Promise<Check> {
  const result = await runProbe(client, options);
  return result.ok
    ? {
        name: "the whole loop",
        ok: true,
        detail: `a probe went database → pg_net → function → database in ${result.ms} ms`,
      }
    : { name: "the whole loop", ok: false, detail: `broken at: ${result.link}`, fix: result.message };
}

async function tickCheck(client: pg.ClientBase, silenceMs: number): Promise<Check> {
  const { rows } = await client.query<{ last: Date | null; ago: number | null; cron: string | null }>(
    `select t.last_run_at as last, extract(epoch from clock_timestamp() - t.last_run_at) * 1000 as ago,
            (select e.extversion from pg_catalog.pg_extension e where e.extname = 'pg_cron') as cron
     from supaqueue.ticker t`,
  );
  const { last, ago, cron } = rows[0] ?? { last: null, ago: null, cron: null };
  if (last !== null && ago !== null && ago <= silenceMs) {
    return { name: "tick", ok: true, detail: `tick() last ran ${Math.round(ago / 1000)} s ago` };
  }
  return {
    name: "tick",
    ok: false,
    detail: last === null ? "tick() has never run" : `tick() last ran ${Math.round((ago ?? 0) / 1000)} s ago`,
    fix: cron
      ? "pg_cron is installed: check its job supaqueue-tick (select * from cron.job where jobname = 'supaqueue-tick'; its runs in cron.job_run_details), or run the deploy again, which schedules it."
      : "nothing runs supaqueue.tick(): run the deploy with tick pg_cron (the default), or call select supaqueue.tick() every second from your scheduler. Until then delays, retries and lost calls wait.",
  };
}

async function lapsedLeases(client: pg.ClientBase): Promise<Check> {
  const { rows } = await client.query<{ n: number }>(
    "select count(*)::int as n from supaqueue.current_job where lease_until < clock_timestamp() - interval '10 seconds'",
  );
  const n = rows[0]?.n ?? 0;
  return n === 0
    ? { name: "calls past their lease", ok: true, detail: "none" }
    : {
        name: "calls past their lease",
        ok: false,
        detail: `${n} call(s) in flight past their lease, not yet given back`,
        fix: "tick() gives them back as failed attempts: make sure it runs (see tick).",
      };
}

async function oldestDue(client: pg.ClientBase, ageMs: number): Promise<Check> {
  const { rows } = await client.query<{ queue: string; ms: number; workers: number }>(
    `select q.name as queue, extract(epoch from clock_timestamp() - min(j.run_at)) * 1000 as ms,
            (select count(*)::int from supaqueue.worker w where w.queue_id = q.id and not w.retiring) as workers
     from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
     where j.status = 'pending' and j.run_at <= clock_timestamp() and not q.paused
     group by q.id, q.name order by ms desc limit 5`,
  );
  const stuck = rows.filter((r) => r.ms > ageMs);
  if (stuck.length === 0) {
    const top = rows[0];
    return {
      name: "oldest due job",
      ok: true,
      detail: top ? `${Math.round(top.ms / 1000)} s in queue ${top.queue}` : "no job waits",
    };
  }
  return {
    name: "oldest due job",
    ok: false,
    detail: stuck
      .map((r) => `queue ${r.queue}: waiting ${Math.round(r.ms / 1000)} s (${r.workers} workers)`)
      .join("; "),
    fix: "a due job waits when its queue has no free worker (workers: 0, or all busy: raise workers), hits its rate_limit, or its calls are not claimed (see the whole loop and tick).",
  };
}

async function failingQueues(client: pg.ClientBase): Promise<Check> {
  const { rows } = await client.query<{ queue: string; n: number; error: string | null }>(
    `select q.name as queue, count(*)::int as n, mode() within group (order by a.error) as error
     from supaqueue.queue q
     cross join lateral (
       select a.succeeded, a.error from supaqueue.attempt a join supaqueue.job j on j.id = a.job_id
       where j.queue_id = q.id and a.finished_at > clock_timestamp() - interval '1 hour'
       order by a.id desc limit 20) a
     group by q.name
     having count(*) >= 3 and bool_and(not a.succeeded)
     order by q.name`,
  );
  return rows.length === 0
    ? { name: "failing queues", ok: true, detail: "no queue whose recent attempts all failed" }
    : {
        name: "failing queues",
        ok: false,
        detail: rows
          .map((r) => `queue ${r.queue}: its last ${r.n} attempts failed (mostly: ${r.error ?? "no error"})`)
          .join("; "),
        fix: "see each queue's attempts: select attempt, status_code, error from supaqueue.attempt ... order by id desc.",
      };
}

async function wakeupErrors(client: pg.ClientBase): Promise<Check> {
  const { rows: cfg } = await client.query<{ url: string | null }>(
    "select functions_url as url from supaqueue.config",
  );
  const url = `${cfg[0]?.url ?? "(no functions URL)"}/execute_current_job`;
  const { rows } = await client.query<{
    status: number | null;
    content: string | null;
    timedOut: boolean | null;
    error: string | null;
    n: number;
  }>(
    `select r.status_code as status, left(r.content, 500) as content, r.timed_out as "timedOut", r.error_msg as error,
            count(*)::int as n
     from supaqueue.wakeup w join net._http_response r on r.id = w.request_id
     where w.sent_at > clock_timestamp() - interval '1 hour'
       and (r.status_code is distinct from 200 or r.timed_out or r.error_msg is not null)
     group by 1, 2, 3, 4 order by n desc limit 3`,
  );
  if (rows.length === 0)
    return { name: "wakeups", ok: true, detail: "no wakeup refused or lost in the last hour" };
  const worst = rows[0] as (typeof rows)[number];
  const { link, message } = diagnose({ ...worst, reached: false, queued: false, answered: true }, url);
  return {
    name: "wakeups",
    ok: false,
    detail: `${rows.reduce((n, r) => n + r.n, 0)} wakeup(s) in the last hour were not accepted; most often at ${link}`,
    fix: message,
  };
}

/** The checks as lines, for a terminal or a log. */
export function checkLines(checks: Check[]): string[] {
  return checks.map(
    (c) => `${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}${c.ok || !c.fix ? "" : `\n     ${c.fix}`}`,
  );
}
