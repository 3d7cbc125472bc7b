/**
 * The request a call sends to its target: buildRequest puts the payload and headers together (the project's key only
 * for the project's own functions: KeyPolicy), signRequest adds the queue's signature. keyHeaders also serves the
 * function's own calls to PostgREST (rpc.ts). Pure, and it throws CallError for a call that cannot be made as
 * configured; making the call is execute.ts's.
 */

import { SIGNATURE_HEADER, signatureHeader } from "../_shared/verify_signature.ts";
import {
  CALLBACK_TOKEN_HEADER,
  CALLBACK_URL_HEADER,
  type CurrentJobCall,
  isObject,
  type Method,
} from "./call.ts";

/** The path under which a project's edge functions live, on its own origin. */
const FUNCTIONS_PATH = "/functions/v1/";

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

/** The request buildRequest makes for a call, as fetch sends it. */
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
function isProjectFunction(url: URL, functionsOrigins: readonly string[]): boolean {
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
 * call truthfully, and, for a queue taking callbacks, Supaqueue-Callback-Url and Supaqueue-Callback-Token (callback.ts).
 * Throws CallError when the call cannot be made as configured.
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
  if (call.callback) {
    headers.set(CALLBACK_URL_HEADER, call.callback.url);
    headers.set(CALLBACK_TOKEN_HEADER, call.callback.token);
  } else {
    // A queue or job header must not pass for Supaqueue's own: only calls that take callbacks carry them.
    headers.delete(CALLBACK_URL_HEADER);
    headers.delete(CALLBACK_TOKEN_HEADER);
  }
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
