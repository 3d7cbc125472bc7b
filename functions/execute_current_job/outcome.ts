/**
 * What a call's answer means, as the fields of its Completion: whether a status succeeded or may be retried
 * (classify), the delay the target or the edge runtime asks for (parseRetryAfter, rateLimitDelay), a failed status in
 * words a user can act on (statusError), and the outcomes of a call that got no status (failedOutcome) or was given
 * back unfinished (releasedOutcome). The handler builds those last two itself for calls it never makes.
 */

import type { Completion, CurrentJobCall } from "./call.ts";
import type { TargetRequest } from "./request.ts";

interface Classification {
  succeeded: boolean;
  retryable: boolean;
}

/**
 * Success is any 2xx (or one of the queue's success_codes). A failure is retried for 408, 429 and 5xx (or one of
 * the queue's retry_codes); any other status, a redirect included, fails the job at once, without using up its
 * remaining attempts.
 */
export function classify(
  status: number,
  successCodes: number[] | null,
  retryCodes: number[] | null,
): Classification {
  const succeeded = successCodes ? successCodes.includes(status) : status >= 200 && status < 300;
  if (succeeded) return { succeeded: true, retryable: false };
  const retryable = retryCodes
    ? retryCodes.includes(status)
    : status === 408 || status === 429 || status >= 500;
  return { succeeded: false, retryable };
}

/** The longest delay the database accepts (retry_after_ms is an integer column). */
const MAX_RETRY_AFTER_MS = 2_147_483_647;

/**
 * Parses a Retry-After header: delay-seconds or an HTTP date. Returns milliseconds from `nowMs` (0 for a date in
 * the past), or null when the header is absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, nowMs: number): number | null {
  const text = value?.trim();
  if (!text) return null;
  if (/^\d+$/.test(text)) return Math.min(Number(text) * 1000, MAX_RETRY_AFTER_MS);
  // HTTP dates (IMF-fixdate and the two obsolete forms) all start with a day name; anything else is not one.
  if (!/^[A-Za-z]{3,9},?\s/.test(text)) return null;
  const date = Date.parse(text);
  if (Number.isNaN(date)) return null;
  return Math.min(Math.max(0, date - nowMs), MAX_RETRY_AFTER_MS);
}

/** How the outcome of a call refused by the edge runtime's rate limit starts (the handler then takes no more). */
export const RATE_LIMITED = "rate limited by the edge runtime";

/**
 * The delay a RateLimitError asks for: the edge runtime throws one from fetch when calls from one function to the
 * project's other functions exceed their budget per request chain. Its `retryAfter` is read as seconds, like the
 * Retry-After header.
 */
export function rateLimitDelay(error: unknown): number | null {
  if (!(error instanceof Error) || error.name !== "RateLimitError") return null;
  const seconds = Number((error as { retryAfter?: unknown }).retryAfter);
  return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds * 1000, MAX_RETRY_AFTER_MS) : 1000;
}

/**
 * What a failed status means, in words a user can act on: where a redirect pointed (never followed), and why a
 * function of this project refused the call with 401.
 */
export function statusError(
  response: Response,
  request: TargetRequest,
  call: CurrentJobCall,
  body: string | null,
): string {
  const status = `HTTP ${response.status}`;
  if (response.status >= 300 && response.status < 400) {
    const location = response.headers.get("location");
    let where = "";
    if (location && URL.canParse(location, request.url)) {
      const target = new URL(location, request.url);
      where = ` to ${target.origin}${target.pathname}`;
    }
    return `${status}: a redirect${where}, not followed (give the queue its final URL)`;
  }
  if (response.status === 401 && call.queue.isFunction) {
    if (!request.keySent) {
      return `${status}: the project's key was not sent, because ${new URL(request.url).origin} is not this project's functions origin (SUPABASE_URL); if it is a custom domain, set the function secret SUPAQUEUE_FUNCTIONS_URL to it`;
    }
    if (body?.includes("Invalid JWT")) {
      return `${status} Invalid JWT: the function verifies JWTs and refused the project's key (new sb_secret_ keys are not JWTs); deploy it with --no-verify-jwt (verify_jwt = false in supabase/config.toml) and check the apikey header in the function, or make the legacy service_role key available to execute_current_job`;
    }
  }
  return status;
}

/** An outcome without an HTTP status: the call could not be made, or no answer came. */
export function failedOutcome(
  currentJobId: number | string,
  error: string,
  durationMs: number,
  retryable: boolean,
  retryAfterMs: number | null = null,
): Completion {
  return {
    current_job_id: currentJobId,
    succeeded: false,
    status_code: null,
    response_body: null,
    error,
    duration_ms: durationMs,
    retryable,
    retry_after_ms: retryAfterMs,
  };
}

/**
 * An outcome that gives the call back unfinished: the job goes back to pending at once and the attempt does not count
 * (supaqueue._complete). For a call its worker could not finish, through no fault of the target.
 */
export function releasedOutcome(currentJobId: number | string, why: string, durationMs = 0): Completion {
  return {
    ...failedOutcome(currentJobId, `${why}; it goes again, not counted as an attempt`, durationMs, true),
    released: true,
  };
}
