import pg from "pg";
import { beforeAll, describe, expect, test } from "vitest";
import { complete, createQueue, takeCalls } from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

/**
 * Job ids and how a dispatch finds them: ids are version-7 UUIDs, in time order (sql/0003_time_ordered_job_ids.sql);
 * a dispatch for one worker (sql/0002_batched_completion.sql) claims the oldest due job with statements whose generic plans PL/pgSQL keeps, so that a
 * large backlog does not make every dispatch plan its claim afresh.
 */

let db: TestDatabase;
beforeAll(async () => {
  db = await installedDatabase();
});

async function enqueue(queue: string, runAt: string | null = null): Promise<string> {
  const { rows } = await db.pool.query("select supaqueue.enqueue($1, '{}'::jsonb, $2::timestamptz) as id", [
    queue,
    runAt,
  ]);
  return rows[0].id;
}

async function inFlight(queue: number): Promise<string[]> {
  const { rows } = await db.pool.query(
    `select c.job_id from supaqueue.current_job c join supaqueue.job j on j.id = c.job_id
     where j.queue_id = $1 order by c.worker_id`,
    [queue],
  );
  return rows.map((r) => r.job_id);
}

/**
 * What auto_explain reports for every statement of the last of `times` runs of `sql`, each rolled back, in one
 * session and as one named prepared statement, so that the plan caches carry over from run to run.
 */
async function plansOfLastRun(sql: string, params: unknown[], times: number): Promise<string[]> {
  const client = new pg.Client({ connectionString: db.adminUrl });
  await client.connect();
  try {
    const notices: string[] = [];
    client.on("notice", (n) => notices.push(n.message ?? ""));
    await client.query("load 'auto_explain'");
    await client.query("set auto_explain.log_min_duration = 0");
    await client.query("set auto_explain.log_nested_statements = on");
    await client.query("set client_min_messages = log");
    for (let i = 0; i < times; i++) {
      notices.length = 0;
      await client.query("begin");
      await client.query({ name: "measured", text: sql, values: params });
      await client.query("rollback");
    }
    return [...notices];
  } finally {
    await client.end();
  }
}

const V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The Unix milliseconds of a version-7 UUID (its first 48 bits). */
function millisOf(id: string): number {
  return Number.parseInt(id.replaceAll("-", "").slice(0, 12), 16);
}

async function clockMillis(): Promise<number> {
  const { rows } = await db.pool.query(
    "select floor(extract(epoch from clock_timestamp()) * 1000)::float8 as ms",
  );
  return rows[0].ms;
}

describe("job ids", () => {
  test("enqueue returns a version-7 UUID stamped with the time it was made, and the call carries it", async () => {
    const queue = await createQueue(db.pool, "ids", 1);
    const before = await clockMillis();
    const id = await enqueue("ids");
    const after = await clockMillis();
    expect(id).toMatch(V7);
    expect(millisOf(id)).toBeGreaterThanOrEqual(before);
    expect(millisOf(id)).toBeLessThanOrEqual(after);
    expect(await inFlight(queue)).toEqual([id]);
    const [call] = await takeCalls(db.pool);
    expect(call?.body.job.id).toBe(id);
    expect(await complete(db.pool, call!)).toBe(true);
  });

  test("ids increase with time: across enqueues, and within a bulk insert in insertion order", async () => {
    const queue = await createQueue(db.pool, "ordered", 0);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await enqueue("ordered"));
      await new Promise((resolve) => setTimeout(resolve, 3));
    }
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);

    const { rows } = await db.pool.query(
      `insert into supaqueue.job (queue_id, payload) select $1, jsonb_build_object('n', g) from generate_series(1, 2000) g
       returning id, seq`,
      [queue],
    );
    const bulk = rows.sort((a, b) => Number(a.seq) - Number(b.seq)).map((r) => r.id as string);
    expect(bulk.every((id) => V7.test(id))).toBe(true);
    expect(new Set(bulk).size).toBe(bulk.length);
    for (let i = 1; i < bulk.length; i++) {
      expect(millisOf(bulk[i] as string)).toBeGreaterThanOrEqual(millisOf(bulk[i - 1] as string));
    }
    expect(millisOf(bulk[0] as string)).toBeGreaterThan(millisOf(ids[4] as string));
  });
});

describe("one worker, one job", () => {
  test("a free worker takes the oldest due job it can lock; a completed one takes the next", async () => {
    const queue = await createQueue(db.pool, "oldest", 0);
    const later = await enqueue("oldest", "2000-01-02");
    const first = await enqueue("oldest", "2000-01-01");
    const sameTimeFirst = await enqueue("oldest", "2000-01-03");
    const sameTimeSecond = await enqueue("oldest", "2000-01-03");
    await enqueue("oldest", "2999-01-01");

    // Another transaction holds the oldest job: the dispatch skips it rather than wait.
    const holder = await db.pool.connect();
    try {
      await holder.query("begin");
      await holder.query("select from supaqueue.job where id = $1 for update", [first]);
      await db.pool.query("select supaqueue.set_workers('oldest', 1)");
      expect(await inFlight(queue)).toEqual([later]);
      await holder.query("commit");
    } finally {
      holder.release();
    }

    // Each completion hands the worker the next due job: by run_at, then by insertion order; never a future one.
    const order: string[] = [];
    for (let i = 0; i < 4; i++) {
      const [call] = await takeCalls(db.pool);
      expect(await complete(db.pool, call!)).toBe(true);
      order.push(...(await inFlight(queue)));
    }
    expect(order).toEqual([first, sameTimeFirst, sameTimeSecond]);
    const { rows } = await db.pool.query("select locked from supaqueue.worker where queue_id = $1", [queue]);
    expect(rows).toEqual([{ locked: false }]);
  });

  test("several free workers take as many jobs at once, in due order", async () => {
    const queue = await createQueue(db.pool, "several", 0);
    const ids = [];
    for (const day of ["03", "01", "02"]) ids.push(await enqueue("several", `2000-01-${day}`));
    await db.pool.query("select supaqueue.set_workers('several', 2)");
    expect(await inFlight(queue)).toEqual([ids[1], ids[2]]);
  });
});

describe("a large backlog", () => {
  test("a one-worker dispatch keeps generic plans: no statement is planned for the values of the call", async () => {
    // 20,000 due jobs and two free workers, analyzed: enough for a claim whose LIMIT is a parameter to be planned
    // afresh at every call (checked below with 0002's form of the claim).
    const queue = await createQueue(db.pool, "backlog", 0);
    await db.pool.query(
      "insert into supaqueue.worker (queue_id, locked) select $1, true from generate_series(1, 2)",
      [queue],
    );
    await db.pool.query(
      `insert into supaqueue.job (queue_id, run_at, payload)
       select $1, now() - interval '1 minute', jsonb_build_object('n', g) from generate_series(1, 20000) g`,
      [queue],
    );
    await db.pool.query("update supaqueue.worker set locked = false where queue_id = $1", [queue]);
    await db.pool.query("analyze supaqueue.job");
    const { rows } = await db.pool.query(
      "select id from supaqueue.job where queue_id = $1 order by run_at, seq limit 1",
      [queue],
    );
    const oldest: string = rows[0].id;

    const plans = await plansOfLastRun("select supaqueue._dispatch($1, 1)", [queue], 8);
    const claim = plans.find((p) => /from supaqueue\.job j\s/.test(p) && /for update skip locked/.test(p));
    expect(claim).toMatch(/Index Scan using job_pending_due_idx/);
    expect(plans.find((p) => /update supaqueue\.job j set status = 'in_progress'/.test(p))).toBeDefined();
    // A plan made for the call's values shows them as constants: the queue's id, the claimed job's id.
    for (const plan of plans) {
      expect(plan).not.toContain(`'${queue}'::bigint`);
      expect(plan).not.toContain(oldest);
    }

    // The premise: the same claim with its LIMIT as a parameter (0002's form) is planned for its values every time.
    const premise = await plansOfLastRun(
      `select array_agg(j.id) from (select j.id from supaqueue.job j
         where j.queue_id = $1 and j.status = 'pending' and j.run_at <= now()
         order by j.run_at, j.seq limit $2 for update skip locked) j`,
      [queue, 1],
      8,
    );
    expect(premise.join("\n")).toContain(`'${queue}'::bigint`);
  });
});
