import { pgbench } from "./pgbench.ts";
import { type BenchServer, emptyDatabase, log, median, withClient } from "./support.ts";

/**
 * Section 1, the limit: single-row INSERT and single-row UPDATE transactions per second at 1 and 8 connections,
 * with pgbench on the same server and settings. One commit per transaction, autocommit, the simple protocol.
 */

export interface LimitResult {
  seconds: number;
  /** tps of every repeat, keyed "insert@1", "insert@8", "update@1", "update@8". */
  runs: Record<string, number[]>;
  median: Record<string, number>;
}

const UPDATE_ROWS = 100_000;

const SCRIPTS = {
  insert: "insert into limit_insert (payload) values ('{}');\n",
  // Random rows over 100,000 so that eight connections rarely wait for each other's row lock.
  update: `\\set id random(1, ${UPDATE_ROWS})\nupdate limit_update set n = n + 1 where id = :id;\n`,
};

export async function measureLimit(
  bench: BenchServer,
  repeats: number,
  seconds: number,
): Promise<LimitResult> {
  const db = await emptyDatabase(bench, "sq_bench_limit");
  try {
    await withClient(db.adminUrl, async (c) => {
      await c.query(`create table limit_insert (
        id bigint generated always as identity primary key,
        payload jsonb not null default '{}',
        created_at timestamptz not null default now())`);
      await c.query("create table limit_update (id integer primary key, n integer not null default 0)");
      await c.query(`insert into limit_update (id) select generate_series(1, ${UPDATE_ROWS})`);
      await c.query("vacuum analyze limit_update");
    });
    const runs: Record<string, number[]> = {};
    for (let r = 0; r < repeats; r++) {
      for (const kind of ["insert", "update"] as const) {
        for (const clients of [1, 8]) {
          const tps = await pgbench(db.adminUrl, { script: SCRIPTS[kind], clients, seconds });
          const key = `${kind}@${clients}`;
          runs[key] = [...(runs[key] ?? []), tps];
          log(`limit ${key} repeat ${r + 1}: ${tps.toFixed(0)} tps`);
        }
      }
    }
    const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
    return { seconds, runs, median: med };
  } finally {
    await db.drop();
  }
}
