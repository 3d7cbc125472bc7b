import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";

/**
 * Who may talk to the dashboard. It listens on 127.0.0.1, but any web page the user opens can send requests there
 * (a form posted cross-site, or a name of the attacker's that resolves to 127.0.0.1: DNS rebinding). So every
 * request must:
 * - name this server in `Host` (127.0.0.1:PORT or localhost:PORT, or the --host given): a rebound name is refused;
 * - come from this origin when it says where it comes from (`Origin`, `Sec-Fetch-Site`), and every POST must say so;
 * - carry the token printed in the URL: as `?token=` once (answered with an HttpOnly, SameSite=Strict cookie and a
 *   redirect that drops it from the address bar), then as that cookie, or as `Authorization: Bearer <token>`.
 */
export interface Guard {
  token: string;
  /** Lower-case `host:port` values a request may name. */
  hosts: Set<string>;
  /** The cookie's name; cookies are not kept apart by port, so it holds the port. */
  cookie: string;
}

export type Verdict =
  | { ok: true }
  | { ok: false; status: number; message: string }
  | { ok: false; status: 303; location: string; setCookie: string; message: string };

export function check(guard: Guard, req: IncomingMessage): Verdict {
  const host = (req.headers.host ?? "").toLowerCase();
  if (!guard.hosts.has(host)) {
    return { ok: false, status: 403, message: `Host "${host}" is not this dashboard's address` };
  }
  const origin = req.headers.origin;
  const site = req.headers["sec-fetch-site"];
  if (
    (origin !== undefined && origin !== `http://${host}`) ||
    (site !== undefined && site === "cross-site")
  ) {
    return { ok: false, status: 403, message: "a request from another origin is refused" };
  }
  if (req.method !== "GET" && req.method !== "HEAD" && origin === undefined) {
    return { ok: false, status: 403, message: "a POST must say where it comes from (Origin)" };
  }
  const url = new URL(req.url ?? "/", `http://${host}`);
  const given = url.searchParams.get("token");
  if (given !== null && req.method === "GET" && same(given, guard.token)) {
    url.searchParams.delete("token");
    return {
      ok: false,
      status: 303,
      location: url.pathname + url.search,
      setCookie: `${guard.cookie}=${guard.token}; HttpOnly; SameSite=Strict; Path=/`,
      message: "signed in",
    };
  }
  if (same(cookieValue(req.headers.cookie, guard.cookie), guard.token)) return { ok: true };
  const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
  if (same(bearer, guard.token)) return { ok: true };
  return {
    ok: false,
    status: 401,
    message:
      "open the dashboard with the URL it printed (it holds the token), or send Authorization: Bearer <token>",
  };
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return undefined;
}

/** Compares in constant time (by their digests, so a length does not show either). */
function same(given: string | undefined, token: string): boolean {
  if (given === undefined) return false;
  const digest = (value: string) => createHash("sha256").update(value).digest();
  return timingSafeEqual(digest(given), digest(token));
}
