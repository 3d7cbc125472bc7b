/**
 * execute_current_job: the logic of Supaqueue's edge function, as a pure module.
 *
 * pg_net POSTs a wakeup naming current jobs (wakeup.ts); targets of queues taking callbacks POST to /callback
 * (callback.ts). The handler checks its MAC and freshness over the raw body,
 * claims the calls through the database (each call is handed out once, while its lease is live), answers pg_net
 * with a short code and no secret (`{"claimed": n}`, or an error such as `claim_rpc_404`: net._http_response keeps
 * that answer for diagnosis), then makes the calls in the background (execute.ts) and reports their outcomes in batches
 * (reporter.ts). A report may bring back the next calls of the queues it freed, which this instance then makes too,
 * for as long as its lifetime allows (lifetime.ts): a busy queue needs no pg_net round trip per call.
 *
 * It reads no environment and uses no Deno globals, so the same module runs in Deno (index.ts wires it), under Node
 * in tests and in local mode.
 */

import { json, readBytes } from "./body.ts";
import { type Completion, currentJobIdOf, parseCall } from "./call.ts";
import { CALLBACK_PATH, handleCallback } from "./callback.ts";
import { DEFAULT_MAX_RESPONSE_CHARS, executeCall } from "./execute.ts";
import { type Lifetime, startBudget } from "./lifetime.ts";
import { failedOutcome, RATE_LIMITED, releasedOutcome } from "./outcome.ts";
import { createBatchReporter } from "./reporter.ts";
import type { ProjectKey } from "./request.ts";
import { type Database, RpcError } from "./rpc.ts";
import { checkWakeup, MAX_WAKEUP_BYTES, WAKEUP_HEADER } from "./wakeup.ts";

interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface HandlerDeps {
  /** The shared secret (SUPAQUEUE_SECRET) the wakeup's MAC is keyed with. Must not be empty. */
  secret: string;
  /** Claims calls and records outcomes (index.ts: PostgREST, rpc.ts; local mode: the database directly). */
  db: Database;
  /** Calls targets. */
  fetch: typeof fetch;
  /** The project's key, sent only to the project's own functions (see request.ts, KeyPolicy). */
  projectKey?: ProjectKey;
  /** Origins of the project's functions gateway: SUPABASE_URL's, and a custom domain's when set. */
  functionsOrigins?: string[];
  /** Milliseconds since the epoch; injectable so tests control durations, freshness and Retry-After dates. */
  now?: () => number;
  /** Keeps the background calls alive after the response (EdgeRuntime.waitUntil). */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** The most characters of a response body read when the database sends no bound (it sends max_response_chars). */
  maxResponseChars?: number;
  lifetime?: Lifetime;
  /** Report batching (see reporter.ts). */
  reports?: { maxBatch?: number; maxBatchChars?: number; maxInFlight?: number };
  logger?: Logger;
}

export interface Handler {
  (request: Request): Promise<Response>;
  /** Resolves once every call accepted so far (and those handed back meanwhile) has been made and reported. */
  idle(): Promise<void>;
  /** Stops taking on handed-back calls. */
  retire(): void;
  /**
   * The runtime is retiring this worker (`beforeunload`; `reason` is its detail: cpu, memory, wall_clock, early_drop,
   * termination): takes no more calls, aborts those still running and reports them at once as released (back to
   * pending, the attempt not counted), and releases those not started yet. Does it once, however often it is called.
   */
  shutdown(reason: string): void;
  /** Calls accepted and not yet reported. */
  readonly inFlight: number;
  /** Calls started by this instance so far. */
  readonly started: number;
}

/** Builds the request handler. */
export function createHandler(deps: HandlerDeps): Handler {
  if (!deps.secret) throw new Error("execute_current_job: the shared secret must not be empty");
  const now = deps.now ?? (() => Date.now());
  const logger = deps.logger ?? console;
  const budget = startBudget(deps.lifetime ?? {}, now, logger);
  const pending = new Set<Promise<void>>();
  const stopping = new AbortController();
  // One controller per call being made: shutdown aborts each (one listener per signal, however many calls run).
  const running = new Set<AbortController>();

  const reporter = createBatchReporter({
    send: (outcomes, within) => deps.db.completeAndClaim(outcomes, within),
    claimWithinMs: budget.claimWithinMs,
    onCalls: (calls) => startAll(calls),
    ...deps.reports,
  });

  async function run(details: unknown): Promise<void> {
    const call = parseCall(details);
    let completion: Completion;
    let where: string;
    if (typeof call === "string") {
      // The database handed out something this version cannot read: fail the attempt, never guess.
      const id = currentJobIdOf(details);
      logger.error(`execute_current_job: unreadable call details (${call})`);
      if (id === null) return;
      completion = failedOutcome(
        id,
        `execute_current_job could not read the call's details: ${call}`,
        0,
        false,
      );
      where = `current job ${id}`;
    } else if (stopping.signal.aborted) {
      completion = releasedOutcome(
        call.currentJobId,
        `the edge worker was shutting down (${stopping.signal.reason}): the call was not started`,
      );
      where = `queue "${call.queue.name}", job ${call.job.id}, attempt ${call.attempt}`;
    } else if (call.queue.timeoutMs > budget.timeLeft()) {
      // Started now, it could outlive this worker and be cut off: another worker makes it instead.
      completion = releasedOutcome(
        call.currentJobId,
        `only ${Math.max(0, Math.round(budget.timeLeft()))} ms of this edge worker's wall clock were left for a call of up to ${call.queue.timeoutMs} ms: the call was not started`,
      );
      where = `queue "${call.queue.name}", job ${call.job.id}, attempt ${call.attempt}`;
    } else {
      const stop = new AbortController();
      running.add(stop);
      try {
        completion = await executeCall(call, {
          fetch: deps.fetch,
          now,
          key: deps.projectKey,
          functionsOrigins: deps.functionsOrigins ?? [],
          maxResponseChars: deps.maxResponseChars ?? DEFAULT_MAX_RESPONSE_CHARS,
          stop: stop.signal,
        });
      } finally {
        running.delete(stop);
      }
      if (completion.error?.startsWith(RATE_LIMITED)) {
        // This request chain has used its budget for calls to the project's functions: fresh invocations go on.
        budget.retire();
      }
      where = `queue "${call.queue.name}", job ${call.job.id}, attempt ${call.attempt}`;
    }
    try {
      const recorded = await reporter.report(completion);
      if (!recorded)
        logger.info(`execute_current_job: ${where}: the call was no longer in flight (late completion)`);
    } catch (error) {
      // Nothing is lost: the call's lease expires and tick() counts the attempt as failed.
      logger.error(
        `execute_current_job: ${where}: reporting the outcome failed: ${(error as Error).message}`,
      );
    }
  }

  function startAll(calls: unknown[]): void {
    for (const details of calls) {
      budget.countStart();
      const task = run(details).catch((error) => {
        logger.error(`execute_current_job: unexpected failure: ${(error as Error)?.message ?? error}`);
      });
      pending.add(task);
      void task.finally(() => pending.delete(task));
      deps.waitUntil?.(task);
    }
  }

  const handler = async (request: Request): Promise<Response> => {
    try {
      if (request.method !== "POST") {
        return json(405, { error: "method_not_allowed", message: "execute_current_job accepts POST only" });
      }
      if (new URL(request.url).pathname.endsWith(CALLBACK_PATH)) {
        // A target reporting a call it took on with a 202: authenticated by the call's token, not by a wakeup's MAC.
        return await handleCallback(request, { secret: deps.secret, db: deps.db, logger });
      }
      const header = request.headers.get(WAKEUP_HEADER);
      if (!header && request.headers.has("supaqueue-secret")) {
        // The wakeup of Supaqueue before hop version 2 carried the whole call and this secret: never honoured now.
        return json(400, {
          error: "wakeup_hop_version_unsupported",
          message: "this function speaks hop version 2; run the installer so the database does too",
        });
      }
      if (stopping.signal.aborted) {
        // Claimed here, the calls would only be released again: left unclaimed, tick() wakes them again in a few
        // seconds, when a fresh worker serves the function.
        return json(503, { error: "worker_shutting_down" });
      }
      const body = await readBytes(request, MAX_WAKEUP_BYTES);
      if (body === null) return json(413, { error: "wakeup_too_large" });
      const check = await checkWakeup({ header, body, secret: deps.secret, now: now() });
      if (!check.ok) {
        logger.warn(`execute_current_job: wakeup refused: ${check.refusal}`);
        return json(
          check.refusal === "wakeup_unauthenticated" || check.refusal === "wakeup_bad_mac" ? 401 : 400,
          {
            error: check.refusal,
          },
        );
      }

      let calls: unknown[];
      try {
        calls = await deps.db.claim(check.ids, check.probe);
      } catch (error) {
        const code = error instanceof RpcError ? error.code("claim") : "claim_failed";
        logger.error(
          `execute_current_job: claiming ${check.ids.length} calls failed: ${(error as Error).message}`,
        );
        return json(502, { error: code });
      }
      startAll(calls);
      return json(200, {
        claimed: calls.length,
        of: check.ids.length,
        ...(check.probe ? { probe: "reached" } : {}),
      });
    } catch (error) {
      logger.error(`execute_current_job: unexpected failure: ${(error as Error)?.message ?? error}`);
      return json(500, { error: "internal_error" });
    }
  };

  return Object.defineProperties(handler, {
    idle: {
      value: async () => {
        while (pending.size > 0) await Promise.allSettled([...pending]);
      },
    },
    retire: { value: () => budget.retire() },
    shutdown: {
      value: (reason: string) => {
        if (stopping.signal.aborted) return;
        budget.retire();
        logger.warn(
          `execute_current_job: the edge worker is shutting down (${reason}); ${pending.size} call(s) in flight are released`,
        );
        stopping.abort(reason);
        for (const stop of running) stop.abort(reason);
      },
    },
    inFlight: { get: () => pending.size },
    started: { get: () => budget.started },
  }) as Handler;
}
