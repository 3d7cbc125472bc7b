/**
 * Callbacks: calls longer than an edge worker lives. A queue with `callback_timeout` gives each call a callback URL and
 * a token of its own (headers Supaqueue-Callback-Url and Supaqueue-Callback-Token, request.ts); a target that answers
 * 202 has taken the work on, and later reports how it ended by POSTing to that URL, this function's /callback path:
 *
 *   POST https://<ref>.supabase.co/functions/v1/execute_current_job/callback
 *   Supaqueue-Callback-Token: <the call's token>
 *   {"status": 200, "body": {...}}   (or {"status": 500, "error": "..."}; {"status": 202} while still working)
 *
 * The token is `<64 hex>.<HMAC-SHA256 of "callback.<64 hex>" keyed with the shared secret, in hex>`
 * (supaqueue._callback_token): its MAC is checked here before the database is asked anything, so a forged token costs
 * the database nothing; the database then finds the call by the token's SHA-256 (supaqueue.complete_callback) and
 * records the outcome once: a late or repeated callback is answered 409 and changes nothing.
 */

import { hmac, toHex } from "../_shared/verify_signature.ts";
import { json, readBytes } from "./body.ts";
import { CALLBACK_TOKEN_HEADER } from "./call.ts";
import { type CallbackReport, type CallbackResult, type Database, RpcError } from "./rpc.ts";
import { equalInConstantTime } from "./wakeup.ts";

/** The path of this function that takes callbacks. */
export const CALLBACK_PATH = "/callback";

/**
 * The largest callback body: the result an on_success step may take (config.max_chain_body_bytes, at most 1,000,000)
 * with room for its JSON envelope; the database refuses a result larger than its own bound by failing the step.
 */
const MAX_CALLBACK_BYTES = 2 * 1024 * 1024;

const TOKEN = /^([0-9a-f]{64})\.([0-9a-f]{64})$/;

/** Whether a token is one this project's database made: its MAC, keyed with the shared secret. */
export async function isCallbackToken(token: string, secret: string): Promise<boolean> {
  const parts = TOKEN.exec(token);
  if (!parts) return false;
  const expected = toHex(await hmac(secret, new TextEncoder().encode(`callback.${parts[1]}`)));
  return equalInConstantTime(expected, parts[2] as string);
}

/** Reads a callback's JSON body: the report without its token, or a message naming the field that is wrong. */
function parseReport(bytes: Uint8Array): Omit<CallbackReport, "token"> | string {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return 'the body must be JSON: {"status": 200, "body": ...}';
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return 'the body must be a JSON object: {"status": 200, "body": ...}';
  }
  const { status, body, error } = value as { status?: unknown; body?: unknown; error?: unknown };
  if (typeof status !== "number" || !Number.isInteger(status) || status < 100 || status > 599) {
    return '"status" must be an HTTP status from 100 to 599: 2xx when the work succeeded, 202 while it goes on';
  }
  if (error !== undefined && error !== null && typeof error !== "string") return '"error" must be a string';
  return {
    status,
    body: body === undefined || body === null ? null : typeof body === "string" ? body : JSON.stringify(body),
    error: typeof error === "string" ? error : null,
  };
}

/** Answers a POST to /callback (see the module's comment). Never throws. */
export async function handleCallback(
  request: Request,
  deps: {
    secret: string;
    db: Database;
    logger: { warn(message: string): void; error(message: string): void };
  },
): Promise<Response> {
  const token = request.headers.get(CALLBACK_TOKEN_HEADER);
  if (!token) {
    return json(401, {
      error: "callback_unauthenticated",
      message: `send the call's ${CALLBACK_TOKEN_HEADER} header back`,
    });
  }
  if (!(await isCallbackToken(token, deps.secret))) {
    deps.logger.warn("execute_current_job: callback refused: a token this project did not make");
    return json(401, { error: "callback_bad_token" });
  }
  const bytes = await readBytes(request, MAX_CALLBACK_BYTES);
  if (bytes === null) {
    return json(413, { error: "callback_too_large", message: `at most ${MAX_CALLBACK_BYTES} bytes` });
  }
  const report = parseReport(bytes);
  if (typeof report === "string") return json(400, { error: "callback_malformed", message: report });
  let result: CallbackResult;
  try {
    result = await deps.db.completeCallback({ token, ...report });
  } catch (error) {
    deps.logger.error(`execute_current_job: recording a callback failed: ${(error as Error).message}`);
    // The target may send it again: nothing was recorded.
    return json(502, { error: error instanceof RpcError ? error.code("callback") : "callback_failed" });
  }
  if (result === "recorded") return json(200, { recorded: true });
  if (result === "extended") return json(200, { extended: true });
  return json(409, {
    error: "callback_not_expected",
    message:
      "no call waits for this token: its outcome was already recorded, its callback_timeout passed, or it was cancelled",
  });
}
