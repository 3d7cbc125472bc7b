import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  createSupaqueue,
  PayloadError,
  type Supaqueue,
  SupaqueueError,
  WaitTimeoutError,
} from "../src/client/index.ts";
import { complete, createQueue, takeCalls } from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";
import { SERVICE_ROLE_KEY } from "./support/edge-stack.ts";
import { type PostgrestStandin, startPostgrest } from "./support/postgrest.ts";
import { supabaseClient as createClient } from "./support/supabase-client.ts";

// The client on the real supabase-js, through the PostgREST stand-in (the RPCs run as service_role, as on Supabase),
// on a real database. Calls are played without network: the test claims them and reports their outcomes as
// execute_current_job would.

let db: TestDatabase;
let postgrest: PostgrestStandin;
let queue: Supaqueue<{ mail: { to: string }; hooks: { n: number } }>;

beforeAll(async () => {
  db = await installedDatabase();
  postgrest = await startPostgrest({ pool: db.pool, serviceRoleKey: SERVICE_ROLE_KEY });
  await createQueue(db.pool, "mail", 2);
  await createQueue(db.pool, "hooks", 0, { method: "GET" });
  queue = createSupaqueue(createClient(postgrest.url, SERVICE_ROLE_KEY));
});
afterAll(async () => {
  await postgrest?.stop();
});

describe("the client", () => {
  test("enqueue, then follow the job to success through get and wait (no network: the call is completed by RPC)", async () => {
    const id = await queue.enqueue("mail", { to: "ada@example.com" }, { headers: { "X-Tenant": "acme" } });
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    const before = await queue.get(id);
    expect(before).toMatchObject({
      id,
      queue: "mail",
      status: "in_progress",
      payload: { to: "ada@example.com" },
      headers: { "X-Tenant": "acme" },
      attempts: 1,
      history: [],
    });
    const waiting = queue.wait(id, { intervalMs: 20, timeoutMs: 10_000 });
    const [call] = (await takeCalls(db.pool)).filter((c) => c.body.job.id === id);
    expect(call).toBeDefined();
    expect(await complete(db.pool, call!, { succeeded: true, statusCode: 202, durationMs: 12 })).toBe(true);
    const done = await waiting;
    expect(done.status).toBe("successful");
    expect(done.finishedAt).not.toBeNull();
    expect(done.history).toEqual([
      expect.objectContaining({ attempt: 1, succeeded: true, statusCode: 202, durationMs: 12, error: null }),
    ]);
  });

  test("enqueue with after: the job waits for the others, and get shows both sides", async () => {
    const first = await queue.enqueue("hooks", { n: 10 });
    const second = await queue.enqueue("hooks", { n: 11 });
    const joined = await queue.enqueue("mail", { to: "ops@example.com" }, { after: [first, second] });
    expect(await queue.get(joined)).toMatchObject({
      status: "waiting",
      after: [first, second].sort(),
      waitedOnBy: [],
      parentId: null,
      children: [],
    });
    expect((await queue.get(first))?.waitedOnBy).toEqual([joined]);
    // enqueueMany takes after per job too; get shows a job's call in flight (or null).
    const [plain, fanIn] = await queue.enqueueMany("mail", [
      { payload: { to: "a@example.com" } },
      { payload: { to: "b@example.com" }, after: [first] },
    ]);
    expect(await queue.get(fanIn!)).toMatchObject({ status: "waiting", after: [first] });
    expect(await queue.get(plain!)).toMatchObject({ after: [] });
    const inFlight = await queue.get(first);
    expect(inFlight?.call === null || typeof inFlight?.call?.leaseUntil === "string").toBe(true);
    expect((await queue.get(joined))?.call).toBeNull();
    await expect(
      queue.enqueue("mail", { to: "x@example.com" }, { after: [crypto.randomUUID()] }),
    ).rejects.toThrow(/does not exist/);
  });

  test("enqueue with a delay, a runAt and a dedup key; runAt and delay together are refused", async () => {
    const delayed = await queue.enqueue("hooks", { n: 1 }, { delay: 60_000 });
    const job = await queue.get(delayed);
    expect(Date.parse(job!.runAt) - Date.now()).toBeGreaterThan(50_000);
    const at = new Date(Date.now() + 3_600_000);
    const later = await queue.get(await queue.enqueue("hooks", { n: 2 }, { runAt: at }));
    expect(Date.parse(later!.runAt)).toBe(at.getTime());
    const first = await queue.enqueue("hooks", { n: 3 }, { dedupKey: "once" });
    expect(await queue.enqueue("hooks", { n: 4 }, { dedupKey: "once" })).toBe(first);
    await expect(queue.enqueue("hooks", { n: 5 }, { delay: 1, runAt: at })).rejects.toThrow(/not both/);
  });

  test("enqueueMany: one round trip, ids in the order given, dedup keys honoured", async () => {
    const calls = postgrest.calls.length;
    const jobs = Array.from({ length: 50 }, (_, n) => ({ payload: { n } }));
    const ids = await queue.enqueueMany("hooks", [
      ...jobs,
      { payload: { n: 100 }, dedupKey: "once" },
      { payload: { n: 101 }, delay: 5_000 },
      { payload: { n: 102 }, dedupKey: "batch" },
      { payload: { n: 103 }, dedupKey: "batch" },
    ]);
    expect(postgrest.calls.length - calls).toBe(1);
    expect(ids).toHaveLength(54);
    expect(new Set(ids).size).toBe(53);
    expect(ids[52]).toBe(ids[53]);
    const { rows } = await db.pool.query(
      "select id, payload->>'n' as n from supaqueue.job where id = any($1::uuid[])",
      [ids.slice(0, 50)],
    );
    const byId = new Map(rows.map((r) => [r.id, Number(r.n)]));
    expect(ids.slice(0, 50).map((id) => byId.get(id))).toEqual(jobs.map((j) => j.payload.n));
    const once = await queue.get(ids[50]!);
    expect(once!.payload).toEqual({ n: 3 });
  });

  test("enqueueMany adds nothing when one job is bad, and says which", async () => {
    const before = (await db.pool.query("select count(*)::int as n from supaqueue.job")).rows[0].n;
    const error = await queue
      .enqueueMany("hooks", [{ payload: { n: 1 } }, { payload: [1, 2] as unknown as { n: number } }])
      .catch((e) => e);
    expect(error).toBeInstanceOf(SupaqueueError);
    expect(error.message).toMatch(/^job 2 of 2: queue "hooks" sends GET requests/);
    expect((await db.pool.query("select count(*)::int as n from supaqueue.job")).rows[0].n).toBe(before);
  });

  test("supaqueue.enqueue_many checks every job in one query and names the first at fault", async () => {
    const many = (jobs: unknown) =>
      db.pool.query("select supaqueue.enqueue_many('mail', $1::jsonb) as ids", [JSON.stringify(jobs)]);
    const refusals: [unknown, string][] = [
      [{}, "supaqueue: jobs must be a JSON array of objects, not object"],
      [[{}, 3], "supaqueue: job 2 of 2: a job must be a JSON object, not number"],
      [[{ payload: {}, when: 1 }], "supaqueue: unknown key in a job; the keys are payload, run_at, delay_ms"],
      [
        [{}, {}, { run_at: "2030-01-01T00:00:00Z", delay_ms: 5 }],
        "supaqueue: job 3 of 3: a job has run_at or delay_ms, not both",
      ],
      [
        [{ payload: "text" }],
        'supaqueue: the payload for queue "mail" must be a JSON object or array, not string',
      ],
      [
        [{ headers: { "X-N": 1 } }, {}],
        "supaqueue: job 1 of 2: job headers must be a JSON object of strings",
      ],
    ];
    for (const [jobs, message] of refusals) await expect(many(jobs)).rejects.toThrow(message);
    const { rows } = await many([{ headers: null }, { payload: [1], run_at: "2030-01-01T00:00:00Z" }]);
    expect(rows[0].ids).toHaveLength(2);
    const { rows: later } = await db.pool.query("select run_at from supaqueue.job where id = $1", [
      rows[0].ids[1],
    ]);
    expect(later[0].run_at.toISOString()).toBe("2030-01-01T00:00:00.000Z");
    expect((await many([])).rows[0].ids).toEqual([]);
  });

  test("errors keep Postgres's message, code and hint", async () => {
    const untyped = createSupaqueue(createClient(postgrest.url, SERVICE_ROLE_KEY));
    const error = await untyped.enqueue("nope", {}).catch((e) => e);
    expect(error).toBeInstanceOf(SupaqueueError);
    expect(error).toMatchObject({
      message: 'queue "nope" does not exist',
      code: "P0001",
      hint: expect.stringContaining("supaqueue.yml"),
      status: 400,
      fn: "supaqueue_payload_schema",
    });
    const bad = await untyped.get("not-a-uuid").catch((e) => e);
    expect(bad).toMatchObject({ code: "22P02", name: "SupaqueueError" });
  });

  test("cancel, retry, pause, resume and stats", async () => {
    const id = await queue.enqueue("hooks", { n: 9 });
    expect(await queue.cancel(id)).toBe(true);
    expect(await queue.cancel(id)).toBe(false);
    expect((await queue.get(id))!.status).toBe("cancelled");
    expect(await queue.retry(id)).toBe(true);
    expect((await queue.get(id))!.status).toBe("pending");
    expect(await queue.pause("hooks")).toBe(true);
    expect((await queue.stats("hooks"))!.paused).toBe(true);
    expect(await queue.resume("hooks")).toBe(true);
    expect(await createSupaqueue(createClient(postgrest.url, SERVICE_ROLE_KEY)).pause("nope")).toBe(false);
    const all = await queue.stats();
    expect(all.map((s) => s.queue)).toEqual(["hooks", "mail"]);
    expect(all[0]).toMatchObject({ queue: "hooks", paused: false, workers: 0, busyWorkers: 0, inFlight: 0 });
    expect(all[0]!.pending + all[0]!.scheduled).toBeGreaterThan(50);
    expect(await queue.stats("nope" as "hooks")).toBeNull();
    expect(await queue.get("00000000-0000-7000-8000-000000000000")).toBeNull();
  });

  test("wait is bounded, polls with backoff and stops on an abort signal", async () => {
    const id = await queue.enqueue("hooks", { n: 10 });
    const calls = postgrest.calls.length;
    const started = Date.now();
    const error = await queue
      .wait(id, { timeoutMs: 600, intervalMs: 50, maxIntervalMs: 200 })
      .catch((e) => e);
    expect(error).toBeInstanceOf(WaitTimeoutError);
    expect(error.lastStatus).toBe("pending");
    expect(Date.now() - started).toBeGreaterThanOrEqual(550);
    const looks = postgrest.calls.length - calls;
    // 0, 50, 125, 237, 406, 600 ms: a handful of looks, not one every 50 ms.
    expect(looks).toBeGreaterThanOrEqual(4);
    expect(looks).toBeLessThanOrEqual(8);
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("user gave up")), 100);
    await expect(queue.wait(id, { signal: controller.signal, intervalMs: 1000 })).rejects.toThrow(
      "user gave up",
    );
    await expect(queue.wait("00000000-0000-7000-8000-000000000000")).rejects.toThrow(/does not exist/);
  });

  // supabase-js sends a new secret key (sb_secret_…) as `Authorization: Bearer` too, which the stand-in refuses as
  // the edge runtime's verify_jwt does; Supabase's REST gateway takes it. So this file uses the legacy service_role key.
  test("payloads are checked against the queue's JSON Schema before they are sent, naming the field", async () => {
    await createQueue(db.pool, "typed", 0, {
      payload_schema: JSON.stringify({
        type: "object",
        required: ["to"],
        additionalProperties: false,
        properties: {
          to: { type: "string", pattern: "@" },
          tags: { type: "array", items: { enum: ["a", "b"] } },
        },
      }),
    });
    const typed = createSupaqueue<{ typed: { to: string; tags?: string[] } }>(
      createClient(postgrest.url, SERVICE_ROLE_KEY),
    );
    expect(await typed.enqueue("typed", { to: "ada@example.com", tags: ["a"] })).toMatch(/^[0-9a-f-]{36}$/);
    const sent = postgrest.calls.length;
    const error = await typed.enqueue("typed", { to: "ada@example.com", tags: ["c"] }).catch((e) => e);
    expect(error).toBeInstanceOf(PayloadError);
    expect(error).toMatchObject({ queue: "typed", path: "/tags/0", index: null });
    expect(error.message).toBe(
      'the payload for queue "typed" is invalid at /tags/0: must be one of "a", "b", not "c"',
    );
    await expect(typed.enqueue("typed", {} as { to: string })).rejects.toThrow(
      'the payload for queue "typed" is invalid at /to: is required, and missing',
    );
    const many = await typed
      .enqueueMany("typed", [{ payload: { to: "a@x" } }, { payload: { to: "b@x", cc: 1 } as { to: string } }])
      .catch((e) => e);
    expect(many.message).toBe(
      'the payload of job 2 for queue "typed" is invalid at /cc: is not allowed (allowed: to, tags)',
    );
    expect(postgrest.calls.length).toBe(sent);
    // Without the check the database takes it: the schema is the client's contract, not a constraint.
    const unchecked = createSupaqueue(createClient(postgrest.url, SERVICE_ROLE_KEY), { validate: false });
    expect(await unchecked.enqueue("typed", { to: 1 })).toMatch(/^[0-9a-f-]{36}$/);
  });

  test("a client with a key that maps to anon is refused with Postgres's permission error", async () => {
    const anon = await startPostgrest({ pool: db.pool, serviceRoleKey: SERVICE_ROLE_KEY, role: "anon" });
    try {
      const error = await createSupaqueue(createClient(anon.url, SERVICE_ROLE_KEY))
        .enqueue("hooks", { n: 12 })
        .catch((e) => e);
      expect(error).toMatchObject({ code: "42501", status: 403 });
    } finally {
      await anon.stop();
    }
  });
});
