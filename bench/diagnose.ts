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
 * Section 7, diagnosis: where one completion's time goes, and what prototype changes would save. Everything is
 * measured with pgbench calling complete_current_job directly (no Node client in the way) on a queue of 8 workers
 * with a large backlog, so every completion also claims the next job: the whole per-job database cycle.
 *
 * Variants are `create or replace` / `alter` in the bench's own database only; sql/ is never touched. A variant
 * whose patch no longer matches the shipped function (the schema moved on) is skipped and says so.
 */

export interface DiagnosisVariant {
  label: string;
  /** Transactions per second at 1 connection with synchronous_commit=off: the server's work per completion. */
  tpsCpu: number;
  /** Transactions per second at 8 connections with the server's own settings. */
  tps8: number;
}

export interface WaitSample {
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
  skipped: string[];
  functions: { name: string; totalUs: number; selfUs: number }[];
  profile?: Profile;
  waits: WaitSample[];
  /** Buffers the claim query reads to find the next due job: after one 8-connection run, then after vacuum. */
  claimBuffers?: { afterCompletions: number; completions: number; afterVacuum: number };
}

const BACKLOG = 150_000;
const SECONDS = 5;
const COMPLETE =
  "select supaqueue.complete_current_job((select id from supaqueue.current_job order by id desc limit 1 " +
  "for update skip locked), true, 200);\n";

/** A variant: a label and the SQL that turns the previous variant into this one (null: cannot apply). */
interface Patch {
  label: string;
  apply(db: BenchDatabase): Promise<string | null>;
}

async function functionDef(db: BenchDatabase, signature: string): Promise<string> {
  return withClient(db.adminUrl, async (c) => {
    const { rows } = await c.query<{ def: string }>("select pg_get_functiondef($1::regprocedure) as def", [
      signature,
    ]);
    return rows[0]?.def ?? "";
  });
}

export const PATCHES: Patch[] = [
  { label: "as shipped", apply: async () => "" },
  {
    // The stand-in's costs that real pg_net does not have: NOTIFY at commit (a database-wide lock taken in turn
    // by every committing notifier) and a SQL helper that URL-encodes empty params. pg_net's net.wake() sets a
    // latch, and its URL encoding is C.
    label: "pg_net stand-in made like pg_net (no NOTIFY, no SQL URL helper)",
    apply: async (db) => {
      const def = await functionDef(db, "net.http_post(text, jsonb, jsonb, jsonb, integer)");
      // Since 88ad289 the stand-in is already like this: nothing to change.
      if (def.includes("params = '{}'::jsonb then url")) return null;
      const fast = def.replace(
        /net\._url_with_params\(url, params\)/,
        "case when params is null or params = '{}'::jsonb then url else net._url_with_params(url, params) end",
      );
      if (fast === def) return null;
      return `create or replace function net._wake() returns void language sql as $$ select $$;\n${fast};`;
    },
  },
  {
    // The call is built by an AFTER INSERT statement trigger with a transition table on current_job. _dispatch is
    // the only writer of current_job rows, so it can send the calls itself: one function call on the rows it just
    // inserted (passed as an array, never read back), no trigger invocation and no transition tuplestore.
    label: "+ _dispatch sends the calls itself (no statement trigger on current_job)",
    apply: async (db) => {
      const trigger = await functionDef(db, "supaqueue._on_current_jobs_inserted()");
      const sender = trigger
        .replace(
          /supaqueue\._on_current_jobs_inserted\(\)\s*RETURNS trigger/,
          "supaqueue._send_calls(started supaqueue.current_job[])\n RETURNS void",
        )
        .replace("from new_current_jobs n", "from unnest(started) n")
        .replace(
          /join supaqueue\.queue q on q\.id = j\.queue_id;\s*return null;/,
          "join supaqueue.queue q on q.id = j.queue_id;\n  return;",
        );
      const dispatchSig = (
        await withClient(db.adminUrl, (c) =>
          c.query<{ sig: string }>("select 'supaqueue._dispatch'::regproc::regprocedure::text as sig"),
        )
      ).rows[0]?.sig;
      const dispatch = dispatchSig ? await functionDef(db, dispatchSig) : "";
      const sending = dispatch
        .replace(/\n(\s*)lease interval;/, "\n$1lease interval;\n$1started_rows supaqueue.current_job[];")
        .replace(
          /\)\s*\n(\s*)insert into supaqueue\.current_job \(worker_id, job_id, attempt, started_at, lease_until\)/,
          "),\n$1started as (\n$1insert into supaqueue.current_job (worker_id, job_id, attempt, started_at, lease_until)",
        )
        .replace(
          /join claimed c on c\.id = p\.job_id;/,
          "join claimed c on c.id = p.job_id\n  returning *)\n  select array_agg(s) into started_rows from started s;\n" +
            "  perform supaqueue._send_calls(started_rows);",
        );
      const changed =
        sender.includes("_send_calls(started supaqueue.current_job[])") &&
        sender.includes("unnest(started) n");
      if (
        !changed ||
        !sending.includes("started_rows supaqueue.current_job[]") ||
        !sending.includes("_send_calls(started_rows)")
      ) {
        return null;
      }
      return `${sender};\n${sending};\ndrop trigger current_job_inserted_calls on supaqueue.current_job;`;
    },
  },
  {
    // Priced, not proposed as is: the three foreign keys checked per completion (attempt → job,
    // current_job → worker, current_job → job).
    label: "+ without the foreign keys of attempt and current_job (pricing only)",
    apply: async () => `
      do $$
      declare r record;
      begin
        for r in select conrelid::regclass as t, conname from pg_constraint
                 where contype = 'f' and conrelid in ('supaqueue.attempt'::regclass, 'supaqueue.current_job'::regclass)
        loop
          execute format('alter table %s drop constraint %I', r.t, r.conname);
        end loop;
      end $$;`,
  },
  {
    label: "+ no attempt row for a successful attempt (the job keeps its last status)",
    apply: async (db) => {
      const sig = (
        await withClient(db.adminUrl, (c) =>
          c.query<{ sig: string }>(
            "select p.oid::regprocedure::text as sig from pg_proc p where p.oid = 'supaqueue._finish_attempt'::regproc",
          ),
        )
      ).rows[0]?.sig;
      if (!sig) return null;
      const def = await functionDef(db, sig);
      const patched = def.replace(
        /(\n\s*)(insert into supaqueue\.attempt[\s\S]*?;)/,
        "$1if not succeeded then $2 end if;",
      );
      return patched === def ? null : `${patched};`;
    },
  },
];

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

async function fresh(db: BenchDatabase): Promise<void> {
  await withClient(db.adminUrl, async (c) => {
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
      await c.query("select supaqueue.set_workers('diag', 8)");
    });
    await withClient(db.adminUrl, (c) => c.query("vacuum analyze"));

    const result: DiagnosisResult = {
      backlog: BACKLOG,
      seconds: SECONDS,
      repeats,
      update8,
      variants: [],
      skipped: [],
      functions: [],
      waits: [],
    };

    // Per-function time, as shipped (track_functions is a superuser setting, set for pgbench's sessions only).
    await withClient(db.adminUrl, (c) => c.query("select pg_stat_reset()"));
    await pgbench(db.adminUrl, {
      script: COMPLETE,
      clients: 1,
      seconds: SECONDS,
      settings: ["synchronous_commit=off", "track_functions=all"],
    });
    await sleep(700); // function statistics reach the cumulative view when the session ends
    result.functions = await withClient(db.adminUrl, async (c) => {
      const { rows } = await c.query<{ name: string; total: number; self: number }>(
        `select schemaname || '.' || funcname as name, total_time / calls * 1000 as total, self_time / calls * 1000 as self
         from pg_stat_user_functions where calls > 0 order by total_time desc`,
      );
      return rows.map((r) => ({ name: r.name, totalUs: Number(r.total), selfUs: Number(r.self) }));
    });
    result.profile = await profileStatements(db.adminUrl, COMPLETE, 200);

    let applied = 0;
    for (const patch of PATCHES) {
      const sql = await patch.apply(db);
      if (sql === null) {
        result.skipped.push(patch.label);
        log(
          `diagnosis: skipped "${patch.label}" (already so in the shipped code, or the patch no longer matches it)`,
        );
        continue;
      }
      if (sql) await withClient(db.adminUrl, (c) => c.query(sql));
      const cpu: number[] = [];
      const eight: number[] = [];
      for (let r = 0; r < repeats; r++) {
        await fresh(db);
        cpu.push(
          await pgbench(db.adminUrl, {
            script: COMPLETE,
            clients: 1,
            seconds: SECONDS,
            settings: ["synchronous_commit=off"],
          }),
        );
        await fresh(db);
        const completedBefore = await completionsSoFar(db);
        const run = pgbench(db.adminUrl, { script: COMPLETE, clients: 8, seconds: SECONDS });
        if (r === 0 && applied < 3) {
          result.waits.push({ variant: patch.label, shares: await sampleWaits(db, run) });
        }
        eight.push(await run);
        if (applied === 0 && r === repeats - 1) {
          // The runs so far claimed many jobs without a vacuum: what does finding the next due job cost now?
          const completions = (await completionsSoFar(db)) - completedBefore;
          const before = await claimBuffers(db);
          await withClient(db.adminUrl, (c) => c.query("vacuum supaqueue.job"));
          result.claimBuffers = {
            afterCompletions: before,
            completions,
            afterVacuum: await claimBuffers(db),
          };
        }
      }
      const variant = { label: patch.label, tpsCpu: median(cpu), tps8: median(eight) };
      result.variants.push(variant);
      log(
        `diagnosis "${patch.label}": ${variant.tpsCpu.toFixed(0)} tps cpu, ${variant.tps8.toFixed(0)} tps at 8`,
      );
      applied++;
    }
    return result;
  });
}
