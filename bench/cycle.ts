import {
  type BenchDatabase,
  type BenchServer,
  log,
  median,
  sleep,
  smallPool,
  timeoutSeconds,
  withClient,
  withInstalledDatabase,
  withinTimeout,
} from "./support.ts";

/**
 * Section 2, Supaqueue's database cycle: start a call → wake the function → claim the call → report its outcome →
 * start the next call, with the HTTP hops played by this process so that only the database's work is measured:
 * - pg_net's worker: one session takes up to 200 committed wakeups at a time from net.http_request_queue, hands
 *   them out and waits until every one of them has been claimed (pg_net waits for every request of its batch, and
 *   the function answers once it has claimed its calls), then looks for the next ones every millisecond (pg_net is
 *   woken by a latch when a transaction that queued a request commits);
 * - the edge function: 8 connections as service_role. A wakeup's ids are claimed (supaqueue.claim_current_jobs); a
 *   claimed call is made at once (the target answers instantly) and its outcome reported as
 *   functions/execute_current_job/reporter.ts reports, with 8 report slots: an outcome that finds a connection idle
 *   is reported at once, alone; the outcomes that arrive while every connection is busy go together in the next
 *   report, up to 100. Wakeups are served before outcomes: pg_net is waiting for them.
 * The jobs are enqueued first (bulk, before any worker exists); the clock starts when the workers are inserted and
 * stops when the last job succeeded.
 */

export interface CycleShape {
  label: string;
  queues: number;
  workersPerQueue: number;
  /** Jobs spread over this many keys, one call in flight per key (per_key_concurrency: 1). */
  keys?: number;
}

export const CYCLE_SHAPES: CycleShape[] = [
  { label: "1 worker, 1 queue", queues: 1, workersPerQueue: 1 },
  { label: "10 workers, 1 queue", queues: 1, workersPerQueue: 10 },
  { label: "100 workers, 1 queue", queues: 1, workersPerQueue: 100 },
  { label: "100 queues × 10 workers", queues: 100, workersPerQueue: 10 },
  { label: "1,000 keys × 1 in flight, 100 workers", queues: 1, workersPerQueue: 100, keys: 1000 },
];

/**
 * How outcomes are reported.
 * - "continued": as execute_current_job does while its instance may go on: supaqueue.complete_and_claim(outcomes,
 *   claim_within_ms) records them and claims, in the same transaction, the calls it started for the freed workers;
 *   those are made at once, with no wakeup through pg_net.
 * - "woken": supaqueue.complete_current_jobs(outcomes), no continuation (what the function does once its instance
 *   should take no more calls): the next calls are woken through pg_net at commit and claimed from the wakeup.
 */
export type ReportMode = "continued" | "woken";
export const REPORT_MODES: ReportMode[] = ["continued", "woken"];

const COMPLETERS = 8;
/** Requests taken at once, as pg_net's pg_net.batch_size (200). */
const TAKE_BATCH = 200;
/** The edge function's largest report (DEFAULT_MAX_BATCH in reporter.ts). */
export const REPORT_BATCH = 100;
/** What a fresh function instance passes: its 150 s wall clock less the 10 s margin (lifetime.ts). */
export const CLAIM_WITHIN_MS = 140_000;

interface CycleRun {
  jobsPerSecond: number;
  seconds: number;
  /** pg_net requests (wakeups) taken during the run. */
  wakeups: number;
  /** Reports made, and the outcomes they carried. */
  reports: number;
  outcomes: number;
}

/** The SQL of a report: jobs finished, and the ids of the next calls it claimed (none without continuations). */
const REPORT_SQL: Record<ReportMode, string> = {
  continued: `select jsonb_array_length(a -> 'finished') as finished,
                     coalesce((select jsonb_agg(c -> 'current_job_id') from jsonb_array_elements(a -> 'calls') c),
                              '[]') as next
              from supaqueue.complete_and_claim($1::jsonb, ${CLAIM_WITHIN_MS}) a`,
  woken: `select cardinality(supaqueue.complete_current_jobs($1::jsonb)) as finished, '[]'::jsonb as next`,
};

/** Claims a wakeup's calls and returns their ids (the details are built by the database, but not shipped here). */
const CLAIM_SQL = `select coalesce(jsonb_agg(c -> 'current_job_id'), '[]') as ids
                   from jsonb_array_elements(supaqueue.claim_current_jobs($1::bigint[])) c`;

async function prepare(db: BenchDatabase, shape: CycleShape, jobs: number): Promise<void> {
  await withClient(db.url, async (c) => {
    await c.query(
      `insert into supaqueue.queue (name, url, per_key_concurrency)
       select 'cycle-' || n, 'https://target.example/hook', $2::int from generate_series(1, $1::int) n`,
      [shape.queues, shape.keys ? 1 : null],
    );
    // Spread the jobs over the queues (and keys); no worker exists yet, so nothing is dispatched.
    await c.query(
      `insert into supaqueue.job (queue_id, payload, key)
       select q.id, jsonb_build_object('n', g), case when $3::int > 0 then 'k' || (g % $3::int) end
       from generate_series(0, $1::int - 1) g
       join supaqueue.queue q on q.name = 'cycle-' || (g % $2::int + 1)`,
      [jobs, shape.queues, shape.keys ?? 0],
    );
  });
  await withClient(db.adminUrl, (c) => c.query("vacuum analyze"));
}

/** A wakeup taken from pg_net's queue, waiting for a connection to claim its calls. */
interface Wakeup {
  ids: number[];
  claimed(): void;
}

/** What a connection is handed: a wakeup to claim, or the outcome of a call to report. */
type Work = { wakeup: Wakeup } | { outcome: number };

/** Runs one cycle measurement on a fresh database and returns jobs per second and what it took. */
async function runCycle(
  bench: BenchServer,
  shape: CycleShape,
  jobs: number,
  mode: ReportMode,
): Promise<CycleRun> {
  return withInstalledDatabase(bench, async (db) => {
    await prepare(db, shape, jobs);
    // One connection more than the taker and the completers use, for the look at a stuck run.
    const pool = smallPool(db.url, COMPLETERS + 2);
    const clients = await Promise.all(Array.from({ length: COMPLETERS }, () => pool.connect()));
    const taker = await pool.connect();
    // The function reaches the database with the project's key, which maps to service_role.
    for (const client of clients) await client.query("set role service_role");

    let completed = 0;
    let wakeupsTaken = 0;
    let reports = 0;
    let outcomesReported = 0;
    let stop = false;
    // Work waiting for a connection, and connections waiting for work (null: stop).
    const wakeups: Wakeup[] = [];
    const outcomes: number[] = [];
    const idle: ((work: Work | null) => void)[] = [];
    // An idle connection gets a wakeup or an outcome at once, alone; the rest wait for the next free connection.
    const handWakeup = (wakeup: Wakeup) => {
      const next = idle.shift();
      if (next) next({ wakeup });
      else wakeups.push(wakeup);
    };
    const handOutcomes = (ids: number[]) => {
      for (const id of ids) {
        const next = idle.shift();
        if (next) next({ outcome: id });
        else outcomes.push(id);
      }
    };
    const finish = () => {
      stop = true;
      for (const w of wakeups.splice(0)) w.claimed();
      for (const next of idle.splice(0)) next(null);
    };

    const taking = (async () => {
      while (!stop) {
        const { rows } = await taker.query<{ ids: number[] }>(
          `delete from net.http_request_queue where id in (
             select id from net.http_request_queue order by id limit ${TAKE_BATCH} for update skip locked)
           returning convert_from(body, 'UTF8')::jsonb -> 'ids' as ids`,
        );
        if (rows.length === 0) {
          await sleep(1);
          continue;
        }
        wakeupsTaken += rows.length;
        await Promise.all(
          rows.map((row) => new Promise<void>((resolve) => handWakeup({ ids: row.ids, claimed: resolve }))),
        );
      }
    })();

    const completers = clients.map(async (client) => {
      while (!stop) {
        const waiting = wakeups.shift();
        const work: Work | null = waiting
          ? { wakeup: waiting }
          : outcomes.length > 0
            ? { outcome: outcomes.shift() as number }
            : await new Promise<Work | null>((resolve) => idle.push(resolve));
        if (work === null) return;
        if ("wakeup" in work) {
          const { rows } = await client.query<{ ids: number[] }>(CLAIM_SQL, [work.wakeup.ids]);
          handOutcomes(rows[0]?.ids ?? []);
          work.wakeup.claimed();
          continue;
        }
        // Every outcome that arrived while this connection was busy goes in its report.
        const batch = [work.outcome, ...outcomes.splice(0, REPORT_BATCH - 1)];
        const { rows } = await client.query<{ finished: number; next: number[] }>(REPORT_SQL[mode], [
          JSON.stringify(batch.map((id) => ({ current_job_id: id, succeeded: true, status_code: 200 }))),
        ]);
        reports++;
        outcomesReported += batch.length;
        // Counted after the await: `completed += await ...` would read `completed` before it and lose the counts
        // other connections made meanwhile.
        completed += Number(rows[0]?.finished ?? 0);
        if (completed >= jobs) finish();
        else handOutcomes(rows[0]?.next ?? []);
      }
    });

    const label = `cycle ${shape.label} (${mode})`;
    const progress = setInterval(() => log(`  ${label}: ${completed} of ${jobs} jobs done`), 10_000);
    const started = performance.now();
    try {
      await withClient(db.url, (c) =>
        c.query(
          `insert into supaqueue.worker (queue_id)
           select q.id from supaqueue.queue q, generate_series(1, $1::int)`,
          [shape.workersPerQueue],
        ),
      );
      await withinTimeout(
        Promise.all([taking, ...completers]),
        timeoutSeconds("BENCH_CYCLE_TIMEOUT_S", 300),
        label,
        async () => {
          // Where the cycle stopped: the jobs by status, the calls in flight (claimed or not), pg_net's queue.
          const state = await pool.query(
            `select (select json_object_agg(status, n) from (select status, count(*) n from supaqueue.job
                      group by status) s) as jobs,
                    (select count(*) from supaqueue.worker where locked) as locked_workers,
                    (select count(*) from supaqueue.current_job) as calls_in_flight,
                    (select count(*) from supaqueue.current_job where claimed_at is null) as unclaimed_calls,
                    (select count(*) from net.http_request_queue) as queued_wakeups`,
          );
          return (
            `${completed} of ${jobs} jobs reported done; ${wakeups.length} wakeups and ${outcomes.length} ` +
            `outcomes waiting for a connection, ${idle.length} connections idle; database: ` +
            JSON.stringify(state.rows[0])
          );
        },
      );
      const seconds = (performance.now() - started) / 1000;
      const { rows } = await pool.query<{ n: number }>(
        "select count(*)::int as n from supaqueue.job where status = 'successful'",
      );
      if (rows[0]?.n !== jobs) throw new Error(`${label}: ${rows[0]?.n} of ${jobs} jobs successful`);
      return {
        jobsPerSecond: jobs / seconds,
        seconds,
        wakeups: wakeupsTaken,
        reports,
        outcomes: outcomesReported,
      };
    } finally {
      clearInterval(progress);
      finish();
      // Let the loops see the stop before their connections go back (a query on a released client would throw);
      // after a timeout a loop may be stuck in a query, so wait a bounded time.
      await Promise.race([Promise.allSettled([taking, ...completers]), sleep(5000)]);
      for (const c of clients) c.release(true);
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
  /** pg_net requests taken per job (median of the repeats), same keys. */
  requestsPerJob: Record<string, number>;
  /** Outcomes per report (median of the repeats), same keys. */
  outcomesPerReport: Record<string, number>;
}

export async function measureCycle(
  bench: BenchServer,
  repeats: number,
  jobs: number,
  modes: ReportMode[],
): Promise<CycleResult> {
  const runs: Record<string, CycleRun[]> = {};
  for (let r = 0; r < repeats; r++) {
    for (const mode of modes) {
      for (const shape of CYCLE_SHAPES) {
        const result = await runCycle(bench, shape, jobs, mode);
        const key = `${mode}|${shape.label}`;
        runs[key] = [...(runs[key] ?? []), result];
        log(
          `cycle ${key} repeat ${r + 1}: ${result.jobsPerSecond.toFixed(0)} jobs/s, ` +
            `${(result.wakeups / jobs).toFixed(3)} pg_net requests per job, ` +
            `${(result.outcomes / result.reports).toFixed(1)} outcomes per report`,
        );
      }
    }
  }
  const per = (f: (run: CycleRun) => number) =>
    Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v.map(f))]));
  return {
    jobs,
    runs: Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, v.map((x) => x.jobsPerSecond)])),
    median: per((x) => x.jobsPerSecond),
    requestsPerJob: per((x) => x.wakeups / jobs),
    outcomesPerReport: per((x) => x.outcomes / x.reports),
  };
}
