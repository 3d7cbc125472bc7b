import pg from "pg";
import { describeError } from "../../functions/execute_current_job/body.ts";
import { connectionConfig } from "../db/connect.ts";
import { transaction } from "../db/transaction.ts";

/**
 * A stand-in for pg_net's background worker (upstream src/worker.c), for machines without pg_net. It is as harsh as
 * the real one, so that tests meet what users meet:
 * - in ONE transaction it deletes the responses older than `ttlMs`, takes up to `batchSize` committed rows from
 *   `net.http_request_queue` (oldest id first), sends them all at once, waits until EVERY one of them has finished
 *   (one slow target holds up the whole batch), writes their responses to `net._http_response` and commits. So no
 *   response of a batch is visible before its slowest request ends, and the taken rows stay visible in the queue
 *   to other sessions until then;
 * - then it waits up to `idleWaitMs` before the next batch. pg_net is woken at once by the commit that queued a
 *   request (a latch set by a commit callback); the stand-in has no commit callback, so it looks for a visible queued
 *   row every `wakePollMs` instead: it wakes within `wakePollMs` of a commit; pg_net wakes at once.
 * One difference remains, kinder than pg_net: after a batch pg_net is woken early only by the first commit since it
 * last went idle (its `should_wake` flag), and rows left over by a full batch wait the whole second; the stand-in
 * wakes whenever a queued row is visible.
 */
export interface PgNetWorkerOptions {
  /** Rows taken per batch, as `pg_net.batch_size` (default 200). */
  batchSize?: number;
  /** Longest wait between two batches, as the worker's 1 s latch timeout (default 1000). */
  idleWaitMs?: number;
  /** How often the waiting worker looks for a committed request (default 5): the delay after a commit. */
  wakePollMs?: number;
  /** How long responses are kept, as `pg_net.ttl` (default 6 hours). */
  ttlMs?: number;
  fetch?: typeof fetch;
  /** Called with each request as it is sent (tests count calls in flight with it). */
  onRequest?: (request: SentRequest) => void;
}

export interface SentRequest {
  id: number;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string | null;
  timeoutMs: number;
}

export interface PgNetWorker {
  /** Requests sent so far. */
  readonly sent: number;
  /** Batches taken so far (transactions that took at least one request). */
  readonly batches: number;
  stop(): Promise<void>;
}

interface QueueRow {
  id: string;
  method: string;
  url: string;
  headers: Record<string, string> | null;
  body: Buffer | null;
  timeout_milliseconds: number;
}

/** A row of net._http_response, as the worker writes it. */
interface ResponseRow {
  id: number;
  status_code: number | null;
  content_type: string | null;
  headers: Record<string, string> | null;
  content: string | null;
  timed_out: boolean;
  error_msg: string | null;
}

const SIX_HOURS_MS = 6 * 60 * 60 * 1000;

/** The headers curl sends: those queued (none when null), and its form type for a body that names no type. */
function requestHeaders(row: QueueRow, body: string | null): Record<string, string> {
  const headers = { ...(row.headers ?? {}) };
  const typed = Object.keys(headers).some((name) => name.toLowerCase() === "content-type");
  if (body !== null && !typed) headers["Content-Type"] = "application/x-www-form-urlencoded";
  return headers;
}

/** Sends one request with its own timeout; never throws: a failure is a response row with an error. */
async function send(
  row: QueueRow,
  doFetch: typeof fetch,
  onRequest?: (request: SentRequest) => void,
): Promise<ResponseRow> {
  const id = Number(row.id);
  const body = row.body ? row.body.toString("utf8") : null;
  const headers = requestHeaders(row, body);
  onRequest?.({ id, method: row.method, url: row.url, headers, body, timeoutMs: row.timeout_milliseconds });
  try {
    const res = await doFetch(row.url, {
      method: row.method,
      headers,
      body: row.method.toUpperCase() === "GET" ? undefined : (body ?? undefined),
      signal: AbortSignal.timeout(row.timeout_milliseconds),
    });
    return {
      id,
      status_code: res.status,
      content_type: res.headers.get("content-type"),
      headers: Object.fromEntries(res.headers.entries()),
      // pg_net keeps the body as a C string: it ends at the first NUL (which a text column could not hold anyway).
      content: (await res.text()).split("\0")[0] ?? "",
      timed_out: false,
      error_msg: null,
    };
  } catch (error) {
    const timedOut = (error as Error).name === "TimeoutError";
    // With the socket's error (ECONNREFUSED, ...), as curl's message in pg_net names it, not fetch's bare "fetch failed".
    const message = timedOut ? `Timeout of ${row.timeout_milliseconds} ms reached` : describeError(error);
    return {
      id,
      status_code: null,
      content_type: null,
      headers: null,
      content: null,
      timed_out: timedOut,
      error_msg: message,
    };
  }
}

export async function startPgNetWorker(
  connectionString: string,
  options: PgNetWorkerOptions = {},
): Promise<PgNetWorker> {
  const batchSize = options.batchSize ?? 200;
  const idleWaitMs = options.idleWaitMs ?? 1000;
  const wakePollMs = options.wakePollMs ?? 5;
  const ttlMs = options.ttlMs ?? SIX_HOURS_MS;
  const doFetch = options.fetch ?? fetch;
  const pool = new pg.Pool({
    ...connectionConfig(connectionString),
    max: 2,
    application_name: "pg_net stand-in",
  });
  pool.on("error", () => {});

  let stopped = false;
  let sent = 0;
  let batches = 0;
  let wake: (() => void) | undefined;

  /** One iteration of worker.c's inner loop: expire, take, send all, wait for all, record, commit. */
  async function runBatch(): Promise<void> {
    const client = await pool.connect();
    try {
      await transaction(client, async () => {
        await client.query(
          `delete from net._http_response r using (
           select ctid from net._http_response where created < now() - make_interval(secs => $1::float8 / 1000)
           order by created limit $2) old
         where r.ctid = old.ctid`,
          [ttlMs, batchSize],
        );
        const { rows } = await client.query<QueueRow>(
          `delete from net.http_request_queue q using (
           select id from net.http_request_queue order by id limit $1) taken
         where q.id = taken.id
         returning q.id, q.method, q.url, q.headers, q.body, q.timeout_milliseconds`,
          [batchSize],
        );
        rows.sort((a, b) => Number(a.id) - Number(b.id));
        sent += rows.length;
        if (rows.length > 0) batches++;
        const responses = await Promise.all(rows.map((row) => send(row, doFetch, options.onRequest)));
        await client.query(
          `insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
         select id, status_code, content_type, headers, content, timed_out, error_msg
         from jsonb_to_recordset($1::jsonb) as r(id bigint, status_code integer, content_type text, headers jsonb,
                                                 content text, timed_out boolean, error_msg text)`,
          [JSON.stringify(responses)],
        );
      });
    } finally {
      client.release();
    }
  }

  /** Resolves when a queued row is visible (checked every `wakePollMs`), after `idleWaitMs`, or on stop. */
  async function idle(): Promise<void> {
    const deadline = Date.now() + idleWaitMs;
    while (!stopped && Date.now() < deadline) {
      const queued = await pool
        .query<{ queued: boolean }>("select exists (select from net.http_request_queue) as queued")
        .then(({ rows }) => rows[0]?.queued === true)
        .catch(() => false);
      if (queued || stopped) return;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(wakePollMs, Math.max(0, deadline - Date.now())));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  }

  const loop = (async () => {
    while (!stopped) {
      await runBatch().catch(() => {});
      await idle();
    }
  })();

  return {
    get sent() {
      return sent;
    },
    get batches() {
      return batches;
    },
    async stop() {
      stopped = true;
      wake?.();
      await loop;
      await pool.end().catch(() => {});
    },
  };
}
