import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { startEmbeddedPostgres } from "../src/local/embedded.ts";
import { projectRoot } from "../src/paths.ts";
import { withClient } from "../src/standins/supabase.ts";
import { emptyDatabase, installedDatabase, type TestDatabase } from "./support/db.ts";
import { FakeManagementApi } from "./support/management-api.ts";

/** The CLI is run the way users run it: `node bin/supaqueue.js ...` (what npx supaqueue runs) and `npm start`. */
const ROOT = projectRoot();
const BIN = join(ROOT, "bin", "supaqueue.js");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

// A clean environment: no DATABASE_URL or token from the machine leaks into what a test means to leave out.
function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of [
    "DATABASE_URL",
    "SUPABASE_DB_URL",
    "SUPABASE_ACCESS_TOKEN",
    "SUPABASE_PROJECT_REF",
    "SUPAQUEUE_SECRET",
  ]) {
    delete env[name];
  }
  return { ...env, NO_COLOR: "1", ...extra };
}

function cli(args: string[], extraEnv: Record<string, string> = {}, timeout = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      "node",
      [BIN, ...args],
      { cwd: ROOT, env: cliEnv(extraEnv), timeout },
      (error, stdout, stderr) => {
        const code = error ? ((error as { code?: number }).code ?? 1) : 0;
        resolve({ code: typeof code === "number" ? code : 1, stdout, stderr });
      },
    );
  });
}

async function databaseExists(name: string): Promise<boolean> {
  return withClient(inject("adminUrl"), async (admin) => {
    const { rowCount } = await admin.query("select 1 from pg_database where datname = $1", [name]);
    return rowCount === 1;
  });
}

const tmp = mkdtempSync(join(tmpdir(), "supaqueue-cli-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("npm start (dev --demo)", () => {
  test("runs the demo on the given server, reports every demo job finished, exits 0 and drops its database", async () => {
    const started = Date.now();
    const run = await new Promise<Run>((resolve) => {
      execFile(
        "npm",
        ["start", "--silent"],
        { cwd: ROOT, env: cliEnv({ DATABASE_URL: inject("adminUrl") }), timeout: 110_000 },
        (error, stdout, stderr) =>
          resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const finished = /All (\d+) demo jobs finished in [\d.]+ s: (\d+) successful, (\d+) failed/.exec(
      run.stdout,
    );
    expect(finished, run.stdout).not.toBeNull();
    const [, total, successful, failed] = finished?.map(Number) ?? [];
    expect(total).toBe(390);
    expect((successful ?? 0) + (failed ?? 0)).toBe(total);
    // The three 422 jobs always fail; a 503 on all four attempts is rare.
    expect(failed).toBeGreaterThanOrEqual(3);
    expect(failed).toBeLessThan(10);
    // The final table: one row per queue and a total, with retries on the flaky and the slow queue.
    const table = (name: string) =>
      new RegExp(`^${name}\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)\\s+(\\d+)`, "m").exec(run.stdout);
    expect(table("fast")?.slice(1, 5)).toEqual(["200", "200", "0", "0"]);
    expect(Number(table("flaky")?.[3])).toBeGreaterThan(3);
    expect(Number(table("slow")?.[3])).toBeGreaterThanOrEqual(4);
    expect(table("total")?.[1]).toBe("390");
    expect(run.stdout).toMatch(/^\[\s*\d+s\] \d+\/390 done/m);

    const database = /Created database (supaqueue_dev_[0-9a-f]+)/.exec(run.stdout)?.[1];
    expect(database).toBeDefined();
    expect(run.stdout).toContain(`Removed database ${database}.`);
    expect(await databaseExists(database as string)).toBe(false);
    // About 15 s on an idle machine; the bound leaves room for a loaded CI runner.
    expect(Date.now() - started).toBeLessThan(90_000);
  }, 120_000);
});

describe("dev with a queue file", () => {
  test("serves the real handler, calls the queue's target, and on Ctrl-C stops and drops its database", async () => {
    const received: { path: string; body: string; jobId: string | undefined }[] = [];
    const target = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => {
        body += chunk;
      });
      req.on("end", () => {
        received.push({
          path: req.url ?? "",
          body,
          jobId: req.headers["supaqueue-job-id"] as string | undefined,
        });
        res.writeHead(200, { "Content-Type": "application/json" }).end('{"ok":true}');
      });
    });
    await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
    const port = (target.address() as AddressInfo).port;
    const config = join(tmp, "dev.yml");
    writeFileSync(
      config,
      `queues:\n  hooks:\n    url: http://127.0.0.1:${port}/hook\n    workers: 2\nschedules:\n  nightly: {cron: "0 3 * * *", queue: hooks}\n`,
    );

    const child: ChildProcess = spawn("node", [BIN, "dev", "--config", config], {
      cwd: ROOT,
      env: cliEnv({ DATABASE_URL: inject("adminUrl") }),
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr?.on("data", (chunk) => {
      stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      await waitFor(
        () => stdout.includes("Ctrl-C stops everything"),
        30_000,
        () => stdout + stderr,
      );
      const dbUrl = /^ {2}database {3}(\S+)/m.exec(stdout)?.[1] as string;
      const database = new URL(dbUrl).pathname.slice(1);
      expect(stdout).toMatch(/queues\s+hooks \(2 workers\)/);
      // No pg_cron locally: the file's schedules are left for the deployed project, and dev says so.
      expect(stdout).toContain("Schedules (nightly) are not run locally");

      const enqueued = await cli(["enqueue", "hooks", '{"order": 7}', "--db-url", dbUrl]);
      expect(enqueued.stderr).toBe("");
      const jobId = enqueued.stdout.trim();
      expect(jobId).toMatch(/^[0-9a-f-]{36}$/);
      await waitFor(
        () => received.length === 1,
        15_000,
        () => stdout + stderr,
      );
      expect(received[0]).toEqual({ path: "/hook", body: '{"order":7}', jobId });

      await waitFor(
        () => stdout.includes(`→ 200`),
        10_000,
        () => stdout,
      );
      const status = await cli(["status", "--json", "--db-url", dbUrl]);
      expect(JSON.parse(status.stdout).queues[0]).toMatchObject({
        queue: "hooks",
        successful: 1,
        workers: 2,
      });

      child.kill("SIGINT");
      expect(await exited).toBe(0);
      expect(stdout).toContain(`Removed database ${database}.`);
      expect(await databaseExists(database)).toBe(false);
    } finally {
      child.kill("SIGKILL");
      target.close();
    }
  }, 120_000);
});

describe("status, enqueue, plan and uninstall against an installed database", () => {
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
    expect(text.stdout).toMatch(/^emails\s+0\s+1\s+1\s+0\s+1\s+1\/1\s+12\s+12$/m);
    expect(text.stdout).toContain("HTTP 500: upstream exploded");
  });

  test("plan reads the database and prints what deploy would do, needing no access token", async () => {
    const config = join(tmp, "plan.yml");
    writeFileSync(config, "queues:\n  thumbnails:\n    function: make-thumbnail\n    workers: 3\n");
    const run = await cli([
      "plan",
      "--config",
      config,
      "--project-ref",
      "abcdefghijklmnopqrst",
      "--db-url",
      db.url,
      "--tick",
      "external",
    ]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("create queue thumbnails (POST function make-thumbnail, 3 workers)");
    expect(run.stdout).toContain("Dry run: nothing was changed.");
    expect(run.stdout).not.toContain(db.url);
    const { rowCount } = await db.pool.query("select 1 from supaqueue.queue where name = 'thumbnails'");
    expect(rowCount).toBe(0);
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

  test("plan with schedules on a database without pg_cron fails before any change, naming the schedule", async () => {
    const config = join(tmp, "schedules.yml");
    writeFileSync(
      config,
      'queues:\n  reports:\n    function: report\n    rate_limit: 1/h\n    signed: true\nschedules:\n  nightly:\n    cron: "0 3 * * *"\n    queue: reports\n',
    );
    const run = await cli([
      "plan",
      "--config",
      config,
      "--project-ref",
      "abcdefghijklmnopqrst",
      "--db-url",
      db.url,
      "--tick",
      "external",
    ]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(
      `${config}:7:3: schedules.nightly: recurring calls need the pg_cron extension, which is not installed in this database`,
    );
  });

  test("an operation on a database without Supaqueue says to deploy first", async () => {
    const empty = await emptyDatabase();
    const run = await cli(["pause", "ops", "--db-url", empty.url]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/Supaqueue is not installed in this database .*run supaqueue deploy first/);
  });
});

describe("deploy from a laptop", () => {
  const FUNCTIONS_URL = "http://127.0.0.1:9/functions/v1";
  test("installs Supaqueue, sets the function secret, deploys the function and creates the queues; a rerun plans no change", async () => {
    const projectRef = "abcdefghijklmnopqrst";
    const token = `sbp_${"0123456789abcdef".repeat(3).slice(0, 40)}`;
    const api = await new FakeManagementApi(projectRef, token).start();
    const db = await emptyDatabase();
    const home = mkdtempSync(join(tmp, "home-"));
    const profile = join(home, "profile.yaml");
    writeFileSync(profile, api.profileYaml());
    const config = join(tmp, "deploy.yml");
    writeFileSync(
      config,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: supaqueue.yml's own ${VAR} syntax
      "queues:\n  webhooks:\n    url: https://example.com/hook\n    headers:\n      X-Key: ${HOOK_KEY}\n    workers: 2\n",
    );
    // The real Supabase CLI from node_modules, pointed at the fake Management API.
    const env = {
      PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH ?? ""}`,
      HOME: home,
      SUPABASE_PROFILE: profile,
      SUPABASE_NO_KEYRING: "true",
      SUPABASE_TELEMETRY_DISABLED: "1",
      SUPABASE_ACCESS_TOKEN: token,
      HOOK_KEY: "hook-key-value-1234",
    };
    try {
      const run = await cli(
        [
          "deploy",
          "--config",
          config,
          "--project-ref",
          projectRef,
          "--db-url",
          db.url,
          "--functions-url",
          "http://127.0.0.1:9/functions/v1",
          "--tick",
          "external",
          "--skip-probe",
        ],
        env,
        120_000,
      );
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).toContain("created queue webhooks (POST https://example.com/hook, 2 workers)");
      for (const secret of [token, "hook-key-value-1234", db.url]) expect(run.stdout).not.toContain(secret);
      expect([...api.functions.keys()]).toEqual(["execute_current_job"]);
      const vault = await db.pool.query(
        "select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue_secret'",
      );
      expect(api.secrets.get("SUPAQUEUE_SECRET")).toBe(vault.rows[0].decrypted_secret);
      const queue = await db.pool.query("select name, url, managed_by from supaqueue.queue");
      expect(queue.rows).toEqual([
        { name: "webhooks", url: "https://example.com/hook", managed_by: "supaqueue.yml" },
      ]);

      const plan = await cli(
        [
          "plan",
          "--config",
          config,
          "--project-ref",
          projectRef,
          "--db-url",
          db.url,
          "--functions-url",
          FUNCTIONS_URL,
          "--tick",
          "external",
        ],
        env,
      );
      expect(plan.code).toBe(0);
      expect(plan.stdout).toContain("queues: no changes (1 queue up to date)");
      expect(plan.stdout).toContain("Dry run: nothing was changed.");
    } finally {
      await api.stop();
    }
  }, 150_000);
});

describe("uninstall with a project", () => {
  test("also unsets SUPAQUEUE_SECRET and deletes execute_current_job through the Supabase CLI", async () => {
    const projectRef = "abcdefghijklmnopqrst";
    const token = `sbp_${"fedcba9876543210".repeat(3).slice(0, 40)}`;
    // What the CLI sends for `secrets unset` and `functions delete`, recorded by a minimal Management API.
    const seen: string[] = [];
    const api = createServer((req, res) => {
      let body = "";
      req.on("data", (chunk) => {
        body += chunk;
      });
      req.on("end", () => {
        const authorized = req.headers.authorization === `Bearer ${token}`;
        seen.push(`${authorized ? "" : "UNAUTHORIZED "}${req.method} ${req.url} ${body}`.trim());
        res.writeHead(authorized ? 200 : 401, { "Content-Type": "application/json" });
        res.end(req.method === "GET" ? JSON.stringify({ id: projectRef, ref: projectRef }) : "{}");
      });
    });
    await new Promise<void>((resolve) => api.listen(0, "127.0.0.1", resolve));
    const apiUrl = `http://127.0.0.1:${(api.address() as AddressInfo).port}`;
    const home = mkdtempSync(join(tmp, "home-"));
    writeFileSync(
      join(home, "profile.yaml"),
      `name: t\napi_url: ${apiUrl}\ndashboard_url: ${apiUrl}\nproject_host: supabase.co\n`,
    );
    const db = await installedDatabase();
    try {
      const run = await cli(
        ["uninstall", "--db-url", db.url, "--project-ref", projectRef],
        {
          PATH: `${join(ROOT, "node_modules", ".bin")}:${process.env.PATH ?? ""}`,
          HOME: home,
          SUPABASE_PROFILE: join(home, "profile.yaml"),
          SUPABASE_NO_KEYRING: "true",
          SUPABASE_TELEMETRY_DISABLED: "1",
          SUPABASE_ACCESS_TOKEN: token,
        },
        120_000,
      );
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.stdout).not.toContain(token);
      expect(seen).toEqual(
        expect.arrayContaining([
          `DELETE /v1/projects/${projectRef}/secrets ["SUPAQUEUE_SECRET","SUPAQUEUE_FUNCTIONS_URL"]`,
          `DELETE /v1/projects/${projectRef}/functions/execute_current_job`,
        ]),
      );
      expect(seen.filter((line) => line.startsWith("UNAUTHORIZED"))).toEqual([]);
      const { rows } = await db.pool.query("select to_regnamespace('supaqueue') is null as gone");
      expect(rows[0].gone).toBe(true);
    } finally {
      api.close();
    }
  }, 150_000);
});

describe.concurrent("bad command lines exit 2 and name the flag", () => {
  test.each([
    [["status", "--bogus"], /unknown flag --bogus/],
    [["status"], /no database given: pass --db-url/],
    [["enqueue"], /missing the queue name/],
    [["enqueue", "q", "{not json", "--db-url", "postgres://x@127.0.0.1/x"], /the payload is not valid JSON/],
    [
      ["enqueue", "q", "--run-at", "someday", "--db-url", "postgres://x@127.0.0.1/x"],
      /--run-at must be an ISO timestamp/,
    ],
    [
      ["status", "--failures", "many", "--db-url", "postgres://x@127.0.0.1/x"],
      /--failures must be a whole number/,
    ],
    [["dev", "--port", "http"], /--port must be a port number/],
    [["dev", "--demo", "--config", "x.yml"], /--demo runs its own queues: leave out --config/],
    [
      ["deploy", "--project-ref", "abcdefghijklmnopqrst", "--db-url", "postgres://x@127.0.0.1/x"],
      /--access-token \(or \$SUPABASE_ACCESS_TOKEN\) is required/,
    ],
    [
      ["plan", "--db-url", "postgres://x@127.0.0.1/x"],
      /--project-ref \(or \$SUPABASE_PROJECT_REF\) is required/,
    ],
    [["deploy", "--db-url"], /flag --db-url needs a value/],
    [["launch"], /unknown command "launch"/],
    [["pause"], /missing the queue name \(usage: supaqueue pause <queue>\)/],
    [["cancel"], /give a job id or --queue, not neither/],
    [["cancel", "42", "--db-url", "postgres://x@127.0.0.1/x"], /"42" is not a job id/],
    [
      ["cancel", "--queue", "q", "--filter", "[1]", "--db-url", "postgres://x@127.0.0.1/x"],
      /--filter must be a JSON object/,
    ],
    [
      ["retry", "--queue", "q", "--since", "last week", "--db-url", "postgres://x@127.0.0.1/x"],
      /--since must be an ISO timestamp .* \(that long ago\)/,
    ],
    [
      [
        "retry",
        "00000000-0000-4000-8000-000000000000",
        "--since",
        "1d",
        "--db-url",
        "postgres://x@127.0.0.1/x",
      ],
      /--since goes with --queue, not with a job id/,
    ],
    [
      ["rotate-key", "q", "--overlap", "a while", "--db-url", "postgres://x@127.0.0.1/x"],
      /--overlap must be/,
    ],
    [["resume", "q"], /no database given/],
  ])("supaqueue %j", async (args, message) => {
    const run = await cli(args);
    expect(run.stderr).toMatch(message);
    expect(run.code).toBe(2);
  });

  test("every command has --help", async () => {
    const commands = [
      "dev",
      "deploy",
      "plan",
      "status",
      "enqueue",
      "pause",
      "resume",
      "purge",
      "cancel",
      "retry",
      "rotate-key",
      "uninstall",
    ];
    const runs = await Promise.all(commands.map((command) => cli([command, "--help"])));
    commands.forEach((command, i) => {
      expect(runs[i]?.code).toBe(0);
      expect(runs[i]?.stdout).toMatch(new RegExp(`^Usage: supaqueue ${command}`, "m"));
      expect(runs[i]?.stdout).toContain("--help");
    });
    const top = await cli(["--help"]);
    expect(top.stdout).toContain("uninstall");
  });
});

describe("embedded Postgres (what dev uses when no database is given)", () => {
  test("starts with no install, accepts connections, and stop() removes its data", async () => {
    const server = await startEmbeddedPostgres();
    const url = new URL(server.adminUrl);
    try {
      const client = new pg.Client({ connectionString: server.adminUrl });
      await client.connect();
      const { rows } = await client.query(
        "select current_setting('server_version_num')::int / 10000 as major, rolsuper from pg_roles where rolname = current_user",
      );
      await client.end();
      expect(rows[0]).toEqual({ major: 15, rolsuper: true });
    } finally {
      await server.stop();
    }
    expect(url.hostname).toBe("127.0.0.1");
    const leftover = new pg.Client({ connectionString: server.adminUrl, connectionTimeoutMillis: 1000 });
    await expect(leftover.connect()).rejects.toThrow();
    await leftover.end().catch(() => {});
  }, 60_000);
});

async function waitFor(condition: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting; output so far:\n${describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
