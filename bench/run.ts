import { writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../src/paths.ts";
import { measureBulk } from "./bulk.ts";
import { measureChain, measureChainMemory } from "./chain.ts";
import { measureClaim } from "./claim.ts";
import { measureClient } from "./client.ts";
import { measureCycle, REPORT_MODES } from "./cycle.ts";
import { measureDiagnosis } from "./diagnose.ts";
import { measureEdge } from "./edge.ts";
import { describeEnvironment } from "./environment.ts";
import { measureLimit } from "./limit.ts";
import { measurePeers } from "./peers.ts";
import { type BenchResults, renderResults, targets } from "./report.ts";
import { measureSteps } from "./steps.ts";
import { log, openServer } from "./support.ts";

/**
 * `npm run bench`: measures Supaqueue against the physical limit and its peers on the Postgres at DATABASE_URL
 * (default 127.0.0.1:5432, or an embedded one) and writes bench/RESULTS.md. Every measurement makes its own
 * databases and drops them. Environment:
 *   BENCH_SECTIONS  comma-separated subset of limit,cycle,bulk,client,claim,edge,peers,diagnosis,chain,steps
 *                   (default: all)
 *   BENCH_REPEATS   repeats per figure (default 3); the median is reported
 *   BENCH_OUT       where to write the results (default bench/RESULTS.md)
 *   BENCH_CYCLE_TIMEOUT_S  how long one cycle run may take before it stops and says where it stuck (default 300)
 *   BENCH_CHAIN_TIMEOUT_S  the same for one run of the whole chain, or of its direct baseline (default 120)
 *   BENCH_CHAIN_ONLY  comma-separated shapes and delays of the chain to run, e.g. w100@50,w1@50 (default: all)
 * The job counts are the issue's, except the cycle (5,000 jobs per run), the peers (5,000 jobs per run), the claim
 * iterations and the chain (a few seconds per run), scaled so that the whole run stays under 15 minutes on a 2-core
 * machine. The chain steps (issue 14) report 5,000 calls per queue per repeat: about a minute in all.
 */

const ALL = [
  "limit",
  "cycle",
  "bulk",
  "client",
  "claim",
  "edge",
  "peers",
  "diagnosis",
  "chain",
  "steps",
] as const;
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
  clientJobs: 10_000,
  clientRoundTrips: 300,
  claimIterations: 300,
  edgeCalls: 10_000,
  peerJobs: 5_000,
  /**
   * Jobs per chain run, keyed "<shape>@<target delay ms>" (bench/chain.ts): a few seconds of calls each at this
   * machine's rates, and fewer than 5,000, the calls one function instance makes before it hands the next ones back
   * to pg_net (lifetime.ts), so that a report sent without continuation means another limit was reached.
   */
  chainJobs: {
    "w1@0": 1_000,
    "w1@50": 100,
    "w16@0": 3_000,
    "w16@50": 1_000,
    "w100@0": 4_800,
    "w100@50": 4_800,
    "q100x10@0": 4_800,
    "q100x10@50": 4_800,
  } as Record<string, number>,
  chainMemoryJobs: 1_000,
  /** Calls reported per queue per repeat in the chain steps (bench/steps.ts): a step each on the chain queues. */
  stepJobs: 5_000,
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
    if (sections.has("client")) {
      results.client = await measureClient(bench, repeats, SIZES.clientJobs, SIZES.clientRoundTrips);
      done("client");
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
    if (sections.has("chain")) {
      const only = process.env.BENCH_CHAIN_ONLY?.split(",").map((s) => s.trim());
      results.chain = await measureChain(bench, repeats, SIZES.chainJobs, only);
      results.chain.memory = await measureChainMemory(bench, repeats, SIZES.chainMemoryJobs);
      done("chain");
    }
    if (sections.has("steps")) {
      results.steps = await measureSteps(bench, repeats, SIZES.stepJobs);
      done("steps");
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
