import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import pg from "pg";
import { connect, connectionConfig } from "../db/connect.ts";
import { transaction } from "../db/transaction.ts";
import { projectRoot } from "../paths.ts";
import { type ActionResult, JOB_ACTIONS, QUEUE_ACTIONS } from "./actions.ts";
import { check, type Guard } from "./guard.ts";
import {
  BadRequest,
  readErrors,
  readJob,
  readJobs,
  readOverview,
  STATUSES,
  type StatusFilter,
  UUID,
} from "./reads.ts";

export interface DashboardOptions {
  /** The project's database (TLS as for every other command: src/db/connect.ts). */
  dbUrl: string;
  /** Where to listen (default 127.0.0.1). Requests must name it (or 127.0.0.1 / localhost) in their Host header. */
  host?: string;
  /** Default: any free port. */
  port?: number;
  /** Serve the pages and the reads, refuse every action. */
  readOnly?: boolean;
  /** The token a request must carry (default: 32 random bytes). */
  token?: string;
}

export interface Dashboard {
  /** The address to open: it holds the token. */
  url: string;
  origin: string;
  token: string;
  stop(): Promise<void>;
}

/** Every statement the dashboard runs gives up after this long, so a slow page never holds the database. */
const STATEMENT_TIMEOUT_MS = 5_000;
/** An action waits at most this long for a lock (a queue being reconfigured by a deploy). */
const LOCK_TIMEOUT_MS = 2_000;

/** The page: plain HTML, CSS and JavaScript, read from src/dashboard/public/ (no build step, no bundle). */
const FILES: Record<string, string> = {
  "/": "index.html",
  "/app.js": "app.js",
  "/style.css": "style.css",
};
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

const SECURITY_HEADERS = {
  "Cache-Control": "no-store",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "X-Frame-Options": "DENY",
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

/**
 * Serves the dashboard: a JSON API over bounded reads (reads.ts) and Supaqueue's own functions (actions.ts), and the
 * page that shows them. Every request passes guard.ts first.
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const host = options.host ?? "127.0.0.1";
  // Connecting once first turns a wrong URL into connect()'s message naming the host and the likely cause.
  const probe = await connect(options.dbUrl);
  try {
    const { rows } = await probe.query<{ installed: boolean }>(
      "select to_regclass('supaqueue.queue') is not null as installed",
    );
    if (!rows[0]?.installed) {
      throw new Error("supaqueue: Supaqueue is not installed in this database; run supaqueue deploy first.");
    }
  } finally {
    await probe.end().catch(() => {});
  }
  const pool = new pg.Pool({
    ...connectionConfig(options.dbUrl),
    max: 3,
    application_name: "supaqueue dashboard",
  });
  pool.on("error", () => {});

  const root = join(projectRoot(), "src", "dashboard", "public");
  const files = Object.fromEntries(
    Object.entries(FILES).map(([path, file]) => [path, { file, body: readFileSync(join(root, file)) }]),
  );
  const guard: Guard = {
    token: options.token ?? randomBytes(32).toString("hex"),
    hosts: new Set(),
    cookie: "supaqueue_dashboard",
  };

  /** Runs `fn` in one transaction: read only for reads, every statement bounded in time. */
  const inTransaction = async <T>(write: boolean, fn: (client: pg.ClientBase) => Promise<T>): Promise<T> => {
    const client = await pool.connect();
    try {
      return await transaction(client, async () => {
        await client.query(write ? "set transaction read write" : "set transaction read only");
        await client.query(`set local statement_timeout = ${STATEMENT_TIMEOUT_MS}`);
        await client.query(`set local lock_timeout = ${LOCK_TIMEOUT_MS}`);
        return fn(client);
      });
    } finally {
      client.release();
    }
  };

  const api = async (method: string, url: URL): Promise<[number, unknown]> => {
    const parts = url.pathname.split("/").slice(2).map(decodeURIComponent);
    const [kind, name, sub] = parts;
    if (method === "GET") {
      if (kind === "meta" && parts.length === 1) return [200, { readOnly: Boolean(options.readOnly) }];
      if (kind === "overview" && parts.length === 1) return [200, await inTransaction(false, readOverview)];
      if (kind === "queues" && name && sub === "jobs" && parts.length === 3) {
        const status = (url.searchParams.get("status") ?? "all") as StatusFilter;
        if (!STATUSES.includes(status)) throw new BadRequest(`status must be one of ${STATUSES.join(", ")}`);
        const page = await inTransaction(false, (c) =>
          readJobs(c, name, status, url.searchParams.get("cursor")),
        );
        return page ? [200, page] : [404, { error: `queue ${name} does not exist` }];
      }
      if (kind === "queues" && name && sub === "errors" && parts.length === 3) {
        return [200, { errors: await inTransaction(false, (c) => readErrors(c, name)) }];
      }
      if (kind === "jobs" && name && parts.length === 2) {
        if (!UUID.test(name)) throw new BadRequest("a job id is a UUID");
        const reveal = url.searchParams.get("reveal") === "headers";
        const job = await inTransaction(false, (c) => readJob(c, name, reveal));
        return job ? [200, job] : [404, { error: `job ${name} does not exist` }];
      }
      return [404, { error: "no such page" }];
    }
    const actions = kind === "queues" ? QUEUE_ACTIONS : kind === "jobs" ? JOB_ACTIONS : {};
    const action = sub !== undefined && parts.length === 3 ? actions[sub] : undefined;
    if (method !== "POST" || !name || !action || !Object.hasOwn(actions, sub as string)) {
      return [404, { error: "no such action" }];
    }
    if (options.readOnly) return [403, { error: "this dashboard is read-only (--read-only)" }];
    if (kind === "jobs" && !UUID.test(name)) throw new BadRequest("a job id is a UUID");
    const result: ActionResult = await inTransaction(true, (c) => action(c, name));
    return [result.ok ? 200 : 409, result];
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const verdict = check(guard, req);
    if (!verdict.ok) {
      const headers: Record<string, string> = {
        ...SECURITY_HEADERS,
        "Content-Type": "text/plain; charset=utf-8",
      };
      if ("location" in verdict) {
        headers.Location = verdict.location;
        headers["Set-Cookie"] = verdict.setCookie;
      }
      res.writeHead(verdict.status, headers).end(`supaqueue dashboard: ${verdict.message}\n`);
      return;
    }
    const url = new URL(req.url ?? "/", "http://dashboard");
    const method = req.method ?? "GET";
    if (!url.pathname.startsWith("/api/")) {
      const file = files[url.pathname];
      if (!file || (method !== "GET" && method !== "HEAD")) {
        res
          .writeHead(404, { ...SECURITY_HEADERS, "Content-Type": "text/plain; charset=utf-8" })
          .end("not found\n");
        return;
      }
      const type = TYPES[file.file.split(".").pop() ?? ""] ?? "application/octet-stream";
      res
        .writeHead(200, { ...SECURITY_HEADERS, "Content-Type": type })
        .end(method === "HEAD" ? "" : file.body);
      return;
    }
    // Requests carry no body: actions name their target in the path.
    req.resume();
    let status: number;
    let body: unknown;
    try {
      [status, body] = await api(method, url);
    } catch (error) {
      [status, body] = failure(error);
    }
    res
      .writeHead(status, { ...SECURITY_HEADERS, "Content-Type": "application/json; charset=utf-8" })
      .end(JSON.stringify(body));
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  for (const name of ["127.0.0.1", "localhost", host.includes(":") ? `[${host}]` : host]) {
    guard.hosts.add(`${name.toLowerCase()}:${port}`);
  }
  guard.cookie = `supaqueue_dashboard_${port}`;
  const origin = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  return {
    url: `${origin}/?token=${guard.token}`,
    origin,
    token: guard.token,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.end().catch(() => {});
    },
  };
}

/** An error as an answer: 400 for a bad request, 503 when the database took too long, 500 with its message else. */
function failure(error: unknown): [number, { error: string }] {
  if (error instanceof BadRequest) return [400, { error: error.message }];
  const code = (error as { code?: string }).code;
  if (code === "57014" || code === "55P03") {
    return [503, { error: "the database took too long to answer (statement or lock timeout); try again" }];
  }
  return [500, { error: error instanceof Error ? error.message : String(error) }];
}
