import type pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { installSchema } from "../src/install/schema.ts";
import { complete, createQueue, jobStatus, takeCalls } from "./support/calls.ts";
import { hasPgCron, startCronProject } from "./support/cron-cluster.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await installedDatabase();
});

const one = async (sql: string, params: unknown[] = []) => (await db.pool.query(sql, params)).rows[0];

describe("rate limit", () => {
  test("a burst above the rate waits for tokens instead of failing; workers still cap calls in flight", async () => {
    await createQueue(db.pool, "limited", 10, { rate_limit_per_second: 4 });
    await db.pool.query(
      "insert into supaqueue.job (queue_id) select id from supaqueue.queue q, generate_series(1, 20) where q.name = 'limited'",
    );
    expect(await takeCalls(db.pool)).toHaveLength(4); // one second's worth
    // 0.6 s later: two more tokens; a second later: the bucket is full again, but it holds only 4.
    const base = (await one("select refilled_at from supaqueue.rate_bucket")).refilled_at as Date;
    const at = (ms: number) => new Date(base.getTime() + ms);
    await db.pool.query("select supaqueue.tick($1)", [at(600)]);
    expect(await takeCalls(db.pool)).toHaveLength(2);
    await db.pool.query("select supaqueue.tick($1)", [at(5000)]);
    expect(await takeCalls(db.pool)).toHaveLength(4);
    const { rows } = await db.pool.query(
      "select status, count(*)::int as n from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'limited' group by status order by status",
    );
    expect(rows).toEqual([
      { status: "pending", n: 10 },
      { status: "in_progress", n: 10 },
    ]);
    await db.pool.query("select supaqueue.purge('limited')");
  });
});

describe("pause, resume, purge, cancel and retry in bulk", () => {
  test("pause stops sending, resume sends at once, purge and filtered cancel cancel pending jobs only", async () => {
    await createQueue(db.pool, "ops", 1, { max_attempts: 1 });
    expect((await one("select supaqueue.pause('ops') as ok")).ok).toBe(true);
    for (const kind of ["a", "b", "a", "c"])
      await db.pool.query("select supaqueue.enqueue('ops', $1)", [{ kind, n: 1 }]);
    expect(await takeCalls(db.pool)).toHaveLength(0);
    expect((await one(`select supaqueue.cancel_jobs('ops', '{"kind": "a"}') as n`)).n).toBe(2);
    expect((await one("select supaqueue.resume('ops') as ok")).ok).toBe(true);
    const [call] = await takeCalls(db.pool);
    expect(call?.body.job.payload).toEqual({ kind: "b", n: 1 });
    expect((await one("select supaqueue.purge('ops') as n")).n).toBe(1); // c; b is in flight
    await complete(db.pool, call!, { succeeded: false, statusCode: 500 });
    expect((await jobStatus(db.pool, call!.body.job.id)).status).toBe("failed");
    expect((await one("select supaqueue.pause('nope') as ok")).ok).toBeNull();
    await expect(db.pool.query("select supaqueue.cancel_jobs('nope')")).rejects.toThrow(
      'queue "nope" does not exist',
    );
  });

  test("retry_failed sends a queue's failed jobs round again, keeping their history", async () => {
    await createQueue(db.pool, "redo", 2, { max_attempts: 1 });
    const ids = [
      (await one("select supaqueue.enqueue('redo') as id")).id,
      (await one("select supaqueue.enqueue('redo') as id")).id,
    ];
    for (const c of await takeCalls(db.pool))
      await complete(db.pool, c, { succeeded: false, statusCode: 503 });
    expect((await one("select supaqueue.retry_failed('redo', now() + interval '1 minute') as n")).n).toBe(0);
    expect((await one("select supaqueue.retry_failed('redo') as n")).n).toBe(2);
    const calls = await takeCalls(db.pool);
    expect(calls.map((c) => c.body.job.id).sort()).toEqual([...ids].sort());
    for (const c of calls) await complete(db.pool, c);
    const { rows } = await db.pool.query(
      "select succeeded from supaqueue.attempt where job_id = $1 order by id",
      [ids[0]],
    );
    expect(rows.map((r) => r.succeeded)).toEqual([false, true]);
  });
});

describe("dead-letter queue", () => {
  test("a job that fails for good is enqueued into the dead-letter queue with its last status and error", async () => {
    await createQueue(db.pool, "dlq", 0);
    await createQueue(db.pool, "fragile", 1, { max_attempts: 1, dead_letter_queue: "dlq" });
    const id = (await one(`select supaqueue.enqueue('fragile', '{"order": 7}') as id`)).id;
    const [call] = await takeCalls(db.pool);
    await complete(db.pool, call!, { succeeded: false, statusCode: 502, error: "HTTP 502 Bad Gateway" });
    const dead = await one(
      "select payload from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'dlq'",
    );
    expect(dead.payload).toEqual({
      job_id: id,
      queue: "fragile",
      payload: { order: 7 },
      attempts: 1,
      last_status_code: 502,
      last_error: "HTTP 502 Bad Gateway",
    });
    await expect(
      db.pool.query(
        "insert into supaqueue.queue (name, url, dead_letter_queue) values ('x', 'https://x.example', 'missing')",
      ),
    ).rejects.toThrow('names dead_letter_queue "missing", which is not another existing queue');
  });

  test("dead-letter queues cannot form a cycle: a job failing for good would go round for ever", async () => {
    await createQueue(db.pool, "ring-a", 0);
    await createQueue(db.pool, "ring-b", 0, { dead_letter_queue: "ring-a" });
    await createQueue(db.pool, "ring-c", 0, { dead_letter_queue: "ring-b" });
    await expect(
      db.pool.query("update supaqueue.queue set dead_letter_queue = 'ring-c' where name = 'ring-a'"),
    ).rejects.toThrow(
      'queue "ring-a" names dead_letter_queue "ring-c", whose dead letters lead back to "ring-a"',
    );
    await expect(
      db.pool.query("update supaqueue.queue set dead_letter_queue = 'ring-b' where name = 'ring-a'"),
    ).rejects.toThrow(/lead back to "ring-a"/);
    // A chain that ends is fine.
    await createQueue(db.pool, "ring-d", 0);
    await db.pool.query("update supaqueue.queue set dead_letter_queue = 'ring-d' where name = 'ring-a'");
  });

  test("a dead letter's error is bounded, and a payload too large to copy is left out, never failing the report", async () => {
    await createQueue(db.pool, "dlq-big", 0);
    await createQueue(db.pool, "big", 1, { max_attempts: 1, dead_letter_queue: "dlq-big" });
    await db.pool.query("select supaqueue.configure(max_payload_bytes => 10000)");
    try {
      const id = (
        await one(`select supaqueue.enqueue('big', jsonb_build_object('blob', repeat('x', 9000))) as id`)
      ).id;
      const [call] = await takeCalls(db.pool);
      await complete(db.pool, call!, { succeeded: false, statusCode: 500, error: "e".repeat(50_000) });
      expect(await jobStatus(db.pool, id)).toMatchObject({ status: "failed" });
      const dead = await one(
        "select payload from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'dlq-big'",
      );
      expect(dead.payload.last_error).toHaveLength(2000);
      expect(dead.payload.payload).toBeUndefined();
      expect(dead.payload.payload_omitted).toMatch(/larger than max_payload_bytes/);
      const attempt = await one("select length(error) as n from supaqueue.attempt where job_id = $1", [id]);
      expect(attempt.n).toBe(2000);
    } finally {
      await db.pool.query("select supaqueue.configure(max_payload_bytes => 1048576)");
    }
  });
});

describe("bounds", () => {
  test("a payload or job headers above config's bounds are refused with what to do, by enqueue and by insert", async () => {
    await createQueue(db.pool, "bounded", 0);
    await db.pool.query(
      "select supaqueue.configure(max_payload_bytes => 1000, max_job_headers_bytes => 100)",
    );
    try {
      await expect(
        db.pool.query("select supaqueue.enqueue('bounded', jsonb_build_object('blob', repeat('x', 1000)))"),
      ).rejects.toThrow(
        /^supaqueue: a job for queue "bounded" has a payload of 10\d\d bytes, more than max_payload_bytes \(1000\)$/,
      );
      await expect(
        db.pool.query(
          `insert into supaqueue.job (queue_id, payload)
           select q.id, jsonb_build_object('n', n, 'pad', repeat('y', n * 10)) from supaqueue.queue q,
                  generate_series(1, 200) n where q.name = 'bounded'`,
        ),
      ).rejects.toThrow(/more than max_payload_bytes \(1000\)/);
      await expect(
        db.pool.query(
          "select supaqueue.enqueue('bounded', '{}', headers => jsonb_build_object('X-Long', repeat('h', 200)))",
        ),
      ).rejects.toThrow(/has headers of \d+ bytes, more than max_job_headers_bytes \(100\)/);
      // Nothing was half-applied.
      expect(
        (
          await one(
            "select count(*)::int as n from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'bounded'",
          )
        ).n,
      ).toBe(0);
      await db.pool.query(
        "select supaqueue.enqueue('bounded', jsonb_build_object('blob', repeat('x', 900)))",
      );
    } finally {
      await db.pool.query(
        "select supaqueue.configure(max_payload_bytes => 1048576, max_job_headers_bytes => 8192)",
      );
    }
  });
});

describe("signed requests", () => {
  test("calls carry the signing key, and both keys while a rotated-out key is still honoured", async () => {
    await createQueue(db.pool, "signed", 1);
    const first = (await one("select supaqueue.rotate_signing_key('signed') as key")).key as string;
    expect(first.length).toBeGreaterThanOrEqual(32);
    await db.pool.query("select supaqueue.enqueue('signed')");
    let [call] = await takeCalls(db.pool);
    expect((call!.body.queue as { signing_keys?: string[] }).signing_keys).toEqual([first]);
    await complete(db.pool, call!);
    const second = (
      await one(
        "select supaqueue.rotate_signing_key('signed', 'a-brand-new-key-0123456789', interval '1 hour') as key",
      )
    ).key;
    await db.pool.query("select supaqueue.enqueue('signed')");
    [call] = await takeCalls(db.pool);
    expect((call!.body.queue as { signing_keys?: string[] }).signing_keys).toEqual([second, first]);
    await complete(db.pool, call!);
    await db.pool.query(
      "update supaqueue.queue set previous_signing_key_until = now() - interval '1 second' where name = 'signed'",
    );
    await db.pool.query("select supaqueue.enqueue('signed')");
    [call] = await takeCalls(db.pool);
    expect((call!.body.queue as { signing_keys?: string[] }).signing_keys).toEqual([second]);
    await complete(db.pool, call!);
    const { rows } = await db.pool.query(
      "select signing_key_secret from supaqueue.queue where name = 'signed'",
    );
    expect(rows[0].signing_key_secret).toBe("supaqueue:signing:signed"); // a Vault name, never the key
  });
});

describe("queue_stats", () => {
  test("counts jobs by state and reports call durations", async () => {
    await createQueue(db.pool, "stats", 1);
    await db.pool.query("select supaqueue.enqueue('stats')");
    await db.pool.query("select supaqueue.enqueue('stats')");
    await db.pool.query("select supaqueue.enqueue('stats', run_at => now() + interval '1 day')");
    const [call] = await takeCalls(db.pool);
    let s = await one("select * from supaqueue.queue_stats where queue = 'stats'");
    expect(s).toMatchObject({
      pending: "1",
      scheduled: "1",
      in_flight: "1",
      successful: "0",
      workers: "1",
      busy_workers: "1",
    });
    await complete(db.pool, call!, { succeeded: true, statusCode: 200, durationMs: 40 });
    const [next] = await takeCalls(db.pool);
    await complete(db.pool, next!, { succeeded: true, statusCode: 200, durationMs: 60 });
    s = await one("select * from supaqueue.queue_stats where queue = 'stats'");
    expect(s).toMatchObject({ pending: "0", scheduled: "1", in_flight: "0", successful: "2", p50_ms: 50 });
    expect(s.p95_ms).toBeCloseTo(59, 0);
  });
});

describe.skipIf(!hasPgCron)("recurring calls with pg_cron", () => {
  let project: Awaited<ReturnType<typeof startCronProject>>;
  let pool: pg.Pool;
  beforeAll(async () => {
    project = await startCronProject();
    pool = project.pool;
  }, 60_000);
  afterAll(() => project?.stop());

  test("the install schedules tick (every minute on pg_cron 1.4), and schedules become pg_cron jobs that enqueue", async () => {
    const c = await pool.connect();
    const result = await installSchema(c, {
      functionsUrl: "http://127.0.0.1:9/functions/v1",
      tick: "pg_cron",
    });
    c.release();
    expect(result.tick).toEqual({ mode: "pg_cron", schedule: "* * * * *", enabledPgCron: false });
    await createQueue(pool, "nightly", 0);
    await pool.query(`select supaqueue.schedule('report', '0 3 * * *', 'nightly', '{"kind": "report"}')`);
    await pool.query(`select supaqueue.schedule('report', '30 3 * * *', 'nightly', '{"kind": "report"}')`); // idempotent
    const { rows } = await pool.query("select jobname, schedule, command from cron.job order by jobname");
    expect(rows.map((r) => [r.jobname, r.schedule])).toEqual([
      ["supaqueue-tick", "* * * * *"],
      ["supaqueue:report", "30 3 * * *"],
    ]);
    // What pg_cron will run enqueues the call.
    await pool.query(rows[1].command);
    const { rows: jobs } = await pool.query("select payload from supaqueue.job");
    expect(jobs).toEqual([{ payload: { kind: "report" } }]);
    expect((await pool.query("select supaqueue.unschedule('report') as ok")).rows[0].ok).toBe(true);
    expect(
      (await pool.query("select count(*)::int as n from cron.job where jobname like 'supaqueue:%'")).rows[0]
        .n,
    ).toBe(0);
  });
});

test("schedules without pg_cron fail with a clear error", async () => {
  await createQueue(db.pool, "no-cron", 0);
  await expect(db.pool.query("select supaqueue.schedule('x', '* * * * *', 'no-cron')")).rejects.toThrow(
    "recurring calls need the pg_cron extension",
  );
});
