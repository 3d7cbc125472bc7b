import type pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConfigError } from "../src/config/types.ts";
import { validateConfigText } from "../src/config/validate.ts";
import { reconcileQueues } from "../src/install/apply.ts";
import { planLines } from "../src/install/present.ts";
import { installSchema } from "../src/install/schema.ts";
import { hasPgCron, startCronProject } from "./support/cron-cluster.ts";
import { installedDatabase } from "./support/db.ts";
import { snapshot } from "./support/db-snapshot.ts";

// supaqueue.yml's schedules and signed queues, reconciled by the installer's own code (what deploy runs).

function file(text: string) {
  const { config, problems } = validateConfigText(text, "supaqueue.yml", { env: {} });
  expect(problems).toEqual([]);
  return config;
}

async function reconcile(pool: pg.Pool, text: string) {
  const client = await pool.connect();
  try {
    return await reconcileQueues(client, file(text));
  } finally {
    client.release();
  }
}

const FILE = `queues:
  reports:
    url: https://reports.example.com/run
    signed: true
schedules:
  nightly:
    cron: "0 3 * * *"
    queue: reports
    payload: { kind: daily }
  hourly:
    cron: "0 * * * *"
    queue: made-by-hand
`;

const EDITED = `queues:
  reports:
    url: https://reports.example.com/run
schedules:
  nightly:
    cron: "30 3 * * *"
    queue: reports
    payload: { kind: daily }
`;

describe.skipIf(!hasPgCron)("schedules on a database with pg_cron", () => {
  let project: Awaited<ReturnType<typeof startCronProject>>;
  let pool: pg.Pool;
  beforeAll(async () => {
    project = await startCronProject();
    pool = project.pool;
    const c = await pool.connect();
    await installSchema(c, { functionsUrl: "http://127.0.0.1:9/functions/v1" });
    c.release();
    await pool.query(`
      insert into supaqueue.queue (name, url) values ('made-by-hand', 'https://hand.example.com');
      select supaqueue.schedule('by-hand', '0 0 * * *', 'made-by-hand', '{}');`);
  }, 60_000);
  afterAll(() => project?.stop());

  const cronJobs = async () =>
    (
      await pool.query(
        "select jobname, schedule, command from cron.job where jobname like 'supaqueue:%' order by jobname",
      )
    ).rows;
  const schedules = async () =>
    (
      await pool.query(
        "select name, cron, queue_name, payload, managed_by from supaqueue.schedule order by name",
      )
    ).rows;

  test("the file's schedules become pg_cron jobs, the signed queue gets a key in Vault, and a rerun changes nothing", async () => {
    const plan = await reconcile(pool, FILE);
    expect(planLines(plan, { done: true })).toEqual([
      "created queue reports (POST https://reports.example.com/run, 1 worker)",
      "queue reports: signing key created: read it with select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue:signing:reports'",
      "created schedule nightly (0 3 * * * → reports)",
      "created schedule hourly (0 * * * * → made-by-hand)",
    ]);
    expect(await schedules()).toEqual([
      { name: "by-hand", cron: "0 0 * * *", queue_name: "made-by-hand", payload: {}, managed_by: null },
      {
        name: "hourly",
        cron: "0 * * * *",
        queue_name: "made-by-hand",
        payload: {},
        managed_by: "supaqueue.yml",
      },
      {
        name: "nightly",
        cron: "0 3 * * *",
        queue_name: "reports",
        payload: { kind: "daily" },
        managed_by: "supaqueue.yml",
      },
    ]);
    const jobs = await cronJobs();
    expect(jobs.map((j) => [j.jobname, j.schedule])).toEqual([
      ["supaqueue:by-hand", "0 0 * * *"],
      ["supaqueue:hourly", "0 * * * *"],
      ["supaqueue:nightly", "0 3 * * *"],
    ]);
    // What pg_cron runs enqueues the call.
    await pool.query(jobs[2].command);
    const { rows: enqueued } = await pool.query(
      "select j.payload from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'reports'",
    );
    expect(enqueued).toEqual([{ payload: { kind: "daily" } }]);
    const { rows: key } = await pool.query(
      "select q.signing_key_secret, length(s.decrypted_secret) as length from supaqueue.queue q join vault.decrypted_secrets s on s.name = q.signing_key_secret where q.name = 'reports'",
    );
    expect(key).toEqual([{ signing_key_secret: "supaqueue:signing:reports", length: 44 }]);

    const before = [await snapshot(pool), await schedules(), await cronJobs()];
    const again = await reconcile(pool, FILE);
    expect(planLines(again, { done: true })).toEqual([
      "queues: no changes (1 queue up to date); schedules: no changes (2 schedules up to date)",
    ]);
    expect([await snapshot(pool), await schedules(), await cronJobs()]).toEqual(before);
  });

  test("an edit reschedules, a schedule taken out is unscheduled, signed: false deletes the key; hand-made ones stay", async () => {
    const plan = await reconcile(pool, EDITED);
    expect(planLines(plan, { done: true })).toEqual([
      "changed queue reports: signed: true → false (key deleted)",
      "queue reports: signing key deleted (Vault secret supaqueue:signing:reports)",
      "changed schedule nightly: cron: 0 3 * * * → 30 3 * * *",
      "removed schedule hourly (not in the file)",
    ]);
    expect((await cronJobs()).map((j) => [j.jobname, j.schedule])).toEqual([
      ["supaqueue:by-hand", "0 0 * * *"],
      ["supaqueue:nightly", "30 3 * * *"],
    ]);
    expect((await schedules()).map((s) => s.name)).toEqual(["by-hand", "nightly"]);
    const { rows } = await pool.query(
      "select (select signing_key_secret from supaqueue.queue where name = 'reports') as secret, (select count(*)::int from vault.secrets where name like 'supaqueue:signing:%') as keys",
    );
    expect(rows[0]).toEqual({ secret: null, keys: 0 });
  });
});

test("a file with schedules on a database without pg_cron fails before any change, naming the schedule", async () => {
  const db = await installedDatabase();
  const before = await snapshot(db.pool);
  const text = `queues:\n  reports:\n    url: https://reports.example.com/run\nschedules:\n  nightly:\n    cron: "0 3 * * *"\n    queue: reports\n`;
  const error = await reconcile(db.pool, text).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ConfigError);
  expect((error as ConfigError).problems).toEqual([
    {
      position: { file: "supaqueue.yml", line: 5, column: 3 },
      field: "schedules.nightly",
      message: expect.stringMatching(/^recurring calls need the pg_cron extension, which is not installed/),
    },
  ]);
  expect(await snapshot(db.pool)).toEqual(before);
});
