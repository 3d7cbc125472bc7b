import type pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runDoctor } from "../src/install/doctor.ts";
import { type ProbeOptions, runProbe } from "../src/install/probe.ts";
import { TEST_SECRET } from "./support/db.ts";
import { type ServedFunction, serveFunction } from "./support/deno.ts";
import { type EdgeStack, SERVICE_ROLE_KEY, startEdgeStack } from "./support/edge-stack.ts";

/**
 * The probe of the whole loop (src/install/probe.ts) on the real chain: Postgres → the pg_net stand-in → execute_current_job
 * in real Deno → the PostgREST stand-in → Postgres. Each broken link is made here as a user would meet it, and the probe
 * must name it from the evidence; then `supaqueue doctor`'s checks (src/install/doctor.ts).
 */

let stack: EdgeStack;
let client: pg.PoolClient;
const FAST: ProbeOptions = { timeoutMs: 4_000, attemptMs: 2_000, pollMs: 50 };

beforeAll(async () => {
  stack = await startEdgeStack();
  client = await stack.db.pool.connect();
});
afterAll(async () => {
  client?.release();
  await stack?.stop();
});

/** Runs `fn` with another execute_current_job (other environment) serving the project, then the usual one again. */
async function withFunction<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const other: ServedFunction = await serveFunction({
    env: {
      SUPAQUEUE_SECRET: TEST_SECRET,
      SUPABASE_URL: stack.gateway.origin,
      SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY,
      ...env,
    },
  });
  const usual = stack.gateway.executeOrigin;
  stack.gateway.executeOrigin = other.origin;
  try {
    return await fn();
  } finally {
    stack.gateway.executeOrigin = usual;
    await other.stop();
  }
}

describe("a probe of the whole loop", () => {
  test("comes back when every link works, and calls nothing", async () => {
    const before = stack.targets.requests.length;
    const result = await runProbe(client, FAST);
    expect(result).toMatchObject({ ok: true, probes: 1 });
    const { rows } = await client.query("select reached_at is not null as reached from supaqueue.probe");
    expect(rows.map((r) => r.reached)).toContain(true);
    expect(stack.targets.requests.length).toBe(before);
  });

  test("names the function's secret when it differs from Vault's", async () => {
    const result = await withFunction({ SUPAQUEUE_SECRET: "another-secret-value" }, () =>
      runProbe(client, FAST),
    );
    expect(result).toMatchObject({ ok: false, link: "shared secret" });
    expect(result.ok || result.message).toMatch(
      /its SUPAQUEUE_SECRET differs from the Vault secret supaqueue_secret.*\(answer: HTTP 401 wakeup_bad_mac\)/,
    );
  });

  test("names a missing function (the platform's 404)", async () => {
    const usual = stack.gateway.executeOrigin;
    stack.gateway.executeOrigin = "";
    try {
      const result = await runProbe(client, FAST);
      expect(result).toMatchObject({ ok: false, link: "function" });
      expect(result.ok || result.message).toMatch(/answered 404: execute_current_job is not deployed there/);
    } finally {
      stack.gateway.executeOrigin = usual;
    }
  });

  test("names the Data API when PostgREST does not expose the RPC (off, or public not exposed)", async () => {
    stack.postgrest.dataApi = false;
    try {
      const result = await runProbe(client, FAST);
      expect(result).toMatchObject({ ok: false, link: "Data API" });
      expect(result.ok || result.message).toMatch(/the Data API is off, or the public schema is not exposed/);
    } finally {
      stack.postgrest.dataApi = true;
    }
    stack.postgrest.exposedSchemas = ["graphql_public"];
    try {
      expect(await runProbe(client, FAST)).toMatchObject({ ok: false, link: "Data API" });
    } finally {
      stack.postgrest.exposedSchemas = ["public"];
    }
  });

  test("names the project key when PostgREST refuses it", async () => {
    const result = await withFunction({ SUPABASE_SERVICE_ROLE_KEY: "a-key-that-was-rotated" }, () =>
      runProbe(client, FAST),
    );
    expect(result).toMatchObject({ ok: false, link: "project key" });
    expect(result.ok || result.message).toMatch(
      /PostgREST refused execute_current_job's key.*HTTP 502 claim_rpc_401/,
    );
  });

  test("names the function's missing environment", async () => {
    const result = await withFunction({ SUPAQUEUE_SECRET: "" }, () => runProbe(client, FAST));
    expect(result).toMatchObject({ ok: false, link: "function environment" });
  });

  test("names a functions URL nothing answers at", async () => {
    await client.query("select supaqueue.configure(functions_url => 'http://127.0.0.1:9/functions/v1')");
    try {
      const result = await runProbe(client, FAST);
      expect(result).toMatchObject({ ok: false, link: "functions URL" });
      expect(result.ok || result.message).toMatch(
        /pg_net could not reach http:\/\/127\.0\.0\.1:9\/functions\/v1\/execute_current_job/,
      );
    } finally {
      await client.query("select supaqueue.configure(functions_url => $1)", [stack.gateway.functionsUrl]);
    }
  });

  test("names pg_net when its worker sends nothing", async () => {
    await stack.pausePgNet();
    try {
      const result = await runProbe(client, { ...FAST, timeoutMs: 1_500 });
      expect(result).toMatchObject({ ok: false, link: "pg_net" });
      expect(result.ok || result.message).toMatch(/pg_net has not sent the probe's wakeup/);
    } finally {
      await stack.resumePgNet();
    }
    expect(await runProbe(client, FAST)).toMatchObject({ ok: true });
  });
});

describe("supaqueue doctor's checks", () => {
  test("a healthy project passes; tick that stopped, lapsed leases, stuck and failing queues are named", async () => {
    // The probes above left refused wakeups behind, which the last check would (rightly) report.
    await client.query("delete from supaqueue.wakeup");
    await client.query("select supaqueue.tick()");
    let checks = await runDoctor(client, { probeOptions: FAST });
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(checks.map((c) => c.name)).toEqual([
      "the whole loop",
      "tick",
      "calls past their lease",
      "oldest due job",
      "failing queues",
      "wakeups",
    ]);

    // A queue whose calls always fail, one whose job waits with no worker, a call past its lease, and no tick.
    const failing = await stack.createQueue({ url: `${stack.targets.url}/status/500`, max_attempts: 1 });
    for (let i = 0; i < 3; i++) await stack.finished(await stack.enqueue(failing), { tick: false });
    const idle = await stack.createQueue({ url: `${stack.targets.url}/ok`, workers: 0 });
    await client.query(
      "insert into supaqueue.job (queue_id, run_at) select id, now() - interval '5 minutes' from supaqueue.queue where name = $1",
      [idle],
    );
    const slow = await stack.createQueue({ url: `${stack.targets.url}/hang`, timeout_ms: 60_000 });
    const hanging = await stack.enqueue(slow);
    await stack.targets.waitFor("/hang");
    await client.query(
      "update supaqueue.current_job set lease_until = now() - interval '1 minute' where job_id = $1",
      [hanging],
    );
    await client.query("update supaqueue.ticker set last_run_at = now() - interval '5 minutes'");
    checks = await runDoctor(client, { probe: false });
    const failed = Object.fromEntries(checks.filter((c) => !c.ok).map((c) => [c.name, c]));
    expect(Object.keys(failed).sort()).toEqual([
      "calls past their lease",
      "failing queues",
      "oldest due job",
      "tick",
    ]);
    expect(failed.tick?.detail).toMatch(/tick\(\) last ran 30\d s ago/);
    expect(failed["oldest due job"]?.detail).toMatch(
      new RegExp(`queue ${idle}: waiting 30\\d s \\(0 workers\\)`),
    );
    expect(failed["failing queues"]?.detail).toMatch(
      new RegExp(`queue ${failing}: its last 3 attempts failed \\(mostly: HTTP 500\\)`),
    );
    expect(failed["calls past their lease"]?.detail).toBe(
      "1 call(s) in flight past their lease, not yet given back",
    );
    await client.query("select supaqueue.purge($1)", [idle]);
    await client.query("select supaqueue.tick(now() + interval '2 minutes')");
  });

  test("wakeups the function refused in the last hour are counted and explained", async () => {
    await withFunction({ SUPAQUEUE_SECRET: "another-secret-value" }, async () => {
      await runProbe(client, FAST);
    });
    const checks = await runDoctor(client, { probe: false });
    const wakeups = checks.find((c) => c.name === "wakeups");
    expect(wakeups).toMatchObject({ ok: false });
    expect(wakeups?.detail).toMatch(
      /wakeup\(s\) in the last hour were not accepted; most often at shared secret/,
    );
    expect(wakeups?.fix).toMatch(/SUPAQUEUE_SECRET differs/);
  });
});
