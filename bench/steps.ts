import type pg from "pg";
import type { Completion } from "../functions/execute_current_job/call.ts";
import { REPORT_BATCH } from "./cycle.ts";
import {
  type BenchDatabase,
  type BenchServer,
  log,
  median,
  openClient,
  withClient,
  withInstalledDatabase,
} from "./support.ts";

/**
 * Section 9, chain steps (issue 14): what one on_success step costs, against the plain enqueue a user's own trigger
 * or backend would make instead.
 *
 * One database per repeat holds four source queues with N calls each in flight (N jobs, N workers, the calls started
 * by the workers' insert and claimed as the function claims them, outside the clock):
 *   - plain: no on_success; each outcome carries a small JSON object as its body;
 *   - chain: on_success_queue set (on_success_payload 'response'); the same bodies, also sent as chain_body, as the
 *     function sends them for such a queue;
 *   - plain, array body: no on_success; each body a JSON array of FAN_OUT objects;
 *   - fan-out: on_success_queue with fan_out; the same array bodies, so N completions make FAN_OUT × N jobs.
 * Then N / 100 rounds, each timing every operation once, in a shuffled order: one report of 100 outcomes to each
 * source queue (public.supaqueue_complete_current_jobs as service_role on one connection, as the function reports
 * without continuation), supaqueue.enqueue_many of 100 jobs (the chain's bodies as payloads) and of 100 × FAN_OUT
 * jobs (the fan-out's items), 100 supaqueue.enqueue calls in one statement (as a trigger on a user's table makes
 * them) and 20 supaqueue.enqueue calls of one round trip and commit each (as a backend makes them; fewer, as each
 * waits for its own WAL flush), all as the installer role on a second connection. Interleaving them puts every kind
 * on the same machine load and the same table sizes. Each operation is timed twice: by the client's clock (round
 * trip and commit included) and inside the server (clock_timestamp() − statement_timestamp() at the end of the
 * statement: no round trip, no commit).
 *
 * Every queue the jobs go into (the chains' next queues and the enqueues' queues) is paused and has no workers, so
 * nothing runs them and no dispatch starts a call, on either side: a chain step's dispatch of its next queue counts
 * its free workers first and finds none; an enqueue's dispatch sees the queue paused before it locks anything (with
 * no workers alone it would still lock up to as many pending jobs as it inserted, then find no worker).
 *
 * Cost of a step = (time of the reports to the chain queue − time of those to the plain queue) ÷ jobs created, the
 * plain reports being the same outcomes with the same bodies, in the same rounds. After each repeat every source job
 * must be successful without a step error, and every next job pending, exactly one per parent (FAN_OUT for the
 * fan-out, one per item), or the section fails.
 *
 * Repeat r shuffles its rounds with seed r (the same orders every run). Per repeat, each report's growth (the median
 * of its last tenth of rounds ÷ that of its first) shows a report that got slower as the tables grew: on 2026-11-30
 * the chain report did in some repeats, through the plan the reporting session kept for _on_success (ANALYSIS.md,
 * section 8), so the step's figure depends on the plan a session happens to keep.
 *
 * One more database, untimed, repeats PROFILE_ROUNDS rounds with track_functions = all and reads each call's
 * function times in its own transaction (pg_stat_xact_user_functions): where a step's time goes.
 */

export const FAN_OUT = 10;
const PROFILE_ROUNDS = 20;
const URL = "https://target.example/hook";

/** The timed operations of a round. */
const STEP_OPS = [
  "plain",
  "chain",
  "plainArray",
  "fanOut",
  "many",
  "manyFan",
  "enqueueSql",
  "enqueueRpc",
] as const;
type StepOp = (typeof STEP_OPS)[number];
type Report = "plain" | "chain" | "plainArray" | "fanOut";
const REPORTS: Report[] = ["plain", "chain", "plainArray", "fanOut"];

/** The source queues (in flight) and the paused queues every job goes into. */
const SOURCE: Record<Report, { queue: string; next?: string; fanOut?: boolean }> = {
  plain: { queue: "steps-plain" },
  chain: { queue: "steps-chain", next: "steps-chain-next" },
  plainArray: { queue: "steps-plain-array" },
  fanOut: { queue: "steps-fan-out", next: "steps-fan-out-next", fanOut: true },
};
const ENQUEUED_INTO: Record<"many" | "manyFan" | "enqueueSql" | "enqueueRpc", string> = {
  many: "steps-many",
  manyFan: "steps-many-fan",
  enqueueSql: "steps-enqueue-sql",
  enqueueRpc: "steps-enqueue-rpc",
};
const PAUSED = [SOURCE.chain.next, SOURCE.fanOut.next, ...Object.values(ENQUEUED_INTO)] as string[];

/** A chain's answer (and plain enqueue's payload) for job n, and the fan-out's items. */
const object = (n: number) => ({ n, status: "ok" });
const items = (n: number) => Array.from({ length: FAN_OUT }, (_, item) => ({ n, item }));

/** Jobs made per round by each operation (the plain reports make none). */
const JOBS_PER_ROUND: Record<StepOp, number> = {
  plain: 0,
  chain: REPORT_BATCH,
  plainArray: 0,
  fanOut: REPORT_BATCH * FAN_OUT,
  many: REPORT_BATCH,
  manyFan: REPORT_BATCH * FAN_OUT,
  enqueueSql: REPORT_BATCH,
  enqueueRpc: 20,
};

/** A function's time inside the operations of one kind: milliseconds summed over the profiled rounds. */
interface FunctionTime {
  name: string;
  calls: number;
  totalMs: number;
  selfMs: number;
}

export interface StepsResult {
  /** Calls reported per source queue per repeat (one step each). */
  jobs: number;
  batch: number;
  fanOut: number;
  /** enqueue() calls of one round trip each per round (fewer than the others: each waits for its own commit). */
  rpcPerRound: number;
  /**
   * µs per job, one value per repeat, by the client's clock (wall: round trips and commits included) and inside the
   * server's statements (server): "step" and "fanOutStep" per job a step created (over the plain reports), "many",
   * "manyFan", "enqueueSql", "enqueueRpc" per job enqueued, "report|<report>" per outcome reported.
   */
  wall: Record<string, number[]>;
  server: Record<string, number[]>;
  median: { wall: Record<string, number>; server: Record<string, number> };
  /**
   * Per repeat and report ("plain", "chain", "plainArray", "fanOut"): the median time in the server of the last tenth
   * of the rounds ÷ that of the first tenth. Near 1 when a report costs the same all along; a chain report whose
   * session cached a plan that reads a whole table (see the section's text) grows with the run.
   */
  growth: Record<string, number[]>;
  /** Function times per operation of the profiled run (PROFILE_ROUNDS rounds), keyed by operation. */
  profile: { rounds: number; ops: Record<string, FunctionTime[]> };
}

/** Everything a repeat sends, built before the clock starts: per operation, per round. */
interface Inputs {
  reports: Record<Report, string[]>;
  many: string[];
  manyFan: string[];
  payloads: string[][];
}

/** Queues, N jobs and N workers per source queue; the started calls taken off pg_net's queue and claimed. */
async function prepare(db: BenchDatabase, jobs: number): Promise<Record<Report, number[]>> {
  await withClient(db.url, async (c) => {
    for (const name of PAUSED) {
      await c.query("insert into supaqueue.queue (name, url, paused) values ($1, $2, true)", [name, URL]);
    }
    for (const report of REPORTS) {
      const s = SOURCE[report];
      await c.query(
        "insert into supaqueue.queue (name, url, on_success_queue, fan_out) values ($1, $2, $3, $4)",
        [s.queue, URL, s.next ?? null, s.fanOut ?? false],
      );
      await c.query(
        `insert into supaqueue.job (queue_id, payload)
         select q.id, jsonb_build_object('n', g) from supaqueue.queue q, generate_series(1, $2::int) g
         where q.name = $1`,
        [s.queue, jobs],
      );
      // The workers' insert dispatches: N calls in flight, their wakeups queued for pg_net.
      await c.query("select supaqueue.set_workers($1, $2)", [s.queue, jobs]);
    }
  });
  const ids = {} as Record<Report, number[]>;
  await withClient(db.adminUrl, async (c) => {
    // pg_net would take the wakeups; nothing here sends them.
    await c.query("truncate net.http_request_queue");
    for (const report of REPORTS) {
      const { rows } = await c.query<{ id: string }>(
        `select c.id from supaqueue.current_job c join supaqueue.job j on j.id = c.job_id
         join supaqueue.queue q on q.id = j.queue_id where q.name = $1 order by c.id`,
        [SOURCE[report].queue],
      );
      ids[report] = rows.map((r) => Number(r.id));
      if (ids[report].length !== jobs)
        throw new Error(`steps: ${ids[report].length} of ${jobs} calls in flight on ${SOURCE[report].queue}`);
    }
  });
  // Claimed as the function claims a wakeup's calls (100 a wakeup).
  await withClient(db.url, async (c) => {
    await c.query("set role service_role");
    for (const report of REPORTS) {
      for (let i = 0; i < jobs; i += REPORT_BATCH) {
        const { rows } = await c.query<{ n: number }>(
          "select jsonb_array_length(public.supaqueue_claim_current_jobs($1::bigint[])) as n",
          [ids[report].slice(i, i + REPORT_BATCH)],
        );
        if (rows[0]?.n !== Math.min(REPORT_BATCH, jobs - i)) throw new Error(`steps: claimed ${rows[0]?.n}`);
      }
    }
  });
  await withClient(db.adminUrl, async (c) => {
    await c.query("vacuum analyze");
    await c.query("checkpoint");
  });
  return ids;
}

function inputs(ids: Record<Report, number[]>, rounds: number): Inputs {
  const outcome = (id: number, body: string, chain: boolean): Completion => ({
    current_job_id: id,
    succeeded: true,
    status_code: 200,
    response_body: body,
    error: null,
    duration_ms: 1,
    retryable: true,
    retry_after_ms: null,
    // The function sends the whole body again as chain_body only for a queue with an on_success step.
    ...(chain ? { chain_body: body } : {}),
  });
  const reports = {} as Record<Report, string[]>;
  for (const report of REPORTS) {
    const array = report === "plainArray" || report === "fanOut";
    const chain = SOURCE[report].next !== undefined;
    reports[report] = Array.from({ length: rounds }, (_, round) =>
      JSON.stringify(
        ids[report]
          .slice(round * REPORT_BATCH, (round + 1) * REPORT_BATCH)
          .map((id, k) =>
            outcome(
              id,
              JSON.stringify(array ? items(round * REPORT_BATCH + k) : object(round * REPORT_BATCH + k)),
              chain,
            ),
          ),
      ),
    );
  }
  const numbers = (round: number) => Array.from({ length: REPORT_BATCH }, (_, k) => round * REPORT_BATCH + k);
  return {
    reports,
    many: Array.from({ length: rounds }, (_, round) =>
      JSON.stringify(numbers(round).map((n) => ({ payload: object(n) }))),
    ),
    manyFan: Array.from({ length: rounds }, (_, round) =>
      JSON.stringify(numbers(round).flatMap((n) => items(n).map((payload) => ({ payload })))),
    ),
    payloads: Array.from({ length: rounds }, (_, round) =>
      numbers(round).map((n) => JSON.stringify(object(n))),
    ),
  };
}

/** A statement's result and the time it ran inside the server (no round trip, no commit). */
const timed = (sql: string) =>
  `with r as materialized (${sql}) select r.n, extract(epoch from clock_timestamp() - statement_timestamp()) * 1e6 as us from r`;
const SQL = {
  report: timed("select cardinality(public.supaqueue_complete_current_jobs($1::jsonb)) as n"),
  many: timed("select cardinality(supaqueue.enqueue_many($1, $2::jsonb)) as n"),
  enqueueSql: timed(
    "select count(supaqueue.enqueue($1, p))::int as n from jsonb_array_elements($2::jsonb) p",
  ),
  enqueueRpc: timed("select count(supaqueue.enqueue($1, $2::jsonb))::int as n"),
};

/** Runs one operation of a round and returns its µs inside the server; throws when it did less than it should. */
async function runOp(
  op: StepOp,
  round: number,
  input: Inputs,
  reporter: pg.Client,
  user: pg.Client,
): Promise<number> {
  type Row = { n: number; us: number };
  let rows: Row[];
  if (op === "plain" || op === "chain" || op === "plainArray" || op === "fanOut") {
    rows = (await reporter.query<Row>(SQL.report, [input.reports[op][round]])).rows;
  } else if (op === "many" || op === "manyFan") {
    rows = (await user.query<Row>(SQL.many, [ENQUEUED_INTO[op], input[op][round]])).rows;
  } else if (op === "enqueueSql") {
    const payloads = `[${(input.payloads[round] ?? []).join(",")}]`;
    rows = (await user.query<Row>(SQL.enqueueSql, [ENQUEUED_INTO[op], payloads])).rows;
  } else {
    rows = [];
    for (const payload of (input.payloads[round] ?? []).slice(0, JOBS_PER_ROUND[op])) {
      rows.push(...(await user.query<Row>(SQL.enqueueRpc, [ENQUEUED_INTO[op], payload])).rows);
    }
  }
  const done = rows.reduce((sum, r) => sum + Number(r.n), 0);
  // A report finishes its 100 calls; an enqueue adds its jobs.
  const expected = REPORTS.includes(op as Report) ? REPORT_BATCH : JOBS_PER_ROUND[op];
  if (done !== expected) throw new Error(`steps: ${op} in round ${round} did ${done} of ${expected}`);
  return rows.reduce((sum, r) => sum + Number(r.us), 0);
}

/** Every source job succeeded without a step error; every next job exists once, pending, with its parent. */
async function check(db: BenchDatabase, jobs: number, rounds: number): Promise<void> {
  await withClient(db.adminUrl, async (c) => {
    const { rows } = await c.query<{ problem: string | null }>(
      `select coalesce(
         (select format('%s: %s jobs %s, %s with a step error', q.name, count(*), j.status, count(j.last_error))
          from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
          where q.name = any ($1) group by q.name, j.status
          having j.status <> 'successful' or count(*) <> $2 or count(j.last_error) > 0 limit 1),
         (select format('%s calls still in flight', count(*)) from supaqueue.current_job having count(*) > 0),
         (select format('%s: %s jobs, %s pending, %s with a parent of %s, %s parents, at most %s a parent',
                        q.name, count(*), count(*) filter (where j.status = 'pending'), count(p.id),
                        $3::text, count(distinct j.parent_id), max(x.children))
          from supaqueue.queue q
          left join supaqueue.job j on j.queue_id = q.id
          left join supaqueue.job p on p.id = j.parent_id
            and p.queue_id = (select s.id from supaqueue.queue s where s.on_success_queue = q.name)
          left join lateral (select count(*) as children from supaqueue.job k where k.parent_id = j.parent_id) x
            on true
          where q.name = any ($4)
          group by q.name
          having count(j.id) <> (case when q.name = $5 then $6::int else 1 end) * $2
              or count(*) filter (where j.status = 'pending' and j.payload ->> 'n' is not null) <> count(*)
              or count(p.id) <> count(*)
              or count(distinct j.parent_id) <> $2
              or max(x.children) <> (case when q.name = $5 then $6::int else 1 end)
              or count(distinct (j.parent_id, j.payload)) <> count(*)
          limit 1),
         (select format('%s: %s jobs, %s with a parent', q.name, count(j.id), count(j.parent_id))
          from supaqueue.queue q left join supaqueue.job j on j.queue_id = q.id
          where q.name in (select jsonb_object_keys($7::jsonb)) group by q.name
          having count(j.id) <> ($7::jsonb ->> q.name)::int or count(j.parent_id) > 0
          limit 1)) as problem`,
      [
        REPORTS.map((r) => SOURCE[r].queue),
        jobs,
        "its source queue",
        [SOURCE.chain.next, SOURCE.fanOut.next],
        SOURCE.fanOut.next,
        FAN_OUT,
        JSON.stringify(
          Object.fromEntries(
            Object.entries(ENQUEUED_INTO).map(([op, q]) => [q, rounds * JOBS_PER_ROUND[op as StepOp]]),
          ),
        ),
      ],
    );
    if (rows[0]?.problem) throw new Error(`steps: check failed: ${rows[0].problem}`);
  });
}

const PROFILE_SQL = `select funcname as name, calls::int, total_time as "totalMs", self_time as "selfMs"
                     from pg_stat_xact_user_functions where schemaname in ('supaqueue', 'public')`;

/**
 * The operations in an order of their own for every round (a seeded shuffle), so that no operation always follows
 * the same one (a fixed cycle, even rotated, would: whatever one leaves behind would always be paid by the next).
 */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed >>> 0 || 1;
  for (let i = out.length - 1; i > 0; i--) {
    // xorshift32: enough to vary the order, and the same for the same seed.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    const j = (state >>> 0) % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

interface StepsRun {
  /** Per operation, over the whole repeat: ms by the client's clock, µs inside the server's statements. */
  ms: Record<StepOp, number>;
  serverUs: Record<StepOp, number>;
  /** µs inside the server of each round, per report. */
  rounds: Record<Report, number[]>;
  functions: Record<StepOp, Map<string, FunctionTime>>;
}

/**
 * One repeat on a fresh database: the rounds, each operation timed; with `profile`, each operation in a transaction
 * of its own that reads its function times before it commits (not timed).
 */
async function runSteps(bench: BenchServer, jobs: number, seed: number, profile: boolean): Promise<StepsRun> {
  return withInstalledDatabase(bench, async (db) => {
    const rounds = jobs / REPORT_BATCH;
    const ids = await prepare(db, jobs);
    const input = inputs(ids, rounds);
    if (profile)
      await withClient(db.adminUrl, (c) => c.query(`alter database ${db.name} set track_functions = 'all'`));
    const reporter = await openClient(db.url);
    const user = await openClient(db.url);
    const zero = () => Object.fromEntries(STEP_OPS.map((op) => [op, 0])) as Record<StepOp, number>;
    const run: StepsRun = {
      ms: zero(),
      serverUs: zero(),
      rounds: { plain: [], chain: [], plainArray: [], fanOut: [] },
      functions: Object.fromEntries(STEP_OPS.map((op) => [op, new Map()])) as StepsRun["functions"],
    };
    try {
      // The function reaches the database with the project's key, which maps to service_role.
      await reporter.query("set role service_role");
      for (let round = 0; round < rounds; round++) {
        for (const op of shuffled(STEP_OPS, seed * 10_007 + round)) {
          if (!profile) {
            const started = performance.now();
            const us = await runOp(op, round, input, reporter, user);
            run.serverUs[op] += us;
            if (REPORTS.includes(op as Report)) run.rounds[op as Report].push(us);
            run.ms[op] += performance.now() - started;
            continue;
          }
          // The view holds what the backend has not yet sent to the statistics, earlier transactions' too: what
          // the operation added is the difference within its transaction (nothing is sent before it ends).
          const client = REPORTS.includes(op as Report) ? reporter : user;
          await client.query("begin");
          const before = await client.query<FunctionTime>(PROFILE_SQL);
          await runOp(op, round, input, reporter, user);
          const after = await client.query<FunctionTime>(PROFILE_SQL);
          await client.query("commit");
          for (const f of after.rows) {
            const b = before.rows.find((x) => x.name === f.name);
            const sum = run.functions[op].get(f.name) ?? { name: f.name, calls: 0, totalMs: 0, selfMs: 0 };
            run.functions[op].set(f.name, {
              name: f.name,
              calls: sum.calls + f.calls - (b?.calls ?? 0),
              totalMs: sum.totalMs + f.totalMs - (b?.totalMs ?? 0),
              selfMs: sum.selfMs + f.selfMs - (b?.selfMs ?? 0),
            });
          }
        }
      }
    } finally {
      await reporter.end();
      await user.end();
    }
    await check(db, jobs, rounds);
    return run;
  });
}

/** µs per job from one repeat's totals: the steps over their plain reports, the enqueues, the reports per outcome. */
function perJob(total: Record<StepOp, number>, toUs: number, jobs: number): Record<string, number> {
  const us = (op: StepOp) => (total[op] * toUs) / jobs;
  const rounds = jobs / REPORT_BATCH;
  const out: Record<string, number> = {
    step: us("chain") - us("plain"),
    fanOutStep: (us("fanOut") - us("plainArray")) / FAN_OUT,
  };
  for (const op of ["many", "manyFan", "enqueueSql", "enqueueRpc"] as const)
    out[op] = (total[op] * toUs) / (rounds * JOBS_PER_ROUND[op]);
  for (const report of REPORTS) out[`report|${report}`] = us(report);
  return out;
}

export async function measureSteps(bench: BenchServer, repeats: number, jobs: number): Promise<StepsResult> {
  if (jobs % REPORT_BATCH !== 0)
    throw new Error(`steps: jobs (${jobs}) must be a multiple of ${REPORT_BATCH}`);
  const wall: Record<string, number[]> = {};
  const server: Record<string, number[]> = {};
  const growth: Record<string, number[]> = {};
  const add = (to: Record<string, number[]>, values: Record<string, number>) => {
    for (const [k, v] of Object.entries(values)) to[k] = [...(to[k] ?? []), v];
  };
  for (let r = 0; r < repeats; r++) {
    const run = await runSteps(bench, jobs, r + 1, false);
    const w = perJob(run.ms, 1000, jobs);
    const s = perJob(run.serverUs, 1, jobs);
    add(wall, w);
    add(server, s);
    // How much slower a report got from the first tenth of the rounds to the last (see growth in StepsResult).
    const tenth = Math.max(1, Math.floor(run.rounds.plain.length / 10));
    add(
      growth,
      Object.fromEntries(
        REPORTS.map((report) => {
          const series = run.rounds[report];
          return [report, median(series.slice(-tenth)) / median(series.slice(0, tenth))];
        }),
      ),
    );
    const f = (x: number | undefined) => x?.toFixed(1);
    log(
      `steps repeat ${r + 1}, µs per job (wall / in the server): chain step ${f(w.step)} / ${f(s.step)}, ` +
        `fan-out step ${f(w.fanOutStep)} / ${f(s.fanOutStep)}, enqueue_many ${f(w.many)} / ${f(s.many)}, ` +
        `enqueue ${f(w.enqueueSql)} / ${f(s.enqueueSql)}`,
    );
  }
  const profiled = await runSteps(bench, PROFILE_ROUNDS * REPORT_BATCH, 0, true);
  const medians = (values: Record<string, number[]>) =>
    Object.fromEntries(Object.entries(values).map(([k, v]) => [k, median(v)]));
  return {
    jobs,
    batch: REPORT_BATCH,
    fanOut: FAN_OUT,
    rpcPerRound: JOBS_PER_ROUND.enqueueRpc,
    wall,
    server,
    growth,
    median: { wall: medians(wall), server: medians(server) },
    profile: {
      rounds: PROFILE_ROUNDS,
      ops: Object.fromEntries(
        STEP_OPS.map((op) => [
          op,
          [...profiled.functions[op].values()].sort((a, b) => b.totalMs - a.totalMs),
        ]),
      ),
    },
  };
}
