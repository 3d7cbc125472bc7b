import pg from "pg";
import { beforeAll, describe, expect, test } from "vitest";
import { validateConfigText } from "../src/config/validate.ts";
import { asRole } from "../src/db/transaction.ts";
import { completeMany, createQueue, type SentCall, takeCalls } from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

/**
 * Flow control per key: per_key_concurrency caps a key's calls in flight, ordered runs a key's jobs one at a time in
 * enqueue order, hold_key_on_failure stops an ordered key after a job fails for good. Other keys are never held up.
 */
let db: TestDatabase;
beforeAll(async () => {
  db = await installedDatabase();
});

async function enqueue(queue: string, n: number, key: string | null): Promise<string> {
  const { rows } = await db.pool.query(
    "select supaqueue.enqueue($1, jsonb_build_object('n', $2::int), key => $3) as id",
    [queue, n, key],
  );
  return rows[0].id;
}

async function callsOf(queue: string): Promise<SentCall[]> {
  return (await takeCalls(db.pool)).filter((c) => c.body.queue.name === queue);
}

const n = (call: SentCall) => (call.body.job.payload as { n: number }).n;
const numbers = (calls: SentCall[]) => calls.map(n).sort((a, b) => a - b);
const ok = (call: SentCall) => ({ call, outcome: { succeeded: true, statusCode: 200 } });

describe("per_key_concurrency", () => {
  test("a key has at most that many calls in flight; other keys and jobs without a key go on", async () => {
    await createQueue(db.pool, "k_cap", 5, { per_key_concurrency: 1 });
    await enqueue("k_cap", 1, "a");
    await enqueue("k_cap", 2, "a");
    await enqueue("k_cap", 3, "a");
    await enqueue("k_cap", 4, "b");
    await enqueue("k_cap", 5, "b");
    await enqueue("k_cap", 6, null);
    const first = await callsOf("k_cap");
    expect(numbers(first)).toEqual([1, 4, 6]);

    // Freeing a's call starts a's next job on the freed worker.
    await completeMany(db.pool, [ok(first.find((c) => n(c) === 1)!)]);
    expect(numbers(await callsOf("k_cap"))).toEqual([2]);
    // Two workers are free, and still no second call for a or b.
    await db.pool.query("select supaqueue.tick()");
    expect(await callsOf("k_cap")).toEqual([]);
  });
});

describe("ordered", () => {
  test("a key's jobs run one at a time in enqueue order; a retried job holds the ones after it; a failure for good releases the key", async () => {
    await createQueue(db.pool, "k_order", 3, { ordered: true, backoff_base_ms: 60_000, max_attempts: 2 });
    await enqueue("k_order", 1, "a");
    await enqueue("k_order", 2, "a");
    await enqueue("k_order", 3, "b");
    const first = await callsOf("k_order");
    expect(numbers(first)).toEqual([1, 3]);

    // a's first job is retried in a minute: a's second waits for it, b goes on.
    const a1 = first.find((c) => n(c) === 1)!;
    await completeMany(db.pool, [
      { call: a1, outcome: { succeeded: false, statusCode: 503, error: "HTTP 503" } },
      ok(first.find((c) => n(c) === 3)!),
    ]);
    await db.pool.query("select supaqueue.tick()");
    expect(await callsOf("k_order")).toEqual([]);

    // A minute later a's first runs again; it fails for good (its last attempt) and a's second starts.
    await db.pool.query("select supaqueue.tick(now() + interval '2 minutes')");
    const again = await callsOf("k_order");
    expect(numbers(again)).toEqual([1]);
    await completeMany(db.pool, [
      { call: again[0]!, outcome: { succeeded: false, statusCode: 503, error: "HTTP 503" } },
    ]);
    expect(numbers(await callsOf("k_order"))).toEqual([2]);
  });

  test("hold_key_on_failure: a job that fails for good stops its key until it is retried, or the key released", async () => {
    await createQueue(db.pool, "k_hold", 2, { ordered: true, hold_key_on_failure: true, max_attempts: 1 });
    const a1 = await enqueue("k_hold", 1, "a");
    await enqueue("k_hold", 2, "a");
    await enqueue("k_hold", 3, "a");
    const [call] = await callsOf("k_hold");
    await completeMany(db.pool, [
      { call: call!, outcome: { succeeded: false, statusCode: 400, error: "HTTP 400", retryable: false } },
    ]);
    await db.pool.query("select supaqueue.tick()");
    expect(await callsOf("k_hold")).toEqual([]);
    const { rows } = await db.pool.query(
      "select held_by from supaqueue.job_key jk join supaqueue.queue q on q.id = jk.queue_id where q.name = 'k_hold'",
    );
    expect(rows[0].held_by).toBe(a1);

    // Retried, the failed job runs again first (it is the key's head).
    await db.pool.query("select supaqueue.retry($1)", [a1]);
    const retried = await callsOf("k_hold");
    expect(numbers(retried)).toEqual([1]);
    await completeMany(db.pool, [
      {
        call: retried[0]!,
        outcome: { succeeded: false, statusCode: 400, error: "HTTP 400", retryable: false },
      },
    ]);
    expect(await callsOf("k_hold")).toEqual([]);
    // Released, the key goes on without it.
    expect((await db.pool.query("select supaqueue.release_key('k_hold', 'a') as r")).rows[0].r).toBe(true);
    expect(numbers(await callsOf("k_hold"))).toEqual([2]);
    expect((await db.pool.query("select supaqueue.release_key('k_hold', 'a') as r")).rows[0].r).toBe(false);
  });

  test("a call cancelled in flight frees its key when its outcome comes back", async () => {
    await createQueue(db.pool, "k_cancel", 2, { ordered: true });
    const a1 = await enqueue("k_cancel", 1, "a");
    await enqueue("k_cancel", 2, "a");
    const [call] = await callsOf("k_cancel");
    await db.pool.query("select supaqueue.cancel($1)", [a1]);
    await completeMany(db.pool, [ok(call!)]);
    expect(numbers(await callsOf("k_cancel"))).toEqual([2]);
  });
});

describe("the key of a job", () => {
  test("key_field takes it from the payload; a key given to enqueue or enqueue_many wins", async () => {
    await createQueue(db.pool, "k_field", 0, { per_key_concurrency: 1, key_field: "tenant" });
    await db.pool.query("select supaqueue.enqueue('k_field', '{\"tenant\": \"t1\"}')");
    await db.pool.query("select supaqueue.enqueue('k_field', '{\"tenant\": \"t1\"}', key => 'mine')");
    await db.pool.query(
      `select supaqueue.enqueue_many('k_field', '[{"payload": {"tenant": "t2"}}, {"payload": {"tenant": "t2"}, "key": "other"}, {"payload": {}}]')`,
    );
    const { rows } = await db.pool.query(
      "select j.key from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'k_field' order by j.seq",
    );
    expect(rows.map((r) => r.key)).toEqual(["t1", "mine", "t2", "other", null]);
  });

  test("supaqueue.yml: per_key_concurrency, ordered, hold_key_on_failure and key_field, with the rules between them", () => {
    const good = validateConfigText(
      "queues:\n  a:\n    url: https://x.example\n    ordered: true\n    hold_key_on_failure: true\n    key_field: tenant_id\n  b:\n    url: https://x.example\n    per_key_concurrency: 2\n",
      "supaqueue.yml",
      { env: {} },
    );
    expect(good.problems).toEqual([]);
    expect(
      good.config.queues.map((q) => [q.ordered, q.holdKeyOnFailure, q.keyField, q.perKeyConcurrency]),
    ).toEqual([
      [true, true, "tenant_id", null],
      [false, false, null, 2],
    ]);
    const bad = validateConfigText(
      "queues:\n  a:\n    url: https://x.example\n    ordered: true\n    per_key_concurrency: 3\n  b:\n    url: https://x.example\n    hold_key_on_failure: true\n",
      "supaqueue.yml",
      { env: {} },
    );
    expect(bad.problems.map((p) => `${p.field}: ${p.message}`)).toEqual([
      "queues.a.per_key_concurrency: 3 with ordered: true; allowed: 1 or left out (an ordered key runs one job at a time)",
      "queues.b.hold_key_on_failure: needs ordered: true (it keeps an ordered key's order after a job fails for good)",
    ]);
  });
});

describe("under load", () => {
  test("8 connections completing in reverse order: never more in flight per key than allowed, never out of order for an ordered key, every job once", async () => {
    await createQueue(db.pool, "k_cap2", 20, { per_key_concurrency: 2 });
    await createQueue(db.pool, "k_seq", 20, { ordered: true });
    const KEYS = 25;
    const JOBS = 1_000;
    await db.pool.query(
      `select supaqueue.enqueue_many(q, (select jsonb_agg(jsonb_build_object('payload', jsonb_build_object('n', i),
                                                           'key', 'k' || (i % ${KEYS})) order by i)
                                       from generate_series(1, ${JOBS}) i))
         from unnest(array['k_cap2', 'k_seq']) q`,
    );
    const cap: Record<string, number> = { k_cap2: 2, k_seq: 1 };
    const inFlight = new Map<string, number>();
    const started: Record<string, Map<string, number[]>> = { k_cap2: new Map(), k_seq: new Map() };
    const seen = new Set<string>();
    const errors: unknown[] = [];
    const completer = new pg.Pool({ connectionString: db.url, max: 8 });
    let taken: SentCall[] = [];
    const deadline = Date.now() + 120_000;
    while (seen.size < 2 * JOBS && Date.now() < deadline) {
      // Other tests' calls left in flight are not this test's.
      const calls = (await takeCalls(db.pool)).filter((c) => c.body.queue.name in cap);
      for (const call of calls) {
        const queue = call.body.queue.name;
        const key = (call.body.job.payload as { n: number }).n % KEYS;
        const id = `${queue}/${key}`;
        inFlight.set(id, (inFlight.get(id) ?? 0) + 1);
        if ((inFlight.get(id) ?? 0) > (cap[queue] ?? 0)) errors.push(`${id}: ${inFlight.get(id)} in flight`);
        const list = started[queue]?.get(`k${key}`) ?? [];
        list.push((call.body.job.payload as { n: number }).n);
        started[queue]?.set(`k${key}`, list);
      }
      taken = [...taken, ...calls];
      if (taken.length === 0) {
        await db.pool.query("select supaqueue.tick()");
        continue;
      }
      // Newest first, in 8 concurrent reports.
      const batch = taken.reverse();
      taken = [];
      for (const call of batch) {
        const key = (call.body.job.payload as { n: number }).n % KEYS;
        const id = `${call.body.queue.name}/${key}`;
        inFlight.set(id, (inFlight.get(id) ?? 0) - 1);
        seen.add(`${call.body.queue.name}/${call.body.job.id}`);
      }
      const chunks = Array.from({ length: 8 }, (_, i) => batch.filter((_, j) => j % 8 === i));
      await Promise.all(
        chunks
          .filter((chunk) => chunk.length > 0)
          .map((chunk) =>
            asRole(completer, "service_role", "select public.supaqueue_complete_current_jobs($1::jsonb)", [
              JSON.stringify(
                chunk.map((c) => ({
                  current_job_id: c.body.current_job_id,
                  succeeded: true,
                  status_code: 200,
                })),
              ),
            ]).catch((e) => errors.push(e)),
          ),
      );
    }
    await completer.end();
    expect(errors).toEqual([]);
    expect(seen.size).toBe(2 * JOBS);
    // Ordered: each key's jobs started in enqueue order (n grows by KEYS within a key).
    for (const [key, list] of started.k_seq ?? new Map()) {
      expect(list, key).toEqual([...list].sort((a, b) => a - b));
    }
    const { rows } = await db.pool.query(
      "select count(*)::int as n from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name in ('k_cap2', 'k_seq') and j.status = 'successful' and j.attempts = 1",
    );
    expect(rows[0].n).toBe(2 * JOBS);
    const left = await db.pool.query(
      "select coalesce(sum(jk.in_flight), 0)::int as n from supaqueue.job_key jk join supaqueue.queue q on q.id = jk.queue_id where q.name in ('k_cap2', 'k_seq')",
    );
    expect(left.rows[0].n).toBe(0);
  }, 180_000);
});
