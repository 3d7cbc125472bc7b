import { beforeAll, describe, expect, test } from "vitest";
import { validateConfigText } from "../src/config/validate.ts";
import { reconcileQueues } from "../src/install/apply.ts";
import { callsOf, completeMany, createQueue, enqueueJob, type SentCall, takeCalls } from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

/**
 * Chains: a job that succeeds on a queue with on_success enqueues the next job(s), in the transaction that records
 * the success, each naming its parent. A step that cannot be made (not JSON, too large, no array to fan out) is
 * recorded on the successful job and its attempt, and the call is not repeated.
 */
let db: TestDatabase;
beforeAll(async () => {
  db = await installedDatabase();
});

async function job(id: string) {
  const { rows } = await db.pool.query("select supaqueue.get_job($1) as j", [id]);
  return rows[0].j;
}

const answer = (call: SentCall, body: string) => ({
  call,
  outcome: { succeeded: true, statusCode: 200, responseBody: body.slice(0, 2000), chainBody: body },
});

describe("on_success", () => {
  test("the JSON response becomes the next job's payload, which names its parent", async () => {
    await createQueue(db.pool, "c_b", 2);
    await createQueue(db.pool, "c_a", 2, { on_success_queue: "c_b" });
    const parent = await enqueueJob(db.pool, "c_a", { step: 1 });
    const [call] = await callsOf(db.pool, "c_a");
    expect(call!.body).toMatchObject({ chain_max_bytes: 262144 });
    await completeMany(db.pool, [answer(call!, '{"rendered": "hello"}')]);

    const [next] = await callsOf(db.pool, "c_b");
    expect(next!.body.job.payload).toEqual({ rendered: "hello" });
    const child = await job(next!.body.job.id);
    expect(child.parent_id).toBe(parent);
    const done = await job(parent);
    expect(done).toMatchObject({ status: "successful", last_error: null, children: [next!.body.job.id] });
  });

  test("payload, merged and a field of the response; no chain_max_bytes when the body is not needed", async () => {
    await createQueue(db.pool, "c_sink", 0);
    await createQueue(db.pool, "c_p", 1, { on_success_queue: "c_sink", on_success_payload: "payload" });
    await createQueue(db.pool, "c_m", 1, {
      on_success_queue: "c_sink",
      on_success_payload: "merged",
      on_success_field: "data",
    });
    await enqueueJob(db.pool, "c_p", { user: 1 });
    await enqueueJob(db.pool, "c_m", { user: 2 });
    const calls = await takeCalls(db.pool);
    const p = calls.find((c) => c.body.queue.name === "c_p")!;
    const m = calls.find((c) => c.body.queue.name === "c_m")!;
    expect(p.body).toMatchObject({ chain_max_bytes: null });
    await completeMany(db.pool, [
      { call: p, outcome: { succeeded: true, statusCode: 200, responseBody: "not json" } },
      answer(m, '{"data": {"score": 7}, "other": 1}'),
    ]);
    const { rows } = await db.pool.query(
      "select j.payload from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'c_sink' order by j.seq",
    );
    expect(rows.map((r) => r.payload)).toEqual([{ user: 1 }, { user: 2, score: 7 }]);
  });

  test("fan_out: one job per item of the array, bounded by fan_out_max", async () => {
    await createQueue(db.pool, "c_items", 0);
    await createQueue(db.pool, "c_list", 2, {
      on_success_queue: "c_items",
      on_success_field: "items",
      fan_out: true,
      fan_out_max: 3,
    });
    const small = await enqueueJob(db.pool, "c_list", { page: 1 });
    const big = await enqueueJob(db.pool, "c_list", { page: 2 });
    const calls = await callsOf(db.pool, "c_list");
    const bySmall = calls.find((c) => c.body.job.id === small)!;
    const byBig = calls.find((c) => c.body.job.id === big)!;
    await completeMany(db.pool, [
      answer(bySmall, '{"items": [{"i": 1}, {"i": 2}, {"i": 3}]}'),
      answer(byBig, '{"items": [{"i": 1}, {"i": 2}, {"i": 3}, {"i": 4}]}'),
    ]);
    const { rows } = await db.pool.query(
      "select payload, parent_id from supaqueue.job j where j.parent_id = any ($1::uuid[]) order by seq",
      [[small, big]],
    );
    expect(rows).toEqual([1, 2, 3].map((i) => ({ payload: { i }, parent_id: small })));
    expect(await job(big)).toMatchObject({
      status: "successful",
      attempts: 1,
      last_error: "on_success: the response has 4 items, more than fan_out_max (3); the call is not repeated",
      children: [],
    });
  });

  test("a response that is not JSON or too large fails the step on the job and its attempt; the call is not repeated", async () => {
    await createQueue(db.pool, "c_next", 0);
    await createQueue(db.pool, "c_src", 2, { on_success_queue: "c_next", max_attempts: 3 });
    await db.pool.query("update supaqueue.config set max_chain_body_bytes = 100");
    try {
      const html = await enqueueJob(db.pool, "c_src", { n: 1 });
      const large = await enqueueJob(db.pool, "c_src", { n: 2 });
      const calls = await callsOf(db.pool, "c_src");
      await completeMany(db.pool, [
        answer(calls.find((c) => c.body.job.id === html)!, "<html>ok</html>"),
        answer(calls.find((c) => c.body.job.id === large)!, JSON.stringify({ text: "x".repeat(200) })),
      ]);
      const notJson = await job(html);
      expect(notJson.status).toBe("successful");
      expect(notJson.last_error).toMatch(
        /^on_success: the response is not JSON \(.*\); the call is not repeated$/,
      );
      expect(notJson.attempts_history).toHaveLength(1);
      expect(notJson.attempts_history[0]).toMatchObject({ succeeded: true, error: notJson.last_error });
      expect((await job(large)).last_error).toBe(
        "on_success: the response is larger than max_chain_body_bytes (100 bytes); the call is not repeated",
      );
      // Nothing is called again, and nothing was enqueued.
      await db.pool.query("select supaqueue.tick(now() + interval '1 hour')");
      expect(await takeCalls(db.pool)).toEqual([]);
      const { rows } = await db.pool.query(
        "select count(*)::int as n from supaqueue.job where parent_id = any ($1::uuid[])",
        [[html, large]],
      );
      expect(rows[0].n).toBe(0);
    } finally {
      await db.pool.query("update supaqueue.config set max_chain_body_bytes = default");
    }
  });

  test("a next payload the next queue would refuse stops the step, and the completion still commits", async () => {
    await createQueue(db.pool, "c_keyed", 0, { key_field: "tenant" });
    await createQueue(db.pool, "c_get", 0, { method: "GET" });
    await createQueue(db.pool, "c_to_keyed", 2, { on_success_queue: "c_keyed" });
    await createQueue(db.pool, "c_to_get", 2, { on_success_queue: "c_get" });
    const keyed = await enqueueJob(db.pool, "c_to_keyed", {});
    const get = await enqueueJob(db.pool, "c_to_get", {});
    const calls = await takeCalls(db.pool);
    await completeMany(db.pool, [
      answer(calls.find((c) => c.body.job.id === keyed)!, JSON.stringify({ tenant: "t".repeat(300) })),
      answer(calls.find((c) => c.body.job.id === get)!, "[1, 2]"),
    ]);
    expect(await job(keyed)).toMatchObject({
      status: "successful",
      last_error:
        'on_success: item 1 has key_field "tenant" of 300 bytes; a key is 1 to 256 bytes; the call is not repeated',
    });
    expect((await job(get)).last_error).toBe(
      'on_success: item 1 is array, and a payload for queue "c_get" must be a JSON object; the call is not repeated',
    );
  });

  test("a failed or cancelled job starts nothing", async () => {
    await createQueue(db.pool, "c_after_fail", 0);
    await createQueue(db.pool, "c_fails", 1, { on_success_queue: "c_after_fail", max_attempts: 1 });
    await enqueueJob(db.pool, "c_fails", {});
    const [call] = await callsOf(db.pool, "c_fails");
    await completeMany(db.pool, [
      { call: call!, outcome: { succeeded: false, statusCode: 500, error: "HTTP 500" } },
    ]);
    const { rows } = await db.pool.query(
      "select count(*)::int as n from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'c_after_fail'",
    );
    expect(rows[0].n).toBe(0);
  });

  test("cycles are refused, like dead-letter cycles; so is fan_out of the original payload", async () => {
    await createQueue(db.pool, "cy_a", 0);
    await createQueue(db.pool, "cy_b", 0, { on_success_queue: "cy_a" });
    await createQueue(db.pool, "cy_c", 0, { on_success_queue: "cy_b" });
    await expect(
      db.pool.query("update supaqueue.queue set on_success_queue = 'cy_c' where name = 'cy_a'"),
    ).rejects.toThrow('queue "cy_a" names on_success queue "cy_c", whose successes lead back to "cy_a"');
    await expect(
      db.pool.query("update supaqueue.queue set on_success_queue = 'cy_a' where name = 'cy_a'"),
    ).rejects.toThrow("which is not another existing queue");
    await expect(
      db.pool.query(
        "update supaqueue.queue set on_success_payload = 'payload', fan_out = true where name = 'cy_b'",
      ),
    ).rejects.toThrow('queue "cy_b" fans out its original payload');
  });
});

async function enqueueAfter(queue: string, payload: unknown, after: string[]): Promise<string> {
  const { rows } = await db.pool.query("select supaqueue.enqueue($1, $2::jsonb, after => $3::uuid[]) as id", [
    queue,
    JSON.stringify(payload),
    after,
  ]);
  return rows[0].id;
}

const status = async (id: string) => (await job(id)).status;
const ok = (call: SentCall) => ({ call, outcome: { succeeded: true, statusCode: 200 } });
const fail = (call: SentCall) => ({
  call,
  outcome: { succeeded: false, statusCode: 500, error: "HTTP 500" },
});

describe("after: a job waits for others", () => {
  test("it waits, out of the pending index, until the last one succeeds, and then starts once", async () => {
    await createQueue(db.pool, "w_parts", 3);
    await createQueue(db.pool, "w_join", 1);
    const parts = [
      await enqueueJob(db.pool, "w_parts", { p: 1 }),
      await enqueueJob(db.pool, "w_parts", { p: 2 }),
      await enqueueJob(db.pool, "w_parts", { p: 3 }),
    ];
    const calls = await callsOf(db.pool, "w_parts");
    await completeMany(db.pool, [ok(calls.find((c) => c.body.job.id === parts[0])!)]);
    // One part has succeeded already: the job waits for the other two only.
    const join = await enqueueAfter("w_join", { join: true }, parts);
    expect(await job(join)).toMatchObject({
      status: "waiting",
      waiting_for: 2,
      after: [parts[1], parts[2]].sort(),
    });
    await db.pool.query("select supaqueue.tick()");
    expect(await callsOf(db.pool, "w_join")).toEqual([]);
    const { rows } = await db.pool.query(
      "select count(*)::int as n from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'w_join' and j.status = 'pending'",
    );
    expect(rows[0].n).toBe(0);
    const { rows: stats } = await db.pool.query(
      "select pending::int, scheduled::int, waiting::int from supaqueue.queue_stats where queue = 'w_join'",
    );
    expect(stats[0]).toEqual({ pending: 0, scheduled: 0, waiting: 1 });

    await completeMany(db.pool, [ok(calls.find((c) => c.body.job.id === parts[1])!)]);
    expect(await job(join)).toMatchObject({ status: "waiting", waiting_for: 1 });
    await completeMany(db.pool, [ok(calls.find((c) => c.body.job.id === parts[2])!)]);
    const started = await callsOf(db.pool, "w_join");
    expect(started.map((c) => c.body.job.id)).toEqual([join]);
    expect((await job(parts[2]!)).waited_on_by).toEqual([join]);
  });

  test("enqueue_many takes after per job: the plain ones in one insert, the waiting ones checked like enqueue's", async () => {
    await createQueue(db.pool, "wm_parts", 0);
    await createQueue(db.pool, "wm_join", 0);
    const part = await enqueueJob(db.pool, "wm_parts");
    const { rows } = await db.pool.query("select supaqueue.enqueue_many('wm_join', $1::jsonb) as ids", [
      JSON.stringify([
        { payload: { n: 1 } },
        { payload: { n: 2 }, after: [part] },
        { payload: { n: 3 }, after: [] },
      ]),
    ]);
    const [plain, waits, empty] = rows[0].ids as string[];
    expect(await job(plain!)).toMatchObject({ status: "pending", after: [] });
    expect(await job(waits!)).toMatchObject({ status: "waiting", waiting_for: 1, after: [part] });
    expect(await job(empty!)).toMatchObject({ status: "pending", after: [] });
    await expect(
      db.pool.query("select supaqueue.enqueue_many('wm_join', $1::jsonb)", [
        JSON.stringify([{ payload: {} }, { after: ["not-a-job"] }]),
      ]),
    ).rejects.toThrow(/job 2 of 2: "after" must be an array of job ids, not \["not-a-job"\]/);
    await expect(
      db.pool.query("select supaqueue.enqueue_many('wm_join', $1::jsonb)", [
        JSON.stringify([{ after: ["00000000-0000-4000-8000-000000000000"] }]),
      ]),
    ).rejects.toThrow(/job 00000000-0000-4000-8000-000000000000 to wait for does not exist/);
  });

  test("a part that fails for good, or is cancelled, cancels the waiting job and the jobs waiting for it", async () => {
    await createQueue(db.pool, "w_f", 2, { max_attempts: 1 });
    await createQueue(db.pool, "w_next", 0);
    const a = await enqueueJob(db.pool, "w_f", { a: 1 });
    const b = await enqueueJob(db.pool, "w_f", { b: 1 });
    const waits = await enqueueAfter("w_next", {}, [a, b]);
    const waitsMore = await enqueueAfter("w_next", {}, [waits]);
    const calls = await callsOf(db.pool, "w_f");
    await completeMany(db.pool, [fail(calls.find((c) => c.body.job.id === a)!)]);
    expect(await job(waits)).toMatchObject({
      status: "cancelled",
      last_error: `cancelled: job ${a}, which it waited for, failed for good`,
    });
    expect(await job(waitsMore)).toMatchObject({
      status: "cancelled",
      last_error: `cancelled: job ${waits}, which it waited for, was cancelled`,
    });
    // b's success changes nothing now.
    await completeMany(db.pool, [ok(calls.find((c) => c.body.job.id === b)!)]);
    expect(await status(waits)).toBe("cancelled");

    const c = await enqueueJob(db.pool, "w_next", {});
    const afterC = await enqueueAfter("w_next", {}, [c]);
    const { rows } = await db.pool.query("select supaqueue.cancel($1) as done", [c]);
    expect(rows[0].done).toBe(true);
    expect(await job(afterC)).toMatchObject({
      status: "cancelled",
      last_error: `cancelled: job ${c}, which it waited for, was cancelled`,
    });
    await expect(enqueueAfter("w_next", {}, [c])).rejects.toThrow(
      `job ${c} to wait for has already cancelled`,
    );
    await expect(enqueueAfter("w_next", {}, ["00000000-0000-7000-8000-000000000000"])).rejects.toThrow(
      "does not exist",
    );
  });
});

describe("supaqueue.yml", () => {
  test("on_success: queue, payload, field, fan_out and fan_out_max, with the rules between them", () => {
    const good = validateConfigText(
      "queues:\n  a:\n    url: https://x.example\n    on_success: { queue: b, field: items, fan_out: true, fan_out_max: 500 }\n  b:\n    url: https://x.example\n    on_success:\n      queue: c\n      payload: merged\n  c:\n    url: https://x.example\n",
      "supaqueue.yml",
      { env: {} },
    );
    expect(good.problems).toEqual([]);
    expect(
      good.config.queues.map((q) => [
        q.onSuccessQueue,
        q.onSuccessPayload,
        q.onSuccessField,
        q.fanOut,
        q.fanOutMax,
      ]),
    ).toEqual([
      ["b", "response", "items", true, 500],
      ["c", "merged", null, false, 100],
      [null, "response", null, false, 100],
    ]);
    const bad = validateConfigText(
      "queues:\n  a:\n    url: https://x.example\n    on_success: { queue: a, payload: everything, fan_out_max: 20000 }\n  b:\n    url: https://x.example\n    on_success: { payload: payload, fan_out: true }\n",
      "supaqueue.yml",
      { env: {} },
    );
    expect(bad.problems.map((p) => `${p.field}: ${p.message}`)).toEqual([
      "queues.a.on_success.queue: a queue cannot be its own on_success queue; allowed: the name of another queue",
      'queues.a.on_success.payload: "everything" is not allowed; allowed values: response (the JSON response, or its field), payload (the original payload), merged (the original payload with the response object\'s fields)',
      expect.stringMatching(/^queues\.a\.on_success\.fan_out_max: .*10,000/),
      "queues.b.on_success.queue: is missing; allowed: the name of another queue, which each success enqueues a job into",
      "queues.b.on_success.fan_out: needs payload: response or merged (it reads the JSON response, which payload: payload does not use)",
    ]);
  });
});

describe("deploy", () => {
  async function deploy(text: string) {
    const { config, problems } = validateConfigText(text, "supaqueue.yml", { env: {} });
    expect(problems).toEqual([]);
    const client = await db.pool.connect();
    try {
      await client.query("begin");
      const plan = await reconcileQueues(client, config);
      await client.query("commit");
      return plan;
    } catch (error) {
      await client.query("rollback");
      throw error;
    } finally {
      client.release();
    }
  }

  test("a file whose queues chain into each other deploys in one run, again changes nothing, and a cycle is refused", async () => {
    const chain = `queues:
  d_render:
    url: https://x.example/render
    callback_timeout: 2h
    on_success: { queue: d_send, field: emails, fan_out: true, fan_out_max: 50 }
  d_send:
    url: https://x.example/send
`;
    await deploy(chain);
    const { rows } = await db.pool.query(
      "select on_success_queue, on_success_payload, on_success_field, fan_out, fan_out_max, callback_timeout_ms from supaqueue.queue where name = 'd_render'",
    );
    expect(rows[0]).toEqual({
      callback_timeout_ms: 7_200_000,
      on_success_queue: "d_send",
      on_success_payload: "response",
      on_success_field: "emails",
      fan_out: true,
      fan_out_max: 50,
    });
    const again = await deploy(chain);
    expect(again.queues.every((q) => !q.rowChanged)).toBe(true);
    const longer = await deploy(chain.replace("callback_timeout: 2h", "callback_timeout: 3h"));
    expect(longer.queues.find((q) => q.name === "d_render")?.changes).toContain("callback_timeout: 2h → 3h");
    await deploy(chain);
    await expect(deploy(`${chain}    on_success: { queue: d_render, payload: payload }\n`)).rejects.toThrow(
      'whose successes lead back to "d_send"',
    );
  });
});

describe("under concurrency", () => {
  test("a fan-in of 1,000 parts completed in reverse order by 8 connections starts exactly once, after the last", async () => {
    await createQueue(db.pool, "wc_part", 1000);
    await createQueue(db.pool, "wc_join", 1);
    const { rows } = await db.pool.query(
      "select supaqueue.enqueue_many('wc_part', (select jsonb_agg(jsonb_build_object('payload', jsonb_build_object('n', i))) from generate_series(1, 1000) i)) as ids",
    );
    const join = await enqueueAfter("wc_join", {}, rows[0].ids);
    const calls = (await callsOf(db.pool, "wc_part")).reverse();
    expect(calls).toHaveLength(1000);
    const lanes = Array.from({ length: 8 }, (_, lane) => calls.filter((_, i) => i % 8 === lane).map(ok));
    let joinCalls = 0;
    await Promise.all(
      lanes.map(async (lane) => {
        for (let i = 0; i < lane.length; i += 5) {
          await completeMany(db.pool, lane.slice(i, i + 5));
          joinCalls += (await callsOf(db.pool, "wc_join")).length;
        }
      }),
    );
    joinCalls += (await callsOf(db.pool, "wc_join")).length;
    expect(joinCalls).toBe(1);
    expect(await job(join)).toMatchObject({ status: "in_progress", waiting_for: 0, attempts: 1 });
  }, 120_000);

  test("jobs enqueued with after while their parents complete on 8 connections each start exactly once", async () => {
    await createQueue(db.pool, "wr_part", 400);
    await createQueue(db.pool, "wr_join", 100);
    const { rows } = await db.pool.query(
      "select supaqueue.enqueue_many('wr_part', (select jsonb_agg(jsonb_build_object('payload', jsonb_build_object('n', i))) from generate_series(1, 400) i)) as ids",
    );
    const parts: string[] = rows[0].ids;
    const calls = (await callsOf(db.pool, "wr_part")).reverse();
    const lanes = Array.from({ length: 8 }, (_, lane) => calls.filter((_, i) => i % 8 === lane).map(ok));
    const joins: string[] = [];
    await Promise.all([
      ...lanes.map(async (lane) => {
        for (const report of lane) await completeMany(db.pool, [report]);
      }),
      (async () => {
        for (let j = 0; j < 100; j++) {
          const after = Array.from({ length: 20 }, (_, k) => parts[(j * 37 + k * 13) % parts.length]!);
          joins.push(await enqueueAfter("wr_join", { j }, after));
        }
      })(),
    ]);
    const started = (await callsOf(db.pool, "wr_join")).map((c) => c.body.job.id);
    expect(new Set(started).size).toBe(started.length);
    expect(started.sort()).toEqual([...joins].sort());
    const { rows: left } = await db.pool.query(
      "select count(*)::int as n from supaqueue.job where id = any ($1::uuid[]) and status <> 'in_progress'",
      [joins],
    );
    expect(left[0].n).toBe(0);
  }, 120_000);

  test("chains and dead letters between two rate-limited queues, completed by 8 connections, never deadlock", async () => {
    // lo_a's successes enqueue into lo_b and lo_b's failures into lo_a: each completion dispatches both queues and
    // takes both buckets, always in queue-id order. With the insert trigger dispatching the other queue first (the
    // order before issue 14) this deadlocked in 3 runs of 3.
    const a = await createQueue(db.pool, "lo_a", 400, { rate_limit_per_second: 1_000_000 });
    await createQueue(db.pool, "lo_b", 400, { rate_limit_per_second: 1_000_000, max_attempts: 1 });
    await db.pool.query(
      "update supaqueue.queue set on_success_queue = 'lo_b', on_success_payload = 'payload' where id = $1",
      [a],
    );
    await db.pool.query("update supaqueue.queue set dead_letter_queue = 'lo_a' where name = 'lo_b'");
    await db.pool.query(
      "select supaqueue.enqueue_many(q, (select jsonb_agg(jsonb_build_object('payload', jsonb_build_object('n', i))) from generate_series(1, 400) i)) from unnest(array['lo_a', 'lo_b']) q",
    );
    const calls = await takeCalls(db.pool);
    expect(calls).toHaveLength(800);
    const reports = calls.map((c) => (c.body.queue.name === "lo_a" ? ok(c) : fail(c)));
    const lanes = Array.from({ length: 8 }, (_, lane) => reports.filter((_, i) => i % 8 === lane));
    await Promise.all(
      lanes.map(async (lane) => {
        for (const report of lane) await completeMany(db.pool, [report]);
      }),
    );
    const { rows } = await db.pool.query(
      "select q.name, count(*)::int as n from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name like 'lo\\_%' group by q.name order by q.name",
    );
    expect(rows).toEqual([
      { name: "lo_a", n: 800 },
      { name: "lo_b", n: 800 },
    ]);
  }, 120_000);

  test("two cancellations cascading down one graph from both ends never deadlock", async () => {
    // P1 and P2 fail at once. Z waits for P1; Y for Z and P2; X for P1 and Y. Level by level, P1's cascade would hold
    // X (level 1) and want Y (level 2) while P2's held Y (level 1) and wanted X (level 2).
    await createQueue(db.pool, "dl_q", 0);
    const p1 = await enqueueJob(db.pool, "dl_q");
    const p2 = await enqueueJob(db.pool, "dl_q");
    const z = await enqueueAfter("dl_q", {}, [p1]);
    const y = await enqueueAfter("dl_q", {}, [z, p2]);
    const x = await enqueueAfter("dl_q", {}, [p1, y]);
    await db.pool.query(
      "update supaqueue.job set status = 'failed', finished_at = now() where id = any ($1)",
      [[p1, p2]],
    );
    const holder = await db.pool.connect();
    const first = await db.pool.connect();
    const second = await db.pool.connect();
    try {
      // Y is held while P2's cascade queues for it first, then P1's: released, both go on as they would race. Each
      // commits as soon as its cascade is done, as a completion would.
      const cascade = async (client: typeof first, parent: string) => {
        await client.query("begin");
        await client.query("select supaqueue._after_finished($1, false, now())", [[parent]]);
        await client.query("commit");
        return "ok";
      };
      await holder.query("begin");
      await holder.query("select from supaqueue.job where id = $1 for update", [y]);
      const p2Cascade = cascade(second, p2);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const p1Cascade = cascade(first, p1);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await holder.query("rollback");
      const results = await Promise.allSettled([p1Cascade, p2Cascade]);
      expect(results.map((r) => (r.status === "rejected" ? String(r.reason) : r.value))).toEqual([
        "ok",
        "ok",
      ]);
    } finally {
      for (const c of [holder, first, second]) {
        await c.query("rollback").catch(() => {});
        c.release();
      }
    }
    for (const id of [x, y, z]) expect(await status(id)).toBe("cancelled");
  }, 30_000);

  test("10,000 jobs fan out into 100,000, completed in reverse order by 8 connections: every step exactly once", async () => {
    await createQueue(db.pool, "cc_leaf", 0);
    await createQueue(db.pool, "cc_root", 1000, {
      on_success_queue: "cc_leaf",
      fan_out: true,
      fan_out_max: 10,
    });
    await db.pool.query(
      "select supaqueue.enqueue_many('cc_root', (select jsonb_agg(jsonb_build_object('payload', jsonb_build_object('n', i))) from generate_series(1, 10000) i))",
    );
    const items = JSON.stringify(Array.from({ length: 10 }, (_, i) => ({ i })));
    // 1,000 calls in flight at a time: each round's completions start the next round's calls.
    let reported = 0;
    for (;;) {
      const calls = (await callsOf(db.pool, "cc_root")).reverse();
      if (calls.length === 0) break;
      reported += calls.length;
      // Each call is reported twice (a repeated report changes nothing), by 8 connections at once.
      const reports = [...calls, ...calls].map((c) => answer(c, items));
      const lanes = Array.from({ length: 8 }, (_, lane) => reports.filter((_, i) => i % 8 === lane));
      await Promise.all(
        lanes.map(async (lane) => {
          for (let i = 0; i < lane.length; i += 25) await completeMany(db.pool, lane.slice(i, i + 25));
        }),
      );
    }
    expect(reported).toBe(10_000);
    const { rows } = await db.pool.query(
      `select count(*)::int as jobs, count(distinct (parent_id, payload))::int as distinct_steps,
              count(distinct parent_id)::int as parents
       from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'cc_leaf'`,
    );
    expect(rows[0]).toEqual({ jobs: 100_000, distinct_steps: 100_000, parents: 10_000 });
    const { rows: roots } = await db.pool.query(
      "select status, count(*)::int as n from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where q.name = 'cc_root' group by status",
    );
    expect(roots).toEqual([{ status: "successful", n: 10_000 }]);
  }, 300_000);
});
