/**
 * A call as the database hands it out and as its outcome goes back: CurrentJobCall, validated from the raw details
 * by parseCall (currentJobIdOf rescues the id of details that are not valid), and Completion, the outcome
 * supaqueue.outcome records. The contract with the database about one call, so it imports nothing: building the
 * request (request.ts), judging the answer (outcome.ts) and making the call (execute.ts) all start from here.
 */

/** The headers that tell a target of a queue taking callbacks where and with what token to report (callback.ts). */
export const CALLBACK_URL_HEADER = "Supaqueue-Callback-Url";
export const CALLBACK_TOKEN_HEADER = "Supaqueue-Callback-Token";

/** The HTTP methods a queue may use. GET and DELETE carry the payload as a query string, the others as JSON. */
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"] as const;
export type Method = (typeof METHODS)[number];

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
  /**
   * For a queue with an on_success step that needs the response: the most of it the step reads
   * (config.max_chain_body_bytes), sent back in full as chain_body; null for every other queue.
   */
  chainMaxBytes: number | null;
  /**
   * For a queue with callback_timeout: where and with what token the target reports a call it takes on with a 202
   * (callback.ts), sent as the headers Supaqueue-Callback-Url and Supaqueue-Callback-Token; null for other queues.
   */
  callback: { url: string; token: string; timeoutMs: number } | null;
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
  /** The body for the queue's on_success step, up to one character past chainMaxBytes (more is too large anyway). */
  chain_body?: string | null;
}

/** Whether a value is a JSON object (not null, not an array). */
export function isObject(value: unknown): value is Record<string, unknown> {
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
  const chainMax = details.chain_max_bytes ?? null;
  if (chainMax !== null && (typeof chainMax !== "number" || !Number.isInteger(chainMax) || chainMax < 1)) {
    return "chain_max_bytes must be null or a positive integer";
  }
  const callback = details.callback ?? null;
  if (
    callback !== null &&
    !(
      isObject(callback) &&
      typeof callback.url === "string" &&
      URL.canParse(callback.url) &&
      typeof callback.token === "string" &&
      callback.token !== "" &&
      typeof callback.timeout_ms === "number"
    )
  ) {
    return "callback must be null or {url, token, timeout_ms}";
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
    chainMaxBytes: chainMax,
    callback:
      callback === null
        ? null
        : {
            url: callback.url as string,
            token: callback.token as string,
            timeoutMs: callback.timeout_ms as number,
          },
    problem,
  };
}
