import { beforeAll, describe, expect, test } from "vitest";
import { createQueue } from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

let db: TestDatabase;
let jobId: string;
beforeAll(async () => {
  db = await installedDatabase();
  await createQueue(db.pool, "guarded", 0);
  jobId = (await db.pool.query("select supaqueue.enqueue('guarded') as id")).rows[0].id;
});

const TABLES = [
  "config",
  "queue",
  "job",
  "worker",
  "current_job",
  "attempt",
  "migration",
  "rate_bucket",
  "throttle",
  "job_key",
  "job_after",
  "schedule",
  "wakeup",
  "probe",
  "ticker",
  "alert_episode",
];

describe.each(["anon", "authenticated"])("%s gets nothing", (role) => {
  test.each(TABLES)("cannot read or write supaqueue.%s", async (table) => {
    await expect(db.as(role, `select * from supaqueue.${table}`)).rejects.toThrow(/permission denied/);
    await expect(db.as(role, `delete from supaqueue.${table}`)).rejects.toThrow(/permission denied/);
  });

  test("cannot read supaqueue.queue_stats", async () => {
    await expect(db.as(role, "select * from supaqueue.queue_stats")).rejects.toThrow(/permission denied/);
  });

  test("cannot execute any Supaqueue function, including the public entry points of execute_current_job", async () => {
    const { rows } = await db.pool.query(`
      select p.oid::regprocedure::text as fn from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'supaqueue' or (n.nspname = 'public' and p.proname like 'supaqueue%')`);
    expect(rows.length).toBeGreaterThan(10);
    for (const { fn } of rows) {
      const {
        rows: [r],
      } = await db.pool.query("select has_function_privilege($1, $2, 'execute') as can", [role, fn]);
      expect(r.can, `${role} can execute ${fn}`).toBe(false);
    }
    for (const call of [
      "public.supaqueue_claim_current_jobs(array[1]::bigint[], null)",
      "public.supaqueue_complete_and_claim('[]'::jsonb, 1000)",
      "public.supaqueue_complete_current_jobs('[]'::jsonb)",
      "public.supaqueue_complete_callback('x', 200)",
      "public.supaqueue_enqueue('guarded')",
      "public.supaqueue_enqueue_many('guarded', '[{}]')",
      `public.supaqueue_get_job('${jobId}')`,
      `public.supaqueue_cancel('${jobId}')`,
      `public.supaqueue_retry('${jobId}')`,
      "public.supaqueue_pause('guarded')",
      "public.supaqueue_resume('guarded')",
      "public.supaqueue_queue_stats()",
      "public.supaqueue_payload_schema('guarded')",
    ]) {
      await expect(db.as(role, `select ${call}`)).rejects.toThrow(/permission denied/);
    }
    await expect(db.as(role, "select supaqueue.enqueue('guarded')")).rejects.toThrow(/permission denied/);
  });
});

describe("service_role, what server code uses, has what it needs", () => {
  test("enqueue, read jobs and history, cancel, retry, complete", async () => {
    const { rows } = await db.as("service_role", "select supaqueue.enqueue('guarded', '{\"x\": 1}') as id");
    expect(rows[0].id).toMatch(/^[0-9a-f-]{36}$/);
    expect((await db.as("service_role", "select count(*)::int as n from supaqueue.job")).rows[0].n).toBe(2);
    expect((await db.as("service_role", "select supaqueue.cancel($1) as ok", [jobId])).rows[0].ok).toBe(true);
    expect((await db.as("service_role", "select supaqueue.retry($1) as ok", [jobId])).rows[0].ok).toBe(true);
    const nothing = await db.as(
      "service_role",
      `select public.supaqueue_complete_current_jobs('[{"current_job_id": -1, "succeeded": true}]') as finished,
              public.supaqueue_claim_current_jobs(array[-1]::bigint[]) as claimed`,
    );
    expect(nothing.rows[0]).toEqual({ finished: [], claimed: [] });
    await db.as("service_role", "select count(*) from supaqueue.attempt");
    const { rows: stats } = await db.as(
      "service_role",
      "select queue, pending, in_flight from supaqueue.queue_stats",
    );
    expect(stats).toEqual([{ queue: "guarded", pending: "2", in_flight: "0" }]);
  });

  test("cannot change install settings", async () => {
    await expect(
      db.as("service_role", "update supaqueue.config set functions_url = 'https://evil.example'"),
    ).rejects.toThrow(/permission denied/);
  });
});

describe("what Supabase's database linter checks", () => {
  // The Performance Advisor's unindexed_foreign_keys check, with the deliberate exceptions: job.queue_id and
  // worker.queue_id are covered by the partial dispatch indexes, and a full index would be written on every claim;
  // job_key.queue_id leads job_key's primary key (queue_id, key), and job_after.parent_id leads job_after's
  // (parent_id, job_id): each serves the cascade.
  test("every other foreign key has an index on exactly its columns (unindexed_foreign_keys)", async () => {
    const { rows } = await db.pool.query(`
      select ct.conrelid::regclass::text as tbl, ct.conname
      from pg_constraint ct join pg_class c on c.oid = ct.conrelid join pg_namespace n on n.oid = c.relnamespace
      where ct.contype = 'f' and n.nspname = 'supaqueue'
        and not exists (select from pg_index i where i.indrelid = ct.conrelid and i.indisvalid
                        and string_to_array(i.indkey::text, ' ')::smallint[] = ct.conkey)`);
    expect(rows.map((r) => `${r.tbl}.${r.conname}`).sort()).toEqual([
      "supaqueue.job.job_queue_id_fkey",
      "supaqueue.job_after.job_after_parent_id_fkey",
      "supaqueue.job_key.job_key_queue_id_fkey",
      "supaqueue.worker.worker_queue_id_fkey",
    ]);
  });

  test("every table has RLS and a policy, none of which opens it to anon or authenticated", async () => {
    const { rows } = await db.pool.query(`
      select c.relname,
             exists (select from pg_policy p where p.polrelid = c.oid) as has_policy,
             exists (select from pg_policy p where p.polrelid = c.oid
                     and (0::oid = any (p.polroles) or 'anon'::regrole = any (p.polroles)
                          or 'authenticated'::regrole = any (p.polroles))) as open_to_api
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'supaqueue' and c.relkind = 'r'`);
    expect(rows.filter((r) => !r.has_policy || r.open_to_api)).toEqual([]);
  });

  test("RLS is enabled on every table", async () => {
    const { rows } = await db.pool.query(`
      select c.relname, c.relrowsecurity from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'supaqueue' and c.relkind = 'r'`);
    expect(rows.map((r) => r.relname).sort()).toEqual([...TABLES].sort());
    expect(rows.every((r) => r.relrowsecurity)).toBe(true);
  });

  test("every function pins search_path; SECURITY DEFINER ones are not executable by PUBLIC", async () => {
    const { rows } = await db.pool.query(`
      select p.oid::regprocedure::text as fn, p.prosecdef, p.proconfig,
             has_function_privilege('public', p.oid, 'execute') as public_can
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'supaqueue' or (n.nspname = 'public' and p.proname like 'supaqueue%')`);
    for (const r of rows) {
      expect(r.proconfig ?? [], `${r.fn} pins search_path`).toContain('search_path=""');
      expect(r.public_can, `${r.fn} is not executable by PUBLIC`).toBe(false);
    }
  });

  test("each function's ACL, read from pg_proc: only its owner, and service_role for exactly what it needs", async () => {
    // Revoked one function at a time: `alter default privileges in schema ... revoke ... from public` cannot take
    // back PUBLIC's default EXECUTE, so it would have left every function open.
    const { rows } = await db.pool.query(`
      select case when n.nspname = 'public' then 'public.' else '' end || p.oid::regprocedure::text as fn, p.prosecdef,
             coalesce((select array_agg(case when a.grantee = 0 then 'PUBLIC' else a.grantee::regrole::text end
                                        order by 1)
                       from aclexplode(p.proacl) a where a.grantee <> p.proowner), '{}') as grantees
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'supaqueue' or (n.nspname = 'public' and p.proname like 'supaqueue%')
      order by 1`);
    const forServiceRole = rows.filter((r) => r.grantees.length > 0).map((r) => r.fn);
    for (const r of rows)
      expect(
        r.grantees.filter((g: string) => g !== "service_role"),
        r.fn,
      ).toEqual([]);
    expect(forServiceRole).toEqual(
      [
        "public.supaqueue_claim_current_jobs(bigint[],uuid)",
        "public.supaqueue_complete_and_claim(jsonb,integer)",
        "public.supaqueue_complete_current_jobs(jsonb)",
        "public.supaqueue_complete_callback(text,integer,text,text)",
        "public.supaqueue_enqueue(text,jsonb,timestamp with time zone,numeric,text,jsonb,text,uuid[])",
        "public.supaqueue_enqueue_many(text,jsonb)",
        "public.supaqueue_get_job(uuid)",
        "public.supaqueue_cancel(uuid)",
        "public.supaqueue_retry(uuid)",
        "public.supaqueue_pause(text)",
        "public.supaqueue_resume(text)",
        "public.supaqueue_queue_stats(text)",
        "public.supaqueue_payload_schema(text)",
        "supaqueue.backoff_delay(integer,integer,integer)",
        "supaqueue.cancel(uuid)",
        "supaqueue.cancel_jobs(text,jsonb)",
        "supaqueue.claim_current_jobs(bigint[],uuid)",
        "supaqueue.complete_and_claim(jsonb,integer)",
        "supaqueue.complete_callback(text,integer,text,text)",
        "supaqueue.complete_current_jobs(jsonb)",
        "supaqueue.enqueue(text,jsonb,timestamp with time zone,text,jsonb,text,uuid[])",
        "supaqueue.enqueue_many(text,jsonb)",
        "supaqueue.get_job(uuid)",
        "supaqueue.payload_schema(text)",
        "supaqueue.pause(text)",
        "supaqueue.probe()",
        "supaqueue.purge(text)",
        "supaqueue.remove_queue(text)",
        "supaqueue.resume(text)",
        "supaqueue.release_key(text,text)",
        "supaqueue.retry(uuid)",
        "supaqueue.retry_failed(text,timestamp with time zone)",
        "supaqueue.rotate_signing_key(text,text,interval)",
        "supaqueue.schedule(text,text,text,jsonb,text)",
        "supaqueue.set_workers(text,integer)",
        "supaqueue._leads_back(text,text,boolean)",
        "supaqueue._throttled_rate(supaqueue.throttle,timestamp with time zone)",
        "supaqueue.tick(timestamp with time zone)",
        "supaqueue.unschedule(text)",
      ].sort(),
    );
    // The entry points in public run with the caller's rights: they open nothing by themselves.
    expect(rows.filter((r) => r.fn.startsWith("public.") && r.prosecdef)).toEqual([]);
  });

  test("no view in supaqueue is SECURITY DEFINER-like (owner-rights) and readable by API roles", async () => {
    const { rows } = await db.pool.query(`
      select c.relname, c.reloptions from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'supaqueue' and c.relkind = 'v'
        and (has_table_privilege('anon', c.oid, 'select') or has_table_privilege('authenticated', c.oid, 'select'))`);
    expect(rows).toEqual([]);
  });
});
