import { beforeAll, describe, expect, test } from "vitest";
import { cli } from "./support/cli.ts";
import { emptyDatabase, installedDatabase, type TestDatabase } from "./support/db.ts";

/** The operations commands (enqueue, status, pause/resume/purge, cancel, retry, rotate-key, uninstall) on a database. */

describe("status, enqueue and uninstall against an installed database", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await installedDatabase();
    // No pg_net worker runs here: a dispatched job stays in flight, which is what uninstall must notice.
    await db.pool.query(`
      insert into supaqueue.queue (name, url, managed_by) values ('emails', 'http://127.0.0.1:9/emails', null);
      select supaqueue.set_workers('emails', 1);`);
  });

  test("enqueue adds a job, with --run-at and --dedup-key", async () => {
    const now = await cli(["enqueue", "emails", '{"to":"ada@example.com"}', "--db-url", db.url]);
    expect(now).toMatchObject({ code: 0, stderr: "" });
    const later = await cli([
      "enqueue",
      "emails",
      "--run-at",
      "1h",
      "--dedup-key",
      "digest",
      "--db-url",
      db.url,
    ]);
    const again = await cli(["enqueue", "emails", '{"x":1}', "--dedup-key", "digest"], {
      DATABASE_URL: db.url,
    });
    expect(later.code).toBe(0);
    expect(again.stdout).toBe(later.stdout);
    const { rows } = await db.pool.query(
      "select payload, run_at > now() + interval '50 minutes' as later from supaqueue.job order by seq",
    );
    expect(rows).toEqual([
      { payload: { to: "ada@example.com" }, later: false },
      { payload: {}, later: true },
    ]);

    const missing = await cli(["enqueue", "nope", "--db-url", db.url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('queue "nope" does not exist');
  });

  test("status shows counts per queue and the latest failures with their errors", async () => {
    const failedJob = await cli(["enqueue", "emails", '{"n":2}', "--db-url", db.url]);
    const jobId = failedJob.stdout.trim();
    // Fail the job in flight as the edge function would report it (the first job holds the only worker).
    await db.as(
      "service_role",
      `select public.supaqueue_complete_current_jobs(jsonb_agg(jsonb_build_object('current_job_id', c.id,
         'succeeded', false, 'status_code', 500, 'error', 'upstream exploded', 'duration_ms', 12, 'retryable', false)))
       from supaqueue.current_job c`,
    );
    const json = await cli(["status", "--json", "--db-url", db.url]);
    expect(json.code).toBe(0);
    const status = JSON.parse(json.stdout);
    expect(status.queues).toEqual([
      expect.objectContaining({
        queue: "emails",
        pending: 0,
        scheduled: 1,
        in_flight: 1,
        failed: 1,
        workers: 1,
        busy_workers: 1,
      }),
    ]);
    expect(status.failures).toEqual([
      expect.objectContaining({ queue: "emails", status_code: 500, error: "upstream exploded", attempts: 1 }),
    ]);
    expect(status.failures[0].job_id).not.toBe(jobId);

    const text = await cli(["status", "--db-url", db.url]);
    expect(text.stdout).toMatch(/^emails\s+0\s+1\s+1\s+0\s+1\s+1\/1\s+12\s+12\s+-$/m);
    expect(text.stdout).toContain("HTTP 500: upstream exploded");

    // One job and its chain: a job that waits for the one in flight.
    const { rows } = await db.pool.query("select id from supaqueue.job where status = 'in_progress'");
    const parent = rows[0].id as string;
    const waits = (
      await cli(["enqueue", "emails", "{}", "--after", parent, "--db-url", db.url])
    ).stdout.trim();
    const one = await cli(["status", parent, "--db-url", db.url]);
    expect(one.code).toBe(0);
    expect(one.stdout).toContain(`job ${parent}  emails  in_progress  after 1 attempt(s)`);
    expect(one.stdout).toContain(`  waited on by:           ${waits}`);
    expect(one.stdout).toMatch(/^ {2}in flight: attempt 1 since .+, lease until .+$/m);
    const waiting = JSON.parse((await cli(["status", waits, "--json", "--db-url", db.url])).stdout);
    expect(waiting).toMatchObject({ status: "waiting", waiting_for: 1, after: [parent], parent_id: null });
    expect((await cli(["status", "nope", "--db-url", db.url])).stderr).toContain('"nope" is not a job id');
    await db.pool.query("delete from supaqueue.job where id = $1", [waits]);
  });

  test("uninstall refuses while calls are in flight, and --force removes everything in one go", async () => {
    const refused = await cli(["uninstall", "--db-url", db.url]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/1 call\(s\) are in flight; nothing was changed/);
    const still = await db.pool.query("select count(*)::int as n from supaqueue.job");
    expect(still.rows[0].n).toBe(3);

    const forced = await cli(["uninstall", "--force", "--db-url", db.url]);
    expect(forced.stderr).toBe("");
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain("Supaqueue is uninstalled.");
    const { rows } = await db.pool.query(`
      select to_regnamespace('supaqueue') is null as schema_gone,
             not exists (select from pg_proc where pronamespace = 'public'::regnamespace
                         and proname like 'supaqueue%') as function_gone,
             (select count(*)::int from vault.secrets where name like 'supaqueue%') as secrets`);
    expect(rows[0]).toEqual({ schema_gone: true, function_gone: true, secrets: 0 });

    const again = await cli(["uninstall", "--db-url", db.url]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("already uninstalled");
    const status = await cli(["status", "--db-url", db.url]);
    expect(status.code).toBe(1);
    expect(status.stderr).toContain("Supaqueue is not installed in this database");
  });
});

describe("queue and job operations against an installed database", () => {
  let db: TestDatabase;
  const one = async (sql: string, params: unknown[] = []) => (await db.pool.query(sql, params)).rows[0];
  const status = async (id: string) =>
    (await one("select status from supaqueue.job where id = $1", [id])).status;
  const enqueue = async (payload: object) =>
    (await one("select supaqueue.enqueue('ops', $1::jsonb)::text as id", [JSON.stringify(payload)]))
      .id as string;
  beforeAll(async () => {
    db = await installedDatabase();
    // No workers: jobs stay pending, so what each command does is all that changes them.
    await db.pool.query("insert into supaqueue.queue (name, url) values ('ops', 'http://127.0.0.1:9/ops')");
  });

  test("pause and resume a queue; an unknown queue is exit 1 with the database's words", async () => {
    const paused = await cli(["pause", "ops", "--db-url", db.url]);
    expect(paused).toMatchObject({ code: 0, stderr: "" });
    expect(paused.stdout).toContain("Paused queue ops");
    expect((await one("select paused from supaqueue.queue where name = 'ops'")).paused).toBe(true);
    const resumed = await cli(["resume", "ops"], { DATABASE_URL: db.url });
    expect(resumed).toMatchObject({ code: 0, stderr: "" });
    expect((await one("select paused from supaqueue.queue where name = 'ops'")).paused).toBe(false);

    for (const command of ["pause", "resume", "purge"]) {
      const unknown = await cli([command, "nope", "--db-url", db.url]);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toBe('supaqueue: queue "nope" does not exist\n');
    }
  });

  test("cancel one job, or a queue's pending jobs matching a filter; purge cancels the rest", async () => {
    const [a, b, c, d] = [
      await enqueue({ n: 1 }),
      await enqueue({ n: 2, template: "welcome" }),
      await enqueue({ n: 3, template: "welcome" }),
      await enqueue({ n: 4 }),
    ];
    const cancelled = await cli(["cancel", a, "--db-url", db.url]);
    expect(cancelled).toMatchObject({ code: 0, stdout: `Cancelled job ${a}.\n` });
    expect(await status(a)).toBe("cancelled");
    const again = await cli(["cancel", a, "--db-url", db.url]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(
      /job .* of queue ops is cancelled; only pending or in_progress jobs can be cancelled/,
    );
    const missing = await cli(["cancel", "00000000-0000-4000-8000-000000000000", "--db-url", db.url]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/job 00000000-0000-4000-8000-000000000000 does not exist/);

    const filtered = await cli([
      "cancel",
      "--queue",
      "ops",
      "--filter",
      '{"template":"welcome"}',
      "--db-url",
      db.url,
    ]);
    expect(filtered.stdout).toBe(
      'Cancelled 2 pending jobs of queue ops whose payload contains {"template":"welcome"}.\n',
    );
    expect([await status(b), await status(c), await status(d)]).toEqual([
      "cancelled",
      "cancelled",
      "pending",
    ]);
    const unknown = await cli(["cancel", "--queue", "nope", "--db-url", db.url]);
    expect(unknown).toMatchObject({ code: 1, stderr: 'supaqueue: queue "nope" does not exist\n' });

    const purged = await cli(["purge", "ops", "--db-url", db.url]);
    expect(purged).toMatchObject({ code: 0, stdout: "Purged queue ops: cancelled 1 pending job.\n" });
    expect(await status(d)).toBe("cancelled");
  });

  test("retry one job, or the failed jobs of a queue since a time, with a fresh set of attempts", async () => {
    const [old, recent, other] = [await enqueue({ r: 1 }), await enqueue({ r: 2 }), await enqueue({ r: 3 })];
    await db.pool.query(
      `update supaqueue.job set status = 'failed', attempts = 3,
              finished_at = case when id = $1 then now() - interval '2 days' else now() end
       where id = any($2::uuid[])`,
      [old, [old, recent, other]],
    );
    const one1 = await cli(["retry", other, "--db-url", db.url]);
    expect(one1).toMatchObject({ code: 0, stderr: "" });
    expect(await one("select status, attempts from supaqueue.job where id = $1", [other])).toEqual({
      status: "pending",
      attempts: 0,
    });
    const notFailed = await cli(["retry", other, "--db-url", db.url]);
    expect(notFailed.code).toBe(1);
    expect(notFailed.stderr).toMatch(/is pending; only failed or cancelled jobs can be retried/);

    const since = await cli(["retry", "--queue", "ops", "--since", "1d", "--db-url", db.url]);
    expect(since).toMatchObject({ code: 0, stderr: "" });
    expect(since.stdout).toMatch(/^Retrying 1 failed job of queue ops \(failed since \d{4}-.*\)/);
    expect([await status(old), await status(recent)]).toEqual(["failed", "pending"]);
    const all = await cli(["retry", "--queue", "ops", "--db-url", db.url]);
    expect(all.stdout).toMatch(/^Retrying 1 failed job of queue ops, each/);
    expect(await status(old)).toBe("pending");
  });

  test("rotate-key prints only the new key on stdout, the one now in Vault; the old one overlaps unless --overlap 0", async () => {
    const first = await cli(["rotate-key", "ops", "--db-url", db.url]);
    expect(first.code).toBe(0);
    const key = first.stdout.trim();
    expect(first.stdout).toBe(`${key}\n`);
    expect(key.length).toBeGreaterThanOrEqual(16);
    const vault = async () =>
      (await one("select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue:signing:ops'"))
        .decrypted_secret;
    expect(await vault()).toBe(key);
    expect(first.stderr).toContain("No previous key is sent any more");

    const second = await cli(["rotate-key", "ops", "--overlap", "2h", "--db-url", db.url]);
    expect(second.code).toBe(0);
    expect(second.stdout.trim()).not.toBe(key);
    expect(await vault()).toBe(second.stdout.trim());
    expect(second.stderr).toMatch(/The previous key is still sent until \d{4}-/);
    const { rows } = await db.pool.query(
      "select previous_signing_key_until between now() + interval '119 minutes' and now() + interval '121 minutes' as ok from supaqueue.queue where name = 'ops'",
    );
    expect(rows[0].ok).toBe(true);

    const third = await cli(["rotate-key", "ops", "--overlap", "0", "--db-url", db.url]);
    expect(third.stderr).toContain("No previous key is sent any more");
    const unknown = await cli(["rotate-key", "nope", "--db-url", db.url]);
    expect(unknown).toMatchObject({
      code: 1,
      stdout: "",
      stderr: 'supaqueue: queue "nope" does not exist\n',
    });
  });

  test("an operation on a database without Supaqueue says to deploy first", async () => {
    const empty = await emptyDatabase();
    const run = await cli(["pause", "ops", "--db-url", empty.url]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/Supaqueue is not installed in this database .*run supaqueue deploy first/);
  });
});
