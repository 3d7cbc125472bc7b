/**
 * One call: its details as the database hands them out (parseCall), the request sent to the target (buildRequest,
 * signRequest), the call itself within its timeout (executeCall) and what its answer means (classify). Pure: the
 * fetch, the clock and the project's key come in as arguments, so the same code runs in Deno, under Node in tests
 * and in local mode.
 */

import { SIGNATURE_HEADER, signatureHeader } from "../_shared/verify_signature.ts";
import { describeError, readBounded } from "./body.ts";

/** The HTTP methods a queue may use. GET and DELETE carry the payload as a query string, the others as JSON. */
export const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
export type Method = (typeof METHODS)[number];

/** Response bodies are read up to this many characters when the database sends no bound (config.max_response_chars). */
export const DEFAULT_MAX_RESPONSE_CHARS = 16_384;

/** Never more than this, whatever the database says: a report carries at most 1,000,000 characters (reporter.ts). */
export const MAX_RESPONSE_CHARS = 1_000_000;

/** The path under which a project's edge functions live, on its own origin. */
export const FUNCTIONS_PATH = "/functions/v1/";

/** A claimed call (supaqueue._call_details in sql/0001_supaqueue.sql), after validation. */
export interface CurrentJobCall {
  currentJobId: number | string;
  attempt: number;
  leaseUntil: string | null;
  job: { id: string; payload: unknown; headers: Record<string, string> };
  queue: {
    name: string;
    url: string;
    isFunction: boolean;
    method: Method;
    headers: Record<string, string>;
    timeoutMs: number;
    successCodes: number[] | null;
    retryCodes: number[] | null;
    /** Whether the queue signs its calls; a signed queue without a key never sends one unsigned. */
    signed: boolean;
    /** HMAC keys to sign the call with, current first (see _shared/verify_signature.ts). */
    signingKeys: string[];
  };
  /** Optional bound on the response body kept, when the database sends one. */
  maxResponseChars: number | null;
  /** Why the call must not be made (a secret missing from Vault), or null. */
  problem: string | null;
}

/** One outcome, its fields named as supaqueue.outcome names them. */
export interface Completion {
  current_job_id: number | string;
  succeeded: boolean;
  status_code: number | null;
  response_body: string | null;
  error: string | null;
  duration_ms: number;
  retryable: boolean;
  retry_after_ms: number | null;
  /** The call was given back unfinished (its worker shut down): back to pending at once, the attempt not counted. */
  released?: boolean;
}

/** The project's own key: a legacy service_role JWT, or a new `sb_secret_...` key (which is not a JWT). */
export interface ProjectKey {
  value: string;
  kind: "jwt" | "secret";
}

/** The key's headers: a JWT goes as `apikey` and as a bearer token; an sb_secret_ key in `apikey` only. */
export function keyHeaders(key: ProjectKey): Record<string, string> {
  return key.kind === "jwt"
    ? { apikey: key.value, Authorization: `Bearer ${key.value}` }
    : { apikey: key.value };
}

// ---------------------------------------------------------------------------------------------------------------
// The call's details
// ---------------------------------------------------------------------------------------------------------------

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isStringMap(value: unknown): value is Record<string, string> {
  return isObject(value) && Object.values(value).every((v) => typeof v === "string");
}

function isCodeList(value: unknown): value is number[] | null {
  return value === null || (Array.isArray(value) && value.every((c) => Number.isInteger(c)));
}

/** The current job id of a call's details, when it has a usable one (to report a call whose details are bad). */
export function currentJobIdOf(details: unknown): number | string | null {
  const id = isObject(details) ? details.current_job_id : undefined;
  if (typeof id === "number" && Number.isSafeInteger(id)) return id;
  if (typeof id === "string" && /^\d{1,19}$/.test(id)) return id;
  return null;
}

/**
 * Validates a call's details as the database hands them out and returns the call, or a message naming the first
 * field that is wrong. Messages name fields only, never their values, since values may hold secrets.
 */
export function parseCall(details: unknown): CurrentJobCall | string {
  if (!isObject(details)) return "expected a JSON object";
  const { attempt, lease_until: leaseUntil, job, queue } = details;
  const id = currentJobIdOf(details);
  if (id === null) return "current_job_id must be an integer";
  if (typeof attempt !== "number" || !Number.isInteger(attempt) || attempt < 1) {
    return "attempt must be a positive integer";
  }
  if (
    leaseUntil !== undefined &&
    leaseUntil !== null &&
    (typeof leaseUntil !== "string" || Number.isNaN(Date.parse(leaseUntil)))
  ) {
    return "lease_until must be a timestamp string";
  }
  if (!isObject(job)) return "job must be an object";
  if (typeof job.id !== "string" || job.id === "") return "job.id must be a string";
  if (!isObject(job.payload) && !Array.isArray(job.payload))
    return "job.payload must be a JSON object or array";
  const jobHeaders = job.headers ?? {};
  if (!isStringMap(jobHeaders)) return "job.headers must be an object of strings";
  if (!isObject(queue)) return "queue must be an object";
  if (typeof queue.name !== "string") return "queue.name must be a string";
  if (typeof queue.url !== "string" || !/^https?:\/\//i.test(queue.url) || !URL.canParse(queue.url)) {
    return "queue.url must be an absolute http(s) URL";
  }
  if (typeof queue.is_function !== "boolean") return "queue.is_function must be a boolean";
  const method = typeof queue.method === "string" ? queue.method.toUpperCase() : "";
  if (!(METHODS as readonly string[]).includes(method))
    return `queue.method must be one of ${METHODS.join(", ")}`;
  const queueHeaders = queue.headers ?? {};
  if (!isStringMap(queueHeaders)) return "queue.headers must be an object of strings";
  const timeoutMs = queue.timeout_ms;
  if (typeof timeoutMs !== "number" || !Number.isInteger(timeoutMs) || timeoutMs < 1) {
    return "queue.timeout_ms must be a positive integer";
  }
  const successCodes = queue.success_codes ?? null;
  const retryCodes = queue.retry_codes ?? null;
  if (!isCodeList(successCodes)) return "queue.success_codes must be null or a list of HTTP statuses";
  if (!isCodeList(retryCodes)) return "queue.retry_codes must be null or a list of HTTP statuses";
  const signingKeys = queue.signing_keys ?? [];
  if (!Array.isArray(signingKeys) || !signingKeys.every((k) => typeof k === "string" && k !== "")) {
    return "queue.signing_keys must be a list of non-empty strings";
  }
  const signed = queue.signed ?? signingKeys.length > 0;
  if (typeof signed !== "boolean") return "queue.signed must be a boolean";
  const maxChars = details.max_response_chars ?? null;
  if (maxChars !== null && (typeof maxChars !== "number" || !Number.isInteger(maxChars) || maxChars < 0)) {
    return "max_response_chars must be a non-negative integer";
  }
  const problem = details.problem ?? null;
  if (problem !== null && typeof problem !== "string") return "problem must be null or a string";
  return {
    currentJobId: id,
    attempt,
    leaseUntil: leaseUntil ?? null,
    job: { id: job.id, payload: job.payload, headers: jobHeaders },
    queue: {
      name: queue.name,
      url: queue.url,
      isFunction: queue.is_function,
      method: method as Method,
      headers: queueHeaders,
      timeoutMs,
      successCodes,
      retryCodes,
      signed,
      signingKeys,
    },
    maxResponseChars: maxChars,
    problem,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Building the target request
// ---------------------------------------------------------------------------------------------------------------

export interface TargetRequest {
  url: string;
  method: Method;
  headers: Headers;
  body: string | undefined;
  /** Whether the project's key was put on the request (a function target of this project). */
  keySent: boolean;
}

/** Where the project's key may go: edge functions of this project, on one of its origins under /functions/v1/. */
export interface KeyPolicy {
  key?: ProjectKey;
  /** Origins of the project's functions gateway: SUPABASE_URL's, and a custom domain's when there is one. */
  functionsOrigins: string[];
}

/** Whether a URL is one of the project's own edge functions, the only place its key is ever sent. */
export function isProjectFunction(url: URL, functionsOrigins: readonly string[]): boolean {
  return functionsOrigins.includes(url.origin) && url.pathname.startsWith(FUNCTIONS_PATH);
}

/** Encodes one payload value as a query parameter value: strings as they are, anything else as JSON. */
function queryValue(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * Builds the request for a call. Headers, later ones winning: Content-Type (JSON bodies), the project's key (a
 * function target of this project only: see KeyPolicy), Idempotency-Key (the job id, the same on every attempt),
 * the queue's headers, the job's headers, then Supaqueue-Job-Id and Supaqueue-Attempt, which always describe the
 * call truthfully. Throws CallError when the call cannot be made as configured.
 */
export function buildRequest(
  call: CurrentJobCall,
  keys: KeyPolicy = { functionsOrigins: [] },
): TargetRequest {
  const { queue, job } = call;
  const url = new URL(queue.url);
  let body: string | undefined;
  if (queue.method === "GET" || queue.method === "DELETE") {
    if (!isObject(job.payload)) {
      throw new CallError(
        `a ${queue.method} queue needs a JSON object payload (it becomes the query string)`,
      );
    }
    // Percent-encoding (spaces as %20) rather than form encoding, and appended to the parameters already in the URL.
    const added = Object.entries(job.payload).map(
      ([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(queryValue(value))}`,
    );
    if (added.length > 0) {
      const existing = url.search.replace(/^\?/, "");
      url.search = `?${[existing, ...added].filter((part) => part !== "").join("&")}`;
    }
  } else {
    body = JSON.stringify(job.payload);
  }

  const headers = new Headers();
  const keySent = queue.isFunction && keys.key !== undefined && isProjectFunction(url, keys.functionsOrigins);
  try {
    if (body !== undefined) headers.set("Content-Type", "application/json");
    if (keySent && keys.key)
      for (const [name, value] of Object.entries(keyHeaders(keys.key))) headers.set(name, value);
    headers.set("Idempotency-Key", job.id);
    for (const [name, value] of Object.entries(queue.headers)) headers.set(name, value);
    for (const [name, value] of Object.entries(job.headers)) headers.set(name, value);
  } catch {
    throw new CallError("the queue or job headers hold an invalid header name or value");
  }
  headers.set("Supaqueue-Job-Id", job.id);
  headers.set("Supaqueue-Attempt", String(call.attempt));
  return { url: url.toString(), method: queue.method, headers, body, keySent };
}

/**
 * Signs a request with the queue's keys: sets Supaqueue-Signature, last, so no queue or job header can replace it.
 * Signature v2 covers the method, path, query, body, job id, attempt and Idempotency-Key exactly as they will be
 * sent. A signed queue without a key throws: the call is never sent unsigned.
 */
export async function signRequest(
  request: TargetRequest,
  call: CurrentJobCall,
  nowMs: number,
): Promise<void> {
  if (!call.queue.signed && call.queue.signingKeys.length === 0) return;
  if (call.queue.signingKeys.length === 0) {
    throw new CallError(
      `queue "${call.queue.name}" is signed but no signing key came with the call; it was not sent unsigned`,
    );
  }
  const value = await signatureHeader({
    keys: call.queue.signingKeys,
    method: request.method,
    url: request.url,
    body: request.body,
    jobId: call.job.id,
    attempt: call.attempt,
    idempotencyKey: request.headers.get("Idempotency-Key"),
    now: nowMs,
  });
  request.headers.set(SIGNATURE_HEADER, value);
}

/** A call that cannot be made as configured: retrying would not help. */
export class CallError extends Error {}

// ---------------------------------------------------------------------------------------------------------------
// Classifying the answer
// ---------------------------------------------------------------------------------------------------------------

export interface Classification {
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

/**
 * What a failed status means, in words a user can act on: where a redirect pointed (never followed), and why a
 * function of this project refused the call with 401.
 */
function statusError(
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

// ---------------------------------------------------------------------------------------------------------------
// Making the call
// ---------------------------------------------------------------------------------------------------------------

export interface CallDeps extends KeyPolicy {
  fetch: typeof fetch;
  now: () => number;
  /** The bound when the database sends none. */
  maxResponseChars: number;
  /** Aborted when the worker shuts down: a call still waiting for its answer is then released (see releasedOutcome). */
  stop?: AbortSignal;
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

/** How the outcome of a call refused by the edge runtime's rate limit starts (the handler then takes no more). */
export const RATE_LIMITED = "rate limited by the edge runtime";

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

/**
 * The delay a RateLimitError asks for: the edge runtime throws one from fetch when calls from one function to the
 * project's other functions exceed their budget per request chain. Its `retryAfter` is read as seconds, like the
 * Retry-After header.
 */
function rateLimitDelay(error: unknown): number | null {
  if (!(error instanceof Error) || error.name !== "RateLimitError") return null;
  const seconds = Number((error as { retryAfter?: unknown }).retryAfter);
  return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds * 1000, MAX_RETRY_AFTER_MS) : 1000;
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

    const read = await readBounded(response, maxChars);
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
      response_body: read.text,
      error,
      duration_ms: elapsed(),
      retryable,
      retry_after_ms: retryAfter,
    };
  } finally {
    clearTimeout(timer);
    deps.stop?.removeEventListener("abort", stop);
  }
}
