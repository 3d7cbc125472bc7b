/**
 * For the targets of a queue with `callback_timeout`: work longer than an edge function lives. Each call carries a
 * callback URL and a token of its own; the target answers 202 at once, does the work, and then reports how it ended:
 *
 *   const callback = callbackOf(request.headers);   // null when the queue takes no callbacks
 *   // ... answer 202, start the work; when it is done:
 *   await reportCallback(callback, { status: 200, body: { url: "https://cdn.example/intro.mp4" } });
 *   // or { status: 500, error: "the renderer ran out of memory" } (retried by the queue), 4xx (fails for good),
 *   // and { status: 202 } now and then while the work goes on longer than callback_timeout (a heartbeat).
 *
 * Plain fetch; it imports only verify_signature.ts beside it (how a request's headers are read): copy both into an
 * edge function's `_shared/` (Deno), or import it in Node from the npm package
 * (`import { callbackOf, reportCallback } from "supaqueue"`). It retries what may pass (no answer, 429, 5xx)
 * with growing pauses, never a refusal: a 409 means the outcome was already recorded, the call's callback_timeout
 * passed or the job was cancelled, and nothing will change that.
 */

import { type ReceivedHeaders, readHeader } from "./verify_signature.ts";

/** Where and with what token a call's outcome is reported. */
export interface Callback {
  url: string;
  token: string;
}

/** How the work ended: `status` as an HTTP status (2xx success, 202 still working), its result, an error message. */
export interface CallbackOutcome {
  status: number;
  /** Any JSON value (or a string, kept as it is): the attempt's response, and what an on_success step takes. */
  body?: unknown;
  error?: string;
}

/** recorded: the outcome is the call's; extended: a 202 started its lease again; not_expected: nothing changed. */
export type CallbackAnswer = "recorded" | "extended" | "not_expected";

/** The callback refused for a reason that sending it again cannot fix (a bad token or body), or never answered. */
export class CallbackError extends Error {
  constructor(
    message: string,
    /** The HTTP status of the last answer, or null when none came. */
    readonly status: number | null,
  ) {
    super(message);
    this.name = "CallbackError";
  }
}

/**
 * The call's callback, from its request's headers (a Headers, or Node's IncomingHttpHeaders); null without one, or
 * when either header came more than once (not something Supaqueue sends).
 */
export function callbackOf(headers: ReceivedHeaders): Callback | null {
  const url = readHeader(headers, "supaqueue-callback-url");
  const token = readHeader(headers, "supaqueue-callback-token");
  return url && token && url !== "repeated" && token !== "repeated" ? { url, token } : null;
}

interface ReportOptions {
  fetch?: typeof fetch;
  /** Tries in all (default 5): a pause of 1 s, 2 s, 4 s, ... (`delayMs`) between them. */
  attempts?: number;
  delayMs?: number;
  /** Each try gives up after this long (default 30 s). */
  timeoutMs?: number;
}

/** Reports how the work ended (see the module's comment). Resolves with the answer; throws CallbackError. */
export async function reportCallback(
  callback: Callback,
  outcome: CallbackOutcome,
  options: ReportOptions = {},
): Promise<CallbackAnswer> {
  const send = options.fetch ?? fetch;
  const attempts = Math.max(1, options.attempts ?? 5);
  const body = JSON.stringify({
    status: outcome.status,
    ...(outcome.body === undefined ? {} : { body: outcome.body }),
    ...(outcome.error === undefined ? {} : { error: outcome.error }),
  });
  let last = "no answer";
  let lastStatus: number | null = null;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    if (attempt > 1) await pause((options.delayMs ?? 1000) * 2 ** (attempt - 2));
    let response: Response;
    try {
      response = await send(callback.url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Supaqueue-Callback-Token": callback.token },
        body,
        signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
      });
    } catch (error) {
      last = error instanceof Error ? error.message : String(error);
      lastStatus = null;
      continue;
    }
    const text = await response.text().catch(() => "");
    if (response.ok) return /"extended"\s*:\s*true/.test(text) ? "extended" : "recorded";
    if (response.status === 409) return "not_expected";
    last = `HTTP ${response.status}: ${text.slice(0, 300)}`;
    lastStatus = response.status;
    if (response.status !== 429 && response.status < 500) break;
  }
  throw new CallbackError(`the callback was not recorded: ${last}`, lastStatus);
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
