import { type ChildProcess, fork } from "node:child_process";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";

/**
 * The target of the calls the benchmark makes (through Supaqueue, and directly as the baseline): a Node HTTP server
 * that answers `POST /t/<delay ms>/<body bytes>` with 200 after the delay, with a body of that many bytes. It runs
 * in a process of its own, as a real target runs on a machine of its own: in the benchmark's process its event loop
 * would take turns with the stand-ins (PostgREST, the gateway, pg_net) and with the baseline's client, and a burst of
 * 1,000 answers would hold them up. It counts what it served from its own side (time between a request's arrival
 * and the end of its answer, calls in flight), so a run can tell how busy the queue's workers really kept it: the
 * gap between two calls of a worker is where Supaqueue's own time goes.
 */

interface TargetStats {
  /** Requests answered. */
  answered: number;
  /** Sum over answered requests of the time from arrival to the end of the answer, in ms. */
  busyMs: number;
  /** Most requests in flight at once. */
  maxInFlight: number;
  /** Requests in flight now. */
  inFlight: number;
  /** When the first request arrived (Unix ms), or null. */
  firstArrivalAt: number | null;
  /** The longest time with no request in flight, between the first arrival and the last answer, in ms. */
  longestPauseMs: number;
}

export interface Target {
  /** The origin, e.g. http://127.0.0.1:PORT. */
  url: string;
  /** The path that answers after `delayMs` with a body of `bodyBytes` (default: 11 bytes of JSON). */
  path(delayMs: number, bodyBytes?: number): string;
  stats(): Promise<TargetStats>;
  /** Starts counting afresh (between runs). */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

/** What the benchmark asks the target's process, and what it answers. */
type Request = { id: number; op: "stats" | "reset" };
type Answer = { id: number; stats: TargetStats };
type Started = { port: number };

const SMALL_BODY = Buffer.from('{"ok":true}');

/** The server itself, in the target's process. */
async function serve(): Promise<number> {
  const stats: TargetStats = {
    answered: 0,
    busyMs: 0,
    maxInFlight: 0,
    inFlight: 0,
    firstArrivalAt: null,
    longestPauseMs: 0,
  };
  // Since when nothing has been in flight (null while something is).
  let idleSince: number | null = null;
  const bodies = new Map<number, Buffer>();
  const bodyOf = (bytes: number) => {
    let body = bodies.get(bytes);
    if (!body) {
      body = Buffer.alloc(bytes, "x");
      bodies.set(bytes, body);
    }
    return body;
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const arrived = performance.now();
    stats.firstArrivalAt ??= Date.now();
    if (idleSince !== null) stats.longestPauseMs = Math.max(stats.longestPauseMs, arrived - idleSince);
    idleSince = null;
    stats.inFlight++;
    stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
    res.on("close", () => {
      stats.inFlight--;
      stats.answered++;
      stats.busyMs += performance.now() - arrived;
      if (stats.inFlight === 0) idleSince = performance.now();
    });
    const match = /^\/t\/(\d+)(?:\/(\d+))?/.exec(req.url ?? "");
    // The request body is read whole before answering, as a real endpoint would.
    req.resume();
    req.on("end", () => {
      const answer = () => {
        if (!match) {
          res.writeHead(404);
          return res.end();
        }
        const body = match[2] === undefined ? SMALL_BODY : bodyOf(Number(match[2]));
        res.writeHead(200, {
          "Content-Type": match[2] === undefined ? "application/json" : "text/plain",
          "Content-Length": body.length,
        });
        res.end(body);
      };
      const delay = Number(match?.[1] ?? 0);
      if (delay > 0) setTimeout(answer, delay);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  process.on("message", (message: Request) => {
    if (message.op === "reset") {
      stats.answered = 0;
      stats.busyMs = 0;
      stats.maxInFlight = stats.inFlight;
      stats.firstArrivalAt = null;
      stats.longestPauseMs = 0;
      idleSince = null;
    }
    process.send?.({ id: message.id, stats } satisfies Answer);
  });
  // 1,000 workers open up to 1,000 connections at once: a short accept queue would drop some and cost them a
  // one-second SYN retry.
  await new Promise<void>((resolve) => server.listen({ port: 0, host: "127.0.0.1", backlog: 4096 }, resolve));
  return (server.address() as AddressInfo).port;
}

/** Starts the target in a process of its own (this module, run by Node with tsx) and waits until it listens. */
export async function startTarget(): Promise<Target> {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ["--serve"], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("message", (m: Started) => resolve(m.port));
    child.once("exit", (code) => reject(new Error(`the target's process exited with code ${code}`)));
  });
  let next = 0;
  const waiting = new Map<number, (stats: TargetStats) => void>();
  child.on("message", (m: Answer) => {
    waiting.get(m.id)?.(m.stats);
    waiting.delete(m.id);
  });
  const ask = (op: Request["op"]) =>
    new Promise<TargetStats>((resolve) => {
      const id = ++next;
      waiting.set(id, resolve);
      child.send({ id, op } satisfies Request);
    });
  return {
    url: `http://127.0.0.1:${port}`,
    path: (delayMs, bodyBytes) => `/t/${delayMs}${bodyBytes === undefined ? "" : `/${bodyBytes}`}`,
    stats: () => ask("stats"),
    reset: async () => void (await ask("reset")),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill();
      await exited;
    },
  };
}

/** One call to the target as the baseline client makes it: a POST of a small JSON body, the answer read whole. */
export async function callDirect(url: string, body: string): Promise<void> {
  const res = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body });
  await res.text();
  if (!res.ok) throw new Error(`direct call to ${url}: HTTP ${res.status}`);
}

/**
 * The baseline of a queue with `concurrency` workers: that many loops in this process calling the target directly,
 * `calls` calls in all. Returns the seconds it took.
 */
export async function callDirectly(url: string, concurrency: number, calls: number): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < calls) {
        const n = next++;
        await callDirect(url, JSON.stringify({ n }));
      }
    }),
  );
  return (performance.now() - started) / 1000;
}

if (process.argv.includes("--serve") && process.send) {
  void serve().then((port) => process.send?.({ port } satisfies Started));
}
