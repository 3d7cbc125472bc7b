import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { wakeupHeader } from "../functions/execute_current_job/wakeup.ts";
import { TEST_SECRET, type TestDatabase } from "./support/db.ts";
import { type ServedFunction, serveFunction } from "./support/deno.ts";
import { type EdgeStack, SERVICE_ROLE_KEY, startEdgeStack } from "./support/edge-stack.ts";
import type { Gateway } from "./support/gateway.ts";
import type { PostgrestStandin, RpcCall } from "./support/postgrest.ts";
import { startTargets, type Targets } from "./support/targets.ts";

/**
 * execute_current_job end to end (see support/edge-stack.ts for the stack): Postgres → pg_net stand-in → the
 * function in real Deno, which claims its calls (public.supaqueue_claim_current_jobs) → local targets, and the
 * outcomes back through the PostgREST stand-in, in batches (public.supaqueue_complete_and_claim).
 */

const BATCH_RPC = "supaqueue_complete_and_claim";
const CLAIM_RPC = "supaqueue_claim_current_jobs";

let stack: EdgeStack;
let db: TestDatabase;
let targets: Targets;
let postgrest: PostgrestStandin;
let fn: ServedFunction;
let gateway: Gateway;

beforeAll(async () => {
  // A short lease grace (1 s), so the test of a lost report sees the lease expire quickly.
  stack = await startEdgeStack({ leaseGraceMs: 1000 });
  ({ db, targets, postgrest, fn, gateway } = stack);
  await db.pool.query("select vault.create_secret('token-from-vault', 'e2e_target_token')");
});

afterAll(() => stack?.stop());

const createQueue: EdgeStack["createQueue"] = (options) => stack.createQueue(options);
const enqueue: EdgeStack["enqueue"] = (...args) => stack.enqueue(...args);
const finished = (jobId: string) => stack.finished(jobId);
const attempts: EdgeStack["attempts"] = (jobId) => stack.attempts(jobId);

/** The outcomes one call of the stand-in carried (none for a call of another function). */
function outcomesOf(call: RpcCall): Array<{ current_job_id: number | string }> {
  return call.fn === BATCH_RPC && Array.isArray(call.args.outcomes) ? call.args.outcomes : [];
}

describe("execute_current_job in Deno, end to end", () => {
  test("a POST carries the payload and the queue's, Vault's and the job's headers, and succeeds", async () => {
    const queue = await createQueue({
      url: `${targets.url}/ok?source=e2e`,
      headers: { "X-Queue": "plain", "X-Override": "queue" },
      secret_headers: { "X-Token": "e2e_target_token" },
    });
    const jobId = await enqueue(
      queue,
      { order: 42, items: ["a", "b"] },
      { "X-Override": "job", "X-Job": "yes" },
    );
    expect(await finished(jobId)).toMatchObject({ status: "successful", attempts: 1, last_status_code: 200 });

    const [received] = targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId);
    expect(received).toMatchObject({ method: "POST", path: "/ok", rawQuery: "source=e2e" });
    expect(JSON.parse(received?.body ?? "")).toEqual({ order: 42, items: ["a", "b"] });
    expect(received?.headers).toMatchObject({
      "content-type": "application/json",
      "x-queue": "plain",
      "x-token": "token-from-vault",
      "x-override": "job",
      "x-job": "yes",
      "idempotency-key": jobId,
      "supaqueue-job-id": jobId,
      "supaqueue-attempt": "1",
    });
    // A plain URL target never receives the project's key.
    expect(received?.headers.authorization).toBeUndefined();
    expect(received?.headers.apikey).toBeUndefined();

    const [attempt] = await attempts(jobId);
    expect(attempt).toMatchObject({
      attempt: 1,
      succeeded: true,
      status_code: 200,
      response_body: '{"ok":true}',
      error: null,
    });
    expect(attempt?.duration_ms).toBeGreaterThanOrEqual(0);
    expect(postgrest.calls.some((c) => c.status === 200 && outcomesOf(c).length > 0)).toBe(true);
  });

  test("calls that finish together are reported together, each recorded exactly once", async () => {
    const jobs = 40;
    const queue = await createQueue({ url: `${targets.url}/slow/300`, workers: jobs });
    const before = postgrest.calls.length;
    // One transaction: all the calls start together and, answered after the same 300 ms, end together.
    const { rows } = await db.pool.query<{ id: string }>(
      "select supaqueue.enqueue($1, jsonb_build_object('n', n)) as id from generate_series(1, $2::int) n",
      [queue, jobs],
    );
    const ids = rows.map((r) => r.id);
    for (const id of ids)
      expect(await finished(id)).toMatchObject({ status: "successful", attempts: 1, last_status_code: 200 });
    for (const id of ids)
      expect((await attempts(id)).map((a) => [a.attempt, a.succeeded])).toEqual([[1, true]]);
    const received = targets.to("/slow/300").map((r) => r.headers["supaqueue-job-id"]);
    expect(received.sort()).toEqual([...ids].sort());

    const reports = postgrest.calls.slice(before).filter((c) => c.fn === BATCH_RPC);
    expect(reports.every((c) => c.status === 200)).toBe(true);
    const reported = reports.flatMap(outcomesOf).map((o) => String(o.current_job_id));
    expect(reported).toHaveLength(jobs);
    expect(new Set(reported).size).toBe(jobs);
    expect(reports.length).toBeLessThan(jobs);
    expect(Math.max(...reports.map((c) => outcomesOf(c).length))).toBeGreaterThan(1);
  });

  test("GET and DELETE send the payload as the query string, keeping the URL's parameters", async () => {
    for (const method of ["GET", "DELETE"]) {
      const queue = await createQueue({ url: `${targets.url}/ok?fixed=1`, method });
      const jobId = await enqueue(queue, { q: "a b&c", n: 5, nested: { deep: [1, "x"] } });
      expect((await finished(jobId)).status).toBe("successful");
      const [received] = targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId);
      expect(received?.method).toBe(method);
      expect(received?.body).toBe("");
      // The payload's keys arrive in jsonb's order (shorter keys first), after the URL's own parameters.
      expect(received?.rawQuery).toBe("fixed=1&n=5&q=a%20b%26c&nested=%7B%22deep%22%3A%5B1%2C%22x%22%5D%7D");
      expect(received?.query).toEqual({ fixed: "1", q: "a b&c", n: "5", nested: '{"deep":[1,"x"]}' });
    }
  });

  test("PUT and PATCH send the payload as JSON", async () => {
    for (const method of ["PUT", "PATCH"]) {
      const queue = await createQueue({ url: `${targets.url}/ok`, method });
      const jobId = await enqueue(queue, [1, { two: 2 }]);
      expect((await finished(jobId)).status).toBe("successful");
      const [received] = targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId);
      expect(received?.method).toBe(method);
      expect(JSON.parse(received?.body ?? "")).toEqual([1, { two: 2 }]);
    }
  });

  test("5xx answers are retried with the same Idempotency-Key until one succeeds", async () => {
    targets.sequences.set("flaky", [500, 502]);
    const queue = await createQueue({ url: `${targets.url}/sequence/flaky`, max_attempts: 3 });
    const jobId = await enqueue(queue, { n: 1 });
    expect(await finished(jobId)).toMatchObject({ status: "successful", attempts: 3, last_status_code: 200 });
    const history = await attempts(jobId);
    expect(history.map((a) => [a.attempt, a.succeeded, a.status_code])).toEqual([
      [1, false, 500],
      [2, false, 502],
      [3, true, 200],
    ]);
    expect(history[0]?.error).toBe("HTTP 500");
    const received = targets.to("/sequence/flaky");
    expect(received.map((r) => r.headers["supaqueue-attempt"])).toEqual(["1", "2", "3"]);
    expect(new Set(received.map((r) => r.headers["idempotency-key"]))).toEqual(new Set([jobId]));
  });

  test("a 404 fails the job at once, without using up its attempts", async () => {
    const queue = await createQueue({ url: `${targets.url}/status/404`, max_attempts: 5 });
    const jobId = await enqueue(queue);
    expect(await finished(jobId)).toMatchObject({ status: "failed", attempts: 1, last_status_code: 404 });
    expect(await attempts(jobId)).toEqual([
      expect.objectContaining({
        attempt: 1,
        succeeded: false,
        status_code: 404,
        response_body: '{"status":404}',
      }),
    ]);
  });

  test("per-queue codes: a 404 counted as success, a 409 retried", async () => {
    const ok = await createQueue({ url: `${targets.url}/status/404`, success_codes: [200, 404] });
    expect((await finished(await enqueue(ok))).status).toBe("successful");
    const retried = await createQueue({
      url: `${targets.url}/status/409`,
      retry_codes: [409],
      max_attempts: 2,
    });
    const jobId = await enqueue(retried);
    expect(await finished(jobId)).toMatchObject({ status: "failed", attempts: 2, last_status_code: 409 });
  });

  test("a 429 waits for its Retry-After before the next attempt", async () => {
    const queue = await createQueue({ url: `${targets.url}/busy/1`, max_attempts: 2, backoff_base_ms: 10 });
    const jobId = await enqueue(queue);
    expect(await finished(jobId)).toMatchObject({ status: "failed", attempts: 2, last_status_code: 429 });
    const received = targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId);
    expect(received).toHaveLength(2);
    expect((received[1]?.at ?? 0) - (received[0]?.at ?? 0)).toBeGreaterThanOrEqual(950);
  });

  test("non-JSON, empty and huge bodies are recorded, the huge one cut to the configured bound", async () => {
    const text = await enqueue(await createQueue({ url: `${targets.url}/text` }));
    const empty = await enqueue(await createQueue({ url: `${targets.url}/empty` }));
    const huge = await enqueue(await createQueue({ url: `${targets.url}/huge/64` }));
    for (const id of [text, empty, huge]) expect((await finished(id)).status).toBe("successful");
    expect((await attempts(text))[0]?.response_body).toBe("plain text, not JSON <>&");
    expect((await attempts(empty))[0]).toMatchObject({ status_code: 204, response_body: null });
    const { rows } = await db.pool.query("select max_response_chars from supaqueue.config");
    expect((await attempts(huge))[0]?.response_body).toBe("x".repeat(rows[0].max_response_chars));
    expect(targets.hugeBytesSent).toBeLessThan(64 * 1024 * 1024);
  });

  test("on_success: the next jobs get the whole JSON body (beyond max_response_chars); a non-JSON one stops the step", async () => {
    const next = await createQueue({ url: `${targets.url}/ok`, workers: 0 });
    const list = await createQueue({
      url: `${targets.url}/items/50`,
      on_success_queue: next,
      on_success_field: "items",
      fan_out: true,
    });
    const text = await createQueue({ url: `${targets.url}/text`, on_success_queue: next });
    const listed = await enqueue(list, {});
    const texted = await enqueue(text, {});
    expect(await finished(listed)).toMatchObject({ status: "successful", last_error: null });
    const { rows: cfg } = await db.pool.query("select max_response_chars from supaqueue.config");
    expect((await attempts(listed))[0]?.response_body).toHaveLength(cfg[0].max_response_chars);
    const { rows } = await db.pool.query(
      "select payload from supaqueue.job where parent_id = $1 order by seq",
      [listed],
    );
    expect(rows.map((r) => r.payload.i)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(await finished(texted)).toMatchObject({
      status: "successful",
      attempts: 1,
      last_error: expect.stringMatching(
        /^on_success: the response is not JSON .*; the call is not repeated$/,
      ),
    });
  });

  test("a target that hangs is cut off at the queue's timeout; a closed connection is a network error", async () => {
    const hang = await enqueue(
      await createQueue({ url: `${targets.url}/hang`, timeout_ms: 500, max_attempts: 1 }),
    );
    const close = await enqueue(await createQueue({ url: `${targets.url}/close`, max_attempts: 2 }));
    expect(await finished(hang)).toMatchObject({ status: "failed", attempts: 1, last_status_code: null });
    const [timedOut] = await attempts(hang);
    expect(timedOut?.error).toBe("timeout: no response within 500 ms");
    expect(timedOut?.duration_ms).toBeGreaterThanOrEqual(450);
    expect(timedOut?.duration_ms).toBeLessThan(3000);

    expect(await finished(close)).toMatchObject({ status: "failed", attempts: 2, last_status_code: null });
    for (const a of await attempts(close)) expect(a.error).toMatch(/^network error: /);
  });

  test("an edge function of the project is called with the project's key", async () => {
    const queue = await createQueue({ function_name: "send-email" });
    const jobId = await enqueue(queue, { to: "a@example.com" });
    expect((await finished(jobId)).status).toBe("successful");
    const [received] = targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId);
    // The gateway strips /functions/v1, as Supabase's does: the function sees its own name as the path.
    expect(received?.path).toBe("/send-email");
    expect(received?.headers.authorization).toBe(`Bearer ${SERVICE_ROLE_KEY}`);
    expect(received?.headers.apikey).toBe(SERVICE_ROLE_KEY);
    expect((await attempts(jobId))[0]?.response_body).toBe('{"function":"send-email"}');
  });

  test("when reporting fails nothing is lost: the lease expires and the job runs again", async () => {
    const queue = await createQueue({ url: `${targets.url}/slow/300`, timeout_ms: 500, max_attempts: 3 });
    const jobId = await enqueue(queue);
    try {
      // Claimed and on its way to the target: only the report fails.
      await targets.waitFor("/slow/300", targets.to("/slow/300").length + 1);
      postgrest.failWith = 503;
      const deadline = Date.now() + 10_000;
      while (!postgrest.calls.some((c) => c.status === 503 && outcomesOf(c).length > 0)) {
        if (Date.now() > deadline) throw new Error("the function never tried to report");
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      postgrest.failWith = null;
    }
    expect(await finished(jobId)).toMatchObject({ status: "successful", attempts: 2 });
    const history = await attempts(jobId);
    expect(history.map((a) => [a.attempt, a.succeeded, a.error])).toEqual([
      [1, false, "lease expired: no outcome was reported in time"],
      [2, true, null],
    ]);
    expect(fn.output()).toMatch(/reporting the outcome failed/);
  });

  test("a wakeup without the right MAC is refused with 401; a forged one naming any id claims nothing", async () => {
    // Attack 1 of the hop's review: a hand-made request used to make any call with the project's key.
    const before = targets.requests.length;
    const claimsBefore = postgrest.calls.filter((c) => c.fn === CLAIM_RPC).length;
    const body = JSON.stringify({ v: 2, ids: [999_999] });
    const post = (headers: Record<string, string>) =>
      fetch(`${gateway.functionsUrl}/execute_current_job`, {
        method: "POST",
        headers: { "Content-Type": "application/json", ...headers },
        body,
      });
    const refused: Record<string, string>[] = [
      {},
      { "Supaqueue-Wakeup": await wakeupHeader({ secret: "wrong", body, t: Date.now(), w: 41_000 }) },
      { "supaqueue-secret": TEST_SECRET },
    ];
    for (const headers of refused) {
      const res = await post(headers);
      expect([400, 401]).toContain(res.status);
      expect(await res.text()).not.toContain(TEST_SECRET);
    }
    expect(postgrest.calls.filter((c) => c.fn === CLAIM_RPC)).toHaveLength(claimsBefore);
    // With the secret itself, a forged wakeup can only name calls: 999999 is not one, so nothing is made.
    const forged = await post({
      "Supaqueue-Wakeup": await wakeupHeader({ secret: TEST_SECRET, body, t: Date.now(), w: 41_000 }),
    });
    expect(await forged.json()).toEqual({ claimed: 0, of: 1 });
    await new Promise((r) => setTimeout(r, 200));
    expect(targets.requests.length).toBe(before);
  });

  test("a wakeup replayed three times makes the call once", async () => {
    const queue = await createQueue({ url: `${targets.url}/ok` });
    const jobId = await enqueue(queue);
    expect((await finished(jobId)).status).toBe("successful");
    const [wakeup] = stack.pgnetRequests.filter((r) => r.body?.includes('"ids"')).slice(-1);
    expect(wakeup).toBeDefined();
    for (let i = 0; i < 3; i++) {
      const res = await fetch(wakeup!.url, { method: "POST", headers: wakeup!.headers, body: wakeup!.body });
      expect(await res.json()).toEqual({ claimed: 0, of: 1 });
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId)).toHaveLength(1);
  });

  test("pg_net's tables, which every role can read, hold no payload, header value or secret", async () => {
    // Attack 2: the queued requests and the function's answers are readable by anon and authenticated.
    await db.pool.query("select vault.create_secret('vault-header-value-42', 'e2e_leak_check')");
    const queue = await createQueue({
      url: `${targets.url}/ok`,
      headers: { "X-Plain": "plain-header-value-42" },
      secret_headers: { "X-Token": "e2e_leak_check" },
    });
    await db.pool.query("select supaqueue.rotate_signing_key($1, 'signing-key-value-42')", [queue]);
    const jobId = await enqueue(queue, { card: "payload-value-42" }, { "X-Job": "job-header-value-42" });
    expect((await finished(jobId)).status).toBe("successful");
    const [received] = targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId);
    expect(received?.headers["x-token"]).toBe("vault-header-value-42");
    for (const role of ["anon", "authenticated"]) {
      const { rows } = await db.as(
        role,
        `select coalesce((select jsonb_agg(r) from net.http_request_queue r), '[]')::text
             || coalesce((select jsonb_agg(r) from net._http_response r), '[]')::text as everything`,
      );
      const everything: string = rows[0].everything;
      expect(everything).toContain("claimed");
      for (const secret of [TEST_SECRET, "value-42", SERVICE_ROLE_KEY])
        expect(everything).not.toContain(secret);
    }
    const sent = stack.pgnetRequests.map((r) => JSON.stringify(r)).join("\n");
    for (const secret of [TEST_SECRET, "value-42", SERVICE_ROLE_KEY]) expect(sent).not.toContain(secret);
  });

  test("a payload far above pg_net's 64 KB travels whole: it never goes through pg_net", async () => {
    const queue = await createQueue({ url: `${targets.url}/ok` });
    const big = { blob: "x".repeat(200_000) };
    const jobId = await enqueue(queue, big);
    expect((await finished(jobId)).status).toBe("successful");
    const [received] = targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId);
    expect(received?.body).toBe(JSON.stringify(big));
    expect(Math.max(...stack.pgnetRequests.map((r) => r.body?.length ?? 0))).toBeLessThan(2000);
  });

  test("with the Data API off the wakeup is answered claim_rpc_404, and the call goes out once it is back", async () => {
    // What a first install on a project without the Data API hits: the answer in net._http_response says why.
    await db.pool.query("select supaqueue.configure(rewake_after_ms => 300)");
    postgrest.dataApi = false;
    try {
      const queue = await createQueue({ url: `${targets.url}/ok` });
      const jobId = await enqueue(queue);
      const deadline = Date.now() + 10_000;
      let answered: { status_code: number; content: string } | undefined;
      while (!answered) {
        const { rows } = await db.pool.query(
          `select r.status_code, r.content from supaqueue.current_job c
           join net._http_response r on r.id = c.wakeup_id where c.job_id = $1`,
          [jobId],
        );
        answered = rows[0];
        if (Date.now() > deadline) throw new Error("the wakeup was never answered");
        if (!answered) await new Promise((r) => setTimeout(r, 50));
      }
      expect(answered).toEqual({ status_code: 502, content: '{"error":"claim_rpc_404"}' });
      expect(targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId)).toHaveLength(0);
      postgrest.dataApi = true;
      expect(await finished(jobId)).toMatchObject({ status: "successful", attempts: 1 });
    } finally {
      postgrest.dataApi = true;
      await db.pool.query("select supaqueue.configure(rewake_after_ms => 5000)");
    }
  });

  test("when the edge worker is retired mid-call, the call is released at once and a fresh worker makes it", async () => {
    // The runtime dispatches beforeunload before it retires a worker; the test shim turns SIGUSR2 into that event.
    await db.pool.query("select supaqueue.configure(rewake_after_ms => 300)");
    const queue = await createQueue({ url: `${targets.url}/hang`, timeout_ms: 5000, max_attempts: 1 });
    const jobId = await enqueue(queue);
    await targets.waitFor("/hang", targets.to("/hang").length + 1);
    let fresh: ServedFunction | undefined;
    try {
      fn.signal("SIGUSR2");
      const deadline = Date.now() + 10_000;
      while ((await attempts(jobId)).length === 0) {
        if (Date.now() > deadline) throw new Error(`the call was not released:\n${fn.output()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const [released] = await attempts(jobId);
      expect(released?.error).toMatch(
        /^the edge worker shut down \(wall_clock\) before the answer came; it goes again, not counted as an attempt$/,
      );
      // The retired worker turns wakeups away; a fresh one (the runtime starts one) claims the call when tick wakes it.
      await db.pool.query("update supaqueue.queue set url = $1 where name = $2", [
        `${targets.url}/ok`,
        queue,
      ]);
      fresh = await serveFunction({
        env: {
          SUPAQUEUE_SECRET: TEST_SECRET,
          SUPABASE_URL: gateway.origin,
          SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY,
        },
      });
      gateway.executeOrigin = fresh.origin;
      // max_attempts 1: had the released attempt counted, the job would have failed.
      expect(await finished(jobId)).toMatchObject({ status: "successful", attempts: 1 });
    } finally {
      await db.pool.query("select supaqueue.configure(rewake_after_ms => 5000)");
    }
    // The first worker stays retired for the rest of this file: the other tests run on the fresh one.
    if (fresh) {
      const retired = fn;
      fn = fresh;
      stack.fn = fresh;
      await retired.stop();
    }
  });

  test("a redirect to another origin is not followed: the secret header stays home", async () => {
    // Attack 3: fetch used to follow a 302 and send apikey and the queue's secret headers to the other origin.
    const elsewhere = await startTargets();
    try {
      const queue = await createQueue({
        url: `${targets.url}/redirect?to=${encodeURIComponent(`${elsewhere.url}/ok`)}`,
        secret_headers: { "X-Token": "e2e_target_token" },
      });
      const jobId = await enqueue(queue);
      expect(await finished(jobId)).toMatchObject({ status: "failed", attempts: 1, last_status_code: 302 });
      expect((await attempts(jobId))[0]?.error).toMatch(/a redirect to .*, not followed/);
      expect(elsewhere.requests).toHaveLength(0);
    } finally {
      await elsewhere.stop();
    }
  });
});

describe("a project with the new API keys (sb_secret_...)", () => {
  let keyed: EdgeStack;
  beforeAll(async () => {
    keyed = await startEdgeStack({ secretKey: "sb_secret_e2e_key" });
  });
  afterAll(() => keyed?.stop());

  test("the function uses the secret key in apikey only, for PostgREST and for the project's functions", async () => {
    const queue = await keyed.createQueue({ function_name: "keyed-fn" });
    const jobId = await keyed.enqueue(queue);
    expect((await keyed.finished(jobId)).status).toBe("successful");
    const [received] = keyed.targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId);
    expect(received?.headers.apikey).toBe("sb_secret_e2e_key");
    expect(received?.headers.authorization).toBeUndefined();
    expect(keyed.postgrest.calls.length).toBeGreaterThan(0);
    expect(keyed.postgrest.calls.every((c) => c.status === 200)).toBe(true);
  });
});

test("without its environment the function answers 500 naming what is missing", async () => {
  const bare = await serveFunction({ env: {} });
  try {
    const res = await fetch(`${bare.functionsUrl}/execute_current_job`, { method: "POST", body: "{}" });
    expect(res.status).toBe(500);
    const { error, message } = await res.json();
    expect(error).toBe("function_not_configured");
    expect(message).toMatch(/SUPAQUEUE_SECRET/);
    expect(message).toMatch(/SUPABASE_URL/);
    expect(message).toMatch(/SUPABASE_SECRET_KEYS .* or SUPABASE_SERVICE_ROLE_KEY/);
  } finally {
    await bare.stop();
  }
});
