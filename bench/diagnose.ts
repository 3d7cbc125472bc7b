import { CLAIM_WITHIN_MS } from "./cycle.ts";
import { pgbench } from "./pgbench.ts";
import { type Profile, profileStatements } from "./profile.ts";
import {
  type BenchDatabase,
  type BenchServer,
  log,
  median,
  sleep,
  withClient,
  withInstalledDatabase,
} from "./support.ts";

/**
 * Section 7, diagnosis: where one completion's time goes, and what reporting outcomes together saves. Everything is
 * measured with pgbench calling the completion functions directly (no Node client in the way) on a queue with a
 * large backlog, so every completion also claims the next jobs and starts their calls, and those calls are claimed
 * for the function (in the report's own transaction, or from their wakeup): the whole per-job database cycle. Jobs
 * per second are counted from the jobs that succeeded during each run (a batch may finish fewer calls than it asks
 * for when other connections hold them).
 */

interface DiagnosisVariant {
  label: string;
  /** Jobs finished per second at 1 connection with synchronous_commit=off: the server's work per job. */
  tpsCpu: number;
  /** Jobs finished per second at 8 connections with the server's own settings. */
  tps8: number;
}

interface WaitSample {
  variant: string;
  /** Share of sampled backends of this database in each wait state ("running" when none). */
  shares: { wait: string; share: number }[];
}

export interface DiagnosisResult {
  backlog: number;
  seconds: number;
  repeats: number;
  update8: number | undefined;
  variants: DiagnosisVariant[];
  /** Per-function time of one outcome reported alone: next call woken through pg_net, or claimed at once. */
  functions: Record<keyof typeof ALONE, { name: string; totalUs: number; selfUs: number }[]>;
  profile?: Profile;
  waits: WaitSample[];
  /** Buffers the claim query reads to find the next due job: after one 8-connection run, then after vacuum. */
  claimBuffers?: { afterCompletions: number; completions: number; afterVacuum: number };
}

const BACKLOG = 150_000;
const SECONDS = 5;
/** Workers of the diagnosis queue: enough calls in flight for 8 connections to take batches of 50 each. */
const WORKERS = 400;
/**
 * pg_net taking the oldest wakeup and the function claiming the calls it names, in one transaction: what a report
 * without continuations costs the database afterwards.
 */
const TAKE_WAKEUP_AND_CLAIM =
  "with w as (delete from net.http_request_queue where id in (select id from net.http_request_queue order by id " +
  "limit 1 for update skip locked) returning body) select supaqueue.claim_current_jobs(array(select " +
  "jsonb_array_elements_text(convert_from(w.body, 'UTF8')::jsonb -> 'ids')::bigint from w));\n";

/**
 * A report of up to `size` calls in flight (newest first), as the edge function's reporter sends them, and how its
 * next calls reach the function: taken in the same transaction (supaqueue.complete_and_claim, what the function
 * sends while its instance may go on), or woken through pg_net at commit (supaqueue.complete_current_jobs), then
 * claimed from the wakeup in a second transaction.
 */
function reportScript(size: number, continued: boolean): string {
  const outcomes =
    "coalesce((select jsonb_agg(jsonb_build_object('current_job_id', c.id, 'succeeded', true, 'status_code', 200)) " +
    `from (select id from supaqueue.current_job order by id desc limit ${size} for update skip locked) c), '[]')`;
  return continued
    ? `select supaqueue.complete_and_claim(${outcomes}, ${CLAIM_WITHIN_MS});\n`
    : `select supaqueue.complete_current_jobs(${outcomes});\n${TAKE_WAKEUP_AND_CLAIM}`;
}

/** How outcomes are reported: one per call, or in batches of up to a size; with or without continuations. */
interface Variant {
  label: string;
  script: string;
}

const VARIANTS: Variant[] = [
  {
    label: "one outcome per report, next call woken (complete_current_jobs)",
    script: reportScript(1, false),
  },
  { label: "batches of up to 10, next calls woken (complete_current_jobs)", script: reportScript(10, false) },
  { label: "batches of up to 50, next calls woken (complete_current_jobs)", script: reportScript(50, false) },
  { label: "one outcome per report, next call claimed (complete_and_claim)", script: reportScript(1, true) },
  { label: "batches of up to 50, next calls claimed (complete_and_claim)", script: reportScript(50, true) },
];

/** The two ways one outcome is reported alone, profiled function by function. */
const ALONE = { woken: reportScript(1, false), claimed: reportScript(1, true) };

async function sampleWaits(
  db: BenchDatabase,
  until: Promise<unknown>,
): Promise<{ wait: string; share: number }[]> {
  const counts = new Map<string, number>();
  let total = 0;
  let running = true;
  void until.finally(() => {
    running = false;
  });
  await withClient(db.adminUrl, async (c) => {
    while (running) {
      const { rows } = await c.query<{ wait: string | null }>(
        `select wait_event_type || ': ' || wait_event as wait from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid() and state = 'active'`,
      );
      for (const r of rows) {
        const key = r.wait ?? "running (no wait)";
        counts.set(key, (counts.get(key) ?? 0) + 1);
        total++;
      }
      await sleep(10);
    }
  });
  await until;
  return [...counts.entries()]
    .map(([wait, n]) => ({ wait, share: n / Math.max(total, 1) }))
    .sort((a, b) => b.share - a.share)
    .slice(0, 6);
}

async function claimBuffers(db: BenchDatabase): Promise<number> {
  return withClient(db.adminUrl, async (c) => {
    const { rows } = await c.query<{ "QUERY PLAN": unknown }>(
      `explain (analyze, buffers, format json)
       select j.id from supaqueue.job j
       where j.queue_id = (select id from supaqueue.queue where name = 'diag') and j.status = 'pending'
         and j.run_at <= now()
       order by j.run_at, j.seq limit 1 for update skip locked`,
    );
    const plan = (
      rows[0]?.["QUERY PLAN"] as { Plan: { "Shared Hit Blocks": number; "Shared Read Blocks": number } }[]
    )[0]?.Plan;
    return (plan?.["Shared Hit Blocks"] ?? 0) + (plan?.["Shared Read Blocks"] ?? 0);
  });
}

async function completionsSoFar(db: BenchDatabase): Promise<number> {
  return withClient(db.adminUrl, async (c) => {
    const { rows } = await c.query<{ n: number }>(
      "select count(*)::int as n from supaqueue.job where status = 'successful'",
    );
    return rows[0]?.n ?? 0;
  });
}

/** Before each run: the backlog topped up to BACKLOG pending jobs, the pg_net queue emptied, the hot tables vacuumed. */
async function fresh(db: BenchDatabase): Promise<void> {
  await withClient(db.adminUrl, async (c) => {
    await c.query(
      `insert into supaqueue.job (queue_id, payload)
       select q.id, jsonb_build_object('n', g) from supaqueue.queue q,
         generate_series(1, $1::int - (select count(*)::int from supaqueue.job where status = 'pending')) g`,
      [BACKLOG],
    );
    await c.query("truncate net.http_request_queue");
    await c.query("vacuum supaqueue.job, supaqueue.current_job, supaqueue.attempt, supaqueue.worker");
  });
}

export async function measureDiagnosis(
  bench: BenchServer,
  repeats: number,
  update8: number | undefined,
): Promise<DiagnosisResult> {
  return withInstalledDatabase(bench, async (db) => {
    await withClient(db.url, async (c) => {
      await c.query("insert into supaqueue.queue (name, url) values ('diag', 'https://target.example/hook')");
      await c.query(
        `insert into supaqueue.job (queue_id, payload)
         select q.id, jsonb_build_object('n', g) from supaqueue.queue q, generate_series(1, $1::int) g`,
        [BACKLOG],
      );
      await c.query("select supaqueue.set_workers('diag', $1)", [WORKERS]);
    });
    await withClient(db.adminUrl, (c) => c.query("vacuum analyze"));

    const result: DiagnosisResult = {
      backlog: BACKLOG,
      seconds: SECONDS,
      repeats,
      update8,
      variants: [],
      functions: { woken: [], claimed: [] },
      waits: [],
    };

    // Per-function time, as shipped (track_functions is a superuser setting, set for pgbench's sessions only).
    for (const [way, script] of Object.entries(ALONE) as [keyof typeof ALONE, string][]) {
      await fresh(db);
      await withClient(db.adminUrl, (c) => c.query("select pg_stat_reset()"));
      await pgbench(db.adminUrl, {
        script,
        clients: 1,
        seconds: SECONDS,
        settings: ["synchronous_commit=off", "track_functions=all"],
      });
      await sleep(700); // function statistics reach the cumulative view when the session ends
      result.functions[way] = await withClient(db.adminUrl, async (c) => {
        const { rows } = await c.query<{ name: string; total: number; self: number }>(
          `select schemaname || '.' || funcname as name, total_time / calls * 1000 as total,
                  self_time / calls * 1000 as self
           from pg_stat_user_functions where calls > 0 order by total_time desc`,
        );
        return rows.map((r) => ({ name: r.name, totalUs: Number(r.total), selfUs: Number(r.self) }));
      });
    }
    await fresh(db);
    result.profile = await profileStatements(db.adminUrl, ALONE.claimed, 200);

    let measured = 0;
    for (const variant of VARIANTS) {
      const cpu: number[] = [];
      const eight: number[] = [];
      for (let r = 0; r < repeats; r++) {
        await fresh(db);
        let before = await completionsSoFar(db);
        await pgbench(db.adminUrl, {
          script: variant.script,
          clients: 1,
          seconds: SECONDS,
          settings: ["synchronous_commit=off"],
        });
        cpu.push(((await completionsSoFar(db)) - before) / SECONDS);
        await fresh(db);
        before = await completionsSoFar(db);
        const run = pgbench(db.adminUrl, { script: variant.script, clients: 8, seconds: SECONDS });
        if (r === 0) result.waits.push({ variant: variant.label, shares: await sampleWaits(db, run) });
        await run;
        const completions = (await completionsSoFar(db)) - before;
        eight.push(completions / SECONDS);
        if (measured === 0 && r === repeats - 1) {
          // The runs so far claimed many jobs without a vacuum: what does finding the next due job cost now?
          const buffers = await claimBuffers(db);
          await withClient(db.adminUrl, (c) => c.query("vacuum supaqueue.job"));
          result.claimBuffers = {
            afterCompletions: buffers,
            completions,
            afterVacuum: await claimBuffers(db),
          };
        }
      }
      const row = { label: variant.label, tpsCpu: median(cpu), tps8: median(eight) };
      result.variants.push(row);
      log(
        `diagnosis "${variant.label}": ${row.tpsCpu.toFixed(0)} jobs/s cpu, ${row.tps8.toFixed(0)} jobs/s at 8`,
      );
      measured++;
    }
    return result;
  });
}
