import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { checkSupaqueueSignature, type VerifyResult } from "../../functions/_shared/verify_signature.ts";

/**
 * Local HTTP targets for calls: one server whose path chooses the behaviour, recording every request it receives.
 *
 *   /ok            200 with a small JSON body
 *   /slow/<ms>     200 after <ms> milliseconds
 *   /status/<n>    answers HTTP <n> (500, 404, 408, ...)
 *   /busy/<s>      429 with `Retry-After: <s>` (seconds); /busy-date/<s> gives the same delay as an HTTP date
 *   /unavailable/<s>  503 with `Retry-After: <s>`
 *   /text          200 with a plain-text (non-JSON) body
 *   /items/<n>     200 with {"items": [{"i": 1, "pad": "…"}, …]}: n items of about 100 characters each
 *   /empty         204 with no body
 *   /huge/<mb>     200 streaming <mb> MB of "x" (respecting back-pressure); `hugeBytesSent` counts what went out
 *   /hang          never answers (until the client goes away)
 *   /close         destroys the connection without answering
 *   /half-close    sends the status line, headers and part of the body, then destroys the connection
 *   /<name>        for a name in `functions`: 200 naming <name>; stands for an edge function of the project, which
 *                  the gateway stand-in (gateway.ts) reaches with its path stripped of /functions/v1
 *   /sequence/<name>  answers the next status from sequences[name] (then 200), to script retries
 *   /signed/<name> verifies Supaqueue-Signature with the keys in signingKeys[name], as a user's target would with
 *                  functions/_shared/verify_signature.ts: 200 when valid, 401 naming the reason otherwise
 *
 * Every request records when it arrived and how many requests (itself included) the server was then answering,
 * so tests can measure the concurrency and rate a target really saw.
 */
export interface ReceivedRequest {
  method: string;
  path: string;
  /** The raw query string, without "?". */
  rawQuery: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body: string;
  at: number;
  /** Requests being answered when this one arrived, itself included. */
  inFlight: number;
  /** For /signed/<name>: what the verifier said. */
  verification?: VerifyResult;
}

export interface Targets {
  /** Base URL, e.g. http://127.0.0.1:PORT (no trailing slash). */
  url: string;
  requests: ReceivedRequest[];
  /** Requests received on a path (the path without its query). */
  to(path: string): ReceivedRequest[];
  /** Resolves once `count` requests have arrived on `path` (rejects after `timeoutMs`). */
  waitFor(path: string, count?: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  /** Statuses answered in turn by /sequence/<name>. */
  sequences: Map<string, number[]>;
  /** The keys /signed/<name> accepts. */
  signingKeys: Map<string, string[]>;
  /** Names of the project's edge functions this server plays: /<name> answers 200 naming <name>. */
  functions: Set<string>;
  /** Bytes written by /huge before the client stopped reading. */
  readonly hugeBytesSent: number;
  stop(): Promise<void>;
}

export async function startTargets(): Promise<Targets> {
  const requests: ReceivedRequest[] = [];
  const sequences = new Map<string, number[]>();
  const signingKeys = new Map<string, string[]>();
  const functions = new Set<string>();
  let inFlight = 0;
  const waiters = new Set<() => void>();
  let hugeBytesSent = 0;

  function record(req: IncomingMessage, body: string): ReceivedRequest {
    const url = new URL(req.url ?? "/", "http://target");
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(req.headers)) {
      headers[name] = Array.isArray(value) ? value.join(", ") : (value ?? "");
    }
    const received: ReceivedRequest = {
      method: req.method ?? "",
      path: url.pathname,
      rawQuery: url.search.replace(/^\?/, ""),
      query: Object.fromEntries(url.searchParams),
      headers,
      body,
      at: Date.now(),
      inFlight,
    };
    requests.push(received);
    for (const wake of waiters) wake();
    return received;
  }

  function answer(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) {
    res.writeHead(status, { "Content-Type": "application/json", ...headers });
    res.end(body);
  }

  async function streamHuge(res: ServerResponse, megabytes: number) {
    res.writeHead(200, { "Content-Type": "text/plain" });
    const chunk = Buffer.alloc(64 * 1024, "x");
    const total = megabytes * 1024 * 1024;
    let closed = false;
    res.on("close", () => {
      closed = true;
    });
    while (!closed && hugeBytesSent < total) {
      hugeBytesSent += chunk.length;
      if (!res.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off("drain", done);
            res.off("close", done);
            resolve();
          };
          res.on("drain", done);
          res.on("close", done);
        });
      }
    }
    if (!closed) res.end();
  }

  async function verify(req: IncomingMessage, res: ServerResponse, received: ReceivedRequest, name: string) {
    const result = await checkSupaqueueSignature({
      headers: req.headers,
      method: received.method,
      url: req.url ?? "/",
      body: received.body,
      keys: signingKeys.get(name) ?? [],
    });
    received.verification = result;
    if (result.ok) return answer(res, 200, JSON.stringify({ verified: true }));
    return answer(res, 401, JSON.stringify({ error: `bad signature: ${result.reason}` }));
  }

  const server = createServer((req, res) => {
    inFlight++;
    res.once("close", () => inFlight--);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const received = record(req, Buffer.concat(chunks).toString("utf8"));
      let [, route = "", arg = ""] = received.path.split("/");
      // The routes that play a misbehaving edge function answer under /functions/v1/ too.
      const asFunction = /^\/functions\/v1\/(redirect|invalid-jwt)$/.exec(received.path)?.[1];
      if (asFunction) [route, arg] = [asFunction, ""];
      const n = Number(arg);
      if (functions.has(route)) return answer(res, 200, JSON.stringify({ function: route }));
      switch (route) {
        case "ok":
          return answer(res, 200, JSON.stringify({ ok: true }));
        case "slow":
          return void setTimeout(() => answer(res, 200, JSON.stringify({ ok: true, slow: n })), n);
        case "status":
          return answer(res, n, JSON.stringify({ status: n }));
        case "busy":
          return answer(res, 429, JSON.stringify({ error: "busy" }), { "Retry-After": String(n) });
        case "busy-date":
          return answer(res, 429, JSON.stringify({ error: "busy" }), {
            "Retry-After": new Date(Date.now() + n * 1000).toUTCString(),
          });
        case "unavailable":
          return answer(res, 503, JSON.stringify({ error: "unavailable" }), { "Retry-After": String(n) });
        case "items":
          return answer(
            res,
            200,
            JSON.stringify({
              items: Array.from({ length: n }, (_, i) => ({ i: i + 1, pad: "p".repeat(80) })),
            }),
          );
        case "text":
          res.writeHead(200, { "Content-Type": "text/plain" });
          return res.end("plain text, not JSON <>&");
        case "empty":
          res.writeHead(204);
          return res.end();
        case "huge":
          return void streamHuge(res, n || 64);
        case "hang":
          return;
        case "close":
          return req.socket.destroy();
        case "half-close":
          res.writeHead(200, { "Content-Type": "application/json", "Content-Length": "1000" });
          res.write('{"partial": tr');
          return void setTimeout(() => req.socket.destroy(), 50);
        case "redirect": {
          // 302 to ?to=<absolute URL>: the function must not follow it (the project's key and secret headers would
          // reach the other origin).
          const to = new URLSearchParams(received.rawQuery).get("to") ?? "/ok";
          return answer(res, 302, JSON.stringify({ moved: to }), { Location: to });
        }
        case "invalid-jwt":
          // What the platform answers for a function deployed with verify_jwt when the bearer token is not a JWT.
          return answer(res, 401, JSON.stringify({ code: 401, message: "Invalid JWT" }));
        case "signed":
          return void verify(req, res, received, arg).catch((error) =>
            answer(res, 500, JSON.stringify({ error: String(error) })),
          );
        case "sequence": {
          const status = sequences.get(arg)?.shift() ?? 200;
          return answer(res, status, JSON.stringify({ status }));
        }
        default:
          return answer(res, 404, JSON.stringify({ error: "no such target route" }));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;

  const to = (path: string) => requests.filter((r) => r.path === path);
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    to,
    sequences,
    signingKeys,
    functions,
    get hugeBytesSent() {
      return hugeBytesSent;
    },
    waitFor(path, count = 1, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (to(path).length >= count) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(to(path));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`target ${path}: ${to(path).length} of ${count} requests after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
