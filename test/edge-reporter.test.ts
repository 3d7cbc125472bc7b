import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { Completion } from "../functions/execute_current_job/call.ts";
import { createBatchReporter, type SendReport } from "../functions/execute_current_job/reporter.ts";
import { postgrestDatabase, RpcError } from "../functions/execute_current_job/rpc.ts";

/**
 * The batch reporter of execute_current_job (functions/execute_current_job/reporter.ts): what it sends, when, and
 * how each outcome's promise settles. `send` is a controllable stand-in for the call of
 * public.supaqueue_complete_and_claim; each call waits until the test answers it. Then the database client that makes
 * the function's calls (rpc.ts), against a local server answering as PostgREST does (the e2e tests run it against the
 * database).
 */

function outcome(id: number | string, succeeded = true): Completion {
  return {
    current_job_id: id,
    succeeded,
    status_code: succeeded ? 200 : 500,
    response_body: null,
    error: succeeded ? null : "HTTP 500",
    duration_ms: 3,
    retryable: !succeeded,
    retry_after_ms: null,
  };
}

interface Sent {
  ids: Array<number | string>;
  /** How long a next call may take, as the reporter asked when it sent the batch. */
  within: number;
  /** Answers the call with the ids the database finished (by default all of them) and the next calls. */
  answer(finished?: Array<number | string>, calls?: unknown[]): void;
  fail(error: Error): void;
}

/** A send function that records each batch and leaves it on its way until the test answers it. */
function controlledSend() {
  const sent: Sent[] = [];
  const send: SendReport = (outcomes, within) =>
    new Promise((resolve, reject) => {
      const ids = outcomes.map((o) => o.current_job_id);
      sent.push({
        ids,
        within,
        answer: (finished = ids, calls = []) => resolve({ finished, calls }),
        fail: reject,
      });
    });
  return { sent, send };
}

/** Lets promise callbacks (a batch's settling and the next send) run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

describe("batch reporter", () => {
  test("an outcome that finds no report on its way is sent at once, alone", async () => {
    const { sent, send } = controlledSend();
    const reporter = createBatchReporter({ send, maxInFlight: 1 });
    const recorded = reporter.report(outcome(1));
    // Synchronously: no timer, no microtask in between.
    expect(sent.map((s) => s.ids)).toEqual([[1]]);
    expect(reporter.sending).toBe(1);
    sent[0]?.answer();
    expect(await recorded).toBe(true);
    await settle();
    expect(reporter.sending).toBe(0);
    expect(sent).toHaveLength(1);
  });

  test("outcomes that arrive while a report is on its way go together in exactly one next call", async () => {
    const { sent, send } = controlledSend();
    const reporter = createBatchReporter({ send, maxInFlight: 1 });
    const first = reporter.report(outcome(1));
    const later = [2, 3, 4, 5].map((id) => reporter.report(outcome(id)));
    expect(sent).toHaveLength(1);
    expect(reporter.queued).toBe(4);

    sent[0]?.answer();
    expect(await first).toBe(true);
    await settle();
    expect(sent.map((s) => s.ids)).toEqual([[1], [2, 3, 4, 5]]);
    expect(reporter.queued).toBe(0);

    sent[1]?.answer();
    expect(await Promise.all(later)).toEqual([true, true, true, true]);
    await settle();
    expect(sent).toHaveLength(2);
  });

  test("a batch holds at most maxBatch outcomes; the rest form the next one, in order", async () => {
    const { sent, send } = controlledSend();
    const reporter = createBatchReporter({ send, maxBatch: 3, maxInFlight: 1 });
    const all = [1, 2, 3, 4, 5, 6, 7, 8].map((id) => reporter.report(outcome(id)));
    for (let i = 0; i < 4; i++) {
      sent[i]?.answer();
      await settle();
    }
    expect(sent.map((s) => s.ids)).toEqual([[1], [2, 3, 4], [5, 6, 7], [8]]);
    expect(await Promise.all(all)).toEqual(Array(8).fill(true));
  });

  test("a batch holds at most maxBatchChars of bodies and errors, and always at least one outcome", async () => {
    const { sent, send } = controlledSend();
    const reporter = createBatchReporter({ send, maxBatchChars: 100, maxInFlight: 1 });
    const sized = (id: number, chars: number) => ({ ...outcome(id), response_body: "x".repeat(chars) });
    const all = [
      reporter.report(sized(1, 10)),
      reporter.report(sized(2, 60)),
      reporter.report(sized(3, 40)),
      reporter.report(sized(4, 1)),
      reporter.report(sized(5, 250)),
      reporter.report({ ...outcome(6, false), error: "e".repeat(99) }),
      reporter.report(sized(7, 0)),
    ];
    for (let i = 0; i < 5; i++) {
      sent[i]?.answer();
      await settle();
    }
    expect(sent.map((s) => s.ids)).toEqual([[1], [2, 3], [4], [5], [6, 7]]);
    expect(await Promise.all(all)).toEqual(Array(7).fill(true));
  });

  test("a failed report rejects exactly its batch's outcomes, and the next batch still goes", async () => {
    const { sent, send } = controlledSend();
    const reporter = createBatchReporter({ send, maxInFlight: 1 });
    const first = reporter.report(outcome(1));
    const second = [2, 3].map((id) => reporter.report(outcome(id)));
    sent[0]?.answer();
    await settle();
    const third = [4, 5].map((id) => reporter.report(outcome(id)));

    const failure = new Error("PGRST000: the database is unavailable");
    sent[1]?.fail(failure);
    for (const p of second) await expect(p).rejects.toBe(failure);
    await settle();
    expect(sent.map((s) => s.ids)).toEqual([[1], [2, 3], [4, 5]]);
    sent[2]?.answer();
    expect(await first).toBe(true);
    expect(await Promise.all(third)).toEqual([true, true]);
  });

  test("a send that throws at once rejects its batch and does not stop the reporter", async () => {
    let calls = 0;
    const reporter = createBatchReporter({
      send: (outcomes) => {
        calls++;
        if (calls === 1) throw new Error("cannot build the request");
        return Promise.resolve({ finished: outcomes.map((o) => o.current_job_id), calls: [] });
      },
    });
    await expect(reporter.report(outcome(1))).rejects.toThrow("cannot build the request");
    await settle();
    expect(await reporter.report(outcome(2))).toBe(true);
    expect(calls).toBe(2);
  });

  test("false for outcomes whose ids the database did not return; ids compare as numbers or digit strings", async () => {
    const { sent, send } = controlledSend();
    const reporter = createBatchReporter({ send, maxInFlight: 1 });
    const first = reporter.report(outcome("7"));
    const rest = [
      reporter.report(outcome(8)),
      reporter.report(outcome("0009")),
      reporter.report(outcome(10)),
    ];
    // Ids come back as numbers from PostgREST (bigint[]), whatever form the function sent them in.
    sent[0]?.answer([7]);
    expect(await first).toBe(true);
    await settle();
    sent[1]?.answer(["8", 9]);
    expect(await Promise.all(rest)).toEqual([true, true, false]);
  });

  test("two outcomes of one call in a batch: only the first is recorded, as the database keeps the first", async () => {
    const { sent, send } = controlledSend();
    const reporter = createBatchReporter({ send, maxInFlight: 1 });
    const first = reporter.report(outcome(1));
    const twice = [reporter.report(outcome(2, true)), reporter.report(outcome(2, false))];
    sent[0]?.answer();
    await first;
    await settle();
    expect(sent[1]?.ids).toEqual([2, 2]);
    sent[1]?.answer([2]);
    expect(await Promise.all(twice)).toEqual([true, false]);
  });

  test("maxBatch, maxBatchChars and maxInFlight must be positive integers", () => {
    const { send } = controlledSend();
    expect(() => createBatchReporter({ send, maxBatch: 0 })).toThrow(/maxBatch must be a positive integer/);
    expect(() => createBatchReporter({ send, maxBatchChars: 1.5 })).toThrow(
      /maxBatchChars must be a positive integer/,
    );
    expect(() => createBatchReporter({ send, maxInFlight: 0 })).toThrow(
      /maxInFlight must be a positive integer/,
    );
  });

  test("by default two reports may be on their way: a slow one does not hold the next outcome back", async () => {
    const { sent, send } = controlledSend();
    const reporter = createBatchReporter({ send });
    const first = reporter.report(outcome(1));
    const second = reporter.report(outcome(2));
    const third = [3, 4].map((id) => reporter.report(outcome(id)));
    expect(sent.map((s) => s.ids)).toEqual([[1], [2]]);
    expect(reporter.sending).toBe(2);
    sent[1]?.answer();
    expect(await second).toBe(true);
    await settle();
    expect(sent.map((s) => s.ids)).toEqual([[1], [2], [3, 4]]);
    sent[0]?.answer();
    sent[2]?.answer();
    expect(await first).toBe(true);
    expect(await Promise.all(third)).toEqual([true, true]);
  });

  test("each report asks how long a next call may take, and hands the calls it brought back to onCalls", async () => {
    const { sent, send } = controlledSend();
    let within = 90_000.7;
    const handedBack: unknown[][] = [];
    const reporter = createBatchReporter({
      send,
      claimWithinMs: () => within,
      onCalls: (calls) => handedBack.push(calls),
    });
    const first = reporter.report(outcome(1));
    within = 0;
    const second = reporter.report(outcome(2));
    expect(sent.map((s) => s.within)).toEqual([90_000, 0]);
    sent[0]?.answer([1], [{ current_job_id: 5 }, { current_job_id: 6 }]);
    sent[1]?.answer([2]);
    expect(await Promise.all([first, second])).toEqual([true, true]);
    expect(handedBack).toEqual([[{ current_job_id: 5 }, { current_job_id: 6 }]]);
    // A claimWithinMs that throws takes no call on, and the report still goes.
    const throwing = controlledSend();
    const report = createBatchReporter({
      send: throwing.send,
      claimWithinMs: () => {
        throw new Error("cpuUsage is not available here");
      },
    }).report(outcome(4));
    expect(throwing.sent[0]?.within).toBe(0);
    throwing.sent[0]?.answer();
    expect(await report).toBe(true);
    // Without claimWithinMs no call is taken on.
    const bare = controlledSend();
    void createBatchReporter({ send: bare.send }).report(outcome(3));
    expect(bare.sent[0]?.within).toBe(0);
  });
});

describe("postgrestDatabase", () => {
  interface Received {
    method: string;
    url: string;
    headers: IncomingMessage["headers"];
    body: string;
  }
  const received: Received[] = [];
  /** How the server answers the next request: status and body, or null to never answer. */
  let answer: { status: number; body: string } | null = { status: 200, body: "[]" };
  let base = "";
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString("utf8");
    });
    req.on("end", () => {
      received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body });
      if (answer === null) return;
      res.writeHead(answer.status, { "Content-Type": "application/json" });
      res.end(answer.body);
    });
  });
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const database = (timeoutMs?: number, kind: "jwt" | "secret" = "jwt") =>
    postgrestDatabase({
      fetch: (input, init) => fetch(input, init),
      supabaseUrl: `${base}/`,
      key: { value: kind === "jwt" ? "k3y" : "sb_secret_k3y", kind },
      timeoutMs,
    });

  test("reports POST the outcomes to /rest/v1/rpc/supaqueue_complete_and_claim with the key, as supabase-js does", async () => {
    answer = { status: 200, body: '{"finished":[7,9],"calls":[{"current_job_id":12}]}' };
    const outcomes = [outcome(7), outcome("8", false), outcome(9)];
    expect(await database().completeAndClaim(outcomes, 5000)).toEqual({
      finished: [7, 9],
      calls: [{ current_job_id: 12 }],
    });
    const request = received.at(-1);
    expect(request).toMatchObject({ method: "POST", url: "/rest/v1/rpc/supaqueue_complete_and_claim" });
    expect(request?.headers).toMatchObject({
      apikey: "k3y",
      authorization: "Bearer k3y",
      "content-type": "application/json",
    });
    expect(JSON.parse(request?.body ?? "")).toEqual({ outcomes, claim_within_ms: 5000 });
  });

  test("claims POST the ids to /rest/v1/rpc/supaqueue_claim_current_jobs; a new sb_secret_ key goes in apikey only", async () => {
    answer = { status: 200, body: '[{"current_job_id":3}]' };
    expect(await database(undefined, "secret").claim([3, 4])).toEqual([{ current_job_id: 3 }]);
    const request = received.at(-1);
    expect(request).toMatchObject({ method: "POST", url: "/rest/v1/rpc/supaqueue_claim_current_jobs" });
    expect(request?.headers.apikey).toBe("sb_secret_k3y");
    expect(request?.headers.authorization).toBeUndefined();
    expect(JSON.parse(request?.body ?? "")).toEqual({ ids: [3, 4] });
  });

  test("an error answer rejects with PostgREST's status, code and message, and a short code for pg_net", async () => {
    answer = {
      status: 404,
      body: JSON.stringify({
        code: "PGRST202",
        message: "Could not find the function public.supaqueue_claim_current_jobs(ids)",
      }),
    };
    const missing = await database()
      .claim([1])
      .catch((e) => e);
    expect(missing).toBeInstanceOf(RpcError);
    expect(missing.message).toContain(
      "supaqueue_claim_current_jobs: HTTP 404 PGRST202: Could not find the function",
    );
    expect(missing.code("claim")).toBe("claim_rpc_404");
    answer = { status: 502, body: "<html>bad gateway</html>" };
    await expect(database().completeAndClaim([outcome(1)], 0)).rejects.toThrow(/HTTP 502, not JSON/);
  });

  test("an answer of another shape rejects", async () => {
    answer = { status: 200, body: "[1,2]" };
    await expect(database().completeAndClaim([outcome(1)], 0)).rejects.toThrow(
      /something else than \{finished, calls\}/,
    );
    answer = { status: 200, body: "true" };
    await expect(database().claim([1])).rejects.toThrow(/something else than an array/);
  });

  test("a call with no answer within the timeout rejects, so it cannot hold back the next", async () => {
    answer = null;
    const started = Date.now();
    const error = await database(200)
      .completeAndClaim([outcome(1)], 0)
      .catch((e) => e);
    expect(error.message).toMatch(/no answer within 200 ms/);
    expect(error.code("report")).toBe("report_rpc_timeout");
    expect(Date.now() - started).toBeLessThan(2000);
    await expect(
      postgrestDatabase({ fetch, supabaseUrl: "http://127.0.0.1:9", key: { value: "k", kind: "jwt" } }).claim(
        [1],
      ),
    ).rejects.toSatisfy((e: RpcError) => e.code("claim") === "claim_rpc_unreachable");
    answer = { status: 200, body: "[]" };
  });
});
