import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Logger, makeWorkerUtils, run as runGraphileWorker } from "graphile-worker";
import pg from "pg";
import PgBoss from "pg-boss";
import { projectRoot } from "../src/paths.ts";
import { type BenchServer, emptyDatabase, log, median, sleep } from "./support.ts";

/**
 * Section 6, reference rows from peer queues on the same server: N no-op jobs, inserted in bulk first, then
 * processed one job per fetch and one completion per job, by 8 concurrent workers (the 8 connections of the
 * Supaqueue cycle). The clock runs from the first fetch to the last completion. Each peer gets its own database
 * and connects as the superuser (neither needs Supabase's roles).
 *
 * - graphile-worker: its own runner, concurrency 8 (each worker takes one job at a time; completion batching off,
 *   its default).
 * - pg-boss: its work() loop waits at least 0.5 s (its minimum polling interval) after every fetch unless a job
 *   was sent by the same process, so one-at-a-time work() would measure the sleep. The bench drives the same SQL
 *   through pg-boss's own fetch(name) (batch size 1) and complete(name, id) in 8 loops instead.
 */

const PEER_CONCURRENCY = 8;

export interface PeersResult {
  jobs: number;
  versions: Record<string, string>;
  /** Jobs per second of every repeat, keyed "graphile-worker", "pg-boss". */
  runs: Record<string, number[]>;
  median: Record<string, number>;
}

export function peerVersion(pkg: string): string {
  const file = join(projectRoot(), "node_modules", pkg, "package.json");
  return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
}

// graphile-worker logs every job; the bench keeps its own output.
const silent = new Logger(() => () => {});

async function graphileWorkerOnce(url: string, jobs: number): Promise<number> {
  const utils = await makeWorkerUtils({ connectionString: url, logger: silent });
  try {
    await utils.migrate();
    await utils.addJobs(Array.from({ length: jobs }, (_, n) => ({ identifier: "noop", payload: { n } })));
  } finally {
    await utils.release();
  }
  let done = 0;
  const started = performance.now();
  // The bench owns the runner's pool, so it is ended (not left idle) before the database is dropped, and an idle
  // client's error cannot crash the run.
  const pgPool = new pg.Pool({ connectionString: url, max: PEER_CONCURRENCY + 2 });
  pgPool.on("error", () => {});
  const runner = await runGraphileWorker({
    pgPool,
    concurrency: PEER_CONCURRENCY,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: silent,
    taskList: {
      noop: async () => {
        done++;
      },
    },
  });
  try {
    while (done < jobs) await sleep(5);
    // A job is finished once its row is gone: wait for the last completions to commit.
    const deadline = Date.now() + 30_000;
    const utilsAfter = await makeWorkerUtils({ connectionString: url, logger: silent });
    try {
      for (;;) {
        const left = await utilsAfter.withPgClient((c) =>
          c.query<{ n: number }>("select count(*)::int as n from graphile_worker.jobs"),
        );
        if (left.rows[0]?.n === 0) break;
        if (Date.now() > deadline) throw new Error("graphile-worker: jobs left after 30 s");
        await sleep(2);
      }
    } finally {
      await utilsAfter.release();
    }
    return jobs / ((performance.now() - started) / 1000);
  } finally {
    await runner.stop();
    await pgPool.end();
  }
}

async function pgBossOnce(url: string, jobs: number): Promise<number> {
  const boss = new PgBoss({
    connectionString: url,
    max: PEER_CONCURRENCY + 2,
    supervise: false,
    schedule: false,
  });
  boss.on("error", (error) => log(`pg-boss error: ${error}`));
  await boss.start();
  try {
    await boss.createQueue("noop");
    for (let n = 0; n < jobs; n += 1000) {
      await boss.insert(
        Array.from({ length: Math.min(1000, jobs - n) }, (_, k) => ({ name: "noop", data: { n: n + k } })),
      );
    }
    let done = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: PEER_CONCURRENCY }, async () => {
        for (;;) {
          const [job] = await boss.fetch<{ n: number }>("noop", { batchSize: 1 });
          if (!job) {
            if (done >= jobs) return;
            await sleep(1);
            continue;
          }
          await boss.complete("noop", job.id);
          done++;
        }
      }),
    );
    return jobs / ((performance.now() - started) / 1000);
  } finally {
    await boss.stop({ graceful: false, wait: true, timeout: 5000 });
  }
}

export async function measurePeers(bench: BenchServer, repeats: number, jobs: number): Promise<PeersResult> {
  const runs: Record<string, number[]> = {};
  const peers: Record<string, (url: string, jobs: number) => Promise<number>> = {
    "graphile-worker": graphileWorkerOnce,
    "pg-boss": pgBossOnce,
  };
  for (let r = 0; r < repeats; r++) {
    for (const [name, once] of Object.entries(peers)) {
      const db = await emptyDatabase(bench, "sq_bench_peer");
      try {
        const rate = await once(db.adminUrl, jobs);
        runs[name] = [...(runs[name] ?? []), rate];
        log(`peer ${name} repeat ${r + 1}: ${rate.toFixed(0)} jobs/s`);
      } finally {
        await db.drop();
      }
    }
  }
  const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]));
  return {
    jobs,
    versions: { "graphile-worker": peerVersion("graphile-worker"), "pg-boss": peerVersion("pg-boss") },
    runs,
    median: med,
  };
}
