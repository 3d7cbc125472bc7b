import type pg from "pg";
import { CLAIM_RPC, REPORT_RPC } from "../functions/execute_current_job/rpc.ts";
import { type PgNetWorker, startPgNetWorker } from "../src/standins/pgnet-worker.ts";
import { type ServedFunction, serveFunction } from "../test/support/deno.ts";
import { type Gateway, startGateway } from "../test/support/gateway.ts";
import { type PostgrestStandin, startPostgrest } from "../test/support/postgrest.ts";
import { CAPPED_V8_FLAGS } from "./edge.ts";
import { childPid, cpuOfProcesses, cpuSeconds, machineLoad, peakRssMb } from "./proc.ts";
import {
  BENCH_SECRET,
  type BenchDatabase,
  type BenchServer,
  installedDatabase,
  log,
  median,
  openClient,
  sleep,
  smallPool,
  timeoutSeconds,
  withClient,
  withinTimeout,
} from "./support.ts";
import { callDirectly, startTarget, type Target } from "./target.ts";

/**
 * Section 8, the whole chain: enqueue → dispatch → wakeup at commit → pg_net → the function → claim → the call →
 * report (which takes the next calls) → ... until every job succeeded, with nothing played by the benchmark:
 *   - Postgres with Supaqueue installed (a fresh database per run, cloned from the bench template);
 *   - the pg_net worker stand-in with pg_net's batch semantics (src/standins/pgnet-worker.ts: up to 200 requests
 *     per batch, waits for all of them, then for a commit or 1 s);
 *   - the gateway stand-in (test/support/gateway.ts): one origin for /rest/v1 and /functions/v1, as SUPABASE_URL;
 *   - the PostgREST stand-in (test/support/postgrest.ts) answering the function's two RPCs from the database, as
 *     service_role;
 *   - the real execute_current_job in real Deno (test/support/deno.ts), a fresh process per run: a fresh edge
 *     worker, whose lifetime budgets (lifetime.ts: 5,000 calls, 1.5 s of CPU, 140 s) start at zero;
 *   - a target (bench/target.ts) answering after 0 or 50 ms;
 *   - tick() every second, as pg_cron runs it.
 * N jobs are enqueued up front in one bulk insert into queues whose workers are idle; the clock starts before that
 * insert and stops when the report that finished the last job has committed (seen in the PostgREST stand-in's log,
 * then checked in the database).
 *
 * The baseline is the same Node client (fetch) calling the same target directly with the same concurrency (as many
 * loops as workers, the same number of calls), run just before each chain run so both meet the same machine load.
 * The CPU of each part is read from /proc: the Deno process, the backends of the run's database (sampled every
 * 500 ms, as pools may open connections), and this Node process (the stand-ins and the harness; the target runs in
 * a process of its own, as a real target runs elsewhere).
 */

interface ChainShape {
  key: string;
  label: string;
  queues: number;
  workersPerQueue: number;
}

const CHAIN_SHAPES: ChainShape[] = [
  { key: "w1", label: "1 worker", queues: 1, workersPerQueue: 1 },
  { key: "w16", label: "16 workers", queues: 1, workersPerQueue: 16 },
  { key: "w100", label: "100 workers", queues: 1, workersPerQueue: 100 },
  { key: "q100x10", label: "100 queues × 10 workers", queues: 100, workersPerQueue: 10 },
];

/** How long the target takes to answer: at once, and like a typical API call. */
const CHAIN_DELAYS_MS = [0, 50];

/** The key of a shape and delay in the job counts and the results, e.g. "w100@50". */
const chainKey = (shape: ChainShape, delayMs: number) => `${shape.key}@${delayMs}`;

const SERVICE_ROLE_KEY = "bench-service-role-key";
/** Connections of the PostgREST stand-in (Supabase's smallest projects give PostgREST a pool of about 10). */
const POSTGREST_POOL = 10;
/** How often pg_cron runs tick() on Supabase. */
const TICK_MS = 1000;

interface ChainRun {
  jobs: number;
  seconds: number;
  jobsPerSecond: number;
  /** CPU seconds used during the run by the Deno process, the database's backends and this Node process. */
  cpu: { deno: number; postgres: number; node: number };
  /** Share of the machine's CPU (all cores, every process) that was busy during the run. */
  machineBusy: number;
  /** Requests the pg_net worker sent, and the batches it took them in. */
  pgnetRequests: number;
  pgnetBatches: number;
  /** Requests that reached /functions/v1/execute_current_job: the function's invocations. */
  invocations: number;
  /** Calls the wakeups claimed, summed from the function's answers ({"claimed": n}) in net._http_response. */
  claimedByWakeups: number;
  /** Claim RPCs and report RPCs the function made, and the outcomes the reports carried. */
  claims: number;
  reports: number;
  outcomes: number;
  /** Reports sent with claim_within_ms = 0: the instance had reached a limit of its lifetime and took no more. */
  reportsWithoutContinuation: number;
  /** Mean milliseconds inside the database per report (supaqueue.complete_and_claim). */
  dbMsPerReport: number;
  /**
   * Mean milliseconds a worker spends between two calls at the target: workers × run time, less the time the target
   * was busy with calls, per job. The hops, the claim, the report and the waits all live here.
   */
  gapMsPerCall: number;
  /** Most calls in flight at the target at once. */
  maxInFlight: number;
  /** From the enqueue to the first call's arrival at the target: the hop through pg_net to a fresh instance. */
  firstCallMs: number;
  /** The longest time the target had no call in flight, after the first one. */
  longestPauseMs: number;
  /** The Deno process's peak resident memory (VmHWM) at the end of the run. */
  peakRssMb: number;
  /** The longest response body the attempts recorded. */
  longestResponseChars: number;
}

interface DirectRun {
  seconds: number;
  jobsPerSecond: number;
  /** CPU seconds of this Node process (the client). */
  cpuNode: number;
  /** Share of the machine's CPU (all cores, every process) that was busy during the run. */
  machineBusy: number;
  gapMsPerCall: number;
}

export interface ChainRow {
  key: string;
  label: string;
  workers: number;
  delayMs: number;
  jobs: number;
  chain: ChainRun[];
  direct: DirectRun[];
}

export interface ChainMemory {
  jobs: number;
  maxResponseChars: number;
  /** The first is the target's figure. */
  variants: MemoryVariant[];
}

export interface ChainResult {
  rows: ChainRow[];
  memory?: ChainMemory;
}

/** What one chain run needs besides the shape: its jobs' payload and the target's answer. */
interface RunOptions {
  shape: ChainShape;
  delayMs: number;
  jobs: number;
  /** Characters of filler in each job's payload (default none). */
  payloadChars?: number;
  /** Bytes of the target's answer (default a small JSON body). */
  responseBytes?: number;
  /** config.max_response_chars for the run (default the installed one). */
  maxResponseChars?: number;
  /** V8 flags for the function's process (DENO_V8_FLAGS), e.g. a bounded heap. */
  v8Flags?: string;
}

/** Every part of the chain for one run, on a fresh database. */
interface Stack {
  db: BenchDatabase;
  pool: pg.Pool;
  postgrest: PostgrestStandin;
  gateway: Gateway;
  fn: ServedFunction;
  denoPid: number;
  pgnet: PgNetWorker;
  /** Requests pg_net sent to /functions/v1/execute_current_job. */
  readonly invocations: number;
  stop(): Promise<void>;
}

async function openStack(bench: BenchServer, target: Target, options: RunOptions): Promise<Stack> {
  const db = await installedDatabase(bench, "sq_bench_chain");
  // What is running, stopped newest first (by stop(), or here when a later part fails to start).
  const running: (() => Promise<unknown>)[] = [];
  let stopping: Promise<void> | undefined;
  const stopAll = () => {
    stopping ??= (async () => {
      for (const stop of running.reverse()) await stop().catch(() => {});
    })();
    return stopping;
  };
  try {
    // Time spent inside the reports, read from pg_stat_user_functions once the run's backends have exited.
    await withClient(db.adminUrl, (c) => c.query(`alter database ${db.name} set track_functions = 'pl'`));
    const pool = smallPool(db.url, POSTGREST_POOL);
    running.push(() => pool.end());
    const postgrest = await startPostgrest({ pool, serviceRoleKey: SERVICE_ROLE_KEY });
    running.push(() => postgrest.stop());
    // The function learns the gateway's origin first; the gateway learns where the function listens once it does.
    const gateway = await startGateway("http://127.0.0.1:9", target.url, { restOrigin: postgrest.url });
    running.push(() => gateway.stop());
    const fn = await serveFunction({
      env: {
        SUPAQUEUE_SECRET: BENCH_SECRET,
        SUPABASE_URL: gateway.origin,
        SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY,
        ...(options.v8Flags ? { DENO_V8_FLAGS: options.v8Flags } : {}),
      },
    });
    running.push(() => fn.stop());
    gateway.executeOrigin = fn.origin;
    const denoPid = childPid("deno");
    if (!denoPid) throw new Error("chain: cannot find the deno process");

    const { shape } = options;
    await withClient(db.url, async (c) => {
      await c.query("select supaqueue.configure(functions_url => $1, max_response_chars => $2)", [
        gateway.functionsUrl,
        options.maxResponseChars ?? null,
      ]);
      await c.query(
        `insert into supaqueue.queue (name, url)
         select 'chain-' || n, $2 from generate_series(1, $1::int) n`,
        [shape.queues, `${target.url}${target.path(options.delayMs, options.responseBytes)}`],
      );
      // Idle workers: no job exists yet, so nothing is dispatched until the jobs are enqueued.
      await c.query(
        "insert into supaqueue.worker (queue_id) select q.id from supaqueue.queue q, generate_series(1, $1::int)",
        [shape.workersPerQueue],
      );
    });

    // Every request pg_net sends goes through this fetch: the ones for execute_current_job are its invocations.
    let invocations = 0;
    const countingFetch: typeof fetch = (input, init) => {
      if (new URL(String(input)).pathname === "/functions/v1/execute_current_job") invocations++;
      return fetch(input, init);
    };
    const pgnet = await startPgNetWorker(db.adminUrl, { fetch: countingFetch });
    running.push(() => pgnet.stop());
    return {
      db,
      pool,
      postgrest,
      gateway,
      fn,
      denoPid,
      pgnet,
      get invocations() {
        return invocations;
      },
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    await db.drop().catch(() => {});
    throw error;
  }
}

interface Ticker {
  /** Resolves once the first tick has committed. */
  firstTick: Promise<void>;
  stop(): Promise<void>;
}

/** Runs `select supaqueue.tick()` every second, as pg_cron does on Supabase, until stopped. */
function startTicker(url: string): Ticker {
  let stopped = false;
  let ticked: () => void = () => {};
  const firstTick = new Promise<void>((resolve) => {
    ticked = resolve;
  });
  const loop = withClient(url, async (c) => {
    while (!stopped) {
      const next = performance.now() + TICK_MS;
      await c.query("select supaqueue.tick()");
      ticked();
      while (!stopped && performance.now() < next) await sleep(Math.min(50, next - performance.now()));
    }
  });
  return {
    firstTick: Promise.race([firstTick, loop]),
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** The pids of the backends connected to a database. */
async function backendPids(monitor: pg.ClientBase, database: string): Promise<number[]> {
  const { rows } = await monitor.query<{ pid: number }>(
    "select pid from pg_stat_activity where datname = $1 and backend_type = 'client backend'",
    [database],
  );
  return rows.map((r) => r.pid);
}

/** Where a run that did not finish stands: jobs, calls in flight, pg_net, the RPCs and the function's last words. */
async function whereItStuck(
  stack: Stack,
  target: Target,
  outcomesSeen: number,
  jobs: number,
): Promise<string> {
  const state = await withClient(stack.db.adminUrl, (c) =>
    c.query(`select
      (select json_object_agg(status, n) from (select status, count(*) n from supaqueue.job group by status) s) as jobs,
      (select count(*) from supaqueue.current_job) as calls_in_flight,
      (select count(*) from supaqueue.current_job where claimed_at is null) as unclaimed,
      (select count(*) from supaqueue.current_job where claimed_at is null and wakeup_id is null) as unclaimed_never_woken,
      (select extract(epoch from now() - min(coalesce(woken_at, started_at)))::int from supaqueue.current_job
        where claimed_at is null) as oldest_unclaimed_s,
      (select count(*) from net.http_request_queue) as queued_requests,
      (select json_object_agg(coalesce(status_code::text, 'none'), n) from (select status_code, count(*) n
        from net._http_response group by status_code) r) as wakeup_answers,
      (select json_agg(left(coalesce(error_msg, content), 200)) from (select * from net._http_response
        where status_code is distinct from 200 order by id desc limit 3) e) as failed_wakeups`),
  );
  const stats = await target.stats();
  const rpcs = new Map<string, number>();
  for (const call of stack.postgrest.calls) {
    const key = `${call.fn} ${call.status}`;
    rpcs.set(key, (rpcs.get(key) ?? 0) + 1);
  }
  return [
    `${outcomesSeen} outcomes reported for ${jobs} jobs`,
    `database: ${JSON.stringify(state.rows[0])}`,
    `pg_net: ${stack.pgnet.sent} requests in ${stack.pgnet.batches} batches, ${stack.invocations} to execute_current_job`,
    `RPCs: ${JSON.stringify(Object.fromEntries(rpcs))}`,
    `target: ${stats.answered} answered, ${stats.inFlight} in flight`,
    `function output (end): ${stack.fn.output().slice(-1500)}`,
  ].join("\n  ");
}

/** Jobs' payload as SQL over `g`, the job's number: a small object, or one with `chars` of filler. */
function payloadSql(chars: number | undefined): string {
  // md5 gives 32 characters; repeated, it fills the payload to the size asked.
  return chars
    ? `jsonb_build_object('n', g, 'data', left(repeat(md5(g::text), ${Math.ceil(chars / 32)}), ${chars}))`
    : "jsonb_build_object('n', g)";
}

/** Sums what the function's RPCs said during a run: claims, reports, the outcomes they carried. */
function rpcCounts(postgrest: PostgrestStandin) {
  let claims = 0;
  let reports = 0;
  let outcomes = 0;
  let withoutContinuation = 0;
  for (const call of postgrest.calls) {
    if (call.fn === CLAIM_RPC) claims++;
    if (call.fn !== REPORT_RPC) continue;
    reports++;
    outcomes += (call.args.outcomes as unknown[] | undefined)?.length ?? 0;
    if (call.args.claim_within_ms === 0) withoutContinuation++;
  }
  return { claims, reports, outcomes, withoutContinuation };
}

/** One run of the whole chain on a fresh stack. */
async function runChain(bench: BenchServer, target: Target, options: RunOptions): Promise<ChainRun> {
  const { shape, jobs } = options;
  const workers = shape.queues * shape.workersPerQueue;
  const label = `chain ${shape.label}, ${options.delayMs} ms target`;
  const stack = await openStack(bench, target, options);
  // The harness's own connection (enqueue, checks) is left out of the database's CPU; the monitor, which lists the
  // backends, connects to another database.
  const own = await openClient(stack.db.url);
  const monitor = await openClient(bench.adminUrl);
  const ownPid = (await own.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]?.pid;
  const backends = async () => (await backendPids(monitor, stack.db.name)).filter((pid) => pid !== ownPid);
  let ticker: Ticker | undefined;
  let sampler: NodeJS.Timeout | undefined;
  let stopped = false;
  try {
    ticker = startTicker(stack.db.url);
    // The jobs are enqueued half-way between two ticks, as an enqueue meets pg_cron's tick at no particular moment.
    // Enqueued during a tick (whose first run on a new connection takes about 20 ms), the insert's dispatch would
    // skip the worker the tick holds and its job would wait for the next tick, a second later: see ANALYSIS.md.
    await ticker.firstTick;
    await sleep(TICK_MS / 2);
    await target.reset();
    const postgres = cpuOfProcesses();
    postgres.start(await backends());
    sampler = setInterval(() => void backends().then(postgres.sample, () => {}), 500);
    const deno0 = cpuSeconds(stack.denoPid) ?? Number.NaN;
    const node0 = process.cpuUsage();
    const machine = machineLoad();

    const started = performance.now();
    const enqueuedAt = Date.now();
    await own.query(
      `insert into supaqueue.job (queue_id, payload)
       select q.id, ${payloadSql(options.payloadChars)}
       from generate_series(0, $1::int - 1) g join supaqueue.queue q on q.name = 'chain-' || (g % $2::int + 1)`,
      [jobs, shape.queues],
    );

    // Done once the reports seen carry an outcome per job and the database says every job succeeded (a failed
    // outcome would be retried, so then the database is asked until they all have).
    let seen = 0;
    let outcomes = 0;
    const finished = (async () => {
      for (;;) {
        if (stopped) return Number.NaN;
        const calls = stack.postgrest.calls;
        for (; seen < calls.length; seen++) {
          const call = calls[seen];
          if (call?.fn === REPORT_RPC && call.status === 200)
            outcomes += (call.args.outcomes as unknown[] | undefined)?.length ?? 0;
        }
        if (outcomes >= jobs) {
          const at = performance.now();
          const { rows } = await own.query<{ n: number }>(
            "select count(*)::int as n from supaqueue.job where status = 'successful'",
          );
          if (rows[0]?.n === jobs) return at;
          await sleep(45);
        }
        await sleep(5);
      }
    })();
    const ended = await withinTimeout(finished, timeoutSeconds("BENCH_CHAIN_TIMEOUT_S", 120), label, () =>
      whereItStuck(stack, target, outcomes, jobs),
    );
    const seconds = (ended - started) / 1000;
    const machineBusy = machine.busyShare();
    postgres.sample(await backends());
    const node = process.cpuUsage(node0);
    const deno = (cpuSeconds(stack.denoPid) ?? Number.NaN) - deno0;
    const { busyMs, maxInFlight, firstArrivalAt, longestPauseMs } = await target.stats();
    const peak = peakRssMb(stack.denoPid);
    const rpcs = rpcCounts(stack.postgrest);
    const pgnetRequests = stack.pgnet.sent;
    const pgnetBatches = stack.pgnet.batches;
    const invocations = stack.invocations;

    const { rows: answers } = await own.query<{ claimed: number; longest: number }>(
      `select (select coalesce(sum((content::jsonb ->> 'claimed')::int), 0)::int from net._http_response
               where status_code = 200) as claimed,
              (select coalesce(max(length(response_body)), 0)::int from supaqueue.attempt) as longest`,
    );
    // The backends flush their function statistics when they exit: stop everything, then read them.
    clearInterval(sampler);
    stopped = true;
    await ticker.stop();
    await stack.stop();
    await sleep(300);
    const { rows: fnTimes } = await own.query<{ name: string; ms: number }>(
      `select funcname as name, total_time / calls as ms from pg_stat_user_functions
       where schemaname = 'supaqueue' and funcname = 'complete_and_claim'`,
    );
    const dbMs = (name: string) => Number(fnTimes.find((f) => f.name === name)?.ms ?? Number.NaN);
    return {
      jobs,
      seconds,
      jobsPerSecond: jobs / seconds,
      cpu: { deno, postgres: postgres.seconds(), node: (node.user + node.system) / 1e6 },
      machineBusy,
      pgnetRequests,
      pgnetBatches,
      invocations,
      claimedByWakeups: answers[0]?.claimed ?? 0,
      claims: rpcs.claims,
      reports: rpcs.reports,
      outcomes: rpcs.outcomes,
      reportsWithoutContinuation: rpcs.withoutContinuation,
      dbMsPerReport: dbMs("complete_and_claim"),
      gapMsPerCall: (workers * seconds * 1000 - busyMs) / jobs,
      maxInFlight,
      firstCallMs: (firstArrivalAt ?? Number.NaN) - enqueuedAt,
      longestPauseMs,
      peakRssMb: peak,
      longestResponseChars: answers[0]?.longest ?? 0,
    };
  } finally {
    stopped = true;
    clearInterval(sampler);
    await ticker?.stop();
    await stack.stop();
    await own.end();
    await monitor.end();
    await stack.db.drop();
  }
}

/** The baseline of a run: the same calls, made directly by this process with as many loops as workers. */
async function runDirect(
  target: Target,
  shape: ChainShape,
  delayMs: number,
  jobs: number,
): Promise<DirectRun> {
  const workers = shape.queues * shape.workersPerQueue;
  const url = `${target.url}${target.path(delayMs)}`;
  await target.reset();
  const node0 = process.cpuUsage();
  const machine = machineLoad();
  const seconds = await withinTimeout(
    callDirectly(url, workers, jobs),
    timeoutSeconds("BENCH_CHAIN_TIMEOUT_S", 120),
    `direct calls, ${shape.label}, ${delayMs} ms target`,
    async () => {
      const stats = await target.stats();
      return `target: ${stats.answered} of ${jobs} answered, ${stats.inFlight} in flight`;
    },
  );
  const node = process.cpuUsage(node0);
  const machineBusy = machine.busyShare();
  const { busyMs } = await target.stats();
  return {
    seconds,
    jobsPerSecond: jobs / seconds,
    cpuNode: (node.user + node.system) / 1e6,
    machineBusy,
    gapMsPerCall: (workers * seconds * 1000 - busyMs) / jobs,
  };
}

function describe(run: ChainRun, direct: DirectRun): string {
  return (
    `${run.jobsPerSecond.toFixed(0)} jobs/s (direct ${direct.jobsPerSecond.toFixed(0)}, ` +
    `${(run.jobsPerSecond / direct.jobsPerSecond).toFixed(2)} ×); CPU s deno ${run.cpu.deno.toFixed(2)} ` +
    `postgres ${run.cpu.postgres.toFixed(2)} node ${run.cpu.node.toFixed(2)}, machine busy ` +
    `${(run.machineBusy * 100).toFixed(0)} % (direct ${(direct.machineBusy * 100).toFixed(0)} %); pg_net ${run.pgnetRequests} ` +
    `requests in ${run.pgnetBatches} batches, ${run.invocations} invocations, ${run.claims} claims ` +
    `(${run.claimedByWakeups} calls), ` +
    `${run.reports} reports (${(run.outcomes / run.reports).toFixed(1)} outcomes each, ` +
    `${run.reportsWithoutContinuation} without continuation); db ms/report ${run.dbMsPerReport.toFixed(2)}, ` +
    `gap ms/call ${run.gapMsPerCall.toFixed(1)} (direct ${direct.gapMsPerCall.toFixed(1)}), first call after ` +
    `${run.firstCallMs.toFixed(0)} ms, longest pause ${run.longestPauseMs.toFixed(0)} ms, ` +
    `peak ${run.peakRssMb.toFixed(0)} MB`
  );
}

/**
 * Every shape at every target delay (or those named in `only`), `repeats` times, each chain run right after its
 * direct baseline (direct, chain, direct, chain, ...). `jobs` gives the number of jobs per shape and delay (see
 * chainKey).
 */
export async function measureChain(
  bench: BenchServer,
  repeats: number,
  jobs: Record<string, number>,
  only?: string[],
): Promise<ChainResult> {
  const target = await startTarget();
  try {
    const rows: ChainRow[] = CHAIN_SHAPES.flatMap((shape) =>
      CHAIN_DELAYS_MS.filter((delayMs) => !only || only.includes(chainKey(shape, delayMs))).map(
        (delayMs) => ({
          key: chainKey(shape, delayMs),
          label: shape.label,
          workers: shape.queues * shape.workersPerQueue,
          delayMs,
          jobs: jobs[chainKey(shape, delayMs)] ?? 1000,
          chain: [],
          direct: [],
        }),
      ),
    );
    for (let r = 0; r < repeats; r++) {
      for (const row of rows) {
        const shape = CHAIN_SHAPES.find((s) => chainKey(s, row.delayMs) === row.key) as ChainShape;
        const direct = await runDirect(target, shape, row.delayMs, row.jobs);
        const run = await runChain(bench, target, { shape, delayMs: row.delayMs, jobs: row.jobs });
        row.direct.push(direct);
        row.chain.push(run);
        log(`chain ${row.key} repeat ${r + 1}: ${describe(run, direct)}`);
      }
    }
    return { rows };
  } finally {
    await target.stop();
  }
}

/** One way of loading the function for its memory figure. */
interface MemoryVariant {
  label: string;
  payloadChars?: number;
  responseBytes?: number;
  v8Flags?: string;
  /** How many runs: the repeats for the target's figure, one for the others. */
  runs: ChainRun[];
  peakRssMb: number;
}

const KB64 = 64 * 1024;

/**
 * The function's memory under load: 100 workers, each call carrying a 64 KB payload and getting a 64 KB answer,
 * with config.max_response_chars raised above it (70,000) so that the database would keep the whole answer. The
 * target answers after 50 ms so that the 100 calls are in flight together. Peak memory is the Deno process's VmHWM.
 * The first variant is the target's figure (`repeats` runs); one run each of the others tells what the peak is made
 * of: the same load with V8's heap bounded (garbage V8 had not collected yet, or memory the function holds?), and
 * the payloads and the answers alone.
 */
export async function measureChainMemory(
  bench: BenchServer,
  repeats: number,
  jobs: number,
): Promise<ChainMemory> {
  const maxResponseChars = 70_000;
  const shape = CHAIN_SHAPES.find((s) => s.key === "w100") as ChainShape;
  const variants: MemoryVariant[] = [
    {
      label: "64 KB payloads and 64 KB answers",
      payloadChars: KB64,
      responseBytes: KB64,
      runs: [],
      peakRssMb: 0,
    },
    {
      label: `the same, V8's heap bounded (${CAPPED_V8_FLAGS})`,
      payloadChars: KB64,
      responseBytes: KB64,
      v8Flags: CAPPED_V8_FLAGS,
      runs: [],
      peakRssMb: 0,
    },
    { label: "64 KB payloads, small answers", payloadChars: KB64, runs: [], peakRssMb: 0 },
    { label: "small payloads, 64 KB answers", responseBytes: KB64, runs: [], peakRssMb: 0 },
  ];
  const target = await startTarget();
  try {
    for (const [i, variant] of variants.entries()) {
      for (let r = 0; r < (i === 0 ? repeats : 1); r++) {
        const run = await runChain(bench, target, {
          shape,
          delayMs: 50,
          jobs,
          payloadChars: variant.payloadChars,
          responseBytes: variant.responseBytes,
          maxResponseChars,
          v8Flags: variant.v8Flags,
        });
        variant.runs.push(run);
        log(
          `chain memory, ${variant.label}, run ${r + 1}: peak ${run.peakRssMb.toFixed(0)} MB, ${run.maxInFlight} ` +
            `calls in flight at most, ${run.jobsPerSecond.toFixed(0)} jobs/s, longest answer kept ` +
            `${run.longestResponseChars} chars`,
        );
      }
      variant.peakRssMb = median(variant.runs.map((x) => x.peakRssMb));
    }
  } finally {
    await target.stop();
  }
  return { jobs, maxResponseChars, variants };
}

/** The medians of a shape and delay over its repeats, as the report shows them. */
export interface ChainSummary {
  chainJobsPerSecond: number;
  directJobsPerSecond: number;
  /** Median chain jobs/s ÷ median direct jobs/s. */
  ratio: number;
  /** Chain ÷ direct of each repeat, in order. */
  ratios: number[];
  gapMs: { chain: number; direct: number };
  /** Share of the machine's CPU busy during the runs (all processes). */
  machineBusy: { chain: number; direct: number };
  firstCallMs: number;
  /** CPU milliseconds per 1,000 jobs. */
  cpuPerThousandJobs: { deno: number; postgres: number; node: number; directNode: number };
  requestsPerJob: number;
  invocationsPerJob: number;
  outcomesPerReport: number;
  reportsWithoutContinuation: number;
  dbMsPerReport: number;
  peakRssMb: number;
}

export function summarize(row: ChainRow): ChainSummary {
  const chain = (f: (run: ChainRun) => number) => median(row.chain.map(f));
  const direct = (f: (run: DirectRun) => number) => median(row.direct.map(f));
  const perThousand = (seconds: number, run: { jobs?: number }) => (seconds * 1e6) / (run.jobs ?? row.jobs);
  const chainJobsPerSecond = chain((x) => x.jobsPerSecond);
  const directJobsPerSecond = direct((x) => x.jobsPerSecond);
  return {
    chainJobsPerSecond,
    directJobsPerSecond,
    ratio: chainJobsPerSecond / directJobsPerSecond,
    ratios: row.chain.map((x, i) => x.jobsPerSecond / (row.direct[i]?.jobsPerSecond ?? Number.NaN)),
    gapMs: { chain: chain((x) => x.gapMsPerCall), direct: direct((x) => x.gapMsPerCall) },
    machineBusy: { chain: chain((x) => x.machineBusy), direct: direct((x) => x.machineBusy) },
    firstCallMs: chain((x) => x.firstCallMs),
    cpuPerThousandJobs: {
      deno: chain((x) => perThousand(x.cpu.deno, x)),
      postgres: chain((x) => perThousand(x.cpu.postgres, x)),
      node: chain((x) => perThousand(x.cpu.node, x)),
      directNode: direct((x) => perThousand(x.cpuNode, {})),
    },
    requestsPerJob: chain((x) => x.pgnetRequests / x.jobs),
    invocationsPerJob: chain((x) => x.invocations / x.jobs),
    outcomesPerReport: chain((x) => x.outcomes / x.reports),
    reportsWithoutContinuation: chain((x) => x.reportsWithoutContinuation),
    dbMsPerReport: chain((x) => x.dbMsPerReport),
    peakRssMb: chain((x) => x.peakRssMb),
  };
}
