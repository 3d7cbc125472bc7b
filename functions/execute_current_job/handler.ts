/**
 * execute_current_job: the logic of Supaqueue's edge function, as a pure module.
 *
 * pg_net POSTs one current job (a job, its attempt number and its queue) here. The handler checks the shared secret,
 * refuses a call whose lease has already run out, answers 202 at once, and makes the call in the background: it
 * sends the queue's request to the target (signed when the queue has signing keys), classifies the answer, and
 * reports the outcome through the completion function. It reads no environment and uses no Deno
 * globals, so the same module runs in Deno (index.ts wires it), under Node in tests and in local mode.
 */

import { SIGNATURE_HEADER, signatureHeader } from "../_shared/verify_signature.ts";

/** The HTTP methods a queue may use. GET and DELETE carry the payload as a query string, the others as JSON. */
export const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
export type Method = (typeof METHODS)[number];

/** Response bodies are read up to this many characters unless the caller sets a bound. */
export const DEFAULT_MAX_RESPONSE_CHARS = 16_384;

/** The request pg_net sends (built by supaqueue._on_current_jobs_inserted), after validation. */
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
    /** HMAC keys to sign the call with, current first (see _shared/verify_signature.ts); empty: unsigned. */
    signingKeys: string[];
  };
  /** Optional bound on the response body kept, when the database sends one. */
  maxResponseChars: number | null;
}

/** One outcome, its fields named as complete_current_jobs names them (complete_current_job's arguments). */
export interface Completion {
  current_job_id: number | string;
  succeeded: boolean;
  status_code: number | null;
  response_body: string | null;
  error: string | null;
  duration_ms: number;
  retryable: boolean;
  retry_after_ms: number | null;
}

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface HandlerDeps {
  /** The shared secret pg_net sends in the `supaqueue-secret` header. Must not be empty. */
  secret: string;
  /** Sent as `Authorization: Bearer` and `apikey` to targets that are edge functions of the same project. */
  serviceRoleKey?: string;
  fetch: typeof fetch;
  /** Milliseconds since the epoch; injectable so tests control durations and Retry-After dates. */
  now?: () => number;
  /**
   * Records the outcome (index.ts: the batch reporter, public.supaqueue_complete_current_jobs). Resolves to false
   * for a late or repeated completion, which is harmless; rejects when the report could not be made (the lease
   * recovers the job).
   */
  report(completion: Completion): Promise<boolean>;
  /** Keeps the background call alive after the response (EdgeRuntime.waitUntil). */
  waitUntil?: (promise: Promise<unknown>) => void;
  /** The most characters of a response body read and kept. */
  maxResponseChars?: number;
  logger?: Logger;
}

export interface Handler {
  (request: Request): Promise<Response>;
  /** Resolves once every call accepted so far has been made and reported (tests and local mode wait on it). */
  idle(): Promise<void>;
  /** Calls accepted and not yet reported. */
  readonly inFlight: number;
}

/** Builds the request handler. */
export function createHandler(deps: HandlerDeps): Handler {
  if (!deps.secret) throw new Error("execute_current_job: the shared secret must not be empty");
  const now = deps.now ?? (() => Date.now());
  const logger = deps.logger ?? console;
  const pending = new Set<Promise<void>>();

  async function run(call: CurrentJobCall): Promise<void> {
    const completion = await executeCall(call, {
      fetch: deps.fetch,
      now,
      serviceRoleKey: deps.serviceRoleKey,
      maxResponseChars: deps.maxResponseChars ?? DEFAULT_MAX_RESPONSE_CHARS,
    });
    const where = `queue "${call.queue.name}", job ${call.job.id}, attempt ${call.attempt}`;
    try {
      const recorded = await deps.report(completion);
      if (recorded === false)
        logger.info(`execute_current_job: ${where}: the call was no longer in flight (late completion)`);
    } catch (error) {
      // Nothing is lost: the job's lease expires and tick() counts the attempt as failed.
      logger.error(`execute_current_job: ${where}: reporting the outcome failed: ${describeError(error)}`);
    }
  }

  const handler = async (request: Request): Promise<Response> => {
    try {
      if (!(await secretsEqual(request.headers.get("supaqueue-secret") ?? "", deps.secret))) {
        return json(401, { error: "unauthorized: missing or wrong supaqueue-secret header" });
      }
      if (request.method !== "POST") {
        return json(405, { error: "method not allowed: execute_current_job accepts POST only" });
      }
      let body: unknown;
      try {
        body = await request.json();
      } catch {
        return json(400, { error: "invalid request body: not JSON" });
      }
      const parsed = parseCall(body);
      if (typeof parsed === "string") return json(400, { error: `invalid request body: ${parsed}` });
      if (parsed.leaseUntil !== null && Date.parse(parsed.leaseUntil) < now()) {
        // tick() has already counted this attempt as lost (or will at its next run) and may send the job again:
        // calling now could make the same call twice. pg_net delivered it too late; nothing is done or reported.
        // The lease includes config.lease_grace_ms (30 s by default), which also absorbs clock skew between the
        // database and the edge runtime.
        logger.warn(
          `execute_current_job: queue "${parsed.queue.name}", job ${parsed.job.id}, attempt ${parsed.attempt}: ` +
            "refused, its lease had already expired",
        );
        return json(409, {
          error: "lease expired: this attempt was already counted as lost; the call was not made",
        });
      }

      const task = run(parsed).catch((error) => {
        logger.error(`execute_current_job: unexpected failure: ${describeError(error)}`);
      });
      pending.add(task);
      void task.finally(() => pending.delete(task));
      deps.waitUntil?.(task);
      return json(202, { accepted: true, current_job_id: parsed.currentJobId });
    } catch (error) {
      logger.error(`execute_current_job: unexpected failure: ${describeError(error)}`);
      return json(500, { error: "internal error" });
    }
  };

  return Object.defineProperties(handler, {
    idle: {
      value: async () => {
        while (pending.size > 0) await Promise.allSettled([...pending]);
      },
    },
    inFlight: { get: () => pending.size },
  }) as Handler;
}

// ---------------------------------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------------------------------

/**
 * Compares two secrets in constant time. Both are hashed first, so neither their contents nor their lengths
 * show in the time the comparison takes.
 */
export async function secretsEqual(given: string, expected: string): Promise<boolean> {
  const encoder = new TextEncoder();
  const [a, b] = await Promise.all([
    crypto.subtle.digest("SHA-256", encoder.encode(given)),
    crypto.subtle.digest("SHA-256", encoder.encode(expected)),
  ]);
  const x = new Uint8Array(a);
  const y = new Uint8Array(b);
  let diff = 0;
  for (let i = 0; i < x.length; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0 && given.length > 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Parsing the request from pg_net
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

/**
 * Validates the body pg_net sends and returns the call, or a message naming the first field that is wrong.
 * Messages name fields only, never their values, since values may hold secrets (resolved secret headers).
 */
export function parseCall(body: unknown): CurrentJobCall | string {
  if (!isObject(body)) return "expected a JSON object";
  const { current_job_id: id, attempt, lease_until: leaseUntil, job, queue } = body;
  const idIsValid =
    (typeof id === "number" && Number.isSafeInteger(id)) || (typeof id === "string" && /^\d{1,19}$/.test(id));
  if (!idIsValid) return "current_job_id must be an integer";
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
  const signingKeys = queue.signing_keys ?? null;
  if (
    signingKeys !== null &&
    (!Array.isArray(signingKeys) || !signingKeys.every((k) => typeof k === "string" && k !== ""))
  ) {
    return "queue.signing_keys must be null or a list of non-empty strings";
  }
  const maxChars = body.max_response_chars ?? null;
  if (maxChars !== null && (typeof maxChars !== "number" || !Number.isInteger(maxChars) || maxChars < 0)) {
    return "max_response_chars must be a non-negative integer";
  }
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
      signingKeys: signingKeys ?? [],
    },
    maxResponseChars: maxChars,
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
}

/** Encodes one payload value as a query parameter value: strings as they are, anything else as JSON. */
function queryValue(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

/**
 * Builds the request for a call. Headers, later ones winning: Content-Type (JSON bodies), the project's
 * authorization (function targets), Idempotency-Key (the job id, the same on every attempt), the queue's headers,
 * the job's headers, then Supaqueue-Job-Id and Supaqueue-Attempt, which always describe the call truthfully.
 * Throws when the call cannot be made as configured (a non-object payload for GET/DELETE, an invalid header).
 */
export function buildRequest(call: CurrentJobCall, options: { serviceRoleKey?: string } = {}): TargetRequest {
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
  try {
    if (body !== undefined) headers.set("Content-Type", "application/json");
    if (queue.isFunction && options.serviceRoleKey) {
      headers.set("Authorization", `Bearer ${options.serviceRoleKey}`);
      headers.set("apikey", options.serviceRoleKey);
    }
    headers.set("Idempotency-Key", job.id);
    for (const [name, value] of Object.entries(queue.headers)) headers.set(name, value);
    for (const [name, value] of Object.entries(job.headers)) headers.set(name, value);
  } catch {
    throw new CallError("the queue or job headers hold an invalid header name or value");
  }
  headers.set("Supaqueue-Job-Id", job.id);
  headers.set("Supaqueue-Attempt", String(call.attempt));
  return { url: url.toString(), method: queue.method, headers, body };
}

/**
 * Signs a request with the queue's keys (nothing when it has none): sets Supaqueue-Signature, last, so no queue or
 * job header can replace it. The signature covers the method, the query and the body exactly as they will be sent.
 */
export async function signRequest(request: TargetRequest, keys: string[], nowMs: number): Promise<void> {
  if (keys.length === 0) return;
  const value = await signatureHeader({
    keys,
    method: request.method,
    url: request.url,
    body: request.body,
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
 * the queue's retry_codes); any other status fails the job at once, without using up its remaining attempts.
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

// ---------------------------------------------------------------------------------------------------------------
// Making the call
// ---------------------------------------------------------------------------------------------------------------

export interface CallDeps {
  fetch: typeof fetch;
  now: () => number;
  serviceRoleKey?: string;
  maxResponseChars: number;
}

/**
 * Makes the call and returns its outcome; never throws. The queue's timeout covers the whole exchange (connecting,
 * the answer and reading the body), enforced by aborting. Once a status has arrived it decides the outcome, even
 * if the body is then cut off; the error text says so.
 */
export async function executeCall(call: CurrentJobCall, deps: CallDeps): Promise<Completion> {
  const started = deps.now();
  const maxChars = Math.min(call.maxResponseChars ?? Number.POSITIVE_INFINITY, deps.maxResponseChars);
  const base = { current_job_id: call.currentJobId, retry_after_ms: null };
  const elapsed = () => Math.max(0, Math.round(deps.now() - started));
  // An attempt that ended without any HTTP status: the request could not be built, or no answer came.
  const noAnswer = (error: string, durationMs: number, retryable: boolean): Completion => ({
    ...base,
    succeeded: false,
    status_code: null,
    response_body: null,
    error,
    duration_ms: durationMs,
    retryable,
  });

  let request: TargetRequest;
  try {
    request = buildRequest(call, { serviceRoleKey: deps.serviceRoleKey });
    await signRequest(request, call.queue.signingKeys, deps.now());
  } catch (error) {
    return noAnswer(error instanceof CallError ? error.message : describeError(error), 0, false);
  }

  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, call.queue.timeoutMs);
  try {
    let response: Response;
    try {
      response = await deps.fetch(request.url, {
        method: request.method,
        headers: request.headers,
        body: request.body,
        signal: controller.signal,
      });
    } catch (error) {
      const message = timedOut
        ? `timeout: no response within ${call.queue.timeoutMs} ms`
        : `network error: ${describeError(error)}`;
      return noAnswer(message, elapsed(), true);
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
    if (!succeeded) error = error ? `HTTP ${response.status}; ${error}` : `HTTP ${response.status}`;
    return {
      ...base,
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
  }
}

/**
 * Reads at most `maxChars` characters of a body, streaming, and stops reading (cancelling the rest) once it has
 * them, so a huge body never sits in memory. A body that fails midway keeps what arrived and reports the error.
 */
export async function readBounded(
  response: Response,
  maxChars: number,
): Promise<{ text: string | null; truncated: boolean; error: string | null }> {
  if (!response.body) return { text: null, truncated: false, error: null };
  const chunks = chunkReader(response.body);
  const decoder = new TextDecoder();
  let text = "";
  let truncated = false;
  let error: string | null = null;
  try {
    for (;;) {
      if (text.length >= maxChars) {
        truncated = true;
        break;
      }
      const chunk = await chunks.read();
      if (chunk === null) {
        text += decoder.decode();
        break;
      }
      text += decoder.decode(chunk, { stream: true });
    }
  } catch (e) {
    error = describeError(e);
  }
  // Stop the transfer of whatever is left; the connection is released rather than drained.
  chunks.cancel();
  if (text.length > maxChars) {
    text = text.slice(0, maxChars);
    truncated = true;
  }
  return { text: text === "" && !truncated ? null : text, truncated, error };
}

/** The size of the one buffer a body is read into (see chunkReader). Most answers fit in one read. */
export const READ_BUFFER_BYTES = 8192;

/**
 * Reads a body chunk by chunk; `read()` resolves to null at the end. A byte stream (Deno's fetch bodies are) is read
 * into one small buffer reused for every chunk, so a chunk is only valid until the next read. Its default reader
 * would allocate a new 64 KiB buffer for every read, memory that is only returned at V8's next garbage collection:
 * with two fetches per call that was most of the function's peak memory (bench/edge.ts). Other streams are read
 * with their default reader.
 */
export function chunkReader(body: ReadableStream<Uint8Array>): {
  read(): Promise<Uint8Array | null>;
  cancel(): void;
} {
  let byob: ReadableStreamBYOBReader | undefined;
  try {
    byob = body.getReader({ mode: "byob" });
  } catch {
    // Not a byte stream.
  }
  if (byob) {
    const reader = byob;
    let buffer = new Uint8Array(READ_BUFFER_BYTES);
    return {
      async read() {
        const { done, value } = await reader.read(buffer);
        if (done || !value) return null;
        // The read took the buffer over and returns it filled; the next read reuses its memory.
        buffer = new Uint8Array(value.buffer);
        return value;
      },
      cancel: () => void reader.cancel().catch(() => {}),
    };
  }
  const reader = body.getReader();
  return {
    async read() {
      const { done, value } = await reader.read();
      return done ? null : value;
    },
    cancel: () => void reader.cancel().catch(() => {}),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

/** An error's message with its cause (fetch puts the socket error there), never a stack. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return cause && cause !== error.message ? `${error.message} (${cause})` : error.message;
}
