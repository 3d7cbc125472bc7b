/**
 * execute_current_job's calls to the database, as plain POSTs to PostgREST (`/rest/v1/rpc/<name>`, what
 * supabase-js `rpc()` sends, without the client, whose per-call objects were a third of the function's peak memory):
 *
 *   - public.supaqueue_claim_current_jobs(ids): a wakeup's calls, each handed out once;
 *   - public.supaqueue_complete_and_claim(outcomes, claim_within_ms): a report, and the busy queues' next calls;
 *   - public.supaqueue_complete_callback(token, status_code, body, error): a target's callback (callback.ts).
 *
 * Both authenticate with the project's key (ProjectKey: a JWT as apikey and bearer token, an sb_secret_ key as
 * apikey only) and are bounded in time: one that has not answered by then fails, and the leases recover its calls.
 */

import { type BoundedText, describeError, readBounded } from "./body.ts";
import type { Completion } from "./call.ts";
import { keyHeaders, type ProjectKey } from "./request.ts";

export const CLAIM_RPC = "supaqueue_claim_current_jobs";
export const REPORT_RPC = "supaqueue_complete_and_claim";
const CALLBACK_RPC = "supaqueue_complete_callback";

/** A call that did not get a result: `code` is what the function answers pg_net with (e.g. claim_rpc_404). */
export class RpcError extends Error {
  constructor(
    readonly rpc: string,
    /** The HTTP status PostgREST answered, or null when no answer came. */
    readonly status: number | null,
    message: string,
  ) {
    super(message);
    this.name = "RpcError";
  }

  /** A short code naming what failed, never a secret: claim_rpc_404, report_rpc_timeout, ... */
  code(prefix: string): string {
    if (this.status !== null) return `${prefix}_rpc_${this.status}`;
    return `${prefix}_rpc_${/within \d+ ms/.test(this.message) ? "timeout" : "unreachable"}`;
  }
}

/** A report's answer: the ids of the calls it finished, and the next calls it claimed (raw details). */
export interface ReportAnswer {
  finished: ReadonlyArray<number | string>;
  calls: unknown[];
}

/** What a target reports with its callback: how the work ended, its result as text, and an error. */
export interface CallbackReport {
  token: string;
  status: number;
  body: string | null;
  error: string | null;
}

/** What the database made of a callback (supaqueue.complete_callback): unknown when no call waits for the token. */
export type CallbackResult = "recorded" | "extended" | "unknown";

const CALLBACK_RESULTS: readonly string[] = ["recorded", "extended", "unknown"];

/** Whether the database's answer to a callback is one of the three it gives. */
export function isCallbackResult(value: unknown): value is CallbackResult {
  return typeof value === "string" && CALLBACK_RESULTS.includes(value);
}

/** What the handler needs from the database. */
export interface Database {
  /** Claims calls; with `probe`, also marks that probe reached (the whole loop works). */
  claim(ids: number[], probe?: string | null): Promise<unknown[]>;
  /** Records outcomes; with claimWithinMs > 0 also claims the next calls whose timeout fits in it. */
  completeAndClaim(outcomes: Completion[], claimWithinMs: number): Promise<ReportAnswer>;
  /** Records a target's callback for a call it took on with a 202. */
  completeCallback(report: CallbackReport): Promise<CallbackResult>;
}

interface PostgrestOptions {
  fetch: typeof fetch;
  /** The project's URL (SUPABASE_URL). */
  supabaseUrl: string;
  key: ProjectKey;
  /** A call that has not answered by then fails. Default 30 s. */
  timeoutMs?: number;
}

/** The database, reached through the project's PostgREST. */
export function postgrestDatabase(options: PostgrestOptions): Database {
  const base = `${options.supabaseUrl.replace(/\/+$/, "")}/rest/v1/rpc/`;
  const headers = { "Content-Type": "application/json", ...keyHeaders(options.key) };
  const timeoutMs = options.timeoutMs ?? 30_000;

  async function rpc(name: string, args: unknown): Promise<unknown> {
    // Not AbortSignal.timeout: its timer would keep every call's signal alive for the whole timeout.
    const controller = new AbortController();
    const timer = setTimeout(
      () => controller.abort(new Error(`no answer within ${timeoutMs} ms`)),
      timeoutMs,
    );
    let response: Response;
    let read: BoundedText;
    try {
      response = await options.fetch(`${base}${name}`, {
        method: "POST",
        headers,
        body: JSON.stringify(args),
        signal: controller.signal,
      });
      read = await readBounded(response, Number.POSITIVE_INFINITY);
    } catch (error) {
      throw new RpcError(name, null, `${name}: ${describeError(error)}`);
    } finally {
      clearTimeout(timer);
    }
    const { text, error } = read;
    if (error) throw new RpcError(name, null, `${name}: the answer was cut off: ${error}`);
    let answer: unknown;
    try {
      answer = JSON.parse(text ?? "");
    } catch (e) {
      throw new RpcError(
        name,
        response.status,
        `${name}: HTTP ${response.status}, not JSON: ${describeError(e)}`,
      );
    }
    if (!response.ok) {
      const { code, message } = (answer ?? {}) as { code?: unknown; message?: unknown };
      throw new RpcError(
        name,
        response.status,
        `${name}: HTTP ${response.status} ${code ?? "error"}: ${message ?? text}`,
      );
    }
    return answer;
  }

  return {
    async claim(ids, probe) {
      const answer = await rpc(CLAIM_RPC, probe ? { ids, probe } : { ids });
      if (!Array.isArray(answer))
        throw new RpcError(CLAIM_RPC, 200, `${CLAIM_RPC} answered something else than an array`);
      return answer;
    },
    async completeAndClaim(outcomes, claimWithinMs) {
      const answer = (await rpc(REPORT_RPC, {
        outcomes,
        claim_within_ms: claimWithinMs,
      })) as Partial<ReportAnswer>;
      if (!Array.isArray(answer?.finished) || !Array.isArray(answer?.calls)) {
        throw new RpcError(REPORT_RPC, 200, `${REPORT_RPC} answered something else than {finished, calls}`);
      }
      return { finished: answer.finished, calls: answer.calls };
    },
    async completeCallback(report) {
      const answer = await rpc(CALLBACK_RPC, {
        token: report.token,
        status_code: report.status,
        body: report.body,
        error: report.error,
      });
      if (!isCallbackResult(answer))
        throw new RpcError(CALLBACK_RPC, 200, `${CALLBACK_RPC} answered something else than its result`);
      return answer;
    },
  };
}
