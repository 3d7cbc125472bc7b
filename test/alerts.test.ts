import { beforeAll, describe, expect, test } from "vitest";
import { completeMany, createQueue, type SentCall, takeCalls } from "./support/calls.ts";
import { installedDatabase, type TestDatabase } from "./support/db.ts";

/**
 * Alerts in the database (supaqueue._check_alerts, run by tick() once every 5 seconds): a queue whose failure rate,
 * oldest due job or dead letters reach its thresholds gets one alert per episode, enqueued into its alert queue as
 * Slack's {"text": ...}; a "resolved" message closes the episode, and a new crossing opens a new one.
 * The alert queues here have no workers, so their jobs wait where the test can read them.
 */
let db: TestDatabase;
// The tests' clock: tick() runs at start + seconds, 5 seconds after the previous tick (a new slot each time).
let start: Date;
let seconds = 0;
const now = () => new Date(start.getTime() + seconds * 1000);
beforeAll(async () => {
  db = await installedDatabase();
  const { rows } = await db.pool.query("select to_timestamp(floor(extract(epoch from now()) / 5) * 5) as t");
  start = rows[0].t;
});

async function tick(): Promise<void> {
  seconds += 5;
  await db.pool.query("select supaqueue.tick($1)", [now()]);
}

/** The texts of the alert queue's jobs, oldest first. */
async function alerts(queue: string): Promise<string[]> {
  const { rows } = await db.pool.query(
    `select j.payload from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id
     where q.name = $1 order by j.seq`,
    [queue],
  );
  for (const row of rows) expect(Object.keys(row.payload)).toEqual(["text"]);
  return rows.map((r) => r.payload.text);
}

async function episodes(queue: string): Promise<string[]> {
  const { rows } = await db.pool.query(
    `select e.kind from supaqueue.alert_episode e join supaqueue.queue q on q.id = e.queue_id
     where q.name = $1 order by e.kind`,
    [queue],
  );
  return rows.map((r) => r.kind);
}

/** Runs `failed` failing and `ok` successful jobs of `queue` through real calls and reports (max_attempts 1). */
async function finish(queue: string, failed: number, ok: number): Promise<void> {
  await db.pool.query(
    "select supaqueue.enqueue($1, jsonb_build_object('n', i)) from generate_series(1, $2) i",
    [queue, failed + ok],
  );
  const calls = (await takeCalls(db.pool)).filter((c: SentCall) => c.body.queue.name === queue);
  expect(calls).toHaveLength(failed + ok);
  await completeMany(
    db.pool,
    calls.map((call, i) => ({
      call,
      outcome:
        i < failed
          ? { succeeded: false, statusCode: 500, error: "HTTP 500" }
          : { succeeded: true, statusCode: 200 },
    })),
  );
}

async function watched(name: string, alerts: Record<string, unknown>, workers = 100): Promise<void> {
  await createQueue(db.pool, `${name}-alerts`, 0);
  await createQueue(db.pool, name, workers, { max_attempts: 1, alert_queue: `${name}-alerts`, ...alerts });
}

describe("failure rate", () => {
  test("one alert when it reaches the threshold, none more in the episode, resolved when back under, a new one after", async () => {
    await watched("billing", { alert_failure_rate: 0.5, alert_link: "https://dash.example/#/queue/billing" });
    await finish("billing", 3, 3);
    await tick();
    expect(await alerts("billing-alerts")).toEqual([]); // 6 finished jobs are too few to say

    await finish("billing", 6, 1);
    await tick();
    expect(await alerts("billing-alerts")).toEqual([
      'Alert: Supaqueue queue "billing": failure rate over the last 5 minutes reached 69% (threshold 50%) <https://dash.example/#/queue/billing|Open the queue>',
    ]);
    expect(await episodes("billing")).toEqual(["failure_rate"]);

    await finish("billing", 10, 0);
    await tick();
    await tick();
    expect(await alerts("billing-alerts")).toHaveLength(1);

    await finish("billing", 0, 40);
    await tick();
    const texts = await alerts("billing-alerts");
    expect(texts).toHaveLength(2);
    expect(texts[1]).toBe(
      'Resolved: Supaqueue queue "billing": failure rate over the last 5 minutes is back under its threshold, at 30% (threshold 50%) <https://dash.example/#/queue/billing|Open the queue>',
    );
    expect(await episodes("billing")).toEqual([]);

    await finish("billing", 60, 0);
    await tick();
    const again = await alerts("billing-alerts");
    expect(again).toHaveLength(3);
    expect(again[2]).toMatch(/^Alert: .* reached 64% \(threshold 50%\) <https/); // 79 of 123
  });

  test("measuring twice in the same slot does not alert twice", async () => {
    await watched("twice", { alert_failure_rate: 0.1 });
    await finish("twice", 10, 0);
    seconds += 5;
    const { rows } = await db.pool.query(
      "select supaqueue._check_alerts($1) as a, supaqueue._check_alerts($1) as b",
      [now()],
    );
    // Both measure (tick() has not recorded the slot): the episode's row lets only one of them alert.
    expect(rows[0].a + rows[0].b).toBe(1);
    expect(await alerts("twice-alerts")).toHaveLength(1);
  });
});

describe("oldest due job", () => {
  test("alerts when the oldest due job is older than the threshold, resolves when the backlog is gone", async () => {
    await watched("reports", { alert_oldest_due_ms: 10_000 }, 0);
    await db.pool.query("select supaqueue.enqueue('reports', '{}', $1)", [now()]);
    await tick();
    expect(await alerts("reports-alerts")).toEqual([]); // 5 s old
    await tick();
    expect(await alerts("reports-alerts")).toEqual([
      'Alert: Supaqueue queue "reports": oldest due job\'s age reached 10s (threshold 10s)',
    ]);
    await tick();
    expect(await alerts("reports-alerts")).toHaveLength(1);

    await db.pool.query("select supaqueue.purge('reports')");
    await tick();
    expect((await alerts("reports-alerts"))[1]).toBe(
      'Resolved: Supaqueue queue "reports": oldest due job\'s age is back under its threshold, at 0s (threshold 10s)',
    );
  });

  test("a paused queue's backlog is not measured", async () => {
    await watched("held", { alert_oldest_due_ms: 1000 }, 0);
    await db.pool.query("select supaqueue.enqueue('held', '{}', $1)", [now()]);
    await db.pool.query("select supaqueue.pause('held')");
    await tick();
    await tick();
    expect(await alerts("held-alerts")).toEqual([]);
  });
});

describe("dead letters", () => {
  test("counts the jobs that failed for good in the last 5 minutes", async () => {
    await createQueue(db.pool, "mail-dead", 0);
    await watched("mail", { alert_dead_letters: 3, dead_letter_queue: "mail-dead" });
    await finish("mail", 2, 0);
    await tick();
    expect(await alerts("mail-alerts")).toEqual([]);
    await finish("mail", 2, 0);
    await tick();
    expect(await alerts("mail-alerts")).toEqual([
      'Alert: Supaqueue queue "mail": dead letters in the last 5 minutes reached 4 (threshold 3)',
    ]);
    await finish("mail", 5, 0);
    await tick();
    expect(await alerts("mail-alerts")).toHaveLength(1);
  });
});

describe("settings", () => {
  test("the database refuses bad thresholds and a missing alert queue, with what to do", async () => {
    await createQueue(db.pool, "plain", 0);
    await expect(
      db.pool.query("update supaqueue.queue set alert_queue = 'nowhere' where name = 'plain'"),
    ).rejects.toThrow('queue "plain" names alert_queue "nowhere", which is not another existing queue');
    await expect(
      db.pool.query("update supaqueue.queue set alert_failure_rate = 1.5 where name = 'plain'"),
    ).rejects.toThrow("it must be more than 0 and at most 1");
    await expect(
      db.pool.query("update supaqueue.queue set alert_oldest_due_ms = 10 where name = 'plain'"),
    ).rejects.toThrow("it must be at least 1000");
  });

  test("a queue that stops watching a value ends its episode without a message", async () => {
    await db.pool.query("update supaqueue.queue set alert_failure_rate = null where name = 'billing'");
    await tick();
    expect(await episodes("billing")).toEqual([]);
    expect(await alerts("billing-alerts")).toHaveLength(3);
  });
});
