import { type BenchServer, log, median, withClient, withInstalledDatabase } from "./support.ts";

/**
 * Section 3, bulk enqueue: one `insert ... select` of N jobs into supaqueue.job (its statement trigger dispatches
 * to the queue's 10 free workers), against the same insert into copies of the table without Supaqueue's trigger.
 *
 * The fair copy: `create table ... (like supaqueue.job including all)` keeps the columns, defaults (uuid, identity),
 * check constraints and every index, partial ones included, so the copy pays for the same row and index writes.
 * It loses the foreign key to supaqueue.queue (LIKE never copies foreign keys) and the dispatch trigger. A foreign
 * key is itself a per-row trigger, so the target is judged against the copy without it (the strict reading of
 * "no triggers"), and a second copy with the foreign key added shows how much of the gap is the key and how much is
 * Supaqueue's dispatch.
 */

export interface BulkResult {
  jobs: number;
  /** Rows per second of every repeat, keyed "supaqueue", "copy", "copy+fk". */
  runs: Record<string, number[]>;
  median: Record<string, number>;
}

const TARGETS = {
  supaqueue: "supaqueue.job",
  copy: "bench_copy.job",
  "copy+fk": "bench_copy.job_with_fk",
} as const;

export async function measureBulk(bench: BenchServer, repeats: number, jobs: number): Promise<BulkResult> {
  const runs: Record<string, number[]> = {};
  for (let r = 0; r < repeats; r++) {
    await withInstalledDatabase(bench, async (db) => {
      await withClient(db.url, async (c) => {
        await c.query(
          "insert into supaqueue.queue (name, url) values ('bulk', 'https://target.example/hook')",
        );
        await c.query("select supaqueue.set_workers('bulk', 10)");
        await c.query("create schema bench_copy");
        await c.query("create table bench_copy.job (like supaqueue.job including all)");
        await c.query("create table bench_copy.job_with_fk (like supaqueue.job including all)");
        await c.query(
          "alter table bench_copy.job_with_fk add foreign key (queue_id) references supaqueue.queue (id)",
        );
      });
      await withClient(db.adminUrl, (c) => c.query("checkpoint"));
      // The order rotates between repeats so that none of the three always runs first (or after a checkpoint).
      const order: [string, string][] = Object.entries(TARGETS);
      for (let k = 0; k < r % order.length; k++) order.push(order.shift() as [string, string]);
      for (const [key, table] of order) {
        await withClient(db.url, async (c) => {
          const started = performance.now();
          await c.query(
            `insert into ${table} (queue_id, payload)
             select q.id, jsonb_build_object('n', g) from generate_series(1, $1::int) g, supaqueue.queue q
             where q.name = 'bulk'`,
            [jobs],
          );
          const rate = jobs / ((performance.now() - started) / 1000);
          runs[key] = [...(runs[key] ?? []), rate];
          log(`bulk ${key} repeat ${r + 1}: ${rate.toFixed(0)} rows/s`);
        });
      }
      await withClient(db.url, async (c) => {
        const { rows } = await c.query<{ n: number }>("select count(*)::int as n from supaqueue.current_job");
        if (rows[0]?.n !== 10) throw new Error(`bulk: expected 10 calls started, found ${rows[0]?.n}`);
      });
    });
  }
  const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  return { jobs, runs, median: med };
}
