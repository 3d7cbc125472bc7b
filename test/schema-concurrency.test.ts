import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  claim,
  complete,
  completeAndClaim,
  completeMany,
  createQueue,
  jobStatus,
  type SentCall,
  takeCalls,
  takeWakeups,
} from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

let db: TestDatabase;
beforeAll(async () => {
  db = await installedDatabase();
});

/** Queues that have a free worker and a due pending job: after any committed change this must be empty. */
async function idleWorkersWithWork(): Promise<string[]> {
  const { rows } = await db.pool.query(`
    select q.name from supaqueue.queue q
    where not q.paused
      and exists (select from supaqueue.worker w where w.queue_id = q.id and not w.locked)
      and exists (select from supaqueue.job j where j.queue_id = q.id and j.status = 'pending' and j.run_at <= now())`);
  return rows.map((r) => r.name);
}

async function transaction(): Promise<pg.PoolClient> {
  const client = await db.pool.connect();
  await client.query("begin");
  // A dispatch that waited for another transaction's lock would hit this instead of hanging.
  await client.query("set local lock_timeout = '3s'");
  return client;
}

describe("the three failures measured in the original design cannot happen", () => {
  test("two completions at once neither deadlock nor wait for each other", async () => {
    await createQueue(db.pool, "deadlock", 2);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++)
      ids.push((await db.pool.query("select supaqueue.enqueue('deadlock') as id")).rows[0].id);
    const [a, b] = await takeCalls(db.pool);
    const t1 = await transaction();
    const t2 = await transaction();
    await t1.query("set local role service_role");
    await t2.query("set local role service_role");
    // Both are open at once, each holding its own completion: neither blocks the other.
    const report = (id: number) =>
      JSON.stringify([{ current_job_id: id, succeeded: true, status_code: 200 }]);
    await t1.query("select supaqueue.complete_current_jobs($1::jsonb)", [report(a!.body.current_job_id)]);
    await t2.query("select supaqueue.complete_current_jobs($1::jsonb)", [report(b!.body.current_job_id)]);
    await t2.query("commit");
    await t1.query("commit");
    t1.release();
    t2.release();
    const next = await takeCalls(db.pool);
    expect(next.map((c) => c.body.job.id).sort()).toEqual([ids[2], ids[3]].sort());
    for (const c of next) await complete(db.pool, c);
    for (const id of ids) expect((await jobStatus(db.pool, id)).status).toBe("successful");
    expect(await idleWorkersWithWork()).toEqual([]);
  });

  test("a failed job goes back to pending before its worker moves on, and is never left beside a free worker", async () => {
    await createQueue(db.pool, "requeue", 1, { backoff_base_ms: 0, backoff_max_ms: 0 });
    const a = (await db.pool.query("select supaqueue.enqueue('requeue') as id")).rows[0].id;
    const b = (await db.pool.query("select supaqueue.enqueue('requeue') as id")).rows[0].id;
    let [call] = await takeCalls(db.pool);
    expect(call?.body.job.id).toBe(a);
    await complete(db.pool, call!, { succeeded: false, statusCode: 500 });
    expect(await idleWorkersWithWork()).toEqual([]);
    [call] = await takeCalls(db.pool);
    expect(call?.body.job.id).toBe(b); // b was due first
    await complete(db.pool, call!);
    expect(await idleWorkersWithWork()).toEqual([]);
    [call] = await takeCalls(db.pool);
    expect(call?.body).toMatchObject({ job: { id: a }, attempt: 2 });
    await complete(db.pool, call!);
    expect(await jobStatus(db.pool, a)).toMatchObject({ status: "successful", attempts: 2 });
    expect(await idleWorkersWithWork()).toEqual([]);
  });

  test("a job inserted while another transaction's dispatch holds a worker is sent by a free worker at once", async () => {
    await createQueue(db.pool, "held", 2);
    const t1 = await transaction();
    const a = (await t1.query("select supaqueue.enqueue('held') as id")).rows[0].id;
    // t1 is still open and holds one worker; the other worker is free for everyone else.
    const b = (await db.pool.query("select supaqueue.enqueue('held') as id")).rows[0].id;
    expect(await jobStatus(db.pool, b)).toMatchObject({ status: "in_progress" });
    await t1.query("commit");
    t1.release();
    const calls = await takeCalls(db.pool);
    expect(calls.map((c) => c.body.job.id).sort()).toEqual([a, b].sort());
    for (const c of calls) await complete(db.pool, c);
  });

  test("a tick in progress holds no worker of a queue with nothing due: an enqueue meanwhile starts at once", async () => {
    // tick() visits every queue; a dispatch that locked free workers before looking for due jobs held them to the
    // tick's commit, and an enqueue committing meanwhile found none: its job waited for the next tick (1 s).
    await createQueue(db.pool, "ticked", 1);
    const t1 = await transaction();
    await t1.query("select supaqueue.tick()");
    const started = Date.now();
    const job = (await db.pool.query("select supaqueue.enqueue('ticked') as id")).rows[0].id;
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await jobStatus(db.pool, job)).toMatchObject({ status: "in_progress", attempts: 1 });
    await t1.query("commit");
    t1.release();
    const [call] = await takeCalls(db.pool);
    expect(call?.body.job.id).toBe(job);
    await complete(db.pool, call!);
  });

  test("a job inserted while the only worker is held never waits forever: a rollback leaves it to tick", async () => {
    await createQueue(db.pool, "single", 1);
    const t1 = await transaction();
    await t1.query("select supaqueue.enqueue('single')");
    const started = Date.now();
    const b = (await db.pool.query("select supaqueue.enqueue('single') as id")).rows[0].id;
    expect(Date.now() - started).toBeLessThan(1000); // no lock wait
    expect((await jobStatus(db.pool, b)).status).toBe("pending");
    await t1.query("rollback");
    t1.release();
    expect(await idleWorkersWithWork()).toEqual(["single"]); // a lost wakeup...
    await db.pool.query("select supaqueue.tick()");
    expect(await idleWorkersWithWork()).toEqual([]); // ...that tick recovers
    const [call] = await takeCalls(db.pool);
    expect(call?.body.job.id).toBe(b);
    await complete(db.pool, call!);
  });
});

describe("dispatch reads only small indexes", () => {
  test("claiming uses the partial indexes of pending jobs and free workers", async () => {
    const q = await createQueue(db.pool, "plans", 0);
    await db.pool.query(
      `insert into supaqueue.job (queue_id, status, finished_at) select $1, 'successful', now() from generate_series(1, 20000)`,
      [q],
    );
    await db.pool.query(`insert into supaqueue.job (queue_id) select $1 from generate_series(1, 50)`, [q]);
    // 5,000 other workers, busy ones included, in 50 other queues.
    await db.pool.query(
      `insert into supaqueue.queue (name, url) select 'plans-' || n, 'https://x.example' from generate_series(1, 50) n`,
    );
    await db.pool.query(
      `insert into supaqueue.worker (queue_id, locked) select q.id, n % 2 = 0
       from supaqueue.queue q, generate_series(1, 100) n where q.name like 'plans-%'`,
    );
    await db.pool.query("select supaqueue.set_workers('plans', 3)");
    await db.pool.query("update supaqueue.worker set locked = true where queue_id = $1", [q]);
    await db.pool.query("analyze supaqueue.job; analyze supaqueue.worker");
    const plan = async (sql: string) =>
      (await db.pool.query(`explain ${sql}`, [q])).rows.map((r) => r["QUERY PLAN"]).join("\n");
    const jobPlan = await plan(`select j.id from supaqueue.job j
      where j.queue_id = $1 and j.status = 'pending' and j.run_at <= now()
      order by j.run_at, j.seq limit 10 for update skip locked`);
    expect(jobPlan).toMatch(/Index Scan using job_pending_due_idx/);
    expect(jobPlan).not.toMatch(/Sort|Seq Scan/);
    const workerPlan = await plan(`select w.id from supaqueue.worker w where w.queue_id = $1 and not w.locked
      order by w.id limit 10 for update skip locked`);
    expect(workerPlan).toMatch(/Index (Only )?Scan using worker_free_idx/);
  });
});

describe("stress", () => {
  let stressDb: TestDatabase;
  afterAll(async () => {});

  // "in batches" reports as complete_current_jobs does under load, and sometimes reports the same batch twice at once
  // in the opposite order, as a repeated delivery would: no deadlock, no double count. "taking the next calls" plays
  // execute_current_job as deployed: reports claim the next calls in the same transaction, and wakeups are sometimes
  // delivered twice at once (a replay): every call is still claimed, and made, exactly once.
  test.each([
    "one at a time",
    "in batches",
    "taking the next calls",
  ])("16 connections enqueue 20,000 jobs while completions run (%s): every job succeeds exactly once, never more in flight than workers", async (mode) => {
    stressDb = await installedDatabase();
    const pool = stressDb.pool;
    const queues = { s1: 1, s3: 3, s5: 5, s10: 10 };
    for (const [name, workers] of Object.entries(queues)) await createQueue(pool, name, workers);
    const names = Object.keys(queues);
    const TOTAL = 20_000;
    const PRODUCERS = 16;

    const inFlight = new Map<string, number>();
    const maxInFlight = new Map<string, number>();
    const sentPerJob = new Map<string, number>();
    const errors: unknown[] = [];
    let done = false;

    const producerPool = new pg.Pool({ connectionString: stressDb.url, max: PRODUCERS });
    const completerPool = new pg.Pool({ connectionString: stressDb.url, max: 8 });
    const producers = Array.from({ length: PRODUCERS }, async (_, p) => {
      const client = await producerPool.connect();
      try {
        for (let i = p; i < TOTAL; i += PRODUCERS * 25) {
          // Mix single enqueues and small bulk inserts.
          if ((i / PRODUCERS) % 2 === 0) {
            for (let k = 0; k < 25 && i + k * PRODUCERS < TOTAL; k++) {
              await client.query("select supaqueue.enqueue($1, $2::jsonb)", [
                names[(i + k) % names.length],
                JSON.stringify({ i: i + k * PRODUCERS }),
              ]);
            }
          } else {
            const n = Math.min(25, Math.ceil((TOTAL - i) / PRODUCERS));
            await client.query(
              `insert into supaqueue.job (queue_id, payload)
               select q.id, jsonb_build_object('i', $2::int + g * $3::int)
               from generate_series(0, $4::int - 1) g join supaqueue.queue q on q.name = $1`,
              [names[i % names.length], i, PRODUCERS, n],
            );
          }
        }
      } finally {
        client.release();
      }
    });

    /** A wakeup's calls, claimed as the function does; a replayed wakeup (claimed twice at once) gets them once. */
    const takeOrReplay = async (): Promise<SentCall[]> => {
      if (mode !== "taking the next calls") return takeCalls(completerPool, 50);
      const claimed: SentCall[] = [];
      for (const wakeup of await takeWakeups(completerPool, 5)) {
        const replay = Math.random() < 0.2;
        const [first, second] = await Promise.all([
          claim(completerPool, wakeup.body.ids),
          replay ? claim(completerPool, [...wakeup.body.ids].reverse()) : [],
        ]);
        claimed.push(...first, ...second);
      }
      return claimed;
    };
    const completers = Array.from({ length: 6 }, async () => {
      let handedBack: SentCall[] = [];
      while (!done) {
        const taken = await takeOrReplay().catch((e) => {
          errors.push(e);
          return [];
        });
        const calls = [...handedBack, ...taken];
        handedBack = [];
        if (calls.length === 0) {
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        for (const call of calls) {
          const q = call.body.queue.name;
          const now = (inFlight.get(q) ?? 0) + 1;
          inFlight.set(q, now);
          maxInFlight.set(q, Math.max(maxInFlight.get(q) ?? 0, now));
          sentPerJob.set(call.body.job.id, (sentPerJob.get(call.body.job.id) ?? 0) + 1);
        }
        await new Promise((r) => setTimeout(r, Math.random() * 3));
        for (const call of calls)
          inFlight.set(call.body.queue.name, (inFlight.get(call.body.queue.name) ?? 1) - 1);
        if (mode === "one at a time") {
          await Promise.all(calls.map((call) => complete(completerPool, call).catch((e) => errors.push(e))));
        } else if (mode === "taking the next calls") {
          const answer = await completeAndClaim(
            completerPool,
            calls.map((call) => ({ call })),
          ).catch((e) => {
            errors.push(e);
            return { calls: [] };
          });
          handedBack = answer.calls;
        } else {
          const reports = calls.map((call) => ({ call }));
          const twice = Math.random() < 0.2;
          await Promise.all([
            completeMany(completerPool, reports).catch((e) => errors.push(e)),
            twice ? completeMany(completerPool, [...reports].reverse()).catch((e) => errors.push(e)) : null,
          ]);
        }
      }
    });

    const ticker = (async () => {
      while (!done) {
        await pool.query("select supaqueue.tick()").catch((e) => errors.push(e));
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    await Promise.all(producers);
    // A correctness test, not a timing one: on a quiet machine the drain takes 20-40 s; the bound only stops a hang.
    const deadline = Date.now() + 240_000;
    for (;;) {
      const { rows } = await pool.query(
        "select count(*) filter (where status = 'successful')::int as ok, count(*)::int as total from supaqueue.job",
      );
      if (rows[0].ok === TOTAL || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    done = true;
    await Promise.all([...completers, ticker]);
    await producerPool.end();
    await completerPool.end();

    expect(errors).toEqual([]);
    const { rows } = await pool.query(`
      select count(*)::int as jobs,
             count(*) filter (where status = 'successful' and attempts = 1)::int as ok_once,
             (select count(*)::int from supaqueue.attempt) as attempts
      from supaqueue.job`);
    expect(rows[0]).toEqual({ jobs: TOTAL, ok_once: TOTAL, attempts: TOTAL });
    expect(sentPerJob.size).toBe(TOTAL);
    expect([...sentPerJob.values()].every((n) => n === 1)).toBe(true);
    for (const [name, workers] of Object.entries(queues)) {
      expect(maxInFlight.get(name), name).toBeLessThanOrEqual(workers);
      expect(maxInFlight.get(name), name).toBeGreaterThan(0);
    }
    const { rows: left } = await pool.query("select count(*)::int as n from supaqueue.worker where locked");
    expect(left[0].n).toBe(0);
  }, 360_000);
});
