import pg from "pg";

/**
 * A stand-in for pg_net's background worker, for machines without pg_net. Like the real one it takes committed
 * rows from `net.http_request_queue` (deleting them), up to `batchSize` at a time, sends each with its own
 * timeout and writes the outcome to `net._http_response`. It polls the queue every `pollMs` (10 ms by default):
 * the stand-in extension sends no NOTIFY, because that would serialize every commit that queues a call.
 * One difference, on purpose: it does not wait for a whole batch to finish before taking the next, so one slow
 * target does not hold the others up in tests.
 */
export interface PgNetWorkerOptions {
  batchSize?: number;
  pollMs?: number;
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
  stop(): Promise<void>;
}

interface QueueRow {
  id: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: Buffer | null;
  timeout_milliseconds: number;
}

export async function startPgNetWorker(
  connectionString: string,
  options: PgNetWorkerOptions = {},
): Promise<PgNetWorker> {
  const batchSize = options.batchSize ?? 200;
  const pollMs = options.pollMs ?? 10;
  const doFetch = options.fetch ?? fetch;
  const pool = new pg.Pool({ connectionString, max: 4, application_name: "pg_net stand-in" });

  let stopped = false;
  let sent = 0;
  let wake: (() => void) | undefined;
  const inFlight = new Set<Promise<void>>();

  async function send(row: QueueRow): Promise<void> {
    const id = Number(row.id);
    const body = row.body ? row.body.toString("utf8") : null;
    options.onRequest?.({
      id,
      method: row.method,
      url: row.url,
      headers: row.headers,
      body,
      timeoutMs: row.timeout_milliseconds,
    });
    let response: {
      status: number;
      type: string | null;
      headers: Record<string, string>;
      content: string;
    } | null = null;
    let timedOut = false;
    let errorMsg: string | null = null;
    try {
      const res = await doFetch(row.url, {
        method: row.method,
        headers: row.headers,
        body: row.method === "GET" ? undefined : (body ?? undefined),
        signal: AbortSignal.timeout(row.timeout_milliseconds),
      });
      response = {
        status: res.status,
        type: res.headers.get("content-type"),
        headers: Object.fromEntries(res.headers.entries()),
        content: await res.text(),
      };
    } catch (error) {
      timedOut = (error as Error).name === "TimeoutError";
      errorMsg = timedOut
        ? `Timeout of ${row.timeout_milliseconds} ms reached`
        : String((error as Error).message ?? error);
    }
    await pool
      .query(
        `insert into net._http_response (id, status_code, content_type, headers, content, timed_out, error_msg)
         values ($1, $2, $3, $4, $5, $6, $7)`,
        [
          id,
          response?.status ?? null,
          response?.type ?? null,
          response?.headers ?? null,
          response?.content ?? null,
          timedOut,
          errorMsg,
        ],
      )
      .catch(() => {});
  }

  async function drain(): Promise<void> {
    for (;;) {
      if (stopped) return;
      const { rows } = await pool.query<QueueRow>(
        `delete from net.http_request_queue where id in (
           select id from net.http_request_queue order by id limit $1 for update skip locked)
         returning id, method, url, headers, body, timeout_milliseconds`,
        [batchSize],
      );
      for (const row of rows.sort((a, b) => Number(a.id) - Number(b.id))) {
        sent++;
        const p = send(row).finally(() => inFlight.delete(p));
        inFlight.add(p);
      }
      if (rows.length < batchSize) return;
    }
  }

  const loop = (async () => {
    while (!stopped) {
      await drain().catch(() => {});
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  })();

  return {
    get sent() {
      return sent;
    },
    async stop() {
      stopped = true;
      wake?.();
      await loop;
      await Promise.allSettled([...inFlight]);
      await pool.end().catch(() => {});
    },
  };
}
