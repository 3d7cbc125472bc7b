import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../src/paths.ts";
import { measureBulk } from "./bulk.ts";
import { measureClaim } from "./claim.ts";
import { measureCycle, REPORT_MODES } from "./cycle.ts";
import { measureDiagnosis } from "./diagnose.ts";
import { measureEdge } from "./edge.ts";
import { describeEnvironment } from "./environment.ts";
import { measureLimit } from "./limit.ts";
import { measurePeers } from "./peers.ts";
import { type BenchResults, renderResults, targets } from "./report.ts";
import { log, openServer } from "./support.ts";

/**
 * `npm run bench`: measures Supaqueue against the physical limit and its peers on the Postgres at DATABASE_URL
 * (default 127.0.0.1:5432, or an embedded one) and writes bench/RESULTS.md. Every measurement makes its own
 * databases and drops them. Environment:
 *   BENCH_SECTIONS  comma-separated subset of limit,cycle,bulk,claim,edge,peers,diagnosis (default: all)
 *   BENCH_REPEATS   repeats per figure (default 3); the median is reported
 *   BENCH_OUT       where to write the results (default bench/RESULTS.md)
 *   BENCH_CYCLE_TIMEOUT_S  how long one cycle run may take before it stops and says where it stuck (default 300)
 * The job counts are the issue's, except the cycle (5,000 jobs per run), the peers (5,000 jobs per run) and the
 * claim iterations, scaled so that the whole run stays under 15 minutes on a 2-core machine (about 6 on a quiet one).
 */

const ALL = ["limit", "cycle", "bulk", "claim", "edge", "peers", "diagnosis"] as const;
type Section = (typeof ALL)[number];

const sections = new Set<Section>(
  (process.env.BENCH_SECTIONS?.split(",").map((s) => s.trim()) as Section[] | undefined) ?? [...ALL],
);
const repeats = Number(process.env.BENCH_REPEATS ?? 3);
const out = process.env.BENCH_OUT ?? join(projectRoot(), "bench", "RESULTS.md");

const SIZES = {
  limitSeconds: 6,
  cycleJobs: 5_000,
  bulkJobs: 100_000,
  claimIterations: 300,
  edgeCalls: 10_000,
  peerJobs: 5_000,
};

async function main(): Promise<void> {
  const started = performance.now();
  const bench = await openServer();
  const results: BenchResults = {
    env: await describeEnvironment(bench),
    repeats,
    minutes: 0,
    loadAverageAtEnd: [],
    loadBySection: {},
  };
  const done = (name: string) => {
    results.loadBySection[name] = loadavg()[0] ?? Number.NaN;
    results.minutes = (performance.now() - started) / 60_000;
    results.loadAverageAtEnd = loadavg();
    // Written after every section, so a failure later still leaves what was measured.
    writeFileSync(out, renderResults(results));
    log(`${name} done (${results.minutes.toFixed(1)} min so far)`);
  };
  try {
    if (sections.has("limit")) {
      results.limit = await measureLimit(bench, repeats, SIZES.limitSeconds);
      done("limit");
    }
    if (sections.has("cycle")) {
      results.cycle = await measureCycle(bench, repeats, SIZES.cycleJobs, REPORT_MODES);
      done("cycle");
    }
    if (sections.has("bulk")) {
      results.bulk = await measureBulk(bench, repeats, SIZES.bulkJobs);
      done("bulk");
    }
    if (sections.has("claim")) {
      results.claim = await measureClaim(bench, repeats, SIZES.claimIterations);
      done("claim");
    }
    if (sections.has("edge")) {
      results.edge = await measureEdge(repeats, SIZES.edgeCalls);
      done("edge");
    }
    if (sections.has("peers")) {
      results.peers = await measurePeers(bench, repeats, SIZES.peerJobs);
      done("peers");
    }
    if (sections.has("diagnosis")) {
      results.diagnosis = await measureDiagnosis(bench, repeats, results.limit?.median["update@8"]);
      done("diagnosis");
    }
  } finally {
    await bench.close();
  }
  for (const t of targets(results)) log(`${t.met ? "met   " : "MISSED"} ${t.target}: ${t.value}`);
  log(`wrote ${out}`);
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
