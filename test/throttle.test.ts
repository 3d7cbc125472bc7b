import { beforeAll, describe, expect, test } from "vitest";
import { validateConfigText } from "../src/config/validate.ts";
import { completeMany, createQueue, type SentCall, takeCalls } from "./support/calls.ts";
import { cli } from "./support/cli.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

/**
 * A queue that slows down when its target says so (supaqueue.throttle): with slow_down, a 429 or 503 halves the
 * calls per second the queue may start (once a second at most), which grow back and end in tick(); with
 * honor_retry_after: queue, a Retry-After holds the queue's new calls until then. Queues that did not opt in are
 * untouched.
 */
let db: TestDatabase;
beforeAll(async () => {
  db = await installedDatabase();
});

async function enqueueMany(queue: string, n: number): Promise<void> {
  await db.pool.query(
    "select supaqueue.enqueue($1, jsonb_build_object('n', i)) from generate_series(1, $2) i",
    [queue, n],
  );
}

/** The calls started for `queue` since the last take (other tests' calls are taken and left). */
async function callsOf(queue: string): Promise<SentCall[]> {
  return (await takeCalls(db.pool)).filter((c) => c.body.queue.name === queue);
}

async function busy(queue: string): Promise<number> {
  const { rows } = await db.pool.query(
    "select count(*)::int as n from supaqueue.worker w join supaqueue.queue q on q.id = w.queue_id where q.name = $1 and w.locked",
    [queue],
  );
  return rows[0].n;
}

async function stats(queue: string) {
  const { rows } = await db.pool.query(
    "select slowed_to_per_second, held_until, rate_limit_per_second from supaqueue.queue_stats where queue = $1",
    [queue],
  );
  return rows[0];
}

async function throttle(queue: string) {
  const { rows } = await db.pool.query(
    "select t.* from supaqueue.throttle t join supaqueue.queue q on q.id = t.queue_id where q.name = $1",
    [queue],
  );
  return rows[0];
}

const tooMany = (call: SentCall, retryAfterMs?: number) => ({
  call,
  outcome: { succeeded: false, statusCode: 429, error: "HTTP 429", retryAfterMs },
});

describe("slow_down: a 429 or 503 lowers the queue's rate, which grows back", () => {
  test("a queue without a rate limit halves from the calls it had in flight; the freed workers start only that many", async () => {
    // Failed calls wait a minute before their next attempt, so only the other jobs are due.
    await createQueue(db.pool, "t_free", 4, { slow_down: true, backoff_base_ms: 60_000 });
    await enqueueMany("t_free", 10);
    const calls = await callsOf("t_free");
    expect(calls).toHaveLength(4);

    await completeMany(
      db.pool,
      calls.map((call) => ({ call, outcome: { succeeded: false, statusCode: 503, error: "HTTP 503" } })),
    );
    // Four calls were in flight when the target said 503: the queue may now start 2 a second, so two of the four
    // freed workers got a job (the bucket holds one second of calls).
    expect(await throttle("t_free")).toMatchObject({ ceiling: 4, rate: 2 });
    expect(await busy("t_free")).toBe(2);
    expect((await stats("t_free")).slowed_to_per_second).toBeCloseTo(2, 0);
    const status = await cli(["status", "--db-url", db.url]);
    // It grows back by 4/30 a second meanwhile.
    expect(status.stdout).toMatch(/^t_free\s.*slowed to 2(\.\d)?$/m);
  });

  test("a queue with a rate limit halves from it, once a second however many 429s come; it grows back to the limit and tick ends the throttle", async () => {
    await createQueue(db.pool, "t_limited", 3, {
      slow_down: true,
      rate_limit_per_second: 10,
      backoff_base_ms: 60_000,
    });
    await enqueueMany("t_limited", 20);
    const calls = await callsOf("t_limited");
    expect(calls).toHaveLength(3);

    // Three 429s in one report, then another a moment later: one episode, one halving.
    await completeMany(db.pool, [tooMany(calls[0]!), tooMany(calls[1]!)]);
    await completeMany(db.pool, [tooMany(calls[2]!)]);
    const first = await throttle("t_limited");
    expect(first).toMatchObject({ ceiling: 10, rate: 5 });
    expect(first.step).toBeCloseTo(10 / 30, 5);

    // A second later the target still says 429: halved again, from what the rate had grown back to.
    await db.pool.query(
      "update supaqueue.throttle set decreased_at = decreased_at - interval '2 seconds', changed_at = changed_at - interval '2 seconds' where queue_id = (select id from supaqueue.queue where name = 't_limited')",
    );
    const more = await callsOf("t_limited");
    await completeMany(db.pool, [tooMany(more[0]!)]);
    const second = await throttle("t_limited");
    expect(second.rate).toBeCloseTo((5 + (2 * 10) / 30) / 2, 1);

    // Grown back after 30 s at most; the next tick drops the throttle.
    for (const call of await callsOf("t_limited")) await completeMany(db.pool, [{ call }]);
    await db.pool.query("select supaqueue.tick(now() + interval '31 seconds')");
    expect(await throttle("t_limited")).toBeUndefined();
    expect((await stats("t_limited")).slowed_to_per_second).toBeNull();
  });

  test("a queue that did not opt in keeps its pace", async () => {
    await createQueue(db.pool, "t_plain", 2, { backoff_base_ms: 60_000 });
    await enqueueMany("t_plain", 4);
    const calls = await callsOf("t_plain");
    await completeMany(db.pool, [tooMany(calls[0]!, 30_000), tooMany(calls[1]!, 30_000)]);
    expect(await throttle("t_plain")).toBeUndefined();
    expect(await busy("t_plain")).toBe(2);
  });
});

describe("honor_retry_after: queue — a Retry-After holds the whole queue", () => {
  test("no new call starts until the Retry-After has passed; the job that got it waits at least as long; tick starts the queue again", async () => {
    await createQueue(db.pool, "t_hold", 2, { honor_retry_after: "queue", timeout_ms: 120_000 });
    await enqueueMany("t_hold", 4);
    const calls = await callsOf("t_hold");
    expect(calls).toHaveLength(2);
    await completeMany(db.pool, [tooMany(calls[0]!, 45_000)]);

    const held = await stats("t_hold");
    expect(new Date(held.held_until).getTime() - Date.now()).toBeGreaterThan(40_000);
    // The freed worker started nothing, though two jobs are due.
    expect(await busy("t_hold")).toBe(1);
    expect(await callsOf("t_hold")).toHaveLength(0);
    const { rows } = await db.pool.query("select run_at from supaqueue.job where id = $1", [
      calls[0]!.body.job.id,
    ]);
    expect(new Date(rows[0].run_at).getTime() - Date.now()).toBeGreaterThan(40_000);

    // Before the Retry-After nothing moves; after it, tick starts the queue and drops the throttle.
    await db.pool.query("select supaqueue.tick(now() + interval '30 seconds')");
    expect(await busy("t_hold")).toBe(1);
    await db.pool.query("select supaqueue.tick(now() + interval '46 seconds')");
    expect(await busy("t_hold")).toBe(2);
    expect(await throttle("t_hold")).toBeUndefined();
  });
});

describe("supaqueue.yml", () => {
  test("slow_down and honor_retry_after are read, checked and defaulted", () => {
    const ok = validateConfigText(
      "queues:\n  a:\n    url: https://x.example\n    slow_down: true\n    honor_retry_after: queue\n  b:\n    url: https://x.example\n",
      "supaqueue.yml",
      { env: {} },
    );
    expect(ok.problems).toEqual([]);
    expect(ok.config.queues.map((q) => [q.slowDown, q.honorRetryAfter])).toEqual([
      [true, "queue"],
      [false, "job"],
    ]);
    const bad = validateConfigText(
      "queues:\n  a:\n    url: https://x.example\n    honor_retry_after: always\n",
      "supaqueue.yml",
      { env: {} },
    );
    expect(bad.problems.map((p) => `${p.field}: ${p.message}`)).toEqual([
      'queues.a.honor_retry_after: "always" is not allowed; allowed values: job (a Retry-After delays only its job), queue (it also holds the queue\'s new calls until then)',
    ]);
  });
});
