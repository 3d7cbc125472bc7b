import pg from "pg";
import {
  type BenchDatabase,
  type BenchServer,
  log,
  median,
  sleep,
  smallPool,
  withClient,
  withDatabase,
  withInstalledDatabase,
} from "./support.ts";

/**
 * Section 2, Supaqueue's database cycle: claim → pg_net request row → completion → next claim, with the HTTP hop
 * replaced by one session that takes requests from net.http_request_queue (as pg_net's worker does, up to 200 at a
 * time) and 8 connections that complete each through supaqueue.complete_current_job as soon as it is handed over. The jobs are enqueued first (bulk, before
 * any worker exists); the clock starts when the workers are inserted and stops when the last job succeeded.
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
 * How the completers learn that a request row appeared.
 * - "notify": the pg_net stand-in as it ships, which wakes its sender with NOTIFY at commit.
 * - "latch": net._wake() made a no-op in the bench database, and the completers poll every millisecond. This is
 *   what real pg_net does (net.wake() sets its worker's latch, with no lock), and NOTIFY is not free: every
 *   committing transaction that notified takes one database-wide lock in turn, which serializes the commits.
 */
export type WakeMode = "notify" | "latch";

export const COMPLETERS = 8;
/** Requests taken at once, as pg_net's pg_net.batch_size (200). */
const TAKE_BATCH = 200;

export interface CycleRun {
  jobsPerSecond: number;
  seconds: number;
}

async function prepare(db: BenchDatabase, shape: CycleShape, jobs: number, wake: WakeMode): Promise<void> {
  await withClient(db.adminUrl, async (c) => {
    if (wake === "latch") {
      await c.query("create or replace function net._wake() returns void language sql as $$ select $$");
    }
  });
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
  wake: WakeMode,
): Promise<CycleRun> {
  return withInstalledDatabase(bench, async (db) => {
    await prepare(db, shape, jobs, wake);
    const pool = smallPool(db.url, COMPLETERS + 1);
    const listener = new pg.Client({ connectionString: db.url });
    let wakeUp: () => void = () => {};
    let woken = new Promise<void>((resolve) => {
      wakeUp = resolve;
    });
    const signal = () => {
      wakeUp();
      woken = new Promise<void>((resolve) => {
        wakeUp = resolve;
      });
    };
    await listener.connect();
    listener.on("notification", signal);
    await listener.query("listen pg_net_wakeup");

    let completed = 0;
    let stop = false;
    const errors: unknown[] = [];
    const clients = await Promise.all(Array.from({ length: COMPLETERS }, () => pool.connect()));
    const taker = await pool.connect();
    const idleWait = wake === "notify" ? 20 : 1;
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
        if (rows.length === 0) await Promise.race([woken, sleep(idleWait)]);
      }
      while (idle.length) hand(null);
    })();
    // The edge functions: each completes one call at a time, as soon as one is handed to it.
    const completers = clients.map(async (client) => {
      for (;;) {
        const id = inbox.shift() ?? (await new Promise<string | null>((resolve) => idle.push(resolve)));
        if (id === null) return;
        const r = await client.query("select supaqueue.complete_current_job($1, true, 200) as ok", [id]);
        if (r.rows[0]?.ok) completed++;
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
      () => log(`  ${shape.label} (${wake}): ${completed} of ${jobs} jobs done`),
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
      const watchdog = sleep(300_000).then(() => {
        if (!stop) errors.push(new Error(`cycle did not finish: ${completed} of ${jobs} jobs after 300 s`));
        stop = true;
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
      await listener.end().catch(() => {});
      await pool.end();
    }
  });
}

export interface CycleResult {
  jobs: number;
  /** jobs/s of every repeat, keyed "<wake>|<label>". */
  runs: Record<string, number[]>;
  median: Record<string, number>;
}

/** Whether the pg_net stand-in on this server still wakes its sender with NOTIFY (it stopped in 88ad289). */
export async function standinNotifies(bench: BenchServer): Promise<boolean> {
  return withClient(withDatabase(bench.adminUrl, bench.template), async (c) => {
    const { rows } = await c.query<{ n: number }>(
      `select count(*)::int as n from pg_proc p join pg_namespace s on s.oid = p.pronamespace
       where s.nspname = 'net' and p.prosrc like '%pg_notify%'`,
    );
    return (rows[0]?.n ?? 0) > 0;
  });
}

export async function measureCycle(
  bench: BenchServer,
  repeats: number,
  jobs: number,
  requested: WakeMode[],
): Promise<CycleResult> {
  // Without NOTIFY in the stand-in, "notify" would only measure the 20 ms fallback poll: measure what exists.
  const modes = (await standinNotifies(bench)) ? requested : requested.filter((m) => m === "latch");
  const runs: Record<string, number[]> = {};
  for (let r = 0; r < repeats; r++) {
    for (const wake of modes) {
      for (const shape of CYCLE_SHAPES) {
        const result = await runCycle(bench, shape, jobs, wake);
        const key = `${wake}|${shape.label}`;
        runs[key] = [...(runs[key] ?? []), result.jobsPerSecond];
        log(`cycle ${key} repeat ${r + 1}: ${result.jobsPerSecond.toFixed(0)} jobs/s`);
      }
    }
  }
  const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  return { jobs, runs, median: med };
}
