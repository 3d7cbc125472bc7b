// biome-ignore-all lint/suspicious/noTemplateCurlyInString: supaqueue.yml writes ${VAR} literally.
import { beforeAll, describe, expect, test } from "vitest";
import { validateConfigText } from "../src/config/validate.ts";
import { reconcileQueues } from "../src/install/apply.ts";
import { planLines } from "../src/install/present.ts";
import {
  claim,
  completeAndClaim,
  completeMany,
  createQueue,
  jobStatus,
  type SentCall,
  takeCalls,
  takeWakeups,
} from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

/**
 * The database side of the hop to execute_current_job (sql/0001_supaqueue.sql, "The hop"): what pg_net carries, how
 * calls are claimed (once, while their lease is live), how a report takes the next calls, and how tick() wakes calls
 * whose wakeup was lost. The function's side is in edge-handler.test.ts; both together in edge-e2e.test.ts.
 */

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

async function currentJobId(jobId: string): Promise<number> {
  const { rows } = await db.pool.query("select id from supaqueue.current_job where job_id = $1", [jobId]);
  return Number(rows[0].id);
}

describe("what pg_net carries", () => {
  test("one request per transaction that started calls, at commit: a bulk enqueue into 100 queues makes one", async () => {
    for (let i = 0; i < 100; i++) await createQueue(db.pool, `bulk-${i}`, 1);
    await takeWakeups(db.pool);
    await db.pool.query(
      `insert into supaqueue.job (queue_id, payload)
       select q.id, '{}' from supaqueue.queue q, generate_series(1, 3) where q.name like 'bulk-%'`,
    );
    const wakeups = await takeWakeups(db.pool);
    expect(wakeups).toHaveLength(1);
    expect(wakeups[0]?.body.ids).toHaveLength(100);
    // 250 calls at once: requests of at most 100 ids.
    await createQueue(db.pool, "wide", 250);
    await db.pool.query(
      "insert into supaqueue.job (queue_id) select q.id from supaqueue.queue q, generate_series(1, 250) where q.name = 'wide'",
    );
    expect((await takeWakeups(db.pool)).map((w) => w.body.ids.length)).toEqual([100, 100, 50]);
    await db.pool.query(
      "select supaqueue.purge(name) from supaqueue.queue where name like 'bulk-%' or name = 'wide'",
    );
  });

  test("a rolled-back transaction sends nothing; a rolled-back savepoint sends only what was kept", async () => {
    await createQueue(db.pool, "rollback", 2);
    const client = await db.pool.connect();
    try {
      await client.query("begin");
      await client.query("select supaqueue.enqueue('rollback')");
      await client.query("rollback");
      expect(await takeWakeups(db.pool)).toEqual([]);
      await client.query("begin");
      await client.query("savepoint s");
      await client.query("select supaqueue.enqueue('rollback')");
      await client.query("rollback to savepoint s");
      const kept = (await client.query("select supaqueue.enqueue('rollback') as id")).rows[0].id;
      await client.query("commit");
      const wakeups = await takeWakeups(db.pool);
      expect(wakeups.map((w) => w.body.ids)).toEqual([[await currentJobId(kept)]]);
    } finally {
      client.release();
    }
  });

  test("each call records its wakeup's pg_net request id and time", async () => {
    await createQueue(db.pool, "recorded", 1);
    const job = await enqueue("recorded");
    const [wakeup] = await takeWakeups(db.pool);
    const { rows } = await db.pool.query(
      "select wakeup_id, woken_at is not null as woken, claimed_at from supaqueue.current_job where job_id = $1",
      [job],
    );
    expect(rows[0]).toEqual({ wakeup_id: String(wakeup?.requestId), woken: true, claimed_at: null });
    await completeMany(db.pool, [{ call: await currentJobId(job) }]);
  });
});

describe("claims", () => {
  test("a call is claimed once; a lease run down is renewed at the claim; an expired lease is never claimed", async () => {
    await createQueue(db.pool, "claims", 2, { timeout_ms: 2000 });
    await db.pool.query("select supaqueue.configure(lease_grace_ms => 1000)");
    try {
      const a = await enqueue("claims");
      const b = await enqueue("claims");
      const [wakeup] = await takeWakeups(db.pool);
      const ids = wakeup!.body.ids;
      // b's lease has run out: the function must not make a call that tick() has counted, or will count, as lost.
      await db.pool.query(
        "update supaqueue.current_job set lease_until = now() - interval '1 second' where job_id = $1",
        [b],
      );
      // a's has run down to less than its timeout and half the grace: the claim gives it the time it needs.
      await db.pool.query(
        "update supaqueue.current_job set lease_until = clock_timestamp() + interval '1 second' where job_id = $1",
        [a],
      );
      const [first, second] = await Promise.all([claim(db.pool, ids), claim(db.pool, ids)]);
      const claimed = [...(first ?? []), ...(second ?? [])];
      expect(claimed.map((c) => c.body.job.id)).toEqual([a]);
      const { rows } = await db.pool.query(
        `select extract(epoch from lease_until - claimed_at) * 1000 as lease_ms
         from supaqueue.current_job where job_id = $1`,
        [a],
      );
      expect(Number(rows[0].lease_ms)).toBeCloseTo(3000, -1);
      await completeMany(db.pool, [{ call: claimed[0]! }, { call: await currentJobId(b) }]);
    } finally {
      await db.pool.query("select supaqueue.configure(lease_grace_ms => 30000)");
    }
  });

  test("a call claimed soon after it started keeps its lease (the claim writes no indexed column)", async () => {
    await createQueue(db.pool, "fresh", 1);
    const job = await enqueue("fresh");
    const lease = "select lease_until::text from supaqueue.current_job where job_id = $1";
    const before = (await db.pool.query(lease, [job])).rows[0].lease_until;
    const [call] = await takeCalls(db.pool);
    expect(call?.body.job.id).toBe(job);
    expect((await db.pool.query(lease, [job])).rows[0].lease_until).toBe(before);
    await completeMany(db.pool, [{ call: call! }]);
  });

  test("a claim hands out the details only the database knows: the resolved URL, secret headers and keys", async () => {
    await db.pool.query("select vault.create_secret('hop-token-value', 'hop_token')");
    await createQueue(db.pool, "details", 1, { secret_headers: JSON.stringify({ "X-Token": "hop_token" }) });
    await db.pool.query("select supaqueue.rotate_signing_key('details', 'details-signing-key-0001')");
    await enqueue("details", { n: 1 });
    const [call] = await takeCalls(db.pool);
    expect(call?.body.queue).toMatchObject({
      url: "https://target.example/hook",
      headers: { "X-Token": "hop-token-value" },
      signed: true,
      signing_keys: ["details-signing-key-0001"],
    });
    expect(call?.body.problem).toBeNull();
    await completeMany(db.pool, [{ call: call! }]);
  });

  test("a secret header or signing key missing from Vault makes the call a problem, never an unsigned call", async () => {
    await createQueue(db.pool, "missing", 1, { secret_headers: JSON.stringify({ "X-Gone": "hop_gone" }) });
    await db.pool.query("select supaqueue.rotate_signing_key('missing', 'missing-signing-key-001')");
    await db.pool.query("delete from vault.secrets where name = 'supaqueue:signing:missing'");
    await enqueue("missing");
    const [call] = await takeCalls(db.pool);
    expect(call?.body.queue).toMatchObject({ signed: true, signing_keys: [] });
    expect(call?.body.problem).toMatch(
      /secret header is missing from Vault: header "X-Gone" \(Vault secret "hop_gone"\)/,
    );
    expect(call?.body.problem).toMatch(
      /is signed but its signing key .* is missing; the call was not sent unsigned/,
    );
    await completeMany(db.pool, [{ call: call! }]);
  });
});

describe("a report takes the next calls", () => {
  test("the calls started for the freed workers come back claimed, and pg_net carries nothing for them", async () => {
    await createQueue(db.pool, "continue", 2);
    const jobs = [];
    for (let i = 0; i < 5; i++) jobs.push(await enqueue("continue", { i }));
    let calls = await takeCalls(db.pool);
    expect(calls).toHaveLength(2);
    const seen: string[] = [];
    while (calls.length > 0) {
      seen.push(...calls.map((c) => c.body.job.id));
      const answer = await completeAndClaim(
        db.pool,
        calls.map((call) => ({ call })),
      );
      expect(answer.finished.sort()).toEqual(calls.map((c) => c.body.current_job_id).sort());
      expect(await takeWakeups(db.pool)).toEqual([]);
      calls = answer.calls;
    }
    expect(seen.sort()).toEqual([...jobs].sort());
    for (const id of jobs) expect((await jobStatus(db.pool, id)).status).toBe("successful");
  });

  test("a call whose timeout does not fit in what the instance has left is woken through pg_net instead", async () => {
    await createQueue(db.pool, "short", 1, { timeout_ms: 1000 });
    await createQueue(db.pool, "long", 1, { timeout_ms: 60_000 });
    for (const q of ["short", "long"]) for (let i = 0; i < 2; i++) await enqueue(q);
    const calls = await takeCalls(db.pool);
    const answer = await completeAndClaim(
      db.pool,
      calls.map((call) => ({ call })),
      30_000,
    );
    expect(answer.calls.map((c) => c.body.queue.name)).toEqual(["short"]);
    const [wakeup] = await takeWakeups(db.pool);
    const woken = await claim(db.pool, wakeup!.body.ids);
    expect(woken.map((c) => c.body.queue.name)).toEqual(["long"]);
    // Without time left (claim_within_ms 0), every next call is woken.
    const none = await completeAndClaim(
      db.pool,
      [...answer.calls, ...woken].map((call) => ({ call })),
      0,
    );
    expect(none.calls).toEqual([]);
    expect((await takeWakeups(db.pool)).flatMap((w) => w.body.ids)).toHaveLength(0);
  });
});

describe("nothing waits on a lost wakeup", () => {
  test("a wakeup any role deleted from pg_net's queue is sent again by tick(), without counting an attempt", async () => {
    await createQueue(db.pool, "lost", 1);
    await takeWakeups(db.pool);
    const job = await enqueue("lost");
    const id = await currentJobId(job);
    // PUBLIC may delete from net.http_request_queue, as on the real platform.
    const deleted = await db.as("anon", "delete from net.http_request_queue returning id");
    expect(deleted.rowCount).toBe(1);
    const { rows: clock } = await db.pool.query(
      "select now() + interval '2 seconds' as soon, now() + interval '6 seconds' as later",
    );
    const wokenBy = async (at: Date) => {
      await db.pool.query("select supaqueue.tick($1)", [at]);
      return (await takeWakeups(db.pool)).flatMap((w) => w.body.ids);
    };
    expect(await wokenBy(clock[0].soon)).not.toContain(id);
    expect(await wokenBy(clock[0].later)).toContain(id);
    // Woken at `later`: not again before rewake_after_ms has passed since then.
    expect(await wokenBy(clock[0].later)).not.toContain(id);
    const [call] = await claim(db.pool, [id]);
    expect(call?.body.attempt).toBe(1);
    await completeMany(db.pool, [{ call: call! }]);
    expect(await jobStatus(db.pool, job)).toMatchObject({ status: "successful", attempts: 1 });
  });

  test("a call never claimed until its lease ends fails its attempt with the last wakeup's answer", async () => {
    await createQueue(db.pool, "unclaimed", 1, { timeout_ms: 1000, max_attempts: 2 });
    await takeWakeups(db.pool);
    const job = await enqueue("unclaimed");
    const [wakeup] = await takeWakeups(db.pool);
    await db.pool.query(
      `insert into net._http_response (id, status_code, content_type, content, timed_out)
       values ($1, 502, 'application/json', '{"error":"claim_rpc_404"}', false)`,
      [wakeup?.requestId],
    );
    await db.pool.query("select supaqueue.tick(now() + interval '1 hour')");
    const { rows } = await db.pool.query("select error from supaqueue.attempt where job_id = $1", [job]);
    expect(rows[0].error).toBe(
      `lease expired: execute_current_job never claimed the call (its last wakeup, pg_net request ${wakeup?.requestId}, was answered 502: {"error":"claim_rpc_404"})`,
    );
    expect(await jobStatus(db.pool, job)).toMatchObject({ status: "pending", attempts: 1 });
    await db.pool.query("select supaqueue.purge('unclaimed')");
  });
});

describe("Vault names cannot collide", () => {
  test("queue a with header B_C and queue a_b with header C each send their own secret", async () => {
    // Attack 4: both used to map to supaqueue_header_a_b_c, so queue a sent a_b's secret.
    const text = `queues:
  a: { url: https://a.example/hook, headers: { B_C: "\${A_SECRET}" } }
  a_b: { url: https://ab.example/hook, headers: { C: "\${AB_SECRET}" } }
`;
    const { config, problems } = validateConfigText(text, "supaqueue.yml", {
      env: { A_SECRET: "secret-of-a", AB_SECRET: "secret-of-a_b" },
    });
    expect(problems).toEqual([]);
    const client = await db.pool.connect();
    try {
      const plan = await reconcileQueues(client, config!);
      expect(plan.secrets.map((s) => s.name).sort()).toEqual([
        "supaqueue:header:a:b_c",
        "supaqueue:header:a_b:c",
      ]);
    } finally {
      client.release();
    }
    await db.pool.query("select supaqueue.set_workers(q, 1) from unnest(array['a', 'a_b']) q");
    await enqueue("a");
    await enqueue("a_b");
    const calls = await takeCalls(db.pool);
    const sent = Object.fromEntries(calls.map((c) => [c.body.queue.name, c.body.queue.headers]));
    expect(sent).toEqual({ a: { B_C: "secret-of-a" }, a_b: { C: "secret-of-a_b" } });
    await completeMany(
      db.pool,
      calls.map((call) => ({ call })),
    );
  });

  test("a URL holding ${VAR} is kept whole in Vault; the queue shows it as written and calls get the real one", async () => {
    const text = (url: string) => `queues:\n  hooked: { url: "${url}", workers: 1 }\n`;
    const reconcile = async (url: string) => {
      const { config, problems } = validateConfigText(text(url), "supaqueue.yml", {
        env: { HOOK_TOKEN: "tok-secret-9" },
      });
      expect(problems).toEqual([]);
      const client = await db.pool.connect();
      try {
        return await reconcileQueues(client, config!);
      } finally {
        client.release();
      }
    };
    const plan = await reconcile("https://hooks.example.com/x?token=${HOOK_TOKEN}");
    expect(planLines(plan, { done: true })).toContain(
      "created Vault secret supaqueue:url:hooked (url of queue hooked)",
    );
    const { rows } = await db.pool.query("select url, url_secret from supaqueue.queue where name = 'hooked'");
    expect(rows[0]).toEqual({
      url: "https://hooks.example.com/x?token=${HOOK_TOKEN}",
      url_secret: "supaqueue:url:hooked",
    });
    const { rows: vault } = await db.pool.query(
      "select decrypted_secret from vault.decrypted_secrets where name = 'supaqueue:url:hooked'",
    );
    expect(vault[0].decrypted_secret).toBe("https://hooks.example.com/x?token=tok-secret-9");
    await enqueue("hooked");
    const [call] = await takeCalls(db.pool);
    expect(call?.body.queue.url).toBe("https://hooks.example.com/x?token=tok-secret-9");
    expect(call?.body.problem).toBeNull();
    await completeMany(db.pool, [{ call: call! }]);
    // A plain URL again: the secret goes.
    const plain = await reconcile("https://hooks.example.com/x");
    expect(plain.secrets).toEqual([
      { name: "supaqueue:url:hooked", queue: "hooked", header: "(url)", action: "delete" },
    ]);
    const { rows: after } = await db.pool.query(
      "select url_secret from supaqueue.queue where name = 'hooked'",
    );
    expect(after[0].url_secret).toBeNull();
  });

  test("queue x's previous signing key and queue x_previous's key are different secrets", async () => {
    await createQueue(db.pool, "x", 1);
    await createQueue(db.pool, "x_previous", 1);
    await db.pool.query("select supaqueue.rotate_signing_key('x', 'x-first-key-000001')");
    await db.pool.query("select supaqueue.rotate_signing_key('x', 'x-second-key-00001')");
    await db.pool.query("select supaqueue.rotate_signing_key('x_previous', 'xp-own-key-000001')");
    await enqueue("x");
    await enqueue("x_previous");
    const calls: SentCall[] = await takeCalls(db.pool);
    const keys = Object.fromEntries(calls.map((c) => [c.body.queue.name, c.body.queue.signing_keys]));
    expect(keys).toEqual({
      x: ["x-second-key-00001", "x-first-key-000001"],
      x_previous: ["xp-own-key-000001"],
    });
    await completeMany(
      db.pool,
      calls.map((call) => ({ call })),
    );
  });
});
