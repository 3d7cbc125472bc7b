/**
 * The hop from the database to execute_current_job (hop version 2), as the function checks it.
 *
 * When a transaction that started calls commits, the database sends (through pg_net) one POST per 100 calls:
 *
 *   body:    {"v": 2, "ids": [17, 18, ...]}                       current-job ids only, nothing worth stealing
 *            {"v": 2, "ids": [], "probe": "<uuid>"}              a probe of the whole loop (supaqueue.probe())
 *   header:  Supaqueue-Wakeup: v=2,t=<unix ms>,w=<window ms>,mac=<hex>
 *   mac  =   lowercase hex of HMAC-SHA256(SUPAQUEUE_SECRET, "v2.<t>.<w>.<raw body bytes>")
 *
 * (supaqueue._wake in sql/0001_supaqueue.sql). pg_net's tables are readable by every database role, so the request
 * only names calls; the function then claims them with the service-role key, which hands out each call's details
 * once, while its lease is live. A replayed wakeup therefore claims nothing, and a forged one needs the secret.
 * The MAC is checked over the raw bytes before anything parses them; `t + w` bounds how long a captured wakeup is
 * accepted at all (w covers pg_net's request timeout, its wait between batches and the clock skew allowed).
 * Uses WebCrypto only: runs in Deno, the edge runtime and Node.
 */

import { hmac, toHex } from "../_shared/verify_signature.ts";

export const WAKEUP_HEADER = "Supaqueue-Wakeup";
const HOP_VERSION = 2;
/** The most ids one wakeup may name (the database sends at most 100). */
const MAX_WAKEUP_IDS = 1000;
/** The largest wakeup body read; larger ones are refused unread. */
export const MAX_WAKEUP_BYTES = 64 * 1024;
/** A window longer than this is refused even with a valid MAC: a freshness bound that means something. */
const MAX_WINDOW_MS = 15 * 60 * 1000;
/** How far in the future a wakeup's timestamp may be (the database's clock ahead of the function's). */
const MAX_FUTURE_MS = 60 * 1000;

/** Why a wakeup was refused: the short code the function answers pg_net with (net._http_response shows it). */
type WakeupRefusal =
  | "wakeup_unauthenticated"
  | "wakeup_malformed"
  | "wakeup_hop_version_unsupported"
  | "wakeup_bad_mac"
  | "wakeup_stale";

/** What checkWakeup finds: a valid wakeup's calls and the probe it carries (supaqueue.probe()), or why it was refused. */
type WakeupCheck = { ok: true; ids: number[]; probe: string | null } | { ok: false; refusal: WakeupRefusal };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const encoder = new TextEncoder();

/** The bytes a wakeup's MAC covers: "v2.<t>.<w>." followed by the raw body. */
function macContent(t: string, w: string, body: Uint8Array): Uint8Array<ArrayBuffer> {
  const head = encoder.encode(`v${HOP_VERSION}.${t}.${w}.`);
  const content = new Uint8Array(head.length + body.length);
  content.set(head, 0);
  content.set(body, head.length);
  return content;
}

/** Compares in time that depends on the length only, never on where the two differ. */
export function equalInConstantTime(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** The Supaqueue-Wakeup header for a body, as the database makes it (tests and tools forge wakeups with it). */
export async function wakeupHeader(options: {
  secret: string;
  body: string | Uint8Array;
  t: number;
  w: number;
}): Promise<string> {
  const body = typeof options.body === "string" ? encoder.encode(options.body) : options.body;
  const mac = toHex(await hmac(options.secret, macContent(String(options.t), String(options.w), body)));
  return `v=${HOP_VERSION},t=${options.t},w=${options.w},mac=${mac}`;
}

/** Parses `v=2,t=...,w=...,mac=...`; null when any part is missing, repeated or not of its form. */
function parseHeader(header: string): { v: string; t: string; w: string; mac: string } | null {
  const fields = new Map<string, string>();
  for (const part of header.split(",")) {
    const eq = part.indexOf("=");
    if (eq < 1) return null;
    const name = part.slice(0, eq).trim();
    if (fields.has(name)) return null;
    fields.set(name, part.slice(eq + 1).trim());
  }
  const v = fields.get("v");
  const t = fields.get("t");
  const w = fields.get("w");
  const mac = fields.get("mac");
  if (!v || !t || !w || !mac) return null;
  if (!/^\d{1,15}$/.test(t) || !/^\d{1,10}$/.test(w) || !/^[0-9a-f]{64}$/.test(mac)) return null;
  return { v, t, w, mac };
}

/**
 * Checks a wakeup: its header, the MAC over the raw body, its freshness, then its body. Returns the ids to claim,
 * or why it was refused. Never throws on bad input.
 */
export async function checkWakeup(options: {
  header: string | null;
  body: Uint8Array;
  secret: string;
  now: number;
}): Promise<WakeupCheck> {
  if (!options.header) return { ok: false, refusal: "wakeup_unauthenticated" };
  const parsed = parseHeader(options.header);
  if (!parsed) return { ok: false, refusal: "wakeup_malformed" };
  if (parsed.v !== String(HOP_VERSION)) return { ok: false, refusal: "wakeup_hop_version_unsupported" };
  const expected = toHex(await hmac(options.secret, macContent(parsed.t, parsed.w, options.body)));
  if (!equalInConstantTime(expected, parsed.mac)) return { ok: false, refusal: "wakeup_bad_mac" };

  const t = Number(parsed.t);
  const w = Number(parsed.w);
  if (w > MAX_WINDOW_MS || options.now > t + w || t > options.now + MAX_FUTURE_MS) {
    return { ok: false, refusal: "wakeup_stale" };
  }

  let body: unknown;
  try {
    body = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(options.body));
  } catch {
    return { ok: false, refusal: "wakeup_malformed" };
  }
  const { v, ids, probe } = (typeof body === "object" && body !== null ? body : {}) as {
    v?: unknown;
    ids?: unknown;
    probe?: unknown;
  };
  if (v !== HOP_VERSION) return { ok: false, refusal: "wakeup_hop_version_unsupported" };
  if (
    !Array.isArray(ids) ||
    ids.length > MAX_WAKEUP_IDS ||
    !ids.every((id) => Number.isSafeInteger(id) && (id as number) > 0)
  ) {
    return { ok: false, refusal: "wakeup_malformed" };
  }
  if (probe !== undefined && (typeof probe !== "string" || !UUID.test(probe))) {
    return { ok: false, refusal: "wakeup_malformed" };
  }
  return { ok: true, ids: ids as number[], probe: probe ?? null };
}
