import { beforeAll, describe, expect, test } from "vitest";
import { claim, complete, createQueue, jobStatus, takeCalls, takeWakeups } from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await installedDatabase();
});

async function enqueue(queue: string, payload: unknown = {}, extra = ""): Promise<string> {
  const { rows } = await db.pool.query(`select supaqueue.enqueue($1, $2::jsonb${extra}) as id`, [
    queue,
    JSON.stringify(payload),
  ]);
  return rows[0].id;
}

describe("the seed's usage, word for word", () => {
  test("insert a queue, insert workers, insert a job: the call goes out and completes", async () => {
    const {
      rows: [queue],
    } = await db.pool.query(
      "insert into supaqueue.queue (name, url) values ('seed', 'https://api.example.com/v1/emails') returning id",
    );
    await db.pool.query("insert into supaqueue.worker (queue_id) values ($1)", [queue.id]);
    const {
      rows: [job],
    } = await db.pool.query(
      `insert into supaqueue.job (queue_id, payload) values ($1, '{"to": "a@example.com"}') returning id`,
      [queue.id],
    );
    expect(await jobStatus(db.pool, job.id)).toMatchObject({ status: "in_progress", attempts: 1 });
    const {
      rows: [worker],
    } = await db.pool.query("select locked from supaqueue.worker where queue_id = $1", [queue.id]);
    expect(worker.locked).toBe(true);

    // What pg_net carries: the call's id and a MAC (takeWakeups checks it), nothing else.
    const [wakeup] = await takeWakeups(db.pool);
    expect(wakeup?.url).toBe("http://127.0.0.1:9/functions/v1/execute_current_job");
    expect(wakeup?.timeoutMs).toBeGreaterThan(0);
    expect(Object.keys(wakeup?.headers ?? {}).sort()).toEqual(["Content-Type", "Supaqueue-Wakeup"]);
    const { rows: current } = await db.pool.query("select id from supaqueue.current_job where job_id = $1", [
      job.id,
    ]);
    expect(wakeup?.body).toEqual({ v: 2, ids: [Number(current[0].id)] });
    // What the function gets when it claims the call, once.
    const [call] = await claim(db.pool, wakeup!.body.ids);
    expect(await claim(db.pool, wakeup!.body.ids)).toEqual([]);
    expect(call?.body.job).toEqual({ id: job.id, payload: { to: "a@example.com" }, headers: {} });
    expect(call?.body.queue).toMatchObject({
      name: "seed",
      url: "https://api.example.com/v1/emails",
      method: "POST",
    });

    expect(
      await complete(db.pool, call!, {
        succeeded: true,
        statusCode: 201,
        responseBody: "ok",
        durationMs: 12,
      }),
    ).toBe(true);
    expect(await jobStatus(db.pool, job.id)).toMatchObject({ status: "successful", attempts: 1 });
    const { rows: after } = await db.pool.query(
      "select w.locked, (select count(*) from supaqueue.current_job)::int as current from supaqueue.worker w where queue_id = $1",
      [queue.id],
    );
    expect(after).toEqual([{ locked: false, current: 0 }]);
    const { rows: attempts } = await db.pool.query(
      "select attempt, succeeded, status_code, response_body, duration_ms from supaqueue.attempt where job_id = $1",
      [job.id],
    );
    expect(attempts).toEqual([
      { attempt: 1, succeeded: true, status_code: 201, response_body: "ok", duration_ms: 12 },
    ]);
  });

  test("a completed worker takes the next job; jobs run in due order; a bulk insert dispatches once", async () => {
    await createQueue(db.pool, "order", 1);
    const { rows } = await db.pool.query(
      `insert into supaqueue.job (queue_id, payload)
       select (select id from supaqueue.queue where name = 'order'), jsonb_build_object('n', n) from generate_series(1, 5) n
       returning id`,
    );
    const seen: number[] = [];
    for (let i = 0; i < 5; i++) {
      const calls = await takeCalls(db.pool);
      expect(calls).toHaveLength(1);
      seen.push((calls[0]!.body.job.payload as { n: number }).n);
      await complete(db.pool, calls[0]!);
    }
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    for (const r of rows) expect((await jobStatus(db.pool, r.id)).status).toBe("successful");
  });
});

describe("enqueue", () => {
  test("returns the job id; delayed jobs wait for their time and tick sends them", async () => {
    await createQueue(db.pool, "delayed", 2);
    const id = await enqueue("delayed", { a: 1 }, ", run_at => now() + interval '1 hour'");
    expect(await jobStatus(db.pool, id)).toMatchObject({ status: "pending", attempts: 0 });
    await db.pool.query("select supaqueue.tick()");
    expect((await jobStatus(db.pool, id)).status).toBe("pending");
    await db.pool.query("select supaqueue.tick(now() + interval '2 hours')");
    expect((await jobStatus(db.pool, id)).status).toBe("in_progress");
    const calls = await takeCalls(db.pool);
    expect(calls.map((c) => c.body.job.id)).toEqual([id]);
    await complete(db.pool, calls[0]!);
  });

  test("a dedup key returns the unfinished job instead of adding another", async () => {
    await createQueue(db.pool, "dedup", 0);
    const first = await enqueue("dedup", { a: 1 }, ", dedup_key => 'k1'");
    const second = await enqueue("dedup", { a: 2 }, ", dedup_key => 'k1'");
    const other = await enqueue("dedup", { a: 3 }, ", dedup_key => 'k2'");
    expect(second).toBe(first);
    expect(other).not.toBe(first);
    await db.pool.query("select supaqueue.cancel($1)", [first]);
    const third = await enqueue("dedup", { a: 4 }, ", dedup_key => 'k1'");
    expect(third).not.toBe(first);
  });

  test("per-job headers travel with the call", async () => {
    await createQueue(db.pool, "headers", 1, { headers: { "X-Queue": "q" } });
    const id = await enqueue("headers", {}, `, headers => '{"X-Job": "j"}'`);
    const [call] = await takeCalls(db.pool);
    expect(call?.body.job).toMatchObject({ id, headers: { "X-Job": "j" } });
    expect(call?.body.queue.headers).toEqual({ "X-Queue": "q" });
    await complete(db.pool, call!);
  });

  test("a paused queue accepts jobs and sends them when resumed", async () => {
    await createQueue(db.pool, "paused", 1, { paused: true });
    const id = await enqueue("paused");
    expect((await jobStatus(db.pool, id)).status).toBe("pending");
    await db.pool.query("select supaqueue.tick()");
    expect(await takeCalls(db.pool)).toHaveLength(0);
    await db.pool.query("update supaqueue.queue set paused = false where name = 'paused'");
    const calls = await takeCalls(db.pool);
    expect(calls.map((c) => c.body.job.id)).toEqual([id]);
    await complete(db.pool, calls[0]!);
  });

  test("bad input gets a clear error", async () => {
    await createQueue(db.pool, "getter", 0, { method: "GET" });
    await expect(enqueue("nope")).rejects.toThrow('queue "nope" does not exist');
    await expect(db.pool.query(`select supaqueue.enqueue('getter', '"text"')`)).rejects.toThrow(
      "must be a JSON object or array, not string",
    );
    await expect(db.pool.query(`select supaqueue.enqueue('getter', '[1]')`)).rejects.toThrow(
      "query string: it must be a JSON object",
    );
    await expect(
      db.pool.query(`select supaqueue.enqueue('getter', '{}', headers => '{"a": 1}')`),
    ).rejects.toThrow("job headers must be a JSON object of strings");
    await expect(
      db.pool.query(
        "insert into supaqueue.queue (name, url, method) values ('m', 'https://x.example', 'FETCH')",
      ),
    ).rejects.toThrow('invalid method "FETCH"');
    await expect(
      db.pool.query("insert into supaqueue.queue (name, url) values ('u', 'ftp://x.example')"),
    ).rejects.toThrow("invalid url");
    await expect(db.pool.query("insert into supaqueue.queue (name) values ('none')")).rejects.toThrow(
      "exactly one of url and function_name",
    );
    await expect(
      db.pool.query(
        "insert into supaqueue.queue (name, url, function_name) values ('both', 'https://x.example', 'f')",
      ),
    ).rejects.toThrow("exactly one of url and function_name");
    await expect(
      db.pool.query("insert into supaqueue.queue (name, url) values ('Bad Name', 'https://x.example')"),
    ).rejects.toThrow('invalid queue name "Bad Name"');
    await expect(
      db.pool.query(
        "insert into supaqueue.queue (name, url, max_attempts) values ('a0', 'https://x.example', 0)",
      ),
    ).rejects.toThrow("max_attempts 0, it must be at least 1");
    await expect(
      db.pool.query(
        "insert into supaqueue.queue (name, url, timeout_ms) values ('t', 'https://x.example', 999999)",
      ),
    ).rejects.toThrow("timeout_ms 999999, it must be between 1 and 140000");
    await expect(db.pool.query("select supaqueue.set_workers('getter', -1)")).rejects.toThrow(
      "must be 0 or more, not -1",
    );
    await expect(
      db.pool.query(`insert into supaqueue.job (queue_id, payload) values (1, '"x"')`),
    ).rejects.toThrow("payload_is_json_object_or_array");
  });
});

describe("retries, failures and recovery", () => {
  test("a failed call is retried with growing delays until max_attempts, then fails", async () => {
    await createQueue(db.pool, "flaky", 1, { max_attempts: 4, backoff_base_ms: 1000, backoff_max_ms: 60000 });
    const id = await enqueue("flaky");
    const delays: number[] = [];
    let at = Date.now();
    for (let attempt = 1; attempt <= 4; attempt++) {
      const calls = await takeCalls(db.pool);
      expect(calls).toHaveLength(1);
      expect(calls[0]!.body.attempt).toBe(attempt);
      await complete(db.pool, calls[0]!, { succeeded: false, statusCode: 503, error: "HTTP 503" });
      const job = await jobStatus(db.pool, id);
      if (attempt < 4) {
        expect(job.status).toBe("pending");
        const delay = new Date(job.run_at).getTime() - Date.now();
        delays.push(delay);
        // Not due yet: a tick now sends nothing; a tick at its time sends it.
        await db.pool.query("select supaqueue.tick()");
        expect(await takeCalls(db.pool)).toHaveLength(0);
        at = new Date(job.run_at).getTime() + 1;
        await db.pool.query("select supaqueue.tick($1)", [new Date(at)]);
      } else {
        expect(job).toMatchObject({
          status: "failed",
          attempts: 4,
          last_status_code: 503,
          last_error: "HTTP 503",
        });
      }
    }
    // Equal jitter on base * 2^(n-1): 0.5–1 s, 1–2 s, 2–4 s.
    expect(delays[0]).toBeGreaterThan(400);
    expect(delays[0]).toBeLessThan(1100);
    expect(delays[1]!).toBeGreaterThanOrEqual(delays[0]! - 50);
    expect(delays[2]!).toBeGreaterThanOrEqual(delays[1]! - 50);
    expect(delays[2]).toBeGreaterThan(1900);
    const { rows } = await db.pool.query(
      "select attempt, succeeded, status_code from supaqueue.attempt where job_id = $1 order by id",
      [id],
    );
    expect(rows.map((r) => r.attempt)).toEqual([1, 2, 3, 4]);
    expect(rows.every((r) => !r.succeeded && r.status_code === 503)).toBe(true);
  });

  test("a non-retryable failure fails at once; Retry-After sets the earliest next attempt", async () => {
    await createQueue(db.pool, "strict", 1, { backoff_base_ms: 0, backoff_max_ms: 0 });
    const a = await enqueue("strict");
    let [call] = await takeCalls(db.pool);
    await complete(db.pool, call!, { succeeded: false, statusCode: 404, retryable: false });
    expect(await jobStatus(db.pool, a)).toMatchObject({ status: "failed", attempts: 1 });

    const b = await enqueue("strict");
    [call] = await takeCalls(db.pool);
    await complete(db.pool, call!, { succeeded: false, statusCode: 429, retryAfterMs: 120_000 });
    const job = await jobStatus(db.pool, b);
    expect(job.status).toBe("pending");
    expect(new Date(job.run_at).getTime() - Date.now()).toBeGreaterThan(100_000);
    await db.pool.query("select supaqueue.cancel($1)", [b]);
  });

  test("a repeated or late completion is a harmless no-op", async () => {
    await createQueue(db.pool, "twice", 1);
    const id = await enqueue("twice");
    const [call] = await takeCalls(db.pool);
    expect(await complete(db.pool, call!)).toBe(true);
    expect(await complete(db.pool, call!, { succeeded: false })).toBe(false);
    expect(await jobStatus(db.pool, id)).toMatchObject({ status: "successful", attempts: 1 });
    const { rows } = await db.pool.query(
      "select count(*)::int as n from supaqueue.attempt where job_id = $1",
      [id],
    );
    expect(rows[0].n).toBe(1);
  });

  test("an expired lease counts as a failed attempt, frees the worker and retries the job", async () => {
    await createQueue(db.pool, "lost", 1, {
      timeout_ms: 1000,
      max_attempts: 2,
      backoff_base_ms: 0,
      backoff_max_ms: 0,
    });
    const id = await enqueue("lost");
    const [lostCall] = await takeCalls(db.pool);
    // Nothing reports back. Just before the lease ends nothing happens; after it, tick reaps it.
    await db.pool.query("select supaqueue.tick(now() + interval '5 seconds')");
    expect((await jobStatus(db.pool, id)).attempts).toBe(1);
    const {
      rows: [tick],
    } = await db.pool.query("select supaqueue.tick(now() + interval '2 minutes') as r");
    expect(tick.r.reaped).toBe(1);
    const job = await jobStatus(db.pool, id);
    expect(job).toMatchObject({ status: "in_progress", attempts: 2 });
    const { rows } = await db.pool.query("select error from supaqueue.attempt where job_id = $1", [id]);
    expect(rows[0].error).toMatch(/lease expired/);
    // The lost call reporting late changes nothing.
    expect(await complete(db.pool, lostCall!)).toBe(false);
    const [retry] = await takeCalls(db.pool);
    expect(retry?.body.attempt).toBe(2);
    await db.pool.query("select supaqueue.tick(now() + interval '10 minutes')");
    expect(await jobStatus(db.pool, id)).toMatchObject({ status: "failed", attempts: 2 });
    const { rows: w } = await db.pool.query(
      "select locked from supaqueue.worker where queue_id = (select id from supaqueue.queue where name = 'lost')",
    );
    expect(w).toEqual([{ locked: false }]);
  });

  test("cancel and retry", async () => {
    await createQueue(db.pool, "ops", 1, { max_attempts: 1 });
    const a = await enqueue("ops");
    const b = await enqueue("ops");
    expect((await db.pool.query("select supaqueue.cancel($1) as ok", [b])).rows[0].ok).toBe(true);
    expect((await jobStatus(db.pool, b)).status).toBe("cancelled");
    // Cancelling the job in flight: its call finishes, the job stays cancelled, the worker moves on.
    expect((await db.pool.query("select supaqueue.cancel($1) as ok", [a])).rows[0].ok).toBe(true);
    let [call] = await takeCalls(db.pool);
    await complete(db.pool, call!);
    expect((await jobStatus(db.pool, a)).status).toBe("cancelled");
    // Retry starts a new run and keeps the history.
    expect((await db.pool.query("select supaqueue.retry($1) as ok", [a])).rows[0].ok).toBe(true);
    [call] = await takeCalls(db.pool);
    expect(call?.body.job.id).toBe(a);
    await complete(db.pool, call!);
    expect(await jobStatus(db.pool, a)).toMatchObject({ status: "successful", attempts: 1 });
    const { rows } = await db.pool.query(
      "select count(*)::int as n from supaqueue.attempt where job_id = $1",
      [a],
    );
    expect(rows[0].n).toBe(2);
    expect((await db.pool.query("select supaqueue.retry($1) as ok", [a])).rows[0].ok).toBe(false);
  });

  test("scaling workers down never interrupts a call in flight", async () => {
    await createQueue(db.pool, "scale", 3);
    const ids = [await enqueue("scale"), await enqueue("scale")];
    const calls = await takeCalls(db.pool);
    expect(calls).toHaveLength(2);
    await db.pool.query("select supaqueue.set_workers('scale', 1)");
    const count = async () =>
      (
        await db.pool.query(
          "select count(*) filter (where not retiring)::int as active, count(*)::int as total from supaqueue.worker where queue_id = (select id from supaqueue.queue where name = 'scale')",
        )
      ).rows[0];
    expect(await count()).toEqual({ active: 1, total: 2 });
    for (const c of calls) await complete(db.pool, c);
    expect(await count()).toEqual({ active: 1, total: 1 });
    for (const id of ids) expect((await jobStatus(db.pool, id)).status).toBe("successful");
    await db.pool.query("select supaqueue.set_workers('scale', 4)");
    expect(await count()).toEqual({ active: 4, total: 4 });
  });

  test("retention: tick deletes finished jobs and their attempts after the retention period", async () => {
    await createQueue(db.pool, "old", 1);
    const id = await enqueue("old");
    const [call] = await takeCalls(db.pool);
    await complete(db.pool, call!);
    await db.pool.query("select supaqueue.tick(now() + interval '6 days')");
    expect(await jobStatus(db.pool, id)).toBeDefined();
    const {
      rows: [r],
    } = await db.pool.query("select supaqueue.tick(now() + interval '8 days') as r");
    expect(r.r.deleted).toBeGreaterThanOrEqual(1);
    expect(await jobStatus(db.pool, id)).toBeUndefined();
    const { rows } = await db.pool.query(
      "select count(*)::int as n from supaqueue.attempt where job_id = $1",
      [id],
    );
    expect(rows[0].n).toBe(0);
  });

  test("remove_queue pauses a queue that still has jobs and removes it once empty", async () => {
    await createQueue(db.pool, "leaving", 0);
    const id = await enqueue("leaving");
    expect((await db.pool.query("select supaqueue.remove_queue('leaving') as removed")).rows[0].removed).toBe(
      false,
    );
    expect(
      (await db.pool.query("select paused from supaqueue.queue where name = 'leaving'")).rows[0].paused,
    ).toBe(true);
    await db.pool.query("select supaqueue.cancel($1)", [id]);
    expect((await db.pool.query("select supaqueue.remove_queue('leaving') as removed")).rows[0].removed).toBe(
      true,
    );
    expect(
      (await db.pool.query("select count(*)::int as n from supaqueue.queue where name = 'leaving'")).rows[0]
        .n,
    ).toBe(0);
  });
});
