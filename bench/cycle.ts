import type pg from "pg";
import {
  type BenchDatabase,
  type BenchServer,
  log,
  median,
  sleep,
  smallPool,
  withClient,
  withInstalledDatabase,
} from "./support.ts";

/**
 * Section 2, Supaqueue's database cycle: claim → pg_net request row → completion → next claim, with the HTTP hop
 * replaced by one session that takes requests from net.http_request_queue (as pg_net's worker does, up to 200 at a
 * time, polling every millisecond as pg_net's worker is woken by a latch) and 8 connections that play the edge
 * function's reporting. The jobs are enqueued first (bulk, before any worker exists); the clock starts when the
 * workers are inserted and stops when the last job succeeded.
 */

export interface CycleShape {
  label: string;
  queues: number;
  workersPerQueue: number;
}

export const CYCLE_SHAPES: CycleShape[] = [
  { label: "1 worker, 1 queue", queues: 1, workersPerQueue: 1 },
  { label: "10 workers, 1 queue", queues: 1, workersPerQueue: 10 },
  { label: "100 workers, 1 queue", queues: 1, workersPerQueue: 100 },
  { label: "100 queues × 10 workers", queues: 100, workersPerQueue: 10 },
];

/**
 * How the 8 connections report outcomes.
 * - "batched": as execute_current_job does (functions/execute_current_job/reporter.ts): a connection reports at once
 *   when it has nothing in flight, and everything handed to it while a report is on its way goes in its next
 *   report (up to 100), through supaqueue.complete_current_jobs.
 * - "single": one supaqueue.complete_current_job call per outcome (how 0001 reported, and the shape of one report).
 */
export type ReportMode = "batched" | "single";

export const COMPLETERS = 8;
/** Requests taken at once, as pg_net's pg_net.batch_size (200). */
const TAKE_BATCH = 200;
/** The edge function's largest report (DEFAULT_MAX_BATCH in reporter.ts). */
const REPORT_BATCH = 100;

export interface CycleRun {
  jobsPerSecond: number;
  seconds: number;
}

async function prepare(db: BenchDatabase, shape: CycleShape, jobs: number): Promise<void> {
  await withClient(db.url, async (c) => {
    await c.query(
      `insert into supaqueue.queue (name, url)
       select 'cycle-' || n, 'https://target.example/hook' from generate_series(1, $1::int) n`,
      [shape.queues],
    );
    // Spread the jobs over the queues; no worker exists yet, so nothing is dispatched.
    await c.query(
      `insert into supaqueue.job (queue_id, payload)
       select q.id, jsonb_build_object('n', g)
       from generate_series(0, $1::int - 1) g
       join supaqueue.queue q on q.name = 'cycle-' || (g % $2::int + 1)`,
      [jobs, shape.queues],
    );
  });
  await withClient(db.adminUrl, (c) => c.query("vacuum analyze"));
}

/** Runs one cycle measurement on a fresh database and returns jobs per second. */
export async function runCycle(
  bench: BenchServer,
  shape: CycleShape,
  jobs: number,
  mode: ReportMode,
): Promise<CycleRun> {
  return withInstalledDatabase(bench, async (db) => {
    await prepare(db, shape, jobs);
    // One connection more than the taker and the completers use, for the watchdog's look at a stuck run.
    const pool = smallPool(db.url, COMPLETERS + 2);

    let completed = 0;
    let stop = false;
    const errors: unknown[] = [];
    const clients = await Promise.all(Array.from({ length: COMPLETERS }, () => pool.connect()));
    const taker = await pool.connect();
    // Taken request rows waiting for a completer, and completers waiting for a row.
    const inbox: string[] = [];
    const idle: ((id: string | null) => void)[] = [];
    const hand = (id: string | null) => {
      const next = idle.shift();
      if (next) next(id);
      else if (id !== null) inbox.push(id);
    };
    // pg_net's worker: one session takes up to TAKE_BATCH committed requests at a time and hands them out.
    const taking = (async () => {
      while (!stop && completed < jobs) {
        const { rows } = await taker.query<{ id: string }>(
          `delete from net.http_request_queue where id in (
             select id from net.http_request_queue order by id limit ${TAKE_BATCH} for update skip locked)
           returning convert_from(body, 'UTF8')::jsonb ->> 'current_job_id' as id`,
        );
        for (const row of rows) hand(row.id);
        if (rows.length === 0) await sleep(1);
      }
      while (idle.length) hand(null);
    })();
    const report = async (client: pg.PoolClient, ids: string[]): Promise<number> => {
      if (mode === "single") {
        const r = await client.query("select supaqueue.complete_current_job($1, true, 200) as ok", [ids[0]]);
        return r.rows[0]?.ok ? 1 : 0;
      }
      const outcomes = ids.map((id) => ({ current_job_id: id, succeeded: true, status_code: 200 }));
      const r = await client.query("select cardinality(supaqueue.complete_current_jobs($1::jsonb)) as n", [
        JSON.stringify(outcomes),
      ]);
      return Number(r.rows[0]?.n ?? 0);
    };
    // The edge functions' reports: each connection waits for one outcome, then reports it with every other
    // outcome already waiting (batched mode) or alone (single mode).
    const completers = clients.map(async (client) => {
      for (;;) {
        const id = inbox.shift() ?? (await new Promise<string | null>((resolve) => idle.push(resolve)));
        if (id === null) return;
        const ids = [id, ...(mode === "batched" ? inbox.splice(0, REPORT_BATCH - 1) : [])];
        // Not `completed += await report(...)`: that reads `completed` before the await, and another completer's
        // count made meanwhile would be lost.
        const finished = await report(client, ids);
        completed += finished;
        if (completed >= jobs) {
          stop = true;
          while (idle.length) hand(null);
          return;
        }
      }
    });
    const everything = Promise.all([taking, ...completers]);

    const started = performance.now();
    const progress = setInterval(
      () => log(`  ${shape.label} (${mode}): ${completed} of ${jobs} jobs done`),
      10_000,
    );
    try {
      await withClient(db.url, (c) =>
        c.query(
          `insert into supaqueue.worker (queue_id)
           select q.id from supaqueue.queue q, generate_series(1, $1::int)`,
          [shape.workersPerQueue],
        ),
      );
      const watchdog = sleep(Number(process.env.BENCH_CYCLE_TIMEOUT_S ?? 300) * 1000).then(async () => {
        if (stop) return;
        stop = true;
        // Say where the cycle stopped: the jobs by status, the workers, the calls in flight and not yet taken.
        const state = await pool
          .query(`select (select json_object_agg(status, n) from (select status, count(*) n from supaqueue.job
                             group by status) s) as jobs,
                          (select json_agg(w) from supaqueue.worker w where w.id in (select min(id) from supaqueue.worker)) as first_worker,
                          (select count(*) from supaqueue.worker where locked) as locked_workers,
                          (select json_agg(c) from (select * from supaqueue.current_job limit 3) c) as current_jobs,
                          (select count(*) from net.http_request_queue) as requests`)
          .catch((e) => ({ rows: [{ error: String(e) }] }));
        errors.push(
          new Error(
            `cycle did not finish: ${completed} of ${jobs} jobs reported done; inbox ${inbox.length}, idle ` +
              `completers ${idle.length}; database: ${JSON.stringify(state.rows[0])}`,
          ),
        );
      });
      await Promise.race([everything.catch((e) => errors.push(e)), watchdog]);
      const seconds = (performance.now() - started) / 1000;
      stop = true;
      if (errors.length) throw errors[0];
      const { rows } = await (clients[0] as pg.PoolClient).query<{ n: number }>(
        "select count(*)::int as n from supaqueue.job where status = 'successful'",
      );
      if (rows[0]?.n !== jobs) throw new Error(`cycle: ${rows[0]?.n} of ${jobs} jobs successful`);
      return { jobsPerSecond: jobs / seconds, seconds };
    } finally {
      clearInterval(progress);
      stop = true;
      while (idle.length) hand(null);
      for (const c of clients) c.release();
      taker.release();
      await pool.end();
    }
  });
}

export interface CycleResult {
  jobs: number;
  /** jobs/s of every repeat, keyed "<mode>|<label>". */
  runs: Record<string, number[]>;
  median: Record<string, number>;
}

export async function measureCycle(
  bench: BenchServer,
  repeats: number,
  jobs: number,
  modes: ReportMode[],
): Promise<CycleResult> {
  const runs: Record<string, number[]> = {};
  for (let r = 0; r < repeats; r++) {
    for (const mode of modes) {
      for (const shape of CYCLE_SHAPES) {
        const result = await runCycle(bench, shape, jobs, mode);
        const key = `${mode}|${shape.label}`;
        runs[key] = [...(runs[key] ?? []), result.jobsPerSecond];
        log(`cycle ${key} repeat ${r + 1}: ${result.jobsPerSecond.toFixed(0)} jobs/s`);
      }
    }
  }
  const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  return { jobs, runs, median: med };
}
