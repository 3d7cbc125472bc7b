import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { verifySupaqueueSignature } from "../functions/_shared/verify_signature.ts";
import { type EdgeStack, startEdgeStack } from "./support/edge-stack.ts";
import type { ReceivedRequest } from "./support/targets.ts";

/**
 * Queue controls through the real edge function (support/edge-stack.ts: Postgres → pg_net stand-in → Deno →
 * targets): signed requests verified by a target with the shipped helper, per-queue success and retry codes,
 * dead-lettering, and the concurrency and rate limits holding together under load, measured at the target.
 */

let stack: EdgeStack;
beforeAll(async () => {
  stack = await startEdgeStack({ leaseGraceMs: 5000 });
});
afterAll(() => stack?.stop());

/** What the target received for a job, in order of arrival. */
function receivedFor(jobId: string): ReceivedRequest[] {
  return stack.targets.requests.filter((r) => r.headers["supaqueue-job-id"] === jobId);
}

async function rotate(queue: string, overlap = "1 hour"): Promise<string> {
  const { rows } = await stack.db.pool.query(
    "select supaqueue.rotate_signing_key($1, overlap => $2::interval) as key",
    [queue, overlap],
  );
  return rows[0].key;
}

describe("signed requests", () => {
  test("a target verifies calls with verifySupaqueueSignature, before, during and after a key rotation", async () => {
    const { targets, db } = stack;
    const queue = await stack.createQueue({ url: `${targets.url}/signed/orders?tenant=acme` });
    const first = await rotate(queue);
    targets.signingKeys.set("orders", [first]);

    const signedOnce = await stack.enqueue(queue, { order: 1, note: "crème brûlée ✓" });
    expect(await stack.finished(signedOnce)).toMatchObject({ status: "successful", last_status_code: 200 });
    const [one] = receivedFor(signedOnce);
    expect(one?.headers["supaqueue-signature"]).toMatch(/^t=\d+,v2=[0-9a-f]{64}$/);
    expect(one?.verification).toEqual({ ok: true, timestamp: expect.any(Number) });

    // Rotated with an hour's overlap: calls are signed with both keys, so the target, still on the old key, and a
    // target already on the new one both accept them.
    const second = await rotate(queue);
    const during = await stack.enqueue(queue, { order: 2 });
    expect(await stack.finished(during)).toMatchObject({ status: "successful", last_status_code: 200 });
    const [two] = receivedFor(during);
    expect(two?.headers["supaqueue-signature"]).toMatch(/^t=\d+,v2=[0-9a-f]{64},v2=[0-9a-f]{64}$/);
    expect(two?.verification?.ok).toBe(true);
    const asReceived = {
      headers: two?.headers ?? {},
      method: "POST",
      url: `${two?.path}?${two?.rawQuery}`,
      body: two?.body ?? "",
    };
    expect(await verifySupaqueueSignature({ ...asReceived, keys: [second] })).toBe(true);
    // Any change to what was signed is caught.
    expect(await verifySupaqueueSignature({ ...asReceived, keys: [second], body: '{"order":3}' })).toBe(
      false,
    );
    expect(await verifySupaqueueSignature({ ...asReceived, keys: ["not-the-key-0123456789"] })).toBe(false);
    // Attack 5: the signature covers the job id, the attempt and the Idempotency-Key, so a captured call cannot be
    // passed off as another job or another attempt.
    for (const [name, value] of <[string, string][]>[
      ["supaqueue-job-id", "00000000-0000-7000-8000-000000000000"],
      ["supaqueue-attempt", "2"],
      ["idempotency-key", "someone-else"],
    ]) {
      expect(
        await verifySupaqueueSignature({
          ...asReceived,
          headers: { ...two?.headers, [name]: value },
          keys: [second],
        }),
      ).toBe(false);
    }

    // After the overlap only the new key signs: a target that never switched refuses, and its 401 fails the job.
    await db.pool.query(
      "update supaqueue.queue set previous_signing_key_until = now() - interval '1 second' where name = $1",
      [queue],
    );
    const after = await stack.enqueue(queue, { order: 3 });
    expect(await stack.finished(after)).toMatchObject({
      status: "failed",
      attempts: 1,
      last_status_code: 401,
    });
    const [three] = receivedFor(after);
    expect(three?.headers["supaqueue-signature"]).toMatch(/^t=\d+,v2=[0-9a-f]{64}$/);
    expect(three?.verification).toEqual({ ok: false, reason: "mismatch" });
    // The target on the new key accepts it.
    targets.signingKeys.set("orders", [second]);
    const switched = await stack.enqueue(queue, { order: 4 });
    expect((await stack.finished(switched)).status).toBe("successful");
  });

  test("GET: the payload, sent as the query string, is signed with it", async () => {
    const { targets } = stack;
    const queue = await stack.createQueue({ url: `${targets.url}/signed/search?fixed=1`, method: "GET" });
    targets.signingKeys.set("search", [await rotate(queue)]);
    const jobId = await stack.enqueue(queue, { q: "a b&c", nested: { deep: [1, "x"] } });
    expect((await stack.finished(jobId)).status).toBe("successful");
    const [received] = receivedFor(jobId);
    expect(received?.query).toEqual({ fixed: "1", q: "a b&c", nested: '{"deep":[1,"x"]}' });
    expect(received?.verification?.ok).toBe(true);
    const tampered = {
      headers: received?.headers ?? {},
      method: "GET",
      url: `${received?.path}?${received?.rawQuery.replace("a%20b", "a%20z")}`,
      body: "",
      keys: targets.signingKeys.get("search") ?? [],
    };
    expect(await verifySupaqueueSignature(tampered)).toBe(false);
  });

  test("an unsigned queue's calls carry no signature", async () => {
    const queue = await stack.createQueue({ url: `${stack.targets.url}/ok?unsigned=1` });
    const jobId = await stack.enqueue(queue);
    expect((await stack.finished(jobId)).status).toBe("successful");
    expect(receivedFor(jobId)[0]?.headers["supaqueue-signature"]).toBeUndefined();
  });
});

describe("per-queue success and retry codes", () => {
  test("with success_codes [202], a 202 succeeds and a 200 fails at once", async () => {
    const { targets } = stack;
    const accepted = await stack.createQueue({ url: `${targets.url}/status/202`, success_codes: [202] });
    const okJob = await stack.enqueue(accepted);
    expect(await stack.finished(okJob)).toMatchObject({
      status: "successful",
      attempts: 1,
      last_status_code: 202,
    });

    const strict = await stack.createQueue({ url: `${targets.url}/status/200`, success_codes: [202] });
    const failJob = await stack.enqueue(strict);
    expect(await stack.finished(failJob)).toMatchObject({
      status: "failed",
      attempts: 1,
      last_status_code: 200,
    });
    expect(receivedFor(failJob)).toHaveLength(1);
  });

  test("with retry_codes [404], a 404 is retried until the target answers, and a 500 is not", async () => {
    const { targets } = stack;
    targets.sequences.set("not-yet", [404, 404]);
    const patient = await stack.createQueue({
      url: `${targets.url}/sequence/not-yet`,
      retry_codes: [404],
      max_attempts: 3,
    });
    const jobId = await stack.enqueue(patient);
    expect(await stack.finished(jobId)).toMatchObject({
      status: "successful",
      attempts: 3,
      last_status_code: 200,
    });
    expect((await stack.attempts(jobId)).map((a) => a.status_code)).toEqual([404, 404, 200]);
    expect(receivedFor(jobId).map((r) => r.headers["supaqueue-attempt"])).toEqual(["1", "2", "3"]);

    const only404 = await stack.createQueue({
      url: `${targets.url}/status/500`,
      retry_codes: [404],
      max_attempts: 3,
    });
    const failed = await stack.enqueue(only404);
    expect(await stack.finished(failed)).toMatchObject({
      status: "failed",
      attempts: 1,
      last_status_code: 500,
    });
  });
});

describe("dead-letter queue", () => {
  test("a job that fails for good through the function is dead-lettered, and the dead letter is delivered", async () => {
    const { targets, db } = stack;
    const deadLetters = await stack.createQueue({ name: "dead-letters", url: `${targets.url}/ok?via=dlq` });
    const fragile = await stack.createQueue({
      url: `${targets.url}/status/500`,
      max_attempts: 2,
      dead_letter_queue: deadLetters,
    });
    const jobId = await stack.enqueue(fragile, { order: 7 });
    expect(await stack.finished(jobId)).toMatchObject({
      status: "failed",
      attempts: 2,
      last_status_code: 500,
    });

    const { rows } = await db.pool.query(
      `select j.id from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
       where q.name = $1 and j.payload->>'job_id' = $2`,
      [deadLetters, jobId],
    );
    expect(rows).toHaveLength(1);
    const deadLetterId: string = rows[0].id;
    expect(await stack.finished(deadLetterId)).toMatchObject({ status: "successful", attempts: 1 });
    const [delivered] = receivedFor(deadLetterId);
    expect(delivered).toMatchObject({ method: "POST", path: "/ok", rawQuery: "via=dlq" });
    expect(JSON.parse(delivered?.body ?? "")).toEqual({
      job_id: jobId,
      queue: fragile,
      payload: { order: 7 },
      attempts: 2,
      last_status_code: 500,
      last_error: "HTTP 500",
    });
  });
});

describe("concurrency and rate limit together, under load", () => {
  const WORKERS = 3;
  const RATE = 5;
  const JOBS = 30;
  const ANSWER_MS = 150;

  test(`${JOBS} jobs, ${WORKERS} workers, ${RATE} calls/s: both limits hold at the target, and every job runs once`, async () => {
    const { targets, db } = stack;
    const queue = await stack.createQueue({
      url: `${targets.url}/slow/${ANSWER_MS}`,
      workers: WORKERS,
      rate_limit_per_second: RATE,
    });
    // One call first, so the timings below measure the limits rather than a cold start of the path.
    await stack.finished(
      await stack.enqueue(await stack.createQueue({ url: `${targets.url}/ok?warm-up=1` })),
    );
    // pg_cron runs tick() every second in production; here a ticker runs it every 100 ms while the jobs run.
    const ticker = stack.startTicker(100);
    let ids: string[];
    try {
      const { rows } = await db.pool.query(
        `insert into supaqueue.job (queue_id, payload)
         select q.id, jsonb_build_object('n', n) from supaqueue.queue q, generate_series(1, $2::int) n
         where q.name = $1 returning id`,
        [queue, JOBS],
      );
      ids = rows.map((r) => r.id);
      for (const id of ids) {
        expect(await stack.finished(id, { timeoutMs: 30_000, tick: false })).toMatchObject({
          status: "successful",
          attempts: 1,
        });
      }
    } finally {
      await ticker.stop();
    }

    const wanted = new Set(ids);
    const arrivals = targets.requests
      .filter((r) => wanted.has(r.headers["supaqueue-job-id"] ?? ""))
      .sort((a, b) => a.at - b.at);
    // Every job reached the target exactly once: waiting for a token never failed or duplicated a call.
    expect(arrivals).toHaveLength(JOBS);
    expect(new Set(arrivals.map((r) => r.headers["supaqueue-job-id"])).size).toBe(JOBS);

    // Concurrency: never more than WORKERS calls at the target at once, and the cap was reached (the first burst).
    const maxInFlight = Math.max(...arrivals.map((r) => r.inFlight));
    expect(maxInFlight).toBeLessThanOrEqual(WORKERS);
    expect(maxInFlight).toBe(WORKERS);

    // Rate, per 1-second window at the target. The bucket holds one second of calls (RATE) and refills at RATE
    // per second, so the first second may see the full bucket and its refill: up to 2·RATE. Once the bucket is
    // spent, a window sees at most RATE calls plus TOLERANCE = 2: up to 1.5 tokens can be waiting when a window
    // starts (the fraction the last dispatch left, plus what accrues until the next tick, 100 ms later), and calls
    // dispatched just over a second apart can arrive just under (measured delivery: 10-130 ms once warm).
    const TOLERANCE = 2;
    const t = arrivals.map((r) => r.at);
    const first = t[0] ?? 0;
    const perWindow = t.map((start) => t.filter((x) => x >= start && x < start + 1000).length);
    const steady = perWindow.filter((_, i) => (t[i] ?? 0) >= first + 1000);
    expect(steady.length).toBeGreaterThanOrEqual(15);
    expect(Math.max(...steady)).toBeLessThanOrEqual(RATE + TOLERANCE);
    expect(Math.max(...perWindow)).toBeLessThanOrEqual(2 * RATE + 1);

    // Total time: after the first RATE calls, the rest wait for tokens: at least (JOBS - RATE) / RATE seconds,
    // less JITTER_MS, by which the first calls may arrive later after dispatch than the last ones.
    const JITTER_MS = 250;
    const minimum = ((JOBS - RATE) / RATE) * 1000;
    const total = (t[t.length - 1] ?? 0) - first;
    expect(total).toBeGreaterThanOrEqual(minimum - JITTER_MS);
    // ... and the limit is used, not just respected: the calls do not crawl.
    expect(total).toBeLessThan(minimum * 1.6);

    // The same rule checked exactly on the database's side, on the dispatch times the bucket was charged at
    // (attempt.started_at): any s seconds hold at most RATE + RATE·s dispatches. 20 ms covers transactions whose
    // now() is a little older than a concurrent tick's clock.
    const { rows: dispatched } = await db.pool.query<{ at: Date }>(
      "select started_at as at from supaqueue.attempt where job_id = any($1::uuid[]) order by started_at",
      [ids],
    );
    const d = dispatched.map((r) => r.at.getTime());
    for (let i = 0; i < d.length; i++) {
      for (let j = i; j < d.length; j++) {
        const span = ((d[j] ?? 0) - (d[i] ?? 0) + 20) / 1000;
        expect(j - i + 1, `dispatches ${i + 1}..${j + 1} within ${span} s`).toBeLessThanOrEqual(
          Math.floor(RATE + RATE * span),
        );
      }
    }
    console.info(
      `load: ${JOBS} calls in ${total} ms at the target (${(d.at(-1) ?? 0) - (d[0] ?? 0)} ms of dispatches), ` +
        `max in flight ${maxInFlight}, max per 1-s window ${Math.max(...perWindow)} ` +
        `(after the first second ${Math.max(...steady)})`,
    );
  });
});
