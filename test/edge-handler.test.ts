import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { checkSupaqueueSignature } from "../functions/_shared/verify_signature.ts";
import { chunkReader, READ_BUFFER_BYTES, readBounded } from "../functions/execute_current_job/body.ts";
import { type Completion, type CurrentJobCall, parseCall } from "../functions/execute_current_job/call.ts";
import { createHandler, type HandlerDeps } from "../functions/execute_current_job/handler.ts";
import { classify, parseRetryAfter } from "../functions/execute_current_job/outcome.ts";
import { buildRequest } from "../functions/execute_current_job/request.ts";
import { type Database, RpcError } from "../functions/execute_current_job/rpc.ts";
import { wakeupHeader } from "../functions/execute_current_job/wakeup.ts";
import { startTargets, type Targets } from "./support/targets.ts";

/**
 * execute_current_job's handler (functions/execute_current_job/handler.ts) with a database stand-in that claims each
 * call once, as supaqueue.claim_current_jobs does: how it checks a wakeup, claims, answers pg_net, makes the calls,
 * reports them and takes on the calls a report hands back. The end-to-end tests run the same code in Deno against
 * the real database.
 */

const SECRET = "s3cret-value";
const JOB_ID = "6f1c2a9e-0000-4000-8000-000000000001";
const NOW = Date.parse("2026-11-28T12:00:00Z");
const PROJECT = "https://ref.supabase.co";

/** A call's details as the database hands them out (supaqueue._call_details), with overrides. */
function details(
  overrides: { queue?: Record<string, unknown>; job?: Record<string, unknown>; [k: string]: unknown } = {},
) {
  const { queue, job, ...rest } = overrides;
  return {
    current_job_id: 41,
    attempt: 2,
    lease_until: new Date(NOW + 60_000).toISOString(),
    max_response_chars: 2000,
    job: { id: JOB_ID, payload: { hello: "world" }, headers: {}, ...job },
    queue: {
      name: "q",
      url: "https://example.test/hook",
      is_function: false,
      method: "POST",
      headers: {},
      timeout_ms: 2000,
      success_codes: null,
      retry_codes: null,
      signed: false,
      signing_keys: [],
      ...queue,
    },
    problem: null,
    ...rest,
  };
}

function call(overrides: Parameters<typeof details>[0] = {}): CurrentJobCall {
  const parsed = parseCall(details(overrides));
  if (typeof parsed === "string") throw new Error(parsed);
  return parsed;
}

/** A wakeup as the database sends it: {"v": 2, "ids": [...]} with its MAC, made at `t` with window `w`. */
async function wakeup(
  ids: unknown[],
  options: { secret?: string; t?: number; w?: number; raw?: string; header?: string | null } = {},
): Promise<Request> {
  const body = options.raw ?? JSON.stringify({ v: 2, ids });
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  const header =
    options.header !== undefined
      ? options.header
      : await wakeupHeader({
          secret: options.secret ?? SECRET,
          body,
          t: options.t ?? NOW,
          w: options.w ?? 41_000,
        });
  if (header !== null) headers["Supaqueue-Wakeup"] = header;
  return new Request(`${PROJECT}/execute_current_job`, { method: "POST", headers, body });
}

/**
 * A database that hands out each known call once (a second claim of the same id gets nothing, as after a replay),
 * records every report, and hands back the calls queued in `next` with the report that frees a worker.
 */
function fakeDatabase(calls: Record<number, unknown> = { 41: details() }) {
  const available = new Map(Object.entries(calls).map(([id, c]) => [Number(id), c]));
  const claims: number[][] = [];
  const reports: { outcomes: Completion[]; within: number }[] = [];
  const next: unknown[] = [];
  const db: Database = {
    async claim(ids) {
      claims.push(ids);
      const out: unknown[] = [];
      for (const id of ids) {
        const c = available.get(id);
        if (c) out.push(c);
        available.delete(id);
      }
      return out;
    },
    async completeAndClaim(outcomes, within) {
      reports.push({ outcomes, within });
      const handed = within > 0 ? next.splice(0, outcomes.length) : [];
      return { finished: outcomes.map((o) => o.current_job_id), calls: handed };
    },
    async completeCallback() {
      throw new Error("these tests send no callback (test/callbacks.test.ts does)");
    },
  };
  return { db, claims, reports, next, outcomes: () => reports.flatMap((r) => r.outcomes) };
}

/** A handler with a recording fetch and database. */
function harness(overrides: Partial<HandlerDeps> = {}, calls?: Record<number, unknown>) {
  const fake = fakeDatabase(calls);
  const fetched: Request[] = [];
  const logs: string[] = [];
  const deps: HandlerDeps = {
    secret: SECRET,
    db: fake.db,
    projectKey: { value: "service-jwt", kind: "jwt" },
    functionsOrigins: [PROJECT],
    now: () => NOW,
    fetch: async (input, init) => {
      fetched.push(new Request(input, init));
      return new Response('{"ok":true}', { status: 200 });
    },
    logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
    ...overrides,
  };
  const handler = createHandler(deps);
  return { handler, fetched, logs, ...fake };
}

describe("the wakeup: authenticated, fresh, and naming ids only", () => {
  test("a valid wakeup claims its calls before answering, and the answer holds counts only", async () => {
    const { handler, claims, fetched, outcomes } = harness();
    const res = await handler(await wakeup([41, 42]));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ claimed: 1, of: 2 });
    expect(claims).toEqual([[41, 42]]);
    await handler.idle();
    expect(fetched).toHaveLength(1);
    expect(outcomes()).toEqual([
      expect.objectContaining({ current_job_id: 41, succeeded: true, status_code: 200 }),
    ]);
  });

  test("a missing, forged or tampered wakeup gets 401/400 with a short code, and nothing is claimed or called", async () => {
    const { handler, claims, fetched } = harness();
    const valid = await wakeup([41]);
    const header = valid.headers.get("Supaqueue-Wakeup") ?? "";
    const cases: [Request, number, string][] = [
      [await wakeup([41], { header: null }), 401, "wakeup_unauthenticated"],
      [await wakeup([41], { secret: "another-secret" }), 401, "wakeup_bad_mac"],
      [await wakeup([41], { header, raw: JSON.stringify({ v: 2, ids: [999_999] }) }), 401, "wakeup_bad_mac"],
      [await wakeup([41], { header: header.replace(/t=\d+/, `t=${NOW + 1}`) }), 401, "wakeup_bad_mac"],
      [await wakeup([41], { header: header.replace(/w=\d+/, "w=900000") }), 401, "wakeup_bad_mac"],
      [await wakeup([41], { header: "v=2,t=1,w=2" }), 400, "wakeup_malformed"],
      [await wakeup([41], { header: `${header},t=5` }), 400, "wakeup_malformed"],
      [await wakeup([41], { header: header.replace("v=2", "v=3") }), 400, "wakeup_hop_version_unsupported"],
      [await wakeup([-1]), 400, "wakeup_malformed"],
      [await wakeup(["41"]), 400, "wakeup_malformed"],
      [await wakeup(Array.from({ length: 1001 }, (_, i) => i + 1)), 400, "wakeup_malformed"],
      [await wakeup([], { raw: "{not json" }), 400, "wakeup_malformed"],
      [await wakeup([], { raw: JSON.stringify({ v: 3, ids: [41] }) }), 400, "wakeup_hop_version_unsupported"],
    ];
    for (const [request, status, code] of cases) {
      const res = await handler(request);
      expect(res.status, code).toBe(status);
      expect(await res.json()).toEqual({ error: code });
    }
    await handler.idle();
    expect(claims).toEqual([]);
    expect(fetched).toHaveLength(0);
  });

  test("freshness: refused after t + w, and when t is more than a minute ahead or the window is over 15 minutes", async () => {
    const { handler, claims } = harness();
    const stale = [
      await wakeup([41], { t: NOW - 41_001 }),
      await wakeup([41], { t: NOW + 60_001 }),
      await wakeup([41], { t: NOW - 1000, w: 15 * 60_000 + 1 }),
    ];
    for (const request of stale) expect((await handler(request)).status).toBe(400);
    expect(claims).toEqual([]);
    expect((await handler(await wakeup([41], { t: NOW - 41_000 }))).status).toBe(200);
    expect(claims).toEqual([[41]]);
  });

  test("a replayed wakeup claims nothing: the call is made once", async () => {
    const { handler, fetched } = harness();
    const first = await wakeup([41]);
    const replay = first.clone();
    expect(await (await handler(first)).json()).toEqual({ claimed: 1, of: 1 });
    expect(await (await handler(replay)).json()).toEqual({ claimed: 0, of: 1 });
    await handler.idle();
    expect(fetched).toHaveLength(1);
  });

  test("the wakeup of Supaqueue before hop version 2 (the whole call and a shared secret) is never honoured", async () => {
    // Attack 1 of the hop's review: with the old shared secret, a hand-made body naming any URL and is_function got
    // the project's key sent there. The body is not read at all now.
    const { handler, claims, fetched } = harness();
    const res = await handler(
      new Request(`${PROJECT}/execute_current_job`, {
        method: "POST",
        headers: { "Content-Type": "application/json", "supaqueue-secret": SECRET },
        body: JSON.stringify({
          ...details({ current_job_id: 999_999 }),
          queue: { url: "https://evil.example/", is_function: true },
        }),
      }),
    );
    expect(res.status).toBe(400);
    expect((await res.json()).error).toBe("wakeup_hop_version_unsupported");
    await handler.idle();
    expect(claims).toEqual([]);
    expect(fetched).toHaveLength(0);
  });

  test("only POST; a body over 64 KiB is refused unread", async () => {
    const { handler, claims } = harness();
    expect((await handler(new Request(`${PROJECT}/x`, { method: "GET" }))).status).toBe(405);
    const big = await wakeup([], { raw: " ".repeat(64 * 1024 + 1), header: "v=2,t=1,w=1,mac=00" });
    expect((await handler(big)).status).toBe(413);
    expect(claims).toEqual([]);
  });

  test("a claim that fails answers 502 with a code naming the step, never a secret", async () => {
    const cases: [unknown, string][] = [
      [
        new RpcError("supaqueue_claim_current_jobs", 404, "HTTP 404 PGRST202: Could not find the function"),
        "claim_rpc_404",
      ],
      [
        new RpcError("supaqueue_claim_current_jobs", 401, "HTTP 401 PGRST301: Invalid API key"),
        "claim_rpc_401",
      ],
      [
        new RpcError("supaqueue_claim_current_jobs", null, "fetch failed (ECONNREFUSED)"),
        "claim_rpc_unreachable",
      ],
      [new RpcError("supaqueue_claim_current_jobs", null, "no answer within 30000 ms"), "claim_rpc_timeout"],
      [new Error("boom"), "claim_failed"],
    ];
    for (const [error, code] of cases) {
      const { handler, db, logs } = harness();
      db.claim = async () => {
        throw error;
      };
      const res = await handler(await wakeup([41]));
      expect(res.status).toBe(502);
      const text = await res.text();
      expect(JSON.parse(text)).toEqual({ error: code });
      expect(text).not.toContain(SECRET);
      expect(logs.join("\n")).toMatch(/claiming 1 calls failed/);
    }
  });

  test("the shared secret must not be empty", () => {
    expect(() => createHandler({ ...harness().handler, secret: "", db: fakeDatabase().db, fetch })).toThrow(
      /must not be empty/,
    );
  });
});

describe("making the calls", () => {
  test("answers before the call finishes, and keeps it alive with waitUntil", async () => {
    let release: (() => void) | undefined;
    const kept: Promise<unknown>[] = [];
    const { handler, outcomes } = harness({
      fetch: () =>
        new Promise((resolve) => {
          release = () => resolve(new Response("done", { status: 201 }));
        }),
      waitUntil: (p) => kept.push(p),
    });
    expect((await handler(await wakeup([41]))).status).toBe(200);
    expect(kept).toHaveLength(1);
    expect(handler.inFlight).toBe(1);
    await new Promise((r) => setTimeout(r, 10));
    release?.();
    await kept[0];
    expect(outcomes()).toEqual([
      expect.objectContaining({
        current_job_id: 41,
        succeeded: true,
        status_code: 201,
        response_body: "done",
        error: null,
      }),
    ]);
    expect(handler.inFlight).toBe(0);
  });

  test("a failing report is logged and does not throw; a late completion is only noted", async () => {
    const failing = harness();
    failing.db.completeAndClaim = async () => {
      throw new Error("PostgREST unreachable");
    };
    await failing.handler(await wakeup([41]));
    await failing.handler.idle();
    expect(failing.logs.join("\n")).toMatch(/reporting the outcome failed: PostgREST unreachable/);

    const late = harness();
    late.db.completeAndClaim = async () => ({ finished: [], calls: [] });
    await late.handler(await wakeup([41]));
    await late.handler.idle();
    expect(late.logs.join("\n")).toMatch(/no longer in flight/);
  });

  test("a call the database flags (a secret missing from Vault) fails without being made, and is not retried", async () => {
    const { handler, fetched, outcomes } = harness(
      {},
      { 41: details({ problem: 'a secret header is missing from Vault: header "X-Key"' }) },
    );
    await handler(await wakeup([41]));
    await handler.idle();
    expect(fetched).toHaveLength(0);
    expect(outcomes()[0]).toMatchObject({ succeeded: false, retryable: false, status_code: null });
    expect(outcomes()[0]?.error).toMatch(/missing from Vault/);
  });

  test("unreadable call details fail that call, never guessed at", async () => {
    const { handler, fetched, outcomes } = harness({}, { 41: details({ queue: { url: "ftp://x" } }) });
    await handler(await wakeup([41]));
    await handler.idle();
    expect(fetched).toHaveLength(0);
    expect(outcomes()[0]).toMatchObject({ current_job_id: 41, succeeded: false, retryable: false });
    expect(outcomes()[0]?.error).toMatch(/could not read the call's details: queue\.url/);
  });

  test("a signed queue signs with scheme v2; a signed queue without a key is never sent unsigned", async () => {
    const signed = harness({}, { 41: details({ queue: { signed: true, signing_keys: ["k".repeat(16)] } }) });
    await signed.handler(await wakeup([41]));
    await signed.handler.idle();
    const sent = signed.fetched[0]!;
    expect(sent.headers.get("supaqueue-signature")).toMatch(/^t=\d+,v2=[0-9a-f]{64}$/);
    const check = await checkSupaqueueSignature({
      headers: sent.headers,
      method: sent.method,
      url: sent.url,
      body: await sent.text(),
      keys: ["k".repeat(16)],
      now: NOW,
    });
    expect(check.ok).toBe(true);

    const keyless = harness({}, { 41: details({ queue: { signed: true, signing_keys: [] } }) });
    await keyless.handler(await wakeup([41]));
    await keyless.handler.idle();
    expect(keyless.fetched).toHaveLength(0);
    expect(keyless.outcomes()[0]).toMatchObject({ succeeded: false, retryable: false });
    expect(keyless.outcomes()[0]?.error).toMatch(/not sent unsigned/);
  });

  test("an invalid header fails the job at once", async () => {
    const { handler, fetched, outcomes } = harness(
      {},
      { 41: details({ job: { headers: { "Bad Header": "x" } } }) },
    );
    await handler(await wakeup([41]));
    await handler.idle();
    expect(fetched).toHaveLength(0);
    expect(outcomes()[0]).toMatchObject({ succeeded: false, retryable: false, status_code: null });
    expect(outcomes()[0]?.error).toMatch(/invalid header/);
  });

  test("a RateLimitError from the edge runtime is retried after its delay, and the instance takes no more calls", async () => {
    const { handler, reports, next, outcomes } = harness({
      fetch: async () => {
        const error = new Error("rate limit exceeded for function calls") as Error & { retryAfter: number };
        error.name = "RateLimitError";
        error.retryAfter = 7;
        throw error;
      },
    });
    next.push(details({ current_job_id: 42 }));
    await handler(await wakeup([41]));
    await handler.idle();
    expect(outcomes()[0]).toMatchObject({ succeeded: false, retryable: true, retry_after_ms: 7000 });
    expect(reports[0]?.within).toBe(0);
  });
});

describe("going on with the next calls a report hands back", () => {
  test("a report asks for next calls and the instance makes them, without a new wakeup", async () => {
    const { handler, reports, next, fetched } = harness();
    next.push(details({ current_job_id: 42 }), details({ current_job_id: 43 }));
    await handler(await wakeup([41]));
    await handler.idle();
    expect(fetched).toHaveLength(3);
    expect(reports.map((r) => r.outcomes.map((o) => o.current_job_id))).toEqual([[41], [42], [43]]);
    // Whatever fits in the wall clock (150 s) less the margin (10 s) at this instance's age (0).
    expect(reports[0]?.within).toBe(140_000);
    expect(handler.started).toBe(3);
  });

  test("it takes no more calls after maxCalls, near the end of its wall clock, past its CPU budget, or once retired", async () => {
    let now = NOW;
    let cpu = 0;
    const within = async (
      lifetime: HandlerDeps["lifetime"],
      before?: (h: ReturnType<typeof harness>) => void,
    ) => {
      const h = harness({ now: () => now, lifetime });
      before?.(h);
      await h.handler(await wakeup([41]));
      await h.handler.idle();
      return h.reports[0]?.within;
    };
    expect(await within({ maxCalls: 1 })).toBe(0);
    expect(await within({ maxCalls: 2 })).toBe(140_000);
    expect(await within({ wallClockMs: 400_000, marginMs: 0 })).toBe(400_000);
    expect(
      await within({ cpuMs: () => cpu }, () => {
        cpu = 1_500;
      }),
    ).toBe(0);
    expect(await within({}, (h) => h.handler.retire())).toBe(0);
    // An instance 139 s old has 1 s left for a next call; at 140 s none.
    const aging = harness({ now: () => now });
    now = NOW + 139_000;
    await aging.handler(await wakeup([41], { t: now }));
    await aging.handler.idle();
    expect(aging.reports[0]?.within).toBe(1_000);
    now = NOW;
  });
});

describe("when the edge worker ends", () => {
  test("beforeunload releases the calls still running at once, once, and later wakeups are turned away", async () => {
    const hanging: Request[] = [];
    const { handler, outcomes, claims, logs } = harness(
      {
        fetch: (input, init) => {
          hanging.push(new Request(input, init));
          return new Promise((_, reject) =>
            init?.signal?.addEventListener("abort", () => reject(new Error("aborted"))),
          );
        },
      },
      { 41: details(), 42: details({ current_job_id: 42 }) },
    );
    await handler(await wakeup([41, 42]));
    await new Promise((r) => setTimeout(r, 10));
    expect(hanging).toHaveLength(2);
    handler.shutdown("wall_clock");
    handler.shutdown("wall_clock");
    await handler.idle();
    expect(outcomes()).toHaveLength(2);
    for (const o of outcomes()) {
      expect(o).toMatchObject({ succeeded: false, retryable: true, released: true, status_code: null });
      expect(o.error).toMatch(
        /the edge worker shut down \(wall_clock\) before the answer came; it goes again, not counted as an attempt/,
      );
    }
    expect(logs.filter((l) => l.includes("shutting down"))).toHaveLength(1);
    // A wakeup after that is not claimed (tick wakes the calls again, for a fresh worker).
    const later = await handler(await wakeup([43]));
    expect(later.status).toBe(503);
    expect(await later.json()).toEqual({ error: "worker_shutting_down" });
    expect(claims).toEqual([[41, 42]]);
  });

  test("a call the worker could not finish before its wall clock ends is released, not started", async () => {
    let now = NOW;
    const { handler, fetched, outcomes } = harness(
      { now: () => now, lifetime: { wallClockMs: 150_000, marginMs: 10_000 } },
      {
        41: details({ queue: { timeout_ms: 30_001 } }),
        42: details({ current_job_id: 42, queue: { timeout_ms: 5_000 } }),
      },
    );
    now = NOW + 110_000; // 30 s of wall clock left for calls: a call of 30.001 s does not fit, the 5 s one does.
    await handler(await wakeup([41, 42], { t: now }));
    await handler.idle();
    expect(fetched).toHaveLength(1);
    expect(outcomes().find((o) => o.current_job_id === 41)).toMatchObject({
      released: true,
      retryable: true,
    });
    expect(outcomes().find((o) => o.current_job_id === 41)?.error).toMatch(
      /only 30000 ms of this edge worker's wall clock were left for a call of up to 30001 ms/,
    );
    expect(outcomes().find((o) => o.current_job_id === 42)).toMatchObject({ succeeded: true });
  });

  test("a worker that outlives its wall clock is not retired by its runtime: calls are made, not released for ever", async () => {
    let now = NOW;
    const { handler, fetched, logs } = harness({ now: () => now, lifetime: { wallClockMs: 150_000 } });
    now = NOW + 181_000;
    await handler(await wakeup([41], { t: now }));
    await handler.idle();
    expect(fetched).toHaveLength(1);
    expect(logs.join("\n")).toMatch(/outlived its 150000 ms wall clock/);
  });
});

describe("building the request", () => {
  test("POST, PUT and PATCH send the payload as JSON", () => {
    for (const method of ["POST", "PUT", "PATCH"]) {
      const r = buildRequest(call({ queue: { method }, job: { payload: [1, { a: "b" }] } }));
      expect(r.method).toBe(method);
      expect(r.body).toBe('[1,{"a":"b"}]');
      expect(r.headers.get("content-type")).toBe("application/json");
      expect(r.url).toBe("https://example.test/hook");
    }
  });

  test("GET and DELETE send the payload as a percent-encoded query, keeping the URL's own parameters", () => {
    for (const method of ["GET", "DELETE"]) {
      const r = buildRequest(
        call({
          queue: { method, url: "https://example.test/hook?fixed=1&x=a%20b#frag" },
          job: {
            payload: { q: "a b&c=d/é", n: 3, t: true, z: null, nested: { k: [1, "two"] }, "odd key": "+" },
          },
        }),
      );
      expect(r.body).toBeUndefined();
      expect(r.headers.has("content-type")).toBe(false);
      const url = new URL(r.url);
      expect(url.search).toBe(
        "?fixed=1&x=a%20b&q=a%20b%26c%3Dd%2F%C3%A9&n=3&t=true&z=null&nested=%7B%22k%22%3A%5B1%2C%22two%22%5D%7D&odd%20key=%2B",
      );
      expect(Object.fromEntries(url.searchParams)).toEqual({
        fixed: "1",
        x: "a b",
        q: "a b&c=d/é",
        n: "3",
        t: "true",
        z: "null",
        nested: '{"k":[1,"two"]}',
        "odd key": "+",
      });
    }
    const empty = buildRequest(
      call({ queue: { method: "GET", url: "https://example.test/p?a=1" }, job: { payload: {} } }),
    );
    expect(empty.url).toBe("https://example.test/p?a=1");
  });

  test("a GET job with an array payload cannot be made", () => {
    expect(() => buildRequest(call({ queue: { method: "GET" }, job: { payload: [1] } }))).toThrow(
      /JSON object payload/,
    );
  });

  test("queue headers, then job headers, then Supaqueue's own", () => {
    const r = buildRequest(
      call({
        queue: { headers: { "X-Queue": "q", "X-Both": "queue", "Content-Type": "application/vnd.x+json" } },
        job: { headers: { "X-Job": "j", "X-Both": "job", "Supaqueue-Attempt": "99" } },
        attempt: 3,
      }),
    );
    expect(Object.fromEntries(r.headers)).toEqual({
      "content-type": "application/vnd.x+json",
      "idempotency-key": JOB_ID,
      "x-queue": "q",
      "x-both": "job",
      "x-job": "j",
      "supaqueue-job-id": JOB_ID,
      "supaqueue-attempt": "3",
    });
  });

  test("the project's key goes only to the project's own functions: its origin, under /functions/v1/", () => {
    const jwt = {
      key: { value: "jwt-key", kind: "jwt" as const },
      functionsOrigins: [PROJECT, "https://api.custom.example"],
    };
    const fn = (url: string, is_function = true) => buildRequest(call({ queue: { url, is_function } }), jwt);
    const own = fn(`${PROJECT}/functions/v1/send-email`);
    expect(own.headers.get("authorization")).toBe("Bearer jwt-key");
    expect(own.headers.get("apikey")).toBe("jwt-key");
    expect(own.keySent).toBe(true);
    expect(fn("https://api.custom.example/functions/v1/send-email").keySent).toBe(true);
    // Attack 1: a function queue pointed anywhere else, or a URL queue on the project, never gets the key.
    for (const other of [
      fn("https://evil.example/functions/v1/send-email"),
      fn(`${PROJECT}/rest/v1/rpc/anything`),
      fn(`${PROJECT}.evil.example/functions/v1/x`),
      fn(`${PROJECT}/functions/v1/send-email`, false),
    ]) {
      expect(other.headers.has("authorization")).toBe(false);
      expect(other.headers.has("apikey")).toBe(false);
      expect(other.keySent).toBe(false);
    }
    // A new sb_secret_ key is not a JWT: apikey only.
    const secret = buildRequest(call({ queue: { url: `${PROJECT}/functions/v1/f`, is_function: true } }), {
      key: { value: "sb_secret_abc", kind: "secret" },
      functionsOrigins: [PROJECT],
    });
    expect(secret.headers.get("apikey")).toBe("sb_secret_abc");
    expect(secret.headers.has("authorization")).toBe(false);
  });
});

describe("classification", () => {
  test("defaults: 2xx succeed; 408, 429 and 5xx retry; other statuses (redirects too) fail at once", () => {
    expect(classify(200, null, null)).toEqual({ succeeded: true, retryable: false });
    expect(classify(204, null, null).succeeded).toBe(true);
    expect(classify(299, null, null).succeeded).toBe(true);
    for (const s of [408, 429, 500, 502, 503, 599])
      expect(classify(s, null, null)).toEqual({ succeeded: false, retryable: true });
    for (const s of [301, 302, 307, 400, 401, 404, 409, 422])
      expect(classify(s, null, null)).toEqual({ succeeded: false, retryable: false });
  });

  test("per-queue success_codes and retry_codes replace the defaults", () => {
    expect(classify(404, [200, 404], null).succeeded).toBe(true);
    expect(classify(201, [200], null)).toEqual({ succeeded: false, retryable: false });
    expect(classify(409, null, [409]).retryable).toBe(true);
    expect(classify(500, null, [409]).retryable).toBe(false);
  });

  test("Retry-After as seconds or an HTTP date", () => {
    expect(parseRetryAfter("120", NOW)).toBe(120_000);
    expect(parseRetryAfter(" 0 ", NOW)).toBe(0);
    expect(parseRetryAfter("Sat, 28 Nov 2026 12:00:30 GMT", NOW)).toBe(30_000);
    expect(parseRetryAfter("Sat, 28 Nov 2026 11:00:00 GMT", NOW)).toBe(0);
    expect(parseRetryAfter("99999999999", NOW)).toBe(2_147_483_647);
    for (const bad of [null, undefined, "", "soon", "-5", "1.5"])
      expect(parseRetryAfter(bad, NOW)).toBeNull();
  });
});

describe("calls against real local targets", () => {
  let targets: Targets;
  let elsewhere: Targets;
  beforeAll(async () => {
    targets = await startTargets();
    elsewhere = await startTargets();
  });
  afterAll(async () => {
    await targets.stop();
    await elsewhere.stop();
  });

  async function run(
    path: string,
    queue: Record<string, unknown> = {},
    deps: Partial<HandlerDeps> = {},
    maxResponseChars: number | null = 2000,
    extra: Record<string, unknown> = {},
  ) {
    const { handler, outcomes } = harness(
      { fetch, now: () => Date.now(), functionsOrigins: [targets.url], ...deps },
      {
        41: details({
          queue: { url: `${targets.url}${path}`, ...queue },
          max_response_chars: maxResponseChars,
          ...extra,
        }),
      },
    );
    const res = await handler(await wakeup([41], { t: Date.now() }));
    expect(res.status).toBe(200);
    await handler.idle();
    expect(outcomes()).toHaveLength(1);
    return outcomes()[0] as Completion;
  }

  test("a fast 200 succeeds with its body and duration", async () => {
    const c = await run("/ok");
    expect(c).toMatchObject({
      succeeded: true,
      status_code: 200,
      response_body: '{"ok":true}',
      error: null,
      retry_after_ms: null,
    });
    expect(c.duration_ms).toBeGreaterThanOrEqual(0);
    const [received] = targets.to("/ok");
    expect(received?.headers["idempotency-key"]).toBe(JOB_ID);
    expect(received?.headers["supaqueue-attempt"]).toBe("2");
    expect(received?.body).toBe('{"hello":"world"}');
  });

  test("a redirect is the outcome, never followed: the other origin receives nothing, the key and secrets stay home", async () => {
    // Attack 3: a 302 to another origin used to receive apikey and the queue's secret headers.
    const to = `${elsewhere.url}/ok?stolen=1`;
    const c = await run(`/functions/v1/redirect?to=${encodeURIComponent(to)}`, {
      is_function: true,
      headers: { "X-Api-Key": "queue-secret-value" },
    });
    expect(c).toMatchObject({ succeeded: false, retryable: false, status_code: 302 });
    expect(c.error).toBe(
      `HTTP 302: a redirect to ${elsewhere.url}/ok, not followed (give the queue its final URL)`,
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(elsewhere.requests).toHaveLength(0);
  });

  test("a function that refuses the project's key as an invalid JWT says what to do", async () => {
    const c = await run(
      "/functions/v1/invalid-jwt",
      { is_function: true },
      { projectKey: { value: "sb_secret_x", kind: "secret" } },
    );
    expect(c).toMatchObject({ succeeded: false, retryable: false, status_code: 401 });
    expect(c.error).toMatch(/^HTTP 401 Invalid JWT: .*--no-verify-jwt/);
    const elsewhereFn = await run(
      "/functions/v1/invalid-jwt",
      { is_function: true },
      { functionsOrigins: [] },
    );
    expect(elsewhereFn.error).toMatch(/key was not sent, because .* is not this project's functions origin/);
  });

  test("a 500 is retried, a 404 fails at once, both keep the response body", async () => {
    expect(await run("/status/500")).toMatchObject({
      succeeded: false,
      retryable: true,
      status_code: 500,
      error: "HTTP 500",
    });
    expect(await run("/status/404")).toMatchObject({
      succeeded: false,
      retryable: false,
      status_code: 404,
      response_body: '{"status":404}',
    });
  });

  test("429 and 503 carry Retry-After; 500 does not", async () => {
    expect(await run("/busy/7")).toMatchObject({ status_code: 429, retryable: true, retry_after_ms: 7000 });
    const dated = await run("/busy-date/30");
    expect(dated.retry_after_ms).toBeGreaterThan(25_000);
    expect(dated.retry_after_ms).toBeLessThanOrEqual(30_000);
    expect(await run("/unavailable/3")).toMatchObject({ status_code: 503, retry_after_ms: 3000 });
  });

  test("non-JSON and empty bodies are fine", async () => {
    expect(await run("/text")).toMatchObject({ succeeded: true, response_body: "plain text, not JSON <>&" });
    expect(await run("/empty")).toMatchObject({ succeeded: true, status_code: 204, response_body: null });
  });

  test("a huge body is read only up to the bound, and the transfer stops", async () => {
    const c = await run("/huge/256", {}, { maxResponseChars: 999_999 }, 1000);
    expect(c).toMatchObject({ succeeded: true, status_code: 200, error: null });
    expect(c.response_body).toBe("x".repeat(1000));
    await new Promise((r) => setTimeout(r, 100));
    expect(targets.hugeBytesSent).toBeLessThan(64 * 1024 * 1024);
    // The database's bound (max_response_chars) decides, above the function's default of 16,384 too; the function's
    // own bound applies when the database sends none.
    const larger = await run("/huge/512", {}, {}, 20_000);
    expect(larger.response_body).toHaveLength(20_000);
    const unbounded = await run("/huge/512", {}, { maxResponseChars: 500 }, null);
    expect(unbounded.response_body).toHaveLength(500);
  });

  test("a queue with an on_success step gets the body up to its bound (and one character past it) as chain_body; the attempt keeps its own bound", async () => {
    const c = await run("/huge/1024", {}, {}, 1000, { chain_max_bytes: 5000 });
    expect(c.response_body).toBe("x".repeat(1000));
    expect(c.chain_body).toBe("x".repeat(5001));
    expect(await run("/ok", {}, {}, 1000, { chain_max_bytes: 5000 })).toMatchObject({
      response_body: '{"ok":true}',
      chain_body: '{"ok":true}',
    });
    // Other queues, and failed calls, send none.
    expect((await run("/ok")).chain_body).toBeUndefined();
    expect((await run("/status/500", {}, {}, 1000, { chain_max_bytes: 5000 })).chain_body).toBeUndefined();
  });

  test("bodies are read into one small buffer, whole and with multi-byte characters intact", async () => {
    // 3.5 buffers of "é" (2 bytes each), sent as one chunk: the default reader would hand it over in one piece.
    const text = "é".repeat(Math.floor((READ_BUFFER_BYTES * 3.5) / 2));
    const sizes: number[] = [];
    const chunks = chunkReader(new Response(text).body as ReadableStream<Uint8Array>);
    let bytes = 0;
    for (let chunk = await chunks.read(); chunk !== null; chunk = await chunks.read()) {
      sizes.push(chunk.buffer.byteLength);
      bytes += chunk.byteLength;
    }
    expect(bytes).toBe(text.length * 2);
    expect(sizes.length).toBeGreaterThanOrEqual(4);
    expect(new Set(sizes)).toEqual(new Set([READ_BUFFER_BYTES]));
    expect(await readBounded(new Response(text), Number.POSITIVE_INFINITY)).toEqual({
      text,
      truncated: false,
      error: null,
    });
    // A stream that is not a byte stream is read with its default reader.
    const plain = new ReadableStream<Uint8Array>({
      start(controller) {
        for (const part of ["ab", "cé", "d"]) controller.enqueue(new TextEncoder().encode(part));
        controller.close();
      },
    });
    expect(await readBounded(new Response(plain), 4)).toEqual({ text: "abcé", truncated: true, error: null });
  });

  test("a target that hangs is aborted at the queue's timeout and retried", async () => {
    const started = Date.now();
    const c = await run("/hang", { timeout_ms: 300 });
    expect(Date.now() - started).toBeLessThan(3000);
    expect(c).toMatchObject({ succeeded: false, retryable: true, status_code: null });
    expect(c.error).toMatch(/timeout: no response within 300 ms/);
  });

  test("a slow answer within the timeout succeeds", async () => {
    const c = await run("/slow/200", { timeout_ms: 2000 });
    expect(c).toMatchObject({ succeeded: true, status_code: 200 });
    expect(c.duration_ms).toBeGreaterThanOrEqual(190);
  });

  test("a closed connection is a retryable network error; a body cut off keeps the status", async () => {
    const closed = await run("/close");
    expect(closed).toMatchObject({ succeeded: false, retryable: true, status_code: null });
    expect(closed.error).toMatch(/^network error: /);
    const half = await run("/half-close");
    expect(half).toMatchObject({ succeeded: true, status_code: 200, response_body: '{"partial": tr' });
    expect(half.error).toMatch(/cut off/);
  });

  test("nothing listening is a retryable network error", async () => {
    const c = await run("/ok", { url: "http://127.0.0.1:9/nothing" });
    expect(c).toMatchObject({ succeeded: false, retryable: true, status_code: null });
    expect(c.error).toMatch(/network error/);
  });
});
