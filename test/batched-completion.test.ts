import { beforeAll, describe, expect, test } from "vitest";
import { complete, completeMany, createQueue, jobStatus, type SentCall, takeCalls } from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await installedDatabase();
});

async function enqueue(queue: string, payload: unknown = {}): Promise<string> {
  const { rows } = await db.pool.query("select supaqueue.enqueue($1, $2::jsonb) as id", [
    queue,
    JSON.stringify(payload),
  ]);
  return rows[0].id;
}

function byQueue(calls: SentCall[], queue: string): SentCall[] {
  return calls.filter((c) => c.body.queue.name === queue);
}

async function lockedWorkers(queue: string): Promise<number> {
  const { rows } = await db.pool.query(
    "select count(*)::int as n from supaqueue.worker w join supaqueue.queue q on q.id = w.queue_id where q.name = $1 and w.locked",
    [queue],
  );
  return rows[0].n;
}

describe("complete_current_jobs: many outcomes in one call", () => {
  test("each outcome moves its job, and each worker takes its queue's next job", async () => {
    await createQueue(db.pool, "b_ok", 2);
    await createQueue(db.pool, "b_dlq", 1);
    await createQueue(db.pool, "b_flaky", 2, {
      max_attempts: 2,
      backoff_base_ms: 60_000,
      dead_letter_queue: "b_dlq",
    });
    // Two in flight on each queue, one more waiting on b_ok.
    const ok = [
      await enqueue("b_ok", { n: 1 }),
      await enqueue("b_ok", { n: 2 }),
      await enqueue("b_ok", { n: 3 }),
    ];
    const flaky = [await enqueue("b_flaky", { n: 1 }), await enqueue("b_flaky", { n: 2 })];
    const first = await takeCalls(db.pool);
    expect(first).toHaveLength(4);
    const [ok1, ok2] = byQueue(first, "b_ok");
    const [flaky1, flaky2] = byQueue(first, "b_flaky");
    await db.pool.query("select supaqueue.cancel($1)", [ok2!.body.job.id]);

    const finished = await completeMany(db.pool, [
      { call: ok1!, outcome: { succeeded: true, statusCode: 201, responseBody: "made", durationMs: 12 } },
      { call: ok2!, outcome: { succeeded: true, statusCode: 200 } },
      { call: flaky1!, outcome: { succeeded: false, statusCode: 503, error: "HTTP 503" } },
      { call: flaky2!, outcome: { succeeded: false, statusCode: 400, error: "HTTP 400", retryable: false } },
      // A repeat of the same call inside the batch counts once (the first report wins).
      { call: ok1!, outcome: { succeeded: false, error: "ignored" } },
      // A call that is not in flight is ignored.
      { call: 987_654 },
    ]);
    expect(finished.sort((a, b) => a - b)).toEqual(
      [ok1!, ok2!, flaky1!, flaky2!].map((c) => c.body.current_job_id).sort((a, b) => a - b),
    );

    expect(await jobStatus(db.pool, ok[0]!)).toMatchObject({
      status: "successful",
      attempts: 1,
      last_status_code: 201,
    });
    expect(await jobStatus(db.pool, ok[1]!)).toMatchObject({ status: "cancelled" });
    const retried = await jobStatus(db.pool, flaky[0]!);
    expect(retried).toMatchObject({ status: "pending", attempts: 1, last_error: "HTTP 503" });
    expect(new Date(retried.run_at).getTime() - Date.now()).toBeGreaterThan(25_000);
    expect(await jobStatus(db.pool, flaky[1]!)).toMatchObject({
      status: "failed",
      attempts: 1,
      last_status_code: 400,
    });

    const { rows: attempts } = await db.pool.query(
      `select j.id, a.succeeded, a.status_code, a.response_body, a.duration_ms
       from supaqueue.attempt a join supaqueue.job j on j.id = a.job_id order by a.id`,
    );
    expect(attempts).toHaveLength(4);
    expect(attempts.find((a) => a.id === ok[0])).toMatchObject({
      succeeded: true,
      status_code: 201,
      response_body: "made",
      duration_ms: 12,
    });

    // The failed-for-good job went to the dead-letter queue, which sent it; b_ok's freed worker took job 3, the
    // other one had nothing left; b_flaky's retry is not due, so both its workers are free.
    const next = await takeCalls(db.pool);
    expect(next.map((c) => c.body.queue.name).sort()).toEqual(["b_dlq", "b_ok"]);
    expect(byQueue(next, "b_ok")[0]!.body.job.id).toBe(ok[2]);
    expect(byQueue(next, "b_dlq")[0]!.body.job.payload).toMatchObject({
      job_id: flaky[1],
      last_status_code: 400,
    });
    expect(await lockedWorkers("b_ok")).toBe(1);
    expect(await lockedWorkers("b_flaky")).toBe(0);
    await completeMany(
      db.pool,
      next.map((call) => ({ call })),
    );
    expect(await lockedWorkers("b_ok")).toBe(0);
  });

  test("workers of a paused queue are unlocked; retiring workers go; a rate-limited queue starts only what its tokens allow", async () => {
    await createQueue(db.pool, "b_pause", 2);
    await createQueue(db.pool, "b_shrink", 3);
    for (let i = 0; i < 4; i++) {
      await enqueue("b_pause");
      await enqueue("b_shrink");
    }
    const calls = await takeCalls(db.pool);
    expect(byQueue(calls, "b_pause")).toHaveLength(2);
    expect(byQueue(calls, "b_shrink")).toHaveLength(3);
    await db.pool.query("select supaqueue.pause('b_pause')");
    await db.pool.query("select supaqueue.set_workers('b_shrink', 1)");

    await completeMany(
      db.pool,
      calls.map((call) => ({ call })),
    );
    expect(await lockedWorkers("b_pause")).toBe(0);
    const { rows } = await db.pool.query(
      "select count(*)::int as n from supaqueue.worker w join supaqueue.queue q on q.id = w.queue_id where q.name = 'b_shrink'",
    );
    expect(rows[0].n).toBe(1);
    const next = await takeCalls(db.pool);
    expect(next.map((c) => c.body.queue.name)).toEqual(["b_shrink"]);
    await completeMany(
      db.pool,
      next.map((call) => ({ call })),
    );
    await db.pool.query("select supaqueue.purge('b_pause'), supaqueue.purge('b_shrink')");
    await completeMany(
      db.pool,
      (await takeCalls(db.pool)).map((call) => ({ call })),
    );

    // Three workers free up at once with one token left in the bucket: one call starts.
    await createQueue(db.pool, "b_rate", 3, { rate_limit_per_second: 3 });
    for (let i = 0; i < 6; i++) await enqueue("b_rate");
    const started = await takeCalls(db.pool);
    expect(started).toHaveLength(3);
    await db.pool.query("update supaqueue.rate_bucket set tokens = 1, refilled_at = now()");
    await completeMany(
      db.pool,
      started.map((call) => ({ call })),
    );
    expect(await takeCalls(db.pool)).toHaveLength(1);
    expect(await lockedWorkers("b_rate")).toBe(1);
    await db.pool.query("select supaqueue.purge('b_rate')");
  });

  test("one outcome alone and the same outcome in a batch end the same way", async () => {
    await createQueue(db.pool, "b_same", 1);
    const a = await enqueue("b_same");
    const b = await enqueue("b_same");
    const [callA] = await takeCalls(db.pool);
    expect(
      await complete(db.pool, callA!, { succeeded: false, statusCode: 500, error: "boom", retryable: false }),
    ).toBe(true);
    const [callB] = await takeCalls(db.pool);
    expect(
      await completeMany(db.pool, [
        { call: callB!, outcome: { succeeded: false, statusCode: 500, error: "boom", retryable: false } },
      ]),
    ).toEqual([callB!.body.current_job_id]);
    const pick = ({ status, attempts, last_error, last_status_code }: Record<string, unknown>) => ({
      status,
      attempts,
      last_error,
      last_status_code,
    });
    expect(pick(await jobStatus(db.pool, b))).toEqual(pick(await jobStatus(db.pool, a)));
    expect(await completeMany(db.pool, [{ call: callB! }])).toEqual([]);
  });

  test("a released call goes back to pending at once and its attempt does not count; a cancelled job stays cancelled", async () => {
    await createQueue(db.pool, "b_released", 2, { max_attempts: 1, backoff_base_ms: 60_000 });
    const kept = await enqueue("b_released");
    const cancelled = await enqueue("b_released");
    const calls = await takeCalls(db.pool);
    await db.pool.query("select supaqueue.cancel($1)", [cancelled]);
    const error = "the edge worker shut down (wall_clock) before the answer came";
    const { rows } = await db.as(
      "service_role",
      "select public.supaqueue_complete_current_jobs($1::jsonb) as finished",
      [
        JSON.stringify(
          calls.map((call) => ({
            current_job_id: call.body.current_job_id,
            succeeded: false,
            error,
            released: true,
          })),
        ),
      ],
    );
    expect(rows[0].finished).toHaveLength(2);
    expect(await jobStatus(db.pool, cancelled)).toMatchObject({ status: "cancelled" });
    const { rows: history } = await db.pool.query(
      "select attempt, succeeded, error from supaqueue.attempt where job_id = $1",
      [kept],
    );
    expect(history).toEqual([{ attempt: 1, succeeded: false, error }]);
    // Back to pending at once (no backoff, although the queue's is a minute) and dispatched again: attempt 1 once
    // more. Counted, this attempt would have failed the job for good (max_attempts 1).
    expect(await jobStatus(db.pool, kept)).toMatchObject({ status: "in_progress", attempts: 1 });
    const [again] = await takeCalls(db.pool);
    expect(again?.body).toMatchObject({ job: { id: kept }, attempt: 1 });
    await completeMany(db.pool, [{ call: again! }]);
    expect(await jobStatus(db.pool, kept)).toMatchObject({ status: "successful", attempts: 1 });
  });

  test("bad input gets a clear error and changes nothing", async () => {
    await createQueue(db.pool, "b_bad", 1);
    const id = await enqueue("b_bad");
    const [call] = await takeCalls(db.pool);
    const bad = async (outcomes: string) =>
      db.pool.query("select supaqueue.complete_current_jobs($1::jsonb)", [outcomes]);
    await expect(bad('{"current_job_id": 1}')).rejects.toThrow(
      "supaqueue: outcomes must be a JSON array, not object",
    );
    await expect(
      bad(`[{"current_job_id": ${call!.body.current_job_id}, "succeeded": true}, {"succeeded": true}]`),
    ).rejects.toThrow(
      'invalid outcome {"succeeded": true}: each needs a numeric "current_job_id" and a boolean "succeeded"',
    );
    await expect(bad('[{"current_job_id": "x1", "succeeded": true}]')).rejects.toThrow("invalid outcome");
    await expect(bad('[{"current_job_id": 1, "succeeded": "yes"}]')).rejects.toThrow("invalid outcome");
    expect(await jobStatus(db.pool, id)).toMatchObject({ status: "in_progress" });
    // A digit string is an id too (bigints travel as strings in JSON).
    expect(
      await db.pool
        .query("select supaqueue.complete_current_jobs($1::jsonb) as f", [
          JSON.stringify([
            { current_job_id: String(call!.body.current_job_id), succeeded: true, status_code: 200 },
          ]),
        ])
        .then((r) => r.rows[0].f.map(Number)),
    ).toEqual([call!.body.current_job_id]);
    expect(await jobStatus(db.pool, id)).toMatchObject({ status: "successful" });
  });

  test("only service_role (and postgres) may report outcomes", async () => {
    for (const role of ["anon", "authenticated"]) {
      const client = await db.pool.connect();
      try {
        await client.query("begin");
        await client.query(`set local role ${role}`);
        await expect(
          client.query("select public.supaqueue_complete_current_jobs('[]'::jsonb)"),
        ).rejects.toThrow("permission denied for function supaqueue_complete_current_jobs");
      } finally {
        await client.query("rollback");
        client.release();
      }
    }
    expect(await completeMany(db.pool, [])).toEqual([]);
  });
});
