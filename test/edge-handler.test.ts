import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  buildRequest,
  type Completion,
  type CurrentJobCall,
  chunkReader,
  classify,
  createHandler,
  type HandlerDeps,
  parseCall,
  parseRetryAfter,
  READ_BUFFER_BYTES,
  readBounded,
  secretsEqual,
} from "../functions/execute_current_job/handler.ts";
import { startTargets, type Targets } from "./support/targets.ts";

const SECRET = "s3cret-value";
const JOB_ID = "6f1c2a9e-0000-4000-8000-000000000001";

/** The body pg_net sends (as supaqueue._on_current_jobs_inserted builds it), with overrides. */
function body(
  overrides: { queue?: Record<string, unknown>; job?: Record<string, unknown>; [k: string]: unknown } = {},
) {
  const { queue, job, ...rest } = overrides;
  return {
    current_job_id: 41,
    attempt: 2,
    // A lease a minute from now: the handler refuses calls whose lease has run out.
    lease_until: new Date(Date.now() + 60_000).toISOString(),
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
      ...queue,
    },
    ...rest,
  };
}

function call(overrides: Parameters<typeof body>[0] = {}): CurrentJobCall {
  const parsed = parseCall(body(overrides));
  if (typeof parsed === "string") throw new Error(parsed);
  return parsed;
}

function post(payload: unknown, secret: string | null = SECRET, raw?: string): Request {
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (secret !== null) headers["supaqueue-secret"] = secret;
  return new Request("http://edge.test/functions/v1/execute_current_job", {
    method: "POST",
    headers,
    body: raw ?? JSON.stringify(payload),
  });
}

/** A handler with a recording reporter and fetch; returns what it reported. */
function harness(overrides: Partial<HandlerDeps> = {}) {
  const reports: Completion[] = [];
  const fetched: Request[] = [];
  const logs: string[] = [];
  const deps: HandlerDeps = {
    secret: SECRET,
    serviceRoleKey: "service-key",
    fetch: async (input, init) => {
      fetched.push(new Request(input, init));
      return new Response('{"ok":true}', { status: 200 });
    },
    report: async (c) => {
      reports.push(c);
      return true;
    },
    logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m), error: (m) => logs.push(m) },
    ...overrides,
  };
  const handler = createHandler(deps);
  return { handler, reports, fetched, logs };
}

describe("authentication and validation", () => {
  test("a missing or wrong secret gets 401 and nothing is called or reported", async () => {
    const { handler, reports, fetched } = harness();
    for (const secret of [null, "", "wrong", `${SECRET}x`, SECRET.slice(0, -1)]) {
      const res = await handler(post(body(), secret));
      expect(res.status).toBe(401);
      expect(await res.text()).not.toContain(SECRET);
    }
    await handler.idle();
    expect(fetched).toHaveLength(0);
    expect(reports).toHaveLength(0);
  });

  test("secrets are compared by value", async () => {
    expect(await secretsEqual(SECRET, SECRET)).toBe(true);
    expect(await secretsEqual("", "")).toBe(false);
    expect(await secretsEqual("a", "b")).toBe(false);
    expect(() => createHandler({ ...harnessDeps(), secret: "" })).toThrow(/must not be empty/);
  });

  test("malformed bodies get 400 naming the field, without echoing content, and nothing is done", async () => {
    const { handler, reports, fetched } = harness();
    const cases: [unknown, RegExp][] = [
      [[1, 2], /JSON object/],
      [body({ current_job_id: "x" }), /current_job_id/],
      [body({ attempt: 0 }), /attempt/],
      [body({ job: { id: 5 } }), /job\.id/],
      [body({ job: { payload: "secret-payload" } }), /job\.payload/],
      [body({ job: { headers: { A: 1 } } }), /job\.headers/],
      [body({ queue: { url: "ftp://x/y" } }), /queue\.url/],
      [body({ queue: { method: "TRACE" } }), /queue\.method/],
      [body({ queue: { headers: { Authorization: ["very-secret"] } } }), /queue\.headers/],
      [body({ queue: { timeout_ms: -1 } }), /timeout_ms/],
      [body({ queue: { retry_codes: "500" } }), /retry_codes/],
      [body({ queue: { is_function: "yes" } }), /is_function/],
      [body({ lease_until: "soon" }), /lease_until/],
      [body({ queue: { signing_keys: "k" } }), /signing_keys/],
      [body({ queue: { signing_keys: ["ok-key", ""] } }), /signing_keys/],
      [body({ queue: { signing_keys: [42] } }), /signing_keys/],
    ];
    for (const [payload, field] of cases) {
      const res = await handler(post(payload));
      expect(res.status).toBe(400);
      const text = await res.text();
      expect(JSON.parse(text).error).toMatch(field);
      expect(text).not.toMatch(/secret-payload|very-secret/);
    }
    const notJson = await handler(post(null, SECRET, "{not json"));
    expect(notJson.status).toBe(400);
    await handler.idle();
    expect(fetched).toHaveLength(0);
    expect(reports).toHaveLength(0);
  });

  test("a call whose lease has already run out gets 409: no call, no report", async () => {
    const now = Date.parse("2026-11-28T12:00:00Z");
    const { handler, reports, fetched, logs } = harness({ now: () => now });
    // As Postgres writes a timestamptz in JSON: microseconds and an offset.
    const expired = await handler(post(body({ lease_until: "2026-11-28T11:59:59.999999+00:00" })));
    expect(expired.status).toBe(409);
    expect((await expired.json()).error).toMatch(/^lease expired/);
    await handler.idle();
    expect(fetched).toHaveLength(0);
    expect(reports).toHaveLength(0);
    expect(logs.join("\n")).toMatch(/lease had already expired/);
    // A lease still running, or none sent, is accepted.
    for (const lease_until of ["2026-11-28T12:00:00.5+00:00", null]) {
      expect((await handler(post(body({ lease_until })))).status).toBe(202);
    }
    await handler.idle();
    expect(fetched).toHaveLength(2);
  });

  test("only POST is accepted", async () => {
    const { handler } = harness();
    const res = await handler(
      new Request("http://edge.test/x", { method: "GET", headers: { "supaqueue-secret": SECRET } }),
    );
    expect(res.status).toBe(405);
  });
});

function harnessDeps(): HandlerDeps {
  return { secret: SECRET, fetch: async () => new Response(null), report: async () => true };
}

describe("accepting and running in the background", () => {
  test("answers 202 before the call finishes, and keeps it alive with waitUntil", async () => {
    let release: (() => void) | undefined;
    const kept: Promise<unknown>[] = [];
    const { handler, reports } = harness({
      fetch: () =>
        new Promise((resolve) => {
          release = () => resolve(new Response("done", { status: 201 }));
        }),
      waitUntil: (p) => kept.push(p),
    });
    const res = await handler(post(body()));
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ accepted: true, current_job_id: 41 });
    expect(kept).toHaveLength(1);
    expect(handler.inFlight).toBe(1);
    expect(reports).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 10));
    release?.();
    await kept[0];
    expect(reports).toEqual([
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

  test("without waitUntil the call still runs after the response", async () => {
    const { handler, reports } = harness();
    expect((await handler(post(body()))).status).toBe(202);
    await handler.idle();
    expect(reports).toHaveLength(1);
  });

  test("a failing report is logged and does not throw; a late completion is only noted", async () => {
    const failing = harness({
      report: async () => {
        throw new Error("PostgREST unreachable");
      },
    });
    expect((await failing.handler(post(body()))).status).toBe(202);
    await failing.handler.idle();
    expect(failing.logs.join("\n")).toMatch(/reporting the outcome failed: PostgREST unreachable/);

    const late = harness({ report: async () => false });
    await late.handler(post(body()));
    await late.handler.idle();
    expect(late.logs.join("\n")).toMatch(/no longer in flight/);
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

  test("edge-function targets get the project's authorization; other targets never do", () => {
    const fn = buildRequest(call({ queue: { is_function: true } }), { serviceRoleKey: "srk" });
    expect(fn.headers.get("authorization")).toBe("Bearer srk");
    expect(fn.headers.get("apikey")).toBe("srk");
    const other = buildRequest(call(), { serviceRoleKey: "srk" });
    expect(other.headers.has("authorization")).toBe(false);
    expect(other.headers.has("apikey")).toBe(false);
  });

  test("an invalid header fails the job at once", async () => {
    const { handler, reports, fetched } = harness();
    await handler(post(body({ job: { headers: { "Bad Header": "x" } } })));
    await handler.idle();
    expect(fetched).toHaveLength(0);
    expect(reports[0]).toMatchObject({ succeeded: false, retryable: false, status_code: null });
    expect(reports[0]?.error).toMatch(/invalid header/);
  });
});

describe("classification", () => {
  test("defaults: 2xx succeed; 408, 429 and 5xx retry; other statuses fail at once", () => {
    expect(classify(200, null, null)).toEqual({ succeeded: true, retryable: false });
    expect(classify(204, null, null).succeeded).toBe(true);
    expect(classify(299, null, null).succeeded).toBe(true);
    for (const s of [408, 429, 500, 502, 503, 599])
      expect(classify(s, null, null)).toEqual({ succeeded: false, retryable: true });
    for (const s of [301, 400, 401, 404, 409, 422])
      expect(classify(s, null, null)).toEqual({ succeeded: false, retryable: false });
  });

  test("per-queue success_codes and retry_codes replace the defaults", () => {
    expect(classify(404, [200, 404], null).succeeded).toBe(true);
    expect(classify(201, [200], null)).toEqual({ succeeded: false, retryable: false });
    expect(classify(409, null, [409]).retryable).toBe(true);
    expect(classify(500, null, [409]).retryable).toBe(false);
  });

  test("Retry-After as seconds or an HTTP date", () => {
    const now = Date.parse("2026-11-28T12:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
    expect(parseRetryAfter("Sat, 28 Nov 2026 12:00:30 GMT", now)).toBe(30_000);
    expect(parseRetryAfter("Sat, 28 Nov 2026 11:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("99999999999", now)).toBe(2_147_483_647);
    for (const bad of [null, undefined, "", "soon", "-5", "1.5"])
      expect(parseRetryAfter(bad, now)).toBeNull();
  });
});

describe("calls against real local targets", () => {
  let targets: Targets;
  beforeAll(async () => {
    targets = await startTargets();
  });
  afterAll(() => targets.stop());

  async function run(path: string, queue: Record<string, unknown> = {}, deps: Partial<HandlerDeps> = {}) {
    const { handler, reports } = harness({ fetch, ...deps });
    const res = await handler(post(body({ queue: { url: `${targets.url}${path}`, ...queue } })));
    expect(res.status).toBe(202);
    await handler.idle();
    expect(reports).toHaveLength(1);
    return reports[0] as Completion;
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
    const c = await run("/huge/256", {}, { maxResponseChars: 1000 });
    expect(c).toMatchObject({ succeeded: true, status_code: 200, error: null });
    expect(c.response_body).toBe("x".repeat(1000));
    await new Promise((r) => setTimeout(r, 100));
    expect(targets.hugeBytesSent).toBeLessThan(64 * 1024 * 1024);
    // The bound the database sends (max_response_chars) applies when smaller.
    const smaller = await run("/text", {}, { maxResponseChars: 1000 });
    expect(smaller.response_body).toHaveLength(24);
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
