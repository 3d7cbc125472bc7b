/**
 * Supaqueue request signatures: how execute_current_job signs a call, and how a target verifies it.
 *
 * This file has no dependencies (WebCrypto only) and runs unchanged in Deno, Supabase edge functions, Node 20+ and
 * browsers. execute_current_job imports its signer from here, so signer and verifier cannot drift apart. A target
 * may copy this file as it is, or import it.
 *
 * Scheme v2:
 *
 *   Supaqueue-Signature: t=<unix seconds>,v2=<hex>[,v2=<hex>]      (one v2 per key, current key first)
 *   <hex> = lowercase hex of HMAC-SHA256(key as UTF-8, content)
 *   content = "v2\n" + t + "\n" + METHOD + "\n" + path + "\n" + query + "\n" + jobId + "\n" + attempt + "\n" + idempotencyKey + "\n" + body
 *   - METHOD upper case; path = the URL's pathname as the SIGNER sent it (WHATWG-serialized, e.g. "/functions/v1/send-email"); query = the URL's query without "?" (WHATWG-serialized, empty if none); jobId = the Supaqueue-Job-Id header's value; attempt = the Supaqueue-Attempt header's value (decimal); idempotencyKey = the Idempotency-Key header's value, empty string when absent; body = raw body bytes as sent (empty for GET/DELETE).
 *   - Supabase's functions gateway strips "/functions/v1" before a function sees the path (a function sees "/send-email"), and other proxies rewrite paths too: the verifier therefore takes an optional `path` option = the path the signer sent (e.g. "/functions/v1/send-email"); without it, the received URL's pathname is used.
 *
 * Notes:
 *   - key: the signing key exactly as supaqueue.rotate_signing_key returned it, as UTF-8 bytes (not decoded);
 *   - t is written without leading zeros; attempt is a decimal integer without leading zeros. The header values
 *     (job id, attempt, Idempotency-Key) hold no CR or LF (HTTP forbids them) and no surrounding white space
 *     (HTTP strips it), so the content's fields cannot be shifted into one another; only the body, last, may hold
 *     newlines. For GET and DELETE the job's payload travels in the query, so it is signed too.
 *   - One v2 is sent per key the queue honours: the current key first, then the previous one while a rotation's
 *     overlap lasts. A target accepts the request when any v2 matches any key it knows, so either side can switch
 *     keys first. Other entries (such as the former v1) are ignored, never accepted; a header without a v2 is
 *     malformed.
 *   - Signing the path, the job id and the attempt means a captured request cannot be replayed, within the
 *     timestamp's tolerance, as another job, another attempt or to another function of the same key; signing
 *     Idempotency-Key means it cannot be swapped either. The URL's scheme and host are not signed (proxies and
 *     gateways change them); a signing key belongs to one queue.
 */

/** The header that carries the signature. */
export const SIGNATURE_HEADER = "Supaqueue-Signature";

/** How far a signature's timestamp may be from the verifier's clock, either way, by default. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** More v2 entries than this in one header are refused rather than checked (each costs an HMAC per key). */
const MAX_SIGNATURES = 8;

const encoder = new TextEncoder();

/** A request body: text (sent as UTF-8) or raw bytes. Null or undefined: empty (GET and DELETE). */
export type SignedBody = string | Uint8Array | ArrayBuffer | null | undefined;

/** The fields a v2 signature covers, already as they appear in the content. */
export interface SignedFields {
  /** Unix seconds: the header's t. */
  timestamp: number;
  method: string;
  /** The pathname the signer sent, WHATWG-serialized, e.g. "/functions/v1/send-email". */
  path: string;
  /** The query without "?", WHATWG-serialized; empty when there is none. */
  query: string;
  /** The Supaqueue-Job-Id header's value. */
  jobId: string;
  /** The Supaqueue-Attempt header's value. */
  attempt: number | string;
  /** The Idempotency-Key header's value; null, undefined or "" when absent. */
  idempotencyKey?: string | null;
  body: SignedBody;
}

/**
 * The bytes a v2 signature covers: "v2\n" + t + "\n" + METHOD + "\n" + path + "\n" + query + "\n" + jobId + "\n" +
 * attempt + "\n" + idempotencyKey + "\n" + body, the text as UTF-8 and the body as its raw bytes.
 */
export function signedContent(fields: SignedFields): Uint8Array<ArrayBuffer> {
  const head = encoder.encode(
    [
      "v2",
      String(fields.timestamp),
      fields.method.toUpperCase(),
      fields.path,
      fields.query,
      fields.jobId,
      String(fields.attempt),
      fields.idempotencyKey ?? "",
      "",
    ].join("\n"),
  );
  const body = fields.body;
  const tail =
    typeof body === "string"
      ? encoder.encode(body)
      : body instanceof Uint8Array
        ? body
        : new Uint8Array(body ?? new ArrayBuffer(0));
  const content = new Uint8Array(head.length + tail.length);
  content.set(head, 0);
  content.set(tail, head.length);
  return content;
}

const PLACEHOLDER_ORIGIN = "http://supaqueue.invalid";

/**
 * Parses an absolute URL, or a path with its query such as Node's `req.url` (a path starting with "//" stays a
 * path). Null when it cannot be parsed.
 */
function parseUrl(url: string): URL | null {
  try {
    return url.startsWith("/") ? new URL(PLACEHOLDER_ORIGIN + url) : new URL(url);
  } catch {
    return null;
  }
}

/** Decimal, no leading zeros: t and attempt as they are written. */
const DECIMAL = /^(?:0|[1-9][0-9]{0,14})$/;

/** A header value that can be sent and received unchanged: no CR, LF or NUL, no white space at either end. */
function isPlainHeaderValue(value: string): boolean {
  return !/[\r\n\0]/.test(value) && value.trim() === value;
}

/** HMAC-SHA256 of `content`, keyed with `key` as UTF-8 (also what execute_current_job checks wakeups with). */
export async function hmac(key: string, content: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    encoder.encode(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, content));
}

/** Lowercase hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = Number.parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** Compares two byte strings in time that depends on their length only, never on where they differ. */
function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

export interface SignOptions {
  /** The keys to sign with, current first. */
  keys: string[];
  method: string;
  /** The request URL as sent (absolute): its pathname and query are signed. */
  url: string;
  body: SignedBody;
  /** The value sent in Supaqueue-Job-Id. */
  jobId: string;
  /** The value sent in Supaqueue-Attempt: a non-negative integer (a number, or its decimal text). */
  attempt: number | string;
  /** The value sent in Idempotency-Key; null, undefined or "" when the request carries none. */
  idempotencyKey?: string | null;
  /** Milliseconds since the epoch (default: Date.now()). */
  now?: number;
}

/**
 * The value of the Supaqueue-Signature header for a request: `t=<seconds>,v2=<hex>` with one v2 per key.
 * Throws a TypeError when no key is given, the URL is not absolute, or the job id, attempt or idempotency key
 * could not be sent as they are in a header (the signature would never verify).
 */
export async function signatureHeader(options: SignOptions): Promise<string> {
  const keys = options.keys.filter((k) => k !== "");
  if (keys.length === 0) throw new TypeError("signatureHeader: no signing key given");
  let url: URL;
  try {
    url = new URL(options.url);
  } catch {
    throw new TypeError("signatureHeader: url must be the absolute URL the request is sent to");
  }
  const { jobId } = options;
  if (typeof jobId !== "string" || jobId === "" || !isPlainHeaderValue(jobId)) {
    throw new TypeError("signatureHeader: jobId must be the Supaqueue-Job-Id header's value (not empty)");
  }
  const attempt = String(options.attempt);
  if (
    (typeof options.attempt !== "number" && typeof options.attempt !== "string") ||
    !DECIMAL.test(attempt)
  ) {
    throw new TypeError("signatureHeader: attempt must be a non-negative integer (Supaqueue-Attempt)");
  }
  const idempotencyKey = options.idempotencyKey ?? "";
  if (typeof idempotencyKey !== "string" || !isPlainHeaderValue(idempotencyKey)) {
    throw new TypeError("signatureHeader: idempotencyKey must be the Idempotency-Key header's value");
  }
  const timestamp = Math.floor((options.now ?? Date.now()) / 1000);
  const content = signedContent({
    timestamp,
    method: options.method,
    path: url.pathname,
    query: url.search.replace(/^\?/, ""),
    jobId,
    attempt,
    idempotencyKey,
    body: options.body,
  });
  const macs = await Promise.all(keys.map((key) => hmac(key, content)));
  return [`t=${timestamp}`, ...macs.map((mac) => `v2=${toHex(mac)}`)].join(",");
}

/**
 * A request's headers as received: a WHATWG `Headers` (Deno's and the edge runtime's `req.headers`), or a record
 * like node:http's `req.headers` (lower-case names; an array when a header came more than once, which is refused).
 */
export type ReceivedHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

export interface VerifyOptions {
  /** The request's headers: Supaqueue-Signature, Supaqueue-Job-Id, Supaqueue-Attempt and Idempotency-Key. */
  headers: ReceivedHeaders;
  method: string;
  /** The URL as received: absolute (Deno's `req.url`) or path and query (Node's `req.url`). */
  url: string;
  /** The raw body as received, before any JSON parsing (`await req.text()`); empty for GET and DELETE. */
  body: SignedBody;
  /** The keys to accept: the current one, and during a rotation the other one too. */
  keys: string[];
  /**
   * The path the signer sent, when a gateway or proxy rewrote it on the way: for a Supabase edge function
   * "/functions/v1/<name>" (the function itself sees "/<name>"). Default: the received URL's pathname.
   */
  path?: string;
  /** How old (or how far in the future) the timestamp may be. Default 300 seconds. */
  toleranceSeconds?: number;
  /** Milliseconds since the epoch (default: Date.now()). */
  now?: number;
}

export type VerifyResult =
  | { ok: true; timestamp: number }
  | { ok: false; reason: "missing" | "malformed" | "stale" | "mismatch" };

/**
 * A header's value: null when absent, "repeated" when it came more than once (as an array of several values). `name`
 * in lower case. Also what report_callback.ts reads a call's callback with.
 */
export function readHeader(headers: ReceivedHeaders, name: string): string | null | "repeated" {
  if (typeof (headers as Headers).get === "function") return (headers as Headers).get(name);
  const record = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
  const values: string[] = [];
  // node:http gives lower-case names; a record written by hand may not.
  for (const key of Object.keys(record)) {
    if (key.toLowerCase() !== name) continue;
    const value = record[key];
    if (typeof value === "string") values.push(value);
    else if (Array.isArray(value)) values.push(...value);
  }
  if (values.length > 1) return "repeated";
  return values[0] ?? null;
}

/**
 * Checks a request's Supaqueue-Signature and says why it was refused: the header is missing; it, Supaqueue-Job-Id
 * or Supaqueue-Attempt is malformed, missing or repeated; its timestamp is outside the tolerance (a replay, or a
 * badly wrong clock); or no v2 matches any of `keys` for this method, path, query, job id, attempt,
 * Idempotency-Key and body. Throws when no key is given, `headers` is not given or `path` is not a path, since
 * those are configuration mistakes rather than bad requests.
 */
export async function checkSupaqueueSignature(options: VerifyOptions): Promise<VerifyResult> {
  const keys = options.keys.filter((k) => typeof k === "string" && k !== "");
  if (keys.length === 0)
    throw new TypeError("verifySupaqueueSignature: no keys given (pass the queue's signing key)");
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (!(tolerance >= 0)) throw new TypeError("verifySupaqueueSignature: toleranceSeconds must be 0 or more");
  if (typeof options.headers !== "object" || options.headers === null) {
    throw new TypeError(
      "verifySupaqueueSignature: headers must be the request's headers (a Headers, or node:http's req.headers)",
    );
  }
  let signerPath: string | null = null;
  if (options.path !== undefined) {
    const parsed =
      typeof options.path === "string" && /^\/[^?#]*$/.test(options.path) && parseUrl(options.path);
    if (!parsed) {
      throw new TypeError('verifySupaqueueSignature: path must be a path such as "/functions/v1/<name>"');
    }
    signerPath = parsed.pathname;
  }

  const header = readHeader(options.headers, "supaqueue-signature");
  if (header === "repeated") return { ok: false, reason: "malformed" };
  if (!header) return { ok: false, reason: "missing" };

  let timestamp: number | null = null;
  const given: Uint8Array[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (eq < 0) return { ok: false, reason: "malformed" };
    if (name === "t") {
      if (timestamp !== null || !DECIMAL.test(value) || value.length > 12)
        return { ok: false, reason: "malformed" };
      timestamp = Number(value);
    } else if (name === "v2") {
      if (!/^[0-9a-f]{64}$/i.test(value) || given.length >= MAX_SIGNATURES)
        return { ok: false, reason: "malformed" };
      given.push(fromHex(value));
    }
    // Other names (the former v1, later schemes) are ignored: never accepted, and never an error by themselves.
  }
  if (timestamp === null || given.length === 0) return { ok: false, reason: "malformed" };

  const jobId = readHeader(options.headers, "supaqueue-job-id");
  const attempt = readHeader(options.headers, "supaqueue-attempt");
  const idempotencyKey = readHeader(options.headers, "idempotency-key") ?? "";
  if (jobId === null || jobId === "repeated" || jobId === "" || !isPlainHeaderValue(jobId))
    return { ok: false, reason: "malformed" };
  if (attempt === null || attempt === "repeated" || !DECIMAL.test(attempt))
    return { ok: false, reason: "malformed" };
  if (idempotencyKey === "repeated" || !isPlainHeaderValue(idempotencyKey))
    return { ok: false, reason: "malformed" };
  const url = parseUrl(options.url);
  if (!url) return { ok: false, reason: "malformed" };

  if (Math.abs((options.now ?? Date.now()) / 1000 - timestamp) > tolerance)
    return { ok: false, reason: "stale" };

  const content = signedContent({
    timestamp,
    method: options.method,
    path: signerPath ?? url.pathname,
    query: url.search.replace(/^\?/, ""),
    jobId,
    attempt,
    idempotencyKey,
    body: options.body,
  });
  const expected = await Promise.all(keys.map((key) => hmac(key, content)));
  // Every pair is compared, with no early exit, so the time taken says nothing about which one matched.
  let matched = false;
  for (const mac of expected) for (const candidate of given) matched = bytesEqual(mac, candidate) || matched;
  return matched ? { ok: true, timestamp } : { ok: false, reason: "mismatch" };
}

/** True when the request carries a fresh Supaqueue-Signature made with one of `keys`. */
export async function verifySupaqueueSignature(options: VerifyOptions): Promise<boolean> {
  return (await checkSupaqueueSignature(options)).ok;
}
