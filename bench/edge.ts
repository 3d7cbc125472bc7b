import { existsSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { wakeupHeader } from "../functions/execute_current_job/wakeup.ts";
import { projectRoot } from "../src/paths.ts";
import { serveFunction } from "../test/support/deno.ts";
import { childPid, peakRssMb, rssMb } from "./proc.ts";
import { BENCH_SECRET, log, median, quantile } from "./support.ts";
import { callDirect, startTarget } from "./target.ts";

/**
 * Section 5, the edge function's own cost. The real execute_current_job (functions/execute_current_job/index.ts)
 * runs in Deno, served exactly as the tests serve it (test/support/deno.ts: EdgeRuntime.waitUntil preloaded).
 * A local Node server plays SUPABASE_URL without a database: it answers the claim RPC with one call's details and
 * the report RPC with every id it was given and no next call ({finished, calls: []}), at once. The target is
 * another local server (bench/target.ts) that answers 200 at once. So only the function's own work is measured.
 *
 * One call, as the database starts it: a wakeup naming one current job, signed as supaqueue._wake signs it
 * (wakeup.ts wakeupHeader, with the secret the function was given; the signing is the database's work and happens
 * before the clock starts) → the function checks it, claims the call and answers 200 → it calls the target → it
 * reports the outcome. End to end is from the POST of the wakeup to the report's arrival. The same Node client calls
 * the target directly as the baseline; added latency = end to end − direct (median from medians, p99 from p99s).
 * Calls are made one at a time. Peak memory is the Deno process's VmHWM (peak resident set) after all calls.
 */

interface EdgeRun {
  endToEndMedianMs: number;
  endToEndP99Ms: number;
  acceptMedianMs: number;
  directMedianMs: number;
  directP99Ms: number;
  addedMedianMs: number;
  addedP99Ms: number;
  peakRssMb: number;
  /** Resident memory of the started function before the first call. */
  idleRssMb: number;
}

export interface EdgeResult {
  available: boolean;
  reason?: string;
  calls: number;
  runs: EdgeRun[];
  median?: EdgeRun;
  /** One more run with V8's heap bounded (CAPPED_V8_FLAGS), to tell live memory from garbage V8 keeps. */
  capped?: EdgeRun;
  cappedFlags: string;
}

/**
 * V8 grows its young generation (up to 3 × 16 MB semi-spaces) and old space lazily; with both bounded, a process
 * that keeps only what it needs stays small, and one that leaks runs out of heap instead.
 */
export const CAPPED_V8_FLAGS = "--max-old-space-size=64,--max-semi-space-size=1";

const HANDLER = join(projectRoot(), "functions", "execute_current_job", "handler.ts");
const SERVICE_KEY = "bench-service-role-key";
/** The freshness window of the bench's wakeups: long enough for any call, as the database's covers pg_net's wait. */
const WAKEUP_WINDOW_MS = 60_000;

interface Rest {
  url: string;
  /** Resolves when the report for `id` arrives. */
  reported(id: number): Promise<number>;
  stop(): Promise<void>;
}

/** SUPABASE_URL without a database: the claim hands out one call to `targetUrl`, the report finishes every id. */
async function startRest(targetUrl: string): Promise<Rest> {
  const waiters = new Map<number, (at: number) => void>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const at = performance.now();
      const args = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as {
        ids?: number[];
        outcomes?: Array<{ current_job_id: number | string }>;
      };
      if (req.url?.startsWith("/rest/v1/rpc/supaqueue_claim_current_jobs")) {
        res.writeHead(200, { "Content-Type": "application/json" });
        return res.end(JSON.stringify((args.ids ?? []).map((id) => callDetails(id, targetUrl))));
      }
      if (req.url?.startsWith("/rest/v1/rpc/supaqueue_complete_and_claim")) {
        const ids = (args.outcomes ?? []).map((o) => Number(o.current_job_id));
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify({ finished: ids, calls: [] }));
        for (const id of ids) {
          waiters.get(id)?.(at);
          waiters.delete(id);
        }
        return;
      }
      res.writeHead(404);
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    reported: (id) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`edge: no report for call ${id} within 10 s`)),
          10_000,
        );
        waiters.set(id, (at) => {
          clearTimeout(timer);
          resolve(at);
        });
      }),
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** One call's details as supaqueue.claim_current_jobs hands them out (supaqueue._call_details). */
function callDetails(id: number, url: string) {
  return {
    current_job_id: id,
    attempt: 1,
    lease_until: new Date(Date.now() + 60_000).toISOString(),
    max_response_chars: 2000,
    job: { id: `00000000-0000-4000-8000-${String(id).padStart(12, "0")}`, payload: { n: id }, headers: {} },
    queue: {
      name: "bench",
      url,
      is_function: false,
      method: "POST",
      headers: {},
      timeout_ms: 10_000,
      success_codes: null,
      retry_codes: null,
      signed: false,
      signing_keys: [],
    },
    problem: null,
  };
}

async function once(calls: number, v8Flags?: string): Promise<EdgeRun> {
  const target = await startTarget();
  const targetUrl = `${target.url}${target.path(0)}`;
  const rest = await startRest(targetUrl);
  const served = await serveFunction({
    env: {
      SUPAQUEUE_SECRET: BENCH_SECRET,
      SUPABASE_URL: rest.url,
      SUPABASE_SERVICE_ROLE_KEY: SERVICE_KEY,
      ...(v8Flags ? { DENO_V8_FLAGS: v8Flags } : {}),
    },
  });
  try {
    const pid = childPid("deno");
    if (!pid) throw new Error("edge: cannot find the deno process");
    const endpoint = `${served.functionsUrl}/execute_current_job`;
    const idleRssMb = rssMb(pid);
    const warmup = Math.min(200, calls);
    const endToEnd: number[] = [];
    const accept: number[] = [];
    const direct: number[] = [];
    // Each call through the function is followed by one direct call, so both meet the same machine load.
    for (let i = 1; i <= warmup + calls; i++) {
      const body = JSON.stringify({ v: 2, ids: [i] });
      const header = await wakeupHeader({ secret: BENCH_SECRET, body, t: Date.now(), w: WAKEUP_WINDOW_MS });
      const reported = rest.reported(i);
      let started = performance.now();
      const res = await fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Supaqueue-Wakeup": header },
        body,
      });
      const answer = await res.text();
      const accepted = performance.now();
      if (res.status !== 200 || answer !== '{"claimed":1,"of":1}')
        throw new Error(`edge: the function answered ${res.status} ${answer}:\n${served.output()}`);
      const at = await reported;
      if (i > warmup) {
        endToEnd.push(at - started);
        accept.push(accepted - started);
      }
      started = performance.now();
      await callDirect(targetUrl, JSON.stringify({ n: i }));
      if (i > warmup) direct.push(performance.now() - started);
    }
    const run: EdgeRun = {
      endToEndMedianMs: median(endToEnd),
      endToEndP99Ms: quantile(endToEnd, 0.99),
      acceptMedianMs: median(accept),
      directMedianMs: median(direct),
      directP99Ms: quantile(direct, 0.99),
      addedMedianMs: median(endToEnd) - median(direct),
      addedP99Ms: quantile(endToEnd, 0.99) - quantile(direct, 0.99),
      peakRssMb: peakRssMb(pid),
      idleRssMb,
    };
    return run;
  } finally {
    await served.stop();
    await rest.stop();
    await target.stop();
  }
}

export async function measureEdge(repeats: number, calls: number): Promise<EdgeResult> {
  if (!existsSync(HANDLER)) {
    return {
      available: false,
      reason: "functions/execute_current_job/handler.ts does not exist yet",
      calls,
      runs: [],
      cappedFlags: CAPPED_V8_FLAGS,
    };
  }
  const runs: EdgeRun[] = [];
  for (let r = 0; r < repeats; r++) {
    const run = await once(calls);
    runs.push(run);
    log(
      `edge repeat ${r + 1}: added ${run.addedMedianMs.toFixed(2)} ms median, ${run.addedP99Ms.toFixed(2)} ms p99, ` +
        `peak ${run.peakRssMb.toFixed(0)} MB`,
    );
  }
  const capped = await once(calls, CAPPED_V8_FLAGS);
  log(
    `edge with V8 heap bounded: added ${capped.addedMedianMs.toFixed(2)} ms median, ` +
      `${capped.addedP99Ms.toFixed(2)} ms p99, peak ${capped.peakRssMb.toFixed(0)} MB`,
  );
  const pick = (f: (r: EdgeRun) => number) => median(runs.map(f));
  return {
    available: true,
    calls,
    runs,
    capped,
    cappedFlags: CAPPED_V8_FLAGS,
    median: {
      endToEndMedianMs: pick((r) => r.endToEndMedianMs),
      endToEndP99Ms: pick((r) => r.endToEndP99Ms),
      acceptMedianMs: pick((r) => r.acceptMedianMs),
      directMedianMs: pick((r) => r.directMedianMs),
      directP99Ms: pick((r) => r.directP99Ms),
      addedMedianMs: pick((r) => r.addedMedianMs),
      addedP99Ms: pick((r) => r.addedP99Ms),
      peakRssMb: pick((r) => r.peakRssMb),
      idleRssMb: pick((r) => r.idleRssMb),
    },
  };
}
