import { createServer, type IncomingMessage, request, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * A stand-in for the project's API gateway (`https://<ref>.supabase.co`): `/rest/v1/...` goes to `restOrigin` (the
 * PostgREST stand-in) when one is given; requests for execute_current_job go to the Deno process serving it; any
 * other function name goes to `othersOrigin` (the target servers), so queues whose target is an edge function of
 * the project can be tested end to end. As on Supabase, a function sees its path without the `/functions/v1` prefix
 * (`/functions/v1/send-email/x?y=1` arrives as `/send-email/x?y=1`), and a function deployed with verify_jwt on
 * refuses a request without the project's JWT. Other paths go to `othersOrigin` unchanged. One origin serves the
 * REST API and the functions, as SUPABASE_URL does on a project.
 */
export interface Gateway {
  /** The project's URL: what SUPABASE_URL is inside its functions. */
  origin: string;
  /** What supaqueue.configure(functions_url => ...) takes: http://127.0.0.1:PORT/functions/v1 */
  functionsUrl: string;
  /**
   * Where execute_current_job runs; settable once its process listens (it needs the gateway's URL first). Empty: the
   * function is not deployed, and the gateway answers 404 as the platform does.
   */
  executeOrigin: string;
  stop(): Promise<void>;
}

export interface GatewayOptions {
  /** The PostgREST stand-in that `/rest/v1` reaches. */
  restOrigin?: string;
  /** Whether the function of this name was deployed with verify_jwt on (default: none was). */
  verifyJwt?: (name: string) => boolean;
  /** The JWT such a function accepts as `Authorization: Bearer <jwt>` (the service_role key, in tests). */
  jwt?: string;
}

const FUNCTIONS_PREFIX = "/functions/v1";
const EXECUTE_FUNCTION = "execute_current_job";

/** The function a path names, and the path it sees; null for a path outside /functions/v1/<name>. */
function functionRoute(path: string): { name: string; path: string } | null {
  const match = /^\/functions\/v1\/([^/?]+)/.exec(path);
  if (!match?.[1]) return null;
  return { name: match[1], path: path.slice(FUNCTIONS_PREFIX.length) };
}

/** What the platform answers for a function deployed with verify_jwt on, called without a valid JWT. */
function refuseJwt(res: ServerResponse): void {
  res.writeHead(401, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ code: 401, message: "Invalid JWT" }));
}

/** Sends the request on to `url` and pipes the answer back. */
function forward(req: IncomingMessage, res: ServerResponse, url: URL): void {
  const forwarded = request(url, { method: req.method, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  forwarded.on("error", () => {
    // The function or target went away mid-call: end the client's connection the same way.
    res.destroy();
  });
  req.pipe(forwarded);
}

export async function startGateway(
  executeOrigin: string,
  othersOrigin: string,
  options: GatewayOptions = {},
): Promise<Gateway> {
  const state = { executeOrigin };
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    if (options.restOrigin && path.startsWith("/rest/v1/"))
      return forward(req, res, new URL(path, options.restOrigin));
    const route = functionRoute(path);
    if (!route) return forward(req, res, new URL(path, othersOrigin));
    if (options.verifyJwt?.(route.name) && req.headers.authorization !== `Bearer ${options.jwt}`) {
      req.resume();
      return refuseJwt(res);
    }
    if (route.name === EXECUTE_FUNCTION && state.executeOrigin === "") {
      // What the platform answers for a function that is not deployed.
      req.resume();
      res.writeHead(404, { "Content-Type": "application/json" });
      return void res.end(JSON.stringify({ code: "NOT_FOUND", message: "Requested function was not found" }));
    }
    const origin = route.name === EXECUTE_FUNCTION ? state.executeOrigin : othersOrigin;
    forward(req, res, new URL(route.path, origin));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    functionsUrl: `http://127.0.0.1:${port}${FUNCTIONS_PREFIX}`,
    get executeOrigin() {
      return state.executeOrigin;
    },
    set executeOrigin(origin) {
      state.executeOrigin = origin;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
