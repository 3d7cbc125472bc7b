/**
 * Supaqueue request signatures: how execute_current_job signs a call, and how a target verifies it.
 *
 * This file has no dependencies (WebCrypto only) and runs unchanged in Deno, Supabase edge functions, Node 20+ and
 * browsers. execute_current_job imports its signer from here, so signer and verifier cannot drift apart. A target
 * may copy this file as it is, or import it.
 *
 * The scheme (version v1):
 *
 *   Supaqueue-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]
 *
 *   <hex> = lowercase hex of HMAC-SHA256(key, "<t>.<METHOD>.<query>\n<body>")
 *
 *   - key: the signing key exactly as supaqueue.rotate_signing_key returned it, as UTF-8 bytes (not decoded);
 *   - METHOD: the request method in upper case (GET, POST, PUT, PATCH, DELETE);
 *   - query: the URL's query string without the leading "?" (empty when there is none), as the WHATWG URL
 *     parser serializes it. For GET and DELETE the job's payload travels here, so it is signed too;
 *   - body: the exact request body as sent (UTF-8), empty for GET and DELETE.
 *
 * One v1 is sent per key the queue honours: the current key first, then the previous one while a rotation's
 * overlap lasts. A target accepts the request when any v1 matches any key it knows, so either side can switch keys
 * first. The URL's scheme, host and path are not signed, on purpose: Supabase's functions gateway and many
 * proxies rewrite the path (an edge function sees `/<name>`, not `/functions/v1/<name>`), and a signing key
 * already belongs to one queue, which calls one URL. Give each queue its own key (the default).
 */

/** The header that carries the signature. */
export const SIGNATURE_HEADER = "Supaqueue-Signature";

/** How far a signature's timestamp may be from the verifier's clock, either way, by default. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** More v1 entries than this in one header are refused rather than checked (each costs an HMAC per key). */
const MAX_SIGNATURES = 8;

const encoder = new TextEncoder();

/** The bytes a v1 signature covers: `<t>.<METHOD>.<query>\n<body>`. */
export function signedContent(
  timestamp: number,
  method: string,
  url: string,
  body: string | Uint8Array | ArrayBuffer | null | undefined,
): Uint8Array<ArrayBuffer> {
  const head = encoder.encode(`${timestamp}.${method.toUpperCase()}.${queryOf(url)}\n`);
  const tail = typeof body === "string" ? encoder.encode(body) : new Uint8Array(body ?? new ArrayBuffer(0));
  const content = new Uint8Array(head.length + tail.length);
  content.set(head, 0);
  content.set(tail, head.length);
  return content;
}

/** The query string of an absolute URL or of a path such as Node's `req.url`, without "?", WHATWG-serialized. */
export function queryOf(url: string): string {
  return new URL(url, "http://supaqueue.invalid").search.replace(/^\?/, "");
}

async function hmac(key: string, content: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  const cryptoKey = await crypto.subtle.importKey(
    "raw",
    encoder.encode(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, content));
}

function toHex(bytes: Uint8Array): string {
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
  /** The request URL as sent (absolute). */
  url: string;
  body: string | Uint8Array | ArrayBuffer | null | undefined;
  /** Milliseconds since the epoch (default: Date.now()). */
  now?: number;
}

/** The value of the Supaqueue-Signature header for a request: `t=<seconds>,v1=<hex>` per key. */
export async function signatureHeader(options: SignOptions): Promise<string> {
  const keys = options.keys.filter((k) => k !== "");
  if (keys.length === 0) throw new TypeError("signatureHeader: no signing key given");
  const timestamp = Math.floor((options.now ?? Date.now()) / 1000);
  const content = signedContent(timestamp, options.method, options.url, options.body);
  const macs = await Promise.all(keys.map((key) => hmac(key, content)));
  return [`t=${timestamp}`, ...macs.map((mac) => `v1=${toHex(mac)}`)].join(",");
}

export interface VerifyOptions {
  /**
   * The Supaqueue-Signature header as received: Deno's `req.headers.get(...)` or Node's `req.headers[...]` (an
   * array there when the header came more than once, which is refused as malformed). Null or undefined: absent.
   */
  header: string | readonly string[] | null | undefined;
  method: string;
  /** The URL as received: absolute (Deno's `req.url`) or path and query (Node's `req.url`). Only its query counts. */
  url: string;
  /** The raw body as received, before any JSON parsing (`await req.text()`); empty for GET and DELETE. */
  body: string | Uint8Array | ArrayBuffer | null | undefined;
  /** The keys to accept: the current one, and during a rotation the other one too. */
  keys: string[];
  /** How old (or how far in the future) the timestamp may be. Default 300 seconds. */
  toleranceSeconds?: number;
  /** Milliseconds since the epoch (default: Date.now()). */
  now?: number;
}

export type VerifyResult =
  | { ok: true; timestamp: number }
  | { ok: false; reason: "missing" | "malformed" | "stale" | "mismatch" };

/**
 * Checks a request's Supaqueue-Signature and says why it was refused: the header is missing or malformed, its
 * timestamp is outside the tolerance (a replay, or a badly wrong clock), or no v1 matches any of `keys`.
 * Throws when no key is given, since that is a configuration mistake rather than a bad request.
 */
export async function checkSupaqueueSignature(options: VerifyOptions): Promise<VerifyResult> {
  const keys = options.keys.filter((k) => typeof k === "string" && k !== "");
  if (keys.length === 0)
    throw new TypeError("verifySupaqueueSignature: no keys given (pass the queue's signing key)");
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (!(tolerance >= 0)) throw new TypeError("verifySupaqueueSignature: toleranceSeconds must be 0 or more");
  if (typeof options.header !== "string" && options.header && options.header.length > 1) {
    return { ok: false, reason: "malformed" };
  }
  const header = typeof options.header === "string" ? options.header : options.header?.[0];
  if (!header) return { ok: false, reason: "missing" };

  let timestamp: number | null = null;
  const given: Uint8Array[] = [];
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (eq < 0) return { ok: false, reason: "malformed" };
    if (name === "t") {
      if (timestamp !== null || !/^\d{1,12}$/.test(value)) return { ok: false, reason: "malformed" };
      timestamp = Number(value);
    } else if (name === "v1") {
      if (!/^[0-9a-f]{64}$/i.test(value) || given.length >= MAX_SIGNATURES)
        return { ok: false, reason: "malformed" };
      given.push(fromHex(value));
    }
    // Other names are later schemes (v2, ...): ignored, so old verifiers keep working beside new signers.
  }
  if (timestamp === null || given.length === 0) return { ok: false, reason: "malformed" };
  if (Math.abs((options.now ?? Date.now()) / 1000 - timestamp) > tolerance)
    return { ok: false, reason: "stale" };

  const content = signedContent(timestamp, options.method, options.url, options.body);
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
