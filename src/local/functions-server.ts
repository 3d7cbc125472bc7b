import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { trimFunctionsUrl } from "../install/deploy-settings.ts";

const FUNCTIONS_PREFIX = "/functions/v1";

/** Answers a web Request: the edge function's handler, or a local target. */
export type WebHandler = (request: Request) => Promise<Response>;

/**
 * A local stand-in for a project's functions gateway (`https://<ref>.supabase.co/functions/v1/<name>`), served by
 * this process on 127.0.0.1. `/functions/v1/<name>` goes to the function of that name in `functions`, which sees
 * its path without the `/functions/v1` prefix as on Supabase (`/functions/v1/send-email/x?y=1` arrives as
 * `/send-email/x?y=1`); any other path goes to `fallback` unchanged (forwardTo needs the whole path). Both the
 * functions and the routes can be set after the server has started, since the handler needs the secret that
 * installing with this server's URL produces.
 */
export interface FunctionsServer {
  origin: string;
  /** `origin/functions/v1`: what supaqueue.configure(functions_url => ...) takes. */
  functionsUrl: string;
  functions: Map<string, WebHandler>;
  fallback: WebHandler | undefined;
  stop(): Promise<void>;
}

export async function startFunctionsServer(port = 0): Promise<FunctionsServer> {
  const functions = new Map<string, WebHandler>();
  const state: { fallback: WebHandler | undefined } = { fallback: undefined };
  const server = createServer((req, res) => {
    void serve(req, res).catch((error) => {
      if (!res.headersSent) res.writeHead(500, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: `local functions server: ${(error as Error).message}` }));
    });
  });

  /** The function the path names (seeing its path without the prefix), else the fallback, else a 404 saying why. */
  async function respond(req: IncomingMessage): Promise<Response> {
    const path = req.url ?? "/";
    const name = /^\/functions\/v1\/([^/?]+)/.exec(path)?.[1];
    const fn = name ? functions.get(name) : undefined;
    if (fn) return fn(await toRequest(req, origin, path.slice(FUNCTIONS_PREFIX.length)));
    if (state.fallback) return state.fallback(await toRequest(req, origin, path));
    req.resume();
    return Response.json(
      {
        error: `no edge function "${name ?? new URL(path, origin).pathname}" in local mode: give the queue a url:, or pass --forward-functions to reach \`supabase functions serve\``,
      },
      { status: 404 },
    );
  }

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const response = await respond(req);
    const body = Buffer.from(await response.arrayBuffer());
    // fetch has already decoded a forwarded body: its encoding and length headers no longer describe it.
    const headers = Object.fromEntries(
      [...response.headers.entries()].filter(
        ([name]) => name !== "content-encoding" && name !== "content-length",
      ),
    );
    res.writeHead(response.status, headers);
    res.end(body);
  }

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    origin,
    functionsUrl: `${origin}${FUNCTIONS_PREFIX}`,
    functions,
    get fallback() {
      return state.fallback;
    },
    set fallback(handler) {
      state.fallback = handler;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The web Request for `req`, addressed to `path` (the one the function or fallback should see). */
async function toRequest(req: IncomingMessage, origin: string, path: string): Promise<Request> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  const method = req.method ?? "GET";
  const body =
    method === "GET" || method === "HEAD" || chunks.length === 0 ? undefined : Buffer.concat(chunks);
  return new Request(new URL(path, origin), { method, headers, body });
}

/**
 * Forwards calls to functions this process does not serve (a queue with `function: send-email`) to another
 * functions base URL, e.g. `supabase functions serve` at http://127.0.0.1:54321/functions/v1.
 */
export function forwardTo(functionsUrl: string): WebHandler {
  const base = trimFunctionsUrl(functionsUrl);
  return async (request) => {
    const url = new URL(request.url);
    const rest = url.pathname.replace(/^\/functions\/v1/, "");
    const headers = new Headers(request.headers);
    headers.delete("host");
    const hasBody = request.method !== "GET" && request.method !== "HEAD";
    return fetch(`${base}${rest}${url.search}`, {
      method: request.method,
      headers,
      body: hasBody ? await request.arrayBuffer() : undefined,
    });
  };
}
