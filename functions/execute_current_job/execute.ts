/**
 * Making one call: executeCall builds and signs its request (request.ts), sends it within the queue's timeout, reads a
 * bounded body (body.ts) and turns the answer into its Completion (outcome.ts). Pure: the fetch, the clock, the
 * project's key and the worker's stop signal come in as CallDeps, so the same code runs in Deno, under Node in tests
 * and in local mode.
 */

import { describeError, readBounded } from "./body.ts";
import type { Completion, CurrentJobCall } from "./call.ts";
import {
  classify,
  failedOutcome,
  parseRetryAfter,
  RATE_LIMITED,
  rateLimitDelay,
  releasedOutcome,
  statusError,
} from "./outcome.ts";
import { buildRequest, CallError, type KeyPolicy, signRequest, type TargetRequest } from "./request.ts";

/** Response bodies are read up to this many characters when the database sends no bound (config.max_response_chars). */
export const DEFAULT_MAX_RESPONSE_CHARS = 16_384;

/** Never more than this, whatever the database says: a report carries at most 1,000,000 characters (reporter.ts). */
const MAX_RESPONSE_CHARS = 1_000_000;

interface CallDeps extends KeyPolicy {
  fetch: typeof fetch;
  now: () => number;
  /** The bound when the database sends none. */
  maxResponseChars: number;
  /** Aborted when the worker shuts down: a call still waiting for its answer is then released (see releasedOutcome). */
  stop?: AbortSignal;
}

/**
 * Makes the call and returns its outcome; never throws. The queue's timeout covers the whole exchange (connecting,
 * the answer and reading the body), enforced by aborting. Redirects are not followed: a 3xx is the outcome, so no
 * header of the call (the project's key, a secret header) ever reaches another origin. Once a status has arrived it
 * decides the outcome, even if the body is then cut off; the error text says so.
 */
export async function executeCall(call: CurrentJobCall, deps: CallDeps): Promise<Completion> {
  const started = deps.now();
  // The database's bound (config.max_response_chars) is what is kept; reading more would only be cut off there.
  const maxChars = Math.min(call.maxResponseChars ?? deps.maxResponseChars, MAX_RESPONSE_CHARS);
  const elapsed = () => Math.max(0, Math.round(deps.now() - started));
  if (call.problem) return failedOutcome(call.currentJobId, call.problem, 0, false);

  let request: TargetRequest;
  try {
    request = buildRequest(call, deps);
    await signRequest(request, call, deps.now());
  } catch (error) {
    return failedOutcome(
      call.currentJobId,
      error instanceof CallError ? error.message : describeError(error),
      0,
      false,
    );
  }

  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, call.queue.timeoutMs);
  const stop = () => controller.abort();
  deps.stop?.addEventListener("abort", stop);
  try {
    let response: Response;
    try {
      response = await deps.fetch(request.url, {
        method: request.method,
        headers: request.headers,
        body: request.body,
        signal: controller.signal,
        redirect: "manual",
      });
    } catch (error) {
      if (deps.stop?.aborted && !timedOut) {
        return releasedOutcome(
          call.currentJobId,
          `the edge worker shut down (${deps.stop.reason}) before the answer came`,
          elapsed(),
        );
      }
      const limited = rateLimitDelay(error);
      if (limited !== null) {
        return failedOutcome(
          call.currentJobId,
          `${RATE_LIMITED}: ${describeError(error)}`,
          elapsed(),
          true,
          limited,
        );
      }
      const message = timedOut
        ? `timeout: no response within ${call.queue.timeoutMs} ms`
        : `network error: ${describeError(error)}`;
      return failedOutcome(call.currentJobId, message, elapsed(), true);
    }

    // A queue with an on_success step reads the body up to the step's bound, and one character more: a body cut
    // there is larger than the bound, which the database then says. The attempt keeps its own bound.
    const chainMax = call.chainMaxBytes === null ? null : Math.min(call.chainMaxBytes, MAX_RESPONSE_CHARS);
    const read = await readBounded(response, chainMax === null ? maxChars : Math.max(maxChars, chainMax + 1));
    const { succeeded, retryable } = classify(
      response.status,
      call.queue.successCodes,
      call.queue.retryCodes,
    );
    const retryAfter =
      !succeeded && retryable && (response.status === 429 || response.status === 503)
        ? parseRetryAfter(response.headers.get("retry-after"), deps.now())
        : null;
    let error: string | null = null;
    if (read.error) {
      error = timedOut
        ? `timeout: the response body did not finish within ${call.queue.timeoutMs} ms`
        : `the response body was cut off: ${read.error}`;
    }
    if (!succeeded) {
      const status = statusError(response, request, call, read.text);
      error = error ? `${status}; ${error}` : status;
    }
    return {
      current_job_id: call.currentJobId,
      succeeded,
      status_code: response.status,
      response_body: read.text === null ? null : read.text.slice(0, maxChars),
      error,
      duration_ms: elapsed(),
      retryable,
      retry_after_ms: retryAfter,
      ...(chainMax !== null && succeeded ? { chain_body: read.text } : {}),
    };
  } finally {
    clearTimeout(timer);
    deps.stop?.removeEventListener("abort", stop);
  }
}
