import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startFunctionsServer } from "../src/local/functions-server.ts";
import { type PgNetWorker, startPgNetWorker } from "../src/standins/pgnet-worker.ts";
import { installStandinExtensions, withClient } from "../src/standins/supabase.ts";
import { emptyDatabase, type TestDatabase } from "./support/db.ts";
import { startGateway } from "./support/gateway.ts";
import { type PostgrestStandin, startPostgrest } from "./support/postgrest.ts";
import { startTargets, type Targets } from "./support/targets.ts";

/**
 * The stand-ins for what cannot run here (pg_net, PostgREST, the functions gateway) are as harsh as the real
 * platform: each test below checks a behaviour of the real thing that a kinder stand-in would hide.
 */

/** A project database with the pg_net stand-in installed as Supaqueue installs it: `with schema extensions`. */
async function databaseWithPgNet(): Promise<TestDatabase> {
  const db = await emptyDatabase();
  // The server's extension folder is shared: copy this checkout's stand-in again right before using it.
  await withClient(db.adminUrl, installStandinExtensions);
  await db.pool.query("create schema extensions; create extension pg_net with schema extensions");
  return db;
}

/** Polls `check` every 10 ms until it returns a value other than undefined (or fails after `timeoutMs`). */
async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`nothing after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("the pg_net stand-in, as upstream's SQL and Supabase's grants", () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await databaseWithPgNet();
  });

  /** The method and headers of queued requests, in the order of their ids. */
  async function queued(ids: string[]): Promise<Array<{ method: string; headers: unknown }>> {
    const { rows } = await db.pool.query(
      "select method, headers from net.http_request_queue where id = any($1::bigint[]) order by id",
      [ids],
    );
    return rows;
  }

  test("installs with schema extensions, its objects staying in net", async () => {
    const { rows } = await db.pool.query(`
      select extnamespace::regnamespace::text as schema,
             to_regprocedure('net.http_post(text, jsonb, jsonb, jsonb, integer)') is not null as post,
             to_regprocedure('net.http_get(text, jsonb, jsonb, integer)') is not null as get,
             to_regprocedure('net.http_delete(text, jsonb, jsonb, integer, jsonb)') is not null as delete
      from pg_extension where extname = 'pg_net'`);
    expect(rows).toEqual([{ schema: "extensions", post: true, get: true, delete: true }]);
  });

  test.each([
    "anon",
    "authenticated",
  ])("%s can read every queued request, headers included, and every response", async (role) => {
    await db.pool.query(
      `select net.http_post('http://127.0.0.1:9/x', headers => '{"Content-Type": "application/json", "supaqueue-secret": "s3cret"}')`,
    );
    await db.pool.query("insert into net._http_response (id, status_code, content) values (1, 200, 'ok')");
    const queued = await db.as(role, "select headers from net.http_request_queue");
    expect(queued.rows.map((r) => r.headers["supaqueue-secret"])).toContain("s3cret");
    const responses = await db.as(role, "select content from net._http_response");
    expect(responses.rows.map((r) => r.content)).toContain("ok");
    // Execute stays granted to PUBLIC, as upstream leaves it.
    await db.as(role, "select net.http_get('http://127.0.0.1:9/from-api-role')");
  });

  test("http_post refuses any Content-Type but application/json, found whatever its case", async () => {
    for (const type of ["text/plain", "application/json; charset=utf-8"]) {
      await expect(
        db.pool.query("select net.http_post('http://127.0.0.1:9/x', headers => $1::jsonb)", [
          JSON.stringify({ "content-type": type }),
        ]),
      ).rejects.toThrow('Content-Type header must be "application/json"');
    }
  });

  test("http_post adds the Content-Type when missing and keeps one given in any case", async () => {
    const headersOf = async (headers: unknown) => {
      const { rows } = await db.pool.query(
        "select net.http_post('http://127.0.0.1:9/x', headers => $1::jsonb) as id",
        [JSON.stringify(headers)],
      );
      return (await queued(rows.map((r) => r.id)))[0]?.headers;
    };
    expect(await headersOf({ "X-A": "1" })).toEqual({ "X-A": "1", "Content-Type": "application/json" });
    expect(await headersOf({ "content-type": "application/json" })).toEqual({
      "content-type": "application/json",
    });
  });

  test("headers may be null in every call and in the queue", async () => {
    const { rows } = await db.pool.query(`
      select net.http_get('http://127.0.0.1:9/n', headers => null) as id
      union all select net.http_post('http://127.0.0.1:9/n', headers => null)
      union all select net.http_delete('http://127.0.0.1:9/n', headers => null)`);
    expect(await queued(rows.map((r) => r.id))).toEqual([
      { method: "GET", headers: null },
      { method: "POST", headers: null },
      { method: "DELETE", headers: null },
    ]);
  });

  test("the method domain is case-insensitive, and still refuses other methods", async () => {
    await db.pool.query(
      "insert into net.http_request_queue (method, url, timeout_milliseconds) values ('post', 'http://127.0.0.1:9/m', 1000)",
    );
    await expect(
      db.pool.query(
        "insert into net.http_request_queue (method, url, timeout_milliseconds) values ('put', 'http://127.0.0.1:9/m', 1000)",
      ),
    ).rejects.toThrow(/violates check constraint/);
  });
});

describe("the pg_net worker stand-in, as worker.c", () => {
  let db: TestDatabase;
  let targets: Targets;
  let worker: PgNetWorker;
  beforeAll(async () => {
    db = await databaseWithPgNet();
    targets = await startTargets();
    // A long idle wait: anything sent sooner than 10 s after a batch was woken by the commit that queued it.
    worker = await startPgNetWorker(db.adminUrl, { idleWaitMs: 10_000 });
  });
  afterAll(async () => {
    await worker?.stop();
    await targets?.stop();
  });

  const responses = async () =>
    Number((await db.pool.query("select count(*) from net._http_response")).rows[0].count);

  test("holds a whole batch until its slowest request has finished", async () => {
    const [sent, batches, before] = [worker.sent, worker.batches, await responses()];
    await db.pool.query(`select net.http_post($1), net.http_post($2)`, [
      `${targets.url}/slow/500`,
      `${targets.url}/ok`,
    ]);
    const [fast] = await targets.waitFor("/ok");
    await new Promise((r) => setTimeout(r, 150));
    // The fast target answered long ago; its response is still not visible, since the batch has not committed.
    expect(await responses()).toBe(before);
    await eventually(async () => ((await responses()) > before ? true : undefined));
    const visibleAt = Date.now();
    expect(await responses()).toBe(before + 2);
    expect(visibleAt - (fast?.at ?? 0)).toBeGreaterThanOrEqual(400);
    expect([worker.sent - sent, worker.batches - batches]).toEqual([2, 1]);
  });

  test("wakes within a few tens of ms of the commit that queued a request", async () => {
    const delays: number[] = [];
    for (let i = 0; i < 5; i++) {
      const path = `/ok`;
      const count = targets.to(path).length;
      const committed = Date.now();
      await db.pool.query("select net.http_get($1)", [`${targets.url}${path}?wake=${i}`]);
      const arrived = await targets.waitFor(path, count + 1);
      delays.push((arrived[count]?.at ?? Number.POSITIVE_INFINITY) - committed);
      await eventually(async () =>
        (await db.pool.query("select count(*) from net.http_request_queue")).rows[0].count === "0"
          ? true
          : undefined,
      );
    }
    delays.sort((a, b) => a - b);
    expect(delays[2], `delays ${delays.join(", ")} ms`).toBeLessThan(100);
  });

  test("sends a request queued with null headers and a lower-case method", async () => {
    const count = targets.to("/ok").length;
    await db.pool.query(
      "insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds) values ('post', $1, null, convert_to('{}', 'UTF8'), 1000)",
      [`${targets.url}/ok`],
    );
    const [received] = (await targets.waitFor("/ok", count + 1)).slice(count);
    expect(received?.method).toBe("POST");
    // curl's type for a body that names none.
    expect(received?.headers["content-type"]).toBe("application/x-www-form-urlencoded");
  });

  test("deletes responses older than pg_net.ttl (6 hours) at its next batch", async () => {
    await db.pool.query(
      "insert into net._http_response (id, status_code, created) values (-1, 200, now() - interval '7 hours'), (-2, 200, now() - interval '5 hours')",
    );
    const count = targets.to("/ok").length;
    await db.pool.query("select net.http_get($1)", [`${targets.url}/ok`]);
    await targets.waitFor("/ok", count + 1);
    const left = await eventually(async () => {
      const { rows } = await db.pool.query("select id from net._http_response where id < 0 order by id");
      return rows.length === 1 ? rows.map((r) => Number(r.id)) : undefined;
    });
    expect(left).toEqual([-2]);
  });
});

describe("the PostgREST stand-in", () => {
  const SERVICE_ROLE_KEY = "service-role-jwt";
  const SECRET_KEY = "sb_secret_test0123456789";
  let db: TestDatabase;
  let postgrest: PostgrestStandin;
  beforeAll(async () => {
    db = await emptyDatabase();
    await db.pool.query(`
      create table public.log (note text);
      create function public.write_volatile(note text) returns int language sql as
        $$ insert into public.log values (note) returning 1 $$;
      -- Postgres itself forbids a write in a STABLE function's own body; one through a VOLATILE callee is
      -- stopped only by PostgREST's read-only transaction.
      create function public.write_stable(note text) returns int language plpgsql stable as
        $$ begin return public.write_volatile(note); end $$;
      create schema private;
      grant usage on schema private to service_role;
      create function private.hidden() returns int language sql as $$ select 7 $$;`);
    postgrest = await startPostgrest({
      pool: db.pool,
      serviceRoleKey: SERVICE_ROLE_KEY,
      secretKey: SECRET_KEY,
    });
  });
  afterAll(() => postgrest?.stop());

  async function rpc(fn: string, body: unknown = {}, headers: Record<string, string> = {}) {
    const res = await fetch(`${postgrest.url}/rest/v1/rpc/${fn}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", apikey: SERVICE_ROLE_KEY, ...headers },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: await res.json() };
  }

  test("runs a STABLE function read-only even on POST: a write fails with 405; a VOLATILE one writes", async () => {
    expect(await rpc("write_stable", { note: "a" })).toMatchObject({ status: 405, body: { code: "25006" } });
    expect(await rpc("write_volatile", { note: "b" })).toEqual({ status: 200, body: 1 });
    const { rows } = await db.pool.query("select note from public.log");
    expect(rows).toEqual([{ note: "b" }]);
  });

  test("a function in a schema that is not exposed is not found; exposing it, at run time, finds it", async () => {
    expect(await rpc("hidden")).toMatchObject({ status: 404, body: { code: "PGRST202" } });
    expect(await rpc("hidden", {}, { "Content-Profile": "private" })).toMatchObject({
      status: 406,
      body: { code: "PGRST106" },
    });
    postgrest.exposedSchemas = ["public", "private"];
    try {
      expect(await rpc("hidden", {}, { "Content-Profile": "private" })).toEqual({ status: 200, body: 7 });
      // Without public among the exposed schemas, public's functions are gone from the API.
      postgrest.exposedSchemas = ["private"];
      expect(await rpc("write_volatile", { note: "c" })).toMatchObject({
        status: 404,
        body: { code: "PGRST202" },
      });
    } finally {
      postgrest.exposedSchemas = ["public"];
    }
  });

  test("with the Data API turned off every /rest/v1 request answers 404", async () => {
    postgrest.dataApi = false;
    try {
      expect((await rpc("write_volatile", { note: "d" })).status).toBe(404);
    } finally {
      postgrest.dataApi = true;
    }
    expect((await rpc("write_volatile", { note: "e" })).status).toBe(200);
  });

  test("a secret key is accepted as apikey only: as a Bearer token it is an invalid JWT", async () => {
    expect(await rpc("write_volatile", { note: "f" }, { apikey: SECRET_KEY })).toEqual({
      status: 200,
      body: 1,
    });
    expect(
      await rpc(
        "write_volatile",
        { note: "g" },
        { apikey: SECRET_KEY, Authorization: `Bearer ${SECRET_KEY}` },
      ),
    ).toMatchObject({ status: 401, body: { code: "PGRST301", message: "Invalid JWT" } });
    expect(
      await rpc("write_volatile", { note: "h" }, { Authorization: `Bearer ${SERVICE_ROLE_KEY}` }),
    ).toEqual({ status: 200, body: 1 });
    expect((await rpc("write_volatile", { note: "i" }, { apikey: "sb_secret_wrong" })).status).toBe(401);
  });
});

/** An origin that answers every request with the path and Authorization it received. */
async function startEcho(): Promise<{ origin: string; stop(): Promise<void> }> {
  const server = createServer((req, res) => {
    req.resume();
    const headers: IncomingHttpHeaders = req.headers;
    res.writeHead(200, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ path: req.url, authorization: headers.authorization ?? null }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("the functions gateway stand-ins", () => {
  test("a function sees its path without /functions/v1; other paths pass unchanged", async () => {
    const [execute, others] = [await startEcho(), await startEcho()];
    const gateway = await startGateway(execute.origin, others.origin);
    const origin = new URL(gateway.functionsUrl).origin;
    const seen = async (path: string) => (await (await fetch(`${origin}${path}`)).json()).path;
    try {
      expect(await seen("/functions/v1/send-email/x?y=1")).toBe("/send-email/x?y=1");
      expect(await seen("/functions/v1/execute_current_job")).toBe("/execute_current_job");
      expect(await seen("/ok?z=2")).toBe("/ok?z=2");
    } finally {
      await gateway.stop();
      await Promise.all([execute.stop(), others.stop()]);
    }
  });

  test("a function deployed with verify_jwt on refuses a request without the project's JWT", async () => {
    const echo = await startEcho();
    const gateway = await startGateway(echo.origin, echo.origin, {
      verifyJwt: (name) => name === "guarded",
      jwt: "project-jwt",
    });
    const call = (name: string, authorization?: string) =>
      fetch(`${gateway.functionsUrl}/${name}`, {
        method: "POST",
        headers: authorization ? { Authorization: authorization } : {},
        body: "{}",
      });
    try {
      for (const authorization of [undefined, "Bearer sb_secret_test0123456789"]) {
        const refused = await call("guarded", authorization);
        expect(refused.status).toBe(401);
        expect(await refused.json()).toEqual({ code: 401, message: "Invalid JWT" });
      }
      expect((await call("guarded", "Bearer project-jwt")).status).toBe(200);
      expect((await call("open")).status).toBe(200);
    } finally {
      await gateway.stop();
      await echo.stop();
    }
  });

  test("local mode's server gives its functions the stripped path and its fallback the whole one", async () => {
    const server = await startFunctionsServer();
    const seen = (request: Request) => {
      const url = new URL(request.url);
      return Promise.resolve(Response.json({ path: `${url.pathname}${url.search}` }));
    };
    server.functions.set("send-email", seen);
    server.fallback = seen;
    const path = async (p: string) => (await (await fetch(`${server.origin}${p}`)).json()).path;
    try {
      expect(await path("/functions/v1/send-email/x?y=1")).toBe("/send-email/x?y=1");
      expect(await path("/functions/v1/other/x?y=1")).toBe("/functions/v1/other/x?y=1");
    } finally {
      await server.stop();
    }
  });
});
