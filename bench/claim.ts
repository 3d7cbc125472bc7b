import type pg from "pg";
import {
  type BenchDatabase,
  type BenchServer,
  installedDatabase,
  log,
  median,
  openClient,
  quantile,
  withClient,
} from "./support.ts";

/**
 * Section 4, claim cost as the system grows. The time of one dispatch (supaqueue._dispatch(queue, 1): claim a free
 * worker and the next due job, start the call: current_job row, pg_net request) and of one enqueue into a queue with
 * a free worker (the insert, its statement trigger, then the same dispatch), each measured inside the server with
 * clock_timestamp() and rolled back in a subtransaction, so every iteration starts from the same state.
 *
 * The small state: queue `target` with 10 free workers and 1 due job. Each growth changes one thing:
 * 1,000 queues (999 more, one free worker each), 10,000 workers (all in `target`), 1,000,000 pending jobs (all due,
 * in `target`: the backlog a dispatch has to find the oldest of). Two keyed states (issue 16): 1,000 keys with one call
 * in flight each allowed (per_key_concurrency: 1), 100 of them busy, 10,000 pending jobs arrived round-robin (so the
 * busy keys' next jobs wait behind the other keys' first ones, the steady state of such a queue), and one ordered key
 * with 10,000 pending jobs.
 */

export interface ClaimState {
  key: string;
  label: string;
  queues: number;
  workers: number;
  pending: number;
  /** The pending jobs spread over this many keys of a per_key_concurrency: 1 queue, `busyKeys` of them in flight. */
  keys?: number;
  busyKeys?: number;
  /** All pending jobs on one key of an ordered queue. */
  ordered?: boolean;
}

export const CLAIM_STATES: ClaimState[] = [
  { key: "small", label: "1 queue, 10 workers, 1 pending job", queues: 1, workers: 10, pending: 1 },
  { key: "queues", label: "1,000 queues", queues: 1000, workers: 10, pending: 1 },
  { key: "workers", label: "10,000 workers", queues: 1, workers: 10_000, pending: 1 },
  { key: "pending", label: "1,000,000 pending jobs", queues: 1, workers: 10, pending: 1_000_000 },
  {
    key: "keys",
    label: "1,000 keys × 1 in flight, 100 busy",
    queues: 1,
    workers: 10,
    pending: 10_000,
    keys: 1000,
    busyKeys: 100,
  },
  {
    key: "ordered",
    label: "one ordered key, 10,000 pending jobs",
    queues: 1,
    workers: 10,
    pending: 10_000,
    ordered: true,
  },
];

export interface ClaimResult {
  iterations: number;
  /** Median microseconds per operation of every repeat, keyed "<op>|<state key>" with op dispatch or enqueue. */
  runs: Record<string, number[]>;
  median: Record<string, number>;
  /** p90 microseconds of the middle repeat, same keys. */
  p90: Record<string, number>;
  /** Shared buffers read by the two claim queries (free worker, next due job) in each state, keyed by state. */
  buffers: Record<string, { worker: number; job: number; tableMb: number }>;
}

const WORKER_CLAIM = `select w.id from supaqueue.worker w
  where w.queue_id = (select id from supaqueue.queue where name = 'target') and not w.locked
  order by w.id limit 1 for update skip locked`;
const JOB_CLAIM = `select j.id from supaqueue.job j
  where j.queue_id = (select id from supaqueue.queue where name = 'target') and j.status = 'pending' and j.run_at <= now()
  order by j.run_at, j.seq limit 1 for update skip locked`;

async function buffersOf(db: BenchDatabase, sql: string): Promise<number> {
  return withClient(db.adminUrl, async (c) => {
    const { rows } = await c.query<{ "QUERY PLAN": { Plan: Record<string, number> }[] }>(
      `explain (analyze, buffers, format json) ${sql}`,
    );
    const plan = rows[0]?.["QUERY PLAN"][0]?.Plan;
    return (plan?.["Shared Hit Blocks"] ?? 0) + (plan?.["Shared Read Blocks"] ?? 0);
  });
}

/** Iterations per round: small enough that the states take turns many times within a repeat. */
const ROUND = 25;

const TIMER_SQL = `
create schema bench_timer;
-- Times \`op\` n times, each in a subtransaction that is rolled back, and returns the microseconds of each.
create function bench_timer.time_op(op text, queue_name text, n integer) returns double precision[]
language plpgsql as $$
declare
  times double precision[] := '{}';
  started timestamptz;
  q bigint := (select id from supaqueue.queue where name = queue_name);
  calls integer;
begin
  for i in 1 .. n loop
    begin
      started := clock_timestamp();
      if op = 'dispatch' then
        calls := supaqueue._dispatch(q, 1);
      else
        perform supaqueue.enqueue(queue_name);
        calls := (select count(*) from supaqueue.current_job);
      end if;
      times := times || extract(epoch from clock_timestamp() - started)::double precision * 1e6;
      if calls <> 1 then
        raise exception 'bench: % started % calls, expected 1', op, calls;
      end if;
      raise exception 'bench_rollback';
    exception when raise_exception then
      if sqlerrm <> 'bench_rollback' then
        raise;
      end if;
    end;
  end loop;
  return times;
end $$;`;

async function build(db: BenchDatabase, state: ClaimState): Promise<void> {
  await withClient(db.url, async (c) => {
    await c.query(
      "insert into supaqueue.queue (name, url, per_key_concurrency, ordered) values ('target', 'https://target.example/hook', $1, $2)",
      [state.keys ? 1 : null, state.ordered ?? false],
    );
    if (state.queues > 1) {
      await c.query(
        `insert into supaqueue.queue (name, url)
         select 'other-' || n, 'https://target.example/hook' from generate_series(2, $1::int) n`,
        [state.queues],
      );
      await c.query(
        "insert into supaqueue.worker (queue_id) select id from supaqueue.queue where name <> 'target'",
      );
    }
    // Workers are inserted locked (so nothing is dispatched), the jobs are added, then the workers are freed:
    // the state a dispatch meets, free workers beside due jobs, without a dispatch having run.
    await c.query(
      `insert into supaqueue.worker (queue_id, locked)
       select q.id, true from supaqueue.queue q, generate_series(1, $1::int) where q.name = 'target'`,
      [state.workers],
    );
    // Keyed: the jobs of the busy keys' first round are the calls in flight, so the pending ones start after them.
    const busy = state.busyKeys ?? 0;
    await c.query(
      `insert into supaqueue.job (queue_id, run_at, payload, key)
       select q.id, now() - interval '1 minute', jsonb_build_object('n', g),
              case when $2::int > 0 then 'k' || (g % $2::int) when $4 then 'the-key' end
       from supaqueue.queue q, generate_series($3::int, $3::int + $1::int - 1) g where q.name = 'target'`,
      [state.pending, state.keys ?? 0, busy, state.ordered ?? false],
    );
    if (busy > 0)
      await c.query(
        "update supaqueue.job_key set in_flight = 1 where key in (select 'k' || g from generate_series(0, $1::int - 1) g)",
        [busy],
      );
    await c.query(
      "update supaqueue.worker set locked = false where queue_id = (select id from supaqueue.queue where name = 'target')",
    );
  });
  await withClient(db.adminUrl, async (c) => {
    await c.query(TIMER_SQL);
    await c.query("vacuum analyze");
    // Building a million jobs leaves the buffer pool full of dirty pages; without a checkpoint the measurement
    // would pay for writing them out, whatever the claim does.
    await c.query("checkpoint");
  });
}

export async function measureClaim(
  bench: BenchServer,
  repeats: number,
  iterations: number,
): Promise<ClaimResult> {
  const runs: Record<string, number[]> = {};
  const p90: Record<string, number> = {};
  const buffers: ClaimResult["buffers"] = {};
  // All four states exist at once and are measured in turn within each repeat, so that a burst of other load on
  // the machine hits every state alike instead of one of them.
  const dbs: [ClaimState, BenchDatabase][] = [];
  try {
    for (const state of CLAIM_STATES) {
      const db = await installedDatabase(bench, "sq_bench_claim");
      dbs.push([state, db]);
      const started = performance.now();
      await build(db, state);
      log(`claim: built "${state.label}" in ${((performance.now() - started) / 1000).toFixed(1)} s`);
      await withClient(db.adminUrl, async (c) => {
        // A first pass warms the caches and plpgsql's plans; it is not counted.
        for (const op of ["dispatch", "enqueue"])
          await c.query("select bench_timer.time_op($1, 'target', 50)", [op]);
        await c.query("vacuum supaqueue.job, supaqueue.worker, supaqueue.current_job");
      });
      const size = await withClient(db.adminUrl, (c) =>
        c.query<{ mb: number }>("select pg_total_relation_size('supaqueue.job') / 1048576.0 as mb"),
      );
      buffers[state.key] = {
        worker: await buffersOf(db, WORKER_CLAIM),
        job: await buffersOf(db, JOB_CLAIM),
        tableMb: Number(size.rows[0]?.mb ?? Number.NaN),
      };
    }
    // Each repeat runs `iterations` of each operation per state in rounds of ROUND, the states in turn, so that a
    // burst of other load lands on every state alike; the median is taken over the pooled times.
    const clients = await Promise.all(dbs.map(([, db]) => openClient(db.adminUrl)));
    try {
      for (let r = 0; r < repeats; r++) {
        const pooled = new Map<string, number[]>();
        for (let done = 0; done < iterations; done += ROUND) {
          for (const [i, [state]] of dbs.entries()) {
            for (const op of ["dispatch", "enqueue"]) {
              const { rows } = await (clients[i] as pg.Client).query<{ t: number[] }>(
                "select bench_timer.time_op($1, 'target', $2) as t",
                [op, Math.min(ROUND, iterations - done)],
              );
              const key = `${op}|${state.key}`;
              pooled.set(key, [...(pooled.get(key) ?? []), ...(rows[0]?.t ?? [])]);
            }
          }
        }
        for (const [key, times] of pooled) {
          runs[key] = [...(runs[key] ?? []), median(times)];
          if (r === Math.floor(repeats / 2)) p90[key] = quantile(times, 0.9);
          log(`claim ${key} repeat ${r + 1}: median ${median(times).toFixed(0)} µs`);
        }
        // Rolled-back iterations leave dead index entries; vacuum so that every repeat starts alike.
        for (const c of clients)
          await c.query("vacuum supaqueue.job, supaqueue.worker, supaqueue.current_job");
      }
    } finally {
      for (const c of clients) await c.end();
    }
  } finally {
    for (const [, db] of dbs) await db.drop();
  }
  const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  return { iterations, runs, median: med, p90, buffers };
}
