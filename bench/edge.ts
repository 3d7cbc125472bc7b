import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { projectRoot } from "../src/paths.ts";
import { serveFunction } from "../test/support/deno.ts";
import { log, median, quantile } from "./support.ts";

/**
 * Section 5, the edge function's own cost. The real execute_current_job (functions/execute_current_job/index.ts)
 * runs in Deno, served exactly as the tests serve it (test/support/deno.ts: EdgeRuntime.waitUntil preloaded).
 * One local Node server is both the target (answers 200 at once) and SUPABASE_URL (answers the batched completion
 * RPC with every id it was given, at once, without a database), so only the function's own work is measured.
 *
 * One call, as pg_net makes it: POST the current job → 202 → the function calls the target in the background →
 * it reports the outcome. End to end is from the POST to the report's arrival. The same Node client calls the
 * target directly as the baseline; added latency = end to end − direct (median from medians, p99 from p99s).
 * Calls are made one at a time. Peak memory is the Deno process's VmHWM (peak resident set) after all calls.
 */

export interface EdgeRun {
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
const SECRET = "bench-secret";
const SERVICE_KEY = "bench-service-role-key";

interface Local {
  url: string;
  /** Resolves when the report for `id` arrives. */
  reported(id: number): Promise<number>;
  stop(): Promise<void>;
}

async function startLocal(): Promise<Local> {
  const waiters = new Map<number, (at: number) => void>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      if (req.url?.startsWith("/rpc-target")) {
        res.writeHead(200, { "Content-Type": "application/json" });
        return res.end('{"ok":true}');
      }
      if (req.url?.startsWith("/rest/v1/rpc/supaqueue_complete_current_jobs")) {
        const at = performance.now();
        const { outcomes } = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
          outcomes: Array<{ current_job_id: number | string }>;
        };
        const ids = outcomes.map((o) => Number(o.current_job_id));
        res.writeHead(200, { "Content-Type": "application/json" });
        res.end(JSON.stringify(ids));
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

/** The Deno process serving the function: the child of this process whose command is deno. */
function denoPid(): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === process.pid && stat.includes("(deno)")) return Number(entry);
    } catch {
      // The process ended while we looked.
    }
  }
  return undefined;
}

function statusMb(pid: number, field: "VmHWM" | "VmRSS"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? Number.NaN);
  return kb / 1024;
}
const peakRssMb = (pid: number) => statusMb(pid, "VmHWM");
const rssMb = (pid: number) => statusMb(pid, "VmRSS");

function callBody(id: number, targetUrl: string) {
  return JSON.stringify({
    current_job_id: id,
    attempt: 1,
    lease_until: new Date(Date.now() + 60_000).toISOString(),
    job: { id: `00000000-0000-4000-8000-${String(id).padStart(12, "0")}`, payload: { n: id }, headers: {} },
    queue: {
      name: "bench",
      url: `${targetUrl}/rpc-target`,
      is_function: false,
      method: "POST",
      headers: {},
      timeout_ms: 10_000,
      success_codes: null,
      retry_codes: null,
    },
  });
}

async function once(calls: number, v8Flags?: string): Promise<EdgeRun> {
  const local = await startLocal();
  const served = await serveFunction({
    env: {
      SUPAQUEUE_SECRET: SECRET,
      SUPABASE_URL: local.url,
      SUPABASE_SERVICE_ROLE_KEY: SERVICE_KEY,
      ...(v8Flags ? { DENO_V8_FLAGS: v8Flags } : {}),
    },
  });
  try {
    const pid = denoPid();
    if (!pid) throw new Error("edge: cannot find the deno process");
    const endpoint = `${served.functionsUrl}/execute_current_job`;
    const idleRssMb = rssMb(pid);
    const warmup = Math.min(200, calls);
    const endToEnd: number[] = [];
    const accept: number[] = [];
    const direct: number[] = [];
    // Each call through the function is followed by one direct call, so both meet the same machine load.
    for (let i = 1; i <= warmup + calls; i++) {
      const reported = local.reported(i);
      let started = performance.now();
      const res = await fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json", "supaqueue-secret": SECRET },
        body: callBody(i, local.url),
      });
      await res.text();
      const accepted = performance.now();
      if (res.status !== 202)
        throw new Error(`edge: the function answered ${res.status}:\n${served.output()}`);
      const at = await reported;
      if (i > warmup) {
        endToEnd.push(at - started);
        accept.push(accepted - started);
      }
      started = performance.now();
      const target = await fetch(`${local.url}/rpc-target`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ n: i }),
      });
      await target.text();
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
    await local.stop();
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
