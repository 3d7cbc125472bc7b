import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { CallbackError, callbackOf, reportCallback } from "../functions/_shared/report_callback.ts";
import { CALLBACK_TOKEN_HEADER, CALLBACK_URL_HEADER } from "../functions/execute_current_job/call.ts";
import { isCallbackToken } from "../functions/execute_current_job/callback.ts";
import { createHandler } from "../functions/execute_current_job/handler.ts";
import { formatProblem } from "../src/config/types.ts";
import { validateConfigText } from "../src/config/validate.ts";
import { asServiceRole, serviceRoleDatabase } from "../src/local/service-role-database.ts";
import { callsOf, completeMany, createQueue, enqueueJob, type SentCall, takeCalls } from "./support/calls.ts";
import { cli } from "./support/cli.ts";
import { installedDatabase, TEST_SECRET, type TestDatabase } from "./support/db.ts";
import { type EdgeStack, startEdgeStack } from "./support/edge-stack.ts";

/**
 * Calls longer than an edge worker lives: a queue with callback_timeout gives each call a token of its own; a target
 * that answers 202 keeps the call in flight (its worker busy) until it reports the outcome with that token
 * (supaqueue.complete_callback, reached through execute_current_job's /callback), or until callback_timeout passes.
 * The attacks come first: a forged, replayed, late or borrowed token changes nothing.
 */
let db: TestDatabase;
beforeAll(async () => {
  db = await installedDatabase();
});

const TOKEN = /^[0-9a-f]{64}\.[0-9a-f]{64}$/;

function tokenOf(call: SentCall | undefined): string {
  const token = (call?.body as { callback?: { token?: string } } | undefined)?.callback?.token;
  if (!token) throw new Error("the call carries no callback token");
  return token;
}

async function job(id: string) {
  const { rows } = await db.pool.query("select supaqueue.get_job($1) as j", [id]);
  return rows[0].j;
}

async function callback(
  token: string,
  status: number,
  body: string | null = null,
  error: string | null = null,
) {
  const { rows } = await asServiceRole(
    db.pool,
    "select public.supaqueue_complete_callback($1, $2, $3, $4) as r",
    [token, status, body, error],
  );
  return rows[0].r as string;
}

const accepted = { succeeded: true, statusCode: 202, responseBody: '{"accepted":true}' };

/** A queue taking callbacks with one call in flight, its target having answered 202. */
async function acceptedCall(queue: string, fields: Record<string, unknown> = {}) {
  await createQueue(db.pool, queue, 1, { callback_timeout_ms: 600_000, ...fields });
  const id = await enqueueJob(db.pool, queue, { n: 1 });
  const [call] = await callsOf(db.pool, queue);
  expect(await completeMany(db.pool, [{ call: call!, outcome: accepted }])).toEqual([
    Number(call!.body.current_job_id),
  ]);
  return { id, call: call!, token: tokenOf(call) };
}

describe("the token", () => {
  test("each call of a queue taking callbacks carries its own; the database keeps only its SHA-256", async () => {
    await createQueue(db.pool, "cb_token", 2, { callback_timeout_ms: 60_000 });
    await createQueue(db.pool, "cb_none", 1);
    await enqueueJob(db.pool, "cb_token");
    await enqueueJob(db.pool, "cb_token");
    await enqueueJob(db.pool, "cb_none");
    const calls = await takeCalls(db.pool);
    const withToken = calls.filter((c) => c.body.queue.name === "cb_token");
    expect(withToken).toHaveLength(2);
    const [a, b] = withToken.map(tokenOf);
    expect(a).toMatch(TOKEN);
    expect(a).not.toBe(b);
    expect(withToken[0]!.body).toMatchObject({
      callback: { url: expect.stringMatching(/\/execute_current_job\/callback$/), timeout_ms: 60_000 },
    });
    // Made with the shared secret: the function checks it before asking the database.
    expect(await isCallbackToken(a!, TEST_SECRET)).toBe(true);
    expect(await isCallbackToken(a!, "another-secret")).toBe(false);
    expect(await isCallbackToken(`${a!.slice(0, 64)}.${"0".repeat(64)}`, TEST_SECRET)).toBe(false);
    expect(calls.find((c) => c.body.queue.name === "cb_none")!.body).toMatchObject({ callback: null });

    const { rows } = await db.pool.query(
      "select encode(callback_hash, 'hex') as hash, row_to_json(c)::text as row from supaqueue.current_job c where id = $1",
      [withToken[0]!.body.current_job_id],
    );
    expect(rows[0].hash).toBe(createHash("sha256").update(a!).digest("hex"));
    expect(rows[0].row).not.toContain(a!.slice(0, 64));
  });
});

describe("attacks", () => {
  test("a forged or borrowed token completes nothing: a token opens its own call only", async () => {
    await createQueue(db.pool, "cb_two", 2, { callback_timeout_ms: 600_000 });
    const first = await enqueueJob(db.pool, "cb_two");
    const second = await enqueueJob(db.pool, "cb_two");
    const calls = await callsOf(db.pool, "cb_two");
    await completeMany(
      db.pool,
      calls.map((call) => ({ call, outcome: accepted })),
    );
    const mine = calls.find((c) => c.body.job.id === first)!;

    expect(await callback("0".repeat(64), 200)).toBe("unknown");
    expect(await callback(`${tokenOf(mine)}x`, 200)).toBe("unknown");
    expect(await callback(tokenOf(mine).toUpperCase(), 200)).toBe("unknown");
    expect((await job(first)).status).toBe("in_progress");

    expect(await callback(tokenOf(mine), 200, '{"done":1}')).toBe("recorded");
    expect((await job(first)).status).toBe("successful");
    expect((await job(second)).status).toBe("in_progress");
  });

  test("a repeated callback changes nothing: the job, its attempts and the next call stay as the first left them", async () => {
    const { id, token } = await acceptedCall("cb_replay");
    expect(await callback(token, 200, '{"v":1}')).toBe("recorded");
    const before = await job(id);
    expect(await callback(token, 200, '{"v":2}')).toBe("unknown");
    expect(await callback(token, 500, null, "late failure")).toBe("unknown");
    const after = await job(id);
    expect(after).toEqual(before);
    expect(after.attempts_history).toHaveLength(1);
  });

  test("a late callback, after callback_timeout has passed and the job was retried, changes nothing", async () => {
    const { id, token } = await acceptedCall("cb_late", { callback_timeout_ms: 1000, backoff_base_ms: 1 });
    await db.pool.query("select supaqueue.tick(now() + interval '5 seconds')");
    const reaped = await job(id);
    expect(reaped).toMatchObject({ status: "pending", attempts: 1 });
    expect(reaped.last_error).toMatch(
      /took the call on \(202\) at .* its callback did not come within the queue's callback_timeout/,
    );
    expect(await callback(token, 200, '{"late":true}')).toBe("unknown");
    expect(await job(id)).toMatchObject({ status: "pending", attempts: 1 });
  });

  test("anon and authenticated cannot report a callback: only the function (service_role) can", async () => {
    const { token } = await acceptedCall("cb_roles");
    for (const role of ["anon", "authenticated"]) {
      await expect(db.as(role, `select public.supaqueue_complete_callback('${token}', 200)`)).rejects.toThrow(
        /permission denied/,
      );
    }
  });
});

describe("a call its target took on", () => {
  test("a 202 keeps the call in flight, its worker busy, until the callback; then it finishes like any call", async () => {
    await createQueue(db.pool, "cb_next", 0);
    const { id, call, token } = await acceptedCall("cb_flow", { on_success_queue: "cb_next" });
    await enqueueJob(db.pool, "cb_flow", { n: 2 });

    const { rows } = await db.pool.query(
      `select c.accepted_at is not null as accepted, c.lease_until > now() + interval '9 minutes' as long_lease,
              w.locked from supaqueue.current_job c join supaqueue.worker w on w.id = c.worker_id where c.id = $1`,
      [call.body.current_job_id],
    );
    expect(rows[0]).toEqual({ accepted: true, long_lease: true, locked: true });
    expect(await job(id)).toMatchObject({
      status: "in_progress",
      attempts_history: [],
      call: { attempt: 1, accepted_at: expect.any(String) },
    });
    // Its one worker is busy: the second job waits.
    expect(await callsOf(db.pool, "cb_flow")).toEqual([]);
    const stats = async () =>
      (
        await asServiceRole(
          db.pool,
          "select in_flight::int, awaiting_callback::int from supaqueue.queue_stats where queue = 'cb_flow'",
        )
      ).rows[0];
    expect(await stats()).toEqual({ in_flight: 1, awaiting_callback: 1 });
    expect((await cli(["status", "--db-url", db.url])).stdout).toMatch(
      /^cb_flow\s+1\s+0\s+1 \(1 after a 202\)\s/m,
    );

    expect(await callback(token, 200, '{"video":"v.mp4"}')).toBe("recorded");
    const done = await job(id);
    expect(done).toMatchObject({ status: "successful", last_status_code: 200, call: null });
    expect(done.attempts_history).toEqual([
      expect.objectContaining({
        attempt: 1,
        succeeded: true,
        status_code: 200,
        response_body: '{"video":"v.mp4"}',
      }),
    ]);
    // The callback's result is what the chain takes, and the freed worker starts the next job.
    const next = await db.pool.query("select payload, parent_id from supaqueue.job where parent_id = $1", [
      id,
    ]);
    expect(next.rows).toEqual([{ payload: { video: "v.mp4" }, parent_id: id }]);
    expect(await callsOf(db.pool, "cb_flow")).toHaveLength(1);
    expect(await stats()).toEqual({ in_flight: 1, awaiting_callback: 0 });
  });

  test("a failure reported by callback is retried or fails for good, by the queue's codes", async () => {
    const retried = await acceptedCall("cb_fail", { backoff_base_ms: 1, max_attempts: 3 });
    expect(await callback(retried.token, 503, null, "the renderer ran out of memory")).toBe("recorded");
    expect(await job(retried.id)).toMatchObject({
      status: "pending",
      attempts: 1,
      last_status_code: 503,
      last_error: "HTTP 503, reported by the target's callback: the renderer ran out of memory",
    });

    const refused = await acceptedCall("cb_refused");
    expect(await callback(refused.token, 422, '{"error":"bad input"}')).toBe("recorded");
    expect(await job(refused.id)).toMatchObject({ status: "failed", last_status_code: 422 });
  });

  test("a 202 reported again for a call waiting for its callback changes nothing", async () => {
    const { id, call, token } = await acceptedCall("cb_twice");
    expect(await completeMany(db.pool, [{ call, outcome: accepted }])).toEqual([]);
    expect(await job(id)).toMatchObject({ status: "in_progress", call: { accepted_at: expect.any(String) } });
    expect(await callback(token, 200)).toBe("recorded");
  });

  test("a 202 callback is a heartbeat: the lease starts again, the call stays in flight", async () => {
    const { id, call, token } = await acceptedCall("cb_beat", { callback_timeout_ms: 60_000 });
    await db.pool.query(
      "update supaqueue.current_job set lease_until = now() + interval '1 second' where id = $1",
      [call.body.current_job_id],
    );
    expect(await callback(token, 202)).toBe("extended");
    const { rows } = await db.pool.query(
      "select lease_until > now() + interval '50 seconds' as extended from supaqueue.current_job where id = $1",
      [call.body.current_job_id],
    );
    expect(rows[0].extended).toBe(true);
    expect((await job(id)).status).toBe("in_progress");
    expect(await callback(token, 200)).toBe("recorded");
  });

  test("a callback that comes before the function reported the 202 is recorded; the 202 then changes nothing", async () => {
    await createQueue(db.pool, "cb_race", 1, { callback_timeout_ms: 60_000 });
    const id = await enqueueJob(db.pool, "cb_race");
    const [call] = await callsOf(db.pool, "cb_race");
    expect(await callback(tokenOf(call), 200, '{"fast":true}')).toBe("recorded");
    expect(await completeMany(db.pool, [{ call: call!, outcome: accepted }])).toEqual([]);
    expect(await job(id)).toMatchObject({ status: "successful", last_status_code: 200 });
  });

  test("cancelling a job its target took on frees the worker now; its callback changes nothing", async () => {
    const { id, call, token } = await acceptedCall("cb_cancel");
    await enqueueJob(db.pool, "cb_cancel", { n: 2 });
    const { rows } = await db.pool.query("select supaqueue.cancel($1) as ok", [id]);
    expect(rows[0].ok).toBe(true);
    const gone = await db.pool.query("select count(*)::int as n from supaqueue.current_job where id = $1", [
      call.body.current_job_id,
    ]);
    expect(gone.rows[0].n).toBe(0);
    expect(await callsOf(db.pool, "cb_cancel")).toHaveLength(1);
    expect(await callback(token, 200)).toBe("unknown");
    expect(await job(id)).toMatchObject({ status: "cancelled" });
  });

  test("without callback_timeout a 202 is a success like any 2xx, and the call carries no callback", async () => {
    await createQueue(db.pool, "cb_plain", 1);
    const id = await enqueueJob(db.pool, "cb_plain");
    const [call] = await callsOf(db.pool, "cb_plain");
    await completeMany(db.pool, [{ call: call!, outcome: accepted }]);
    expect(await job(id)).toMatchObject({ status: "successful", last_status_code: 202 });
  });

  test("a status outside 100-599 is refused with what to send", async () => {
    const { token } = await acceptedCall("cb_bad_status");
    await expect(callback(token, 700)).rejects.toThrow(
      /a callback's status_code must be an HTTP status from 100 to 599, not 700/,
    );
  });
});

describe("the function's /callback", () => {
  const logs: string[] = [];
  const handler = () =>
    createHandler({
      secret: TEST_SECRET,
      db: serviceRoleDatabase(db.pool),
      fetch: () => Promise.reject(new Error("no call is made here")),
      logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
    });
  const post = (token: string | null, body: string) =>
    handler()(
      new Request("http://functions.local/execute_current_job/callback", {
        method: "POST",
        headers: token ? { [CALLBACK_TOKEN_HEADER]: token } : {},
        body,
      }),
    );

  test("without a token, or with one this project did not make, it answers 401 and asks the database nothing", async () => {
    const { id, token } = await acceptedCall("cb_http_forged");
    const asked: unknown[] = [];
    const spy = createHandler({
      secret: TEST_SECRET,
      db: {
        ...serviceRoleDatabase(db.pool),
        completeCallback: async (report) => {
          asked.push(report);
          return "unknown";
        },
      },
      fetch: () => Promise.reject(new Error("no call is made here")),
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    });
    const send = (headers: Record<string, string>) =>
      spy(
        new Request("http://functions.local/execute_current_job/callback", {
          method: "POST",
          headers,
          body: '{"status":200}',
        }),
      );
    expect((await send({})).status).toBe(401);
    const forged = `${"a".repeat(64)}.${"b".repeat(64)}`;
    const refused = await send({ [CALLBACK_TOKEN_HEADER]: forged });
    expect(refused.status).toBe(401);
    expect(await refused.json()).toEqual({ error: "callback_bad_token" });
    // A token made with another secret (another project's, or a guess) is refused the same way.
    expect((await send({ [CALLBACK_TOKEN_HEADER]: `${token.slice(0, 64)}.${"0".repeat(64)}` })).status).toBe(
      401,
    );
    expect(asked).toEqual([]);
    expect((await job(id)).status).toBe("in_progress");
  });

  test("records the outcome once: 200, then 409 for a repeat; a malformed body is 400 and records nothing", async () => {
    const { id, token } = await acceptedCall("cb_http");
    const bad = await post(token, '{"status":"done"}');
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({
      error: "callback_malformed",
      message: expect.stringMatching(/"status"/),
    });
    expect((await post(token, "not json")).status).toBe(400);
    expect((await job(id)).status).toBe("in_progress");

    const ok = await post(token, JSON.stringify({ status: 200, body: { frames: 240 } }));
    expect([ok.status, await ok.json()]).toEqual([200, { recorded: true }]);
    expect(await job(id)).toMatchObject({
      status: "successful",
      attempts_history: [expect.objectContaining({ response_body: '{"frames":240}' })],
    });
    const again = await post(token, JSON.stringify({ status: 200 }));
    expect(again.status).toBe(409);
    expect(await again.json()).toMatchObject({ error: "callback_not_expected" });
    expect(logs.join("\n")).not.toContain(token.slice(0, 64));
  });

  test("a body larger than the bound is 413 and records nothing", async () => {
    const { id, token } = await acceptedCall("cb_http_big");
    const response = await post(token, JSON.stringify({ status: 200, body: "x".repeat(3 * 1024 * 1024) }));
    expect(response.status).toBe(413);
    expect((await job(id)).status).toBe("in_progress");
  });
});

describe("report_callback.ts, for targets", () => {
  const callback = { url: "https://project.example/functions/v1/execute_current_job/callback", token: "t" };
  const scripted = (answers: (Response | Error)[]) => {
    const sent: RequestInit[] = [];
    const fetchFn = (async (_url: string, init: RequestInit) => {
      sent.push(init);
      const next = answers.shift() ?? new Error("no more answers");
      if (next instanceof Error) throw next;
      return next;
    }) as unknown as typeof fetch;
    return { fetchFn, sent };
  };

  test("sends the token and the outcome; tries again on no answer, 429 and 5xx, with growing pauses", async () => {
    const { fetchFn, sent } = scripted([
      new Error("ECONNRESET"),
      new Response("{}", { status: 502 }),
      Response.json({ recorded: true }),
    ]);
    expect(
      await reportCallback(callback, { status: 200, body: { frames: 24 } }, { fetch: fetchFn, delayMs: 1 }),
    ).toBe("recorded");
    expect(sent).toHaveLength(3);
    expect(sent[0]).toMatchObject({
      method: "POST",
      headers: { "Supaqueue-Callback-Token": "t", "Content-Type": "application/json" },
      body: '{"status":200,"body":{"frames":24}}',
    });
  });

  test("a 409 is an answer, not a failure; a 401 or 400 is not sent again", async () => {
    const conflict = scripted([new Response('{"error":"callback_not_expected"}', { status: 409 })]);
    expect(await reportCallback(callback, { status: 200 }, { fetch: conflict.fetchFn })).toBe("not_expected");
    const refused = scripted([Response.json({ error: "callback_bad_token" }, { status: 401 })]);
    const error = await reportCallback(
      callback,
      { status: 200 },
      { fetch: refused.fetchFn, delayMs: 1 },
    ).catch((e) => e);
    expect(error).toBeInstanceOf(CallbackError);
    expect(error).toMatchObject({ status: 401, message: expect.stringMatching(/callback_bad_token/) });
    expect(refused.sent).toHaveLength(1);
    const down = scripted([new Error("a"), new Error("b")]);
    await expect(
      reportCallback(callback, { status: 200 }, { fetch: down.fetchFn, attempts: 2, delayMs: 1 }),
    ).rejects.toThrow(/the callback was not recorded: b/);
  });

  test("reads the callback from a Headers or from Node's header object; null for a queue without callbacks", () => {
    expect(
      callbackOf(new Headers({ "Supaqueue-Callback-Url": callback.url, "Supaqueue-Callback-Token": "t" })),
    ).toEqual(callback);
    expect(callbackOf({ "supaqueue-callback-url": callback.url, "supaqueue-callback-token": "t" })).toEqual(
      callback,
    );
    expect(callbackOf({ "supaqueue-job-id": "x" })).toBeNull();
  });
});

describe("supaqueue.yml", () => {
  const check = (settings: string) =>
    validateConfigText(
      `queues:\n  render:\n    url: https://render.example/jobs\n${settings}`,
      "supaqueue.yml",
      {
        env: {},
      },
    );
  test("callback_timeout: from 1s to 168h, into callback_timeout_ms", () => {
    expect(check("    callback_timeout: 2h\n").config.queues[0]?.callbackTimeoutMs).toBe(7_200_000);
    expect(check("").config.queues[0]?.callbackTimeoutMs).toBeNull();
    expect(check("    callback_timeout: 500ms\n").problems.map(formatProblem)).toEqual([
      "supaqueue.yml:4:23: queues.render.callback_timeout: 500ms is too short for work that outlives a call; allowed: from 1s to 168h (7 days)",
    ]);
    expect(check("    callback_timeout: 200h\n").problems.map(formatProblem)).toEqual([
      expect.stringMatching(
        /callback_timeout: 200h is too long; at most 168h \(7 days\): a call waiting for its callback holds/,
      ),
    ]);
  });
});

describe("under concurrency", () => {
  test("2,000 long calls: 202 reports, callbacks sent twice and ticks race on 8 connections; each job ends once", async () => {
    await createQueue(db.pool, "cbc_sink", 0);
    await createQueue(db.pool, "cbc", 100, { callback_timeout_ms: 600_000, on_success_queue: "cbc_sink" });
    await db.pool.query(
      "select supaqueue.enqueue_many('cbc', (select jsonb_agg(jsonb_build_object('payload', jsonb_build_object('n', i))) from generate_series(1, 2000) i))",
    );
    let rounds = 0;
    for (;;) {
      const calls = await callsOf(db.pool, "cbc");
      if (calls.length === 0) break;
      rounds++;
      // Half the targets call back before the function has reported their 202; all callbacks are sent twice,
      // newest call first, while tick runs.
      const work: (() => Promise<unknown>)[] = [];
      calls.forEach((call, i) => {
        const report = () => completeMany(db.pool, [{ call, outcome: accepted }]);
        const back = () => callback(tokenOf(call), 200, JSON.stringify({ n: i }));
        if (i % 2 === 0) work.push(report, back, back);
        else work.push(back, report, back);
      });
      work.reverse();
      const lanes = Array.from({ length: 8 }, (_, lane) => work.filter((_, i) => i % 8 === lane));
      await Promise.all([
        ...lanes.map(async (lane) => {
          for (const step of lane) await step();
        }),
        (async () => {
          for (let i = 0; i < 5; i++) await db.pool.query("select supaqueue.tick()");
        })(),
      ]);
    }
    expect(rounds).toBe(20);
    const { rows } = await db.pool.query(
      `select (select count(*)::int from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
               where q.name = 'cbc' and j.status = 'successful' and j.attempts = 1) as successful,
              (select count(*)::int from supaqueue.attempt a join supaqueue.job j on j.id = a.job_id
               join supaqueue.queue q on q.id = j.queue_id where q.name = 'cbc') as attempts,
              (select count(distinct parent_id)::int from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
               where q.name = 'cbc_sink') as chained,
              (select count(*)::int from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
               where q.name = 'cbc_sink') as steps,
              (select count(*)::int from supaqueue.worker w join supaqueue.queue q on q.id = w.queue_id
               where q.name = 'cbc' and w.locked) as busy`,
    );
    expect(rows[0]).toEqual({ successful: 2000, attempts: 2000, chained: 2000, steps: 2000, busy: 0 });
  }, 180_000);
});

describe("end to end: real Deno, the gateway and PostgREST stand-ins", () => {
  let stack: EdgeStack;
  beforeAll(async () => {
    stack = await startEdgeStack();
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  test("a target answers 202, works on, and reports through the callback URL it was given", async () => {
    const queue = await stack.createQueue({ url: `${stack.targets.url}/status/202`, workers: 1 });
    await stack.db.pool.query("update supaqueue.queue set callback_timeout_ms = 60000 where name = $1", [
      queue,
    ]);
    const id = await stack.enqueue(queue, { render: "intro" });
    const [request] = await stack.targets.waitFor("/status/202", 1, 10_000);
    const url = request!.headers[CALLBACK_URL_HEADER.toLowerCase()]!;
    const token = request!.headers[CALLBACK_TOKEN_HEADER.toLowerCase()]!;
    expect(url).toBe(`${stack.gateway.functionsUrl}/execute_current_job/callback`);
    expect(token).toMatch(TOKEN);

    // The function has reported the 202: the call waits, in flight.
    await expect
      .poll(async () => (await job2(stack, id)).call?.accepted_at ?? null, { timeout: 10_000 })
      .not.toBeNull();
    expect((await job2(stack, id)).status).toBe("in_progress");

    // Later, the target's own worker finishes and calls back, with nothing but the URL and the token (as
    // functions/_shared/report_callback.ts, which the npm package exports too, does it).
    const callback = callbackOf(request!.headers);
    expect(callback).toEqual({ url, token });
    expect(await reportCallback(callback!, { status: 202 })).toBe("extended");
    expect(
      await reportCallback(callback!, { status: 200, body: { url: "https://cdn.example/intro.mp4" } }),
    ).toBe("recorded");
    expect(await stack.finished(id)).toMatchObject({ status: "successful", last_status_code: 200 });
    expect((await stack.attempts(id))[0]).toMatchObject({
      succeeded: true,
      response_body: '{"url":"https://cdn.example/intro.mp4"}',
    });
    expect(await reportCallback(callback!, { status: 200 })).toBe("not_expected");
    const refused = await fetch(url, {
      method: "POST",
      headers: { [CALLBACK_TOKEN_HEADER]: `${token.slice(0, 64)}.${"0".repeat(64)}` },
      body: JSON.stringify({ status: 200 }),
    });
    expect(refused.status).toBe(401);
  }, 30_000);
});

async function job2(stack: EdgeStack, id: string) {
  const { rows } = await stack.db.pool.query("select supaqueue.get_job($1) as j", [id]);
  return rows[0].j;
}
