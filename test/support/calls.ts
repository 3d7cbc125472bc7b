import type pg from "pg";

/** A call that the database asked pg_net to send to execute_current_job, as the edge function receives it. */
export interface SentCall {
  requestId: number;
  url: string;
  headers: Record<string, string>;
  timeoutMs: number;
  body: {
    current_job_id: number;
    attempt: number;
    lease_until: string;
    job: { id: string; payload: unknown; headers: Record<string, string> };
    queue: {
      name: string;
      url: string;
      is_function: boolean;
      method: string;
      headers: Record<string, string>;
      timeout_ms: number;
    };
  };
}

/**
 * Takes the committed pg_net requests (as pg_net's worker does, deleting them) and returns them in order.
 * Tests that do not need HTTP play the edge function with this and `complete()`.
 */
export async function takeCalls(db: pg.Pool | pg.ClientBase, limit = 10_000): Promise<SentCall[]> {
  const { rows } = await db.query(
    `delete from net.http_request_queue where id in (
       select id from net.http_request_queue order by id limit $1 for update skip locked)
     returning id, url, headers, convert_from(body, 'UTF8') as body, timeout_milliseconds`,
    [limit],
  );
  return rows
    .map((r) => ({
      requestId: Number(r.id),
      url: r.url,
      headers: r.headers,
      timeoutMs: r.timeout_milliseconds,
      body: JSON.parse(r.body),
    }))
    .sort((a, b) => a.requestId - b.requestId);
}

export interface Outcome {
  succeeded: boolean;
  statusCode?: number;
  responseBody?: string;
  error?: string;
  durationMs?: number;
  retryable?: boolean;
  retryAfterMs?: number;
}

/** Reports an outcome exactly as the edge function does (through the public RPC wrapper, as service_role). */
export async function complete(
  db: pg.Pool,
  call: SentCall | number,
  outcome: Outcome = { succeeded: true, statusCode: 200 },
) {
  const id = typeof call === "number" ? call : call.body.current_job_id;
  const { rows } = await asServiceRole(
    db,
    "select public.supaqueue_complete_current_job($1, $2, $3, $4, $5, $6, $7, $8) as recorded",
    [
      id,
      outcome.succeeded,
      outcome.statusCode ?? null,
      outcome.responseBody ?? null,
      outcome.error ?? null,
      outcome.durationMs ?? null,
      outcome.retryable ?? true,
      outcome.retryAfterMs ?? null,
    ],
  );
  return rows[0].recorded as boolean;
}

/** Runs one statement in its own transaction as service_role, as PostgREST runs the edge function's RPC calls. */
async function asServiceRole(db: pg.Pool, sql: string, params: unknown[]): Promise<pg.QueryResult> {
  const client = await db.connect();
  try {
    await client.query("begin");
    await client.query("set local role service_role");
    const result = await client.query(sql, params);
    await client.query("commit");
    return result;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * Reports many outcomes in one call, exactly as the edge function does under load (public RPC wrapper, as
 * service_role). Returns the ids of the current jobs that were still in flight and are now finished.
 */
export async function completeMany(
  db: pg.Pool,
  reports: { call: SentCall | number; outcome?: Outcome }[],
): Promise<number[]> {
  const outcomes = reports.map(({ call, outcome = { succeeded: true, statusCode: 200 } }) => ({
    current_job_id: typeof call === "number" ? call : call.body.current_job_id,
    succeeded: outcome.succeeded,
    status_code: outcome.statusCode ?? null,
    response_body: outcome.responseBody ?? null,
    error: outcome.error ?? null,
    duration_ms: outcome.durationMs ?? null,
    retryable: outcome.retryable ?? true,
    retry_after_ms: outcome.retryAfterMs ?? null,
  }));
  const { rows } = await asServiceRole(
    db,
    "select public.supaqueue_complete_current_jobs($1::jsonb) as finished",
    [JSON.stringify(outcomes)],
  );
  return (rows[0].finished as string[]).map(Number);
}

/** Creates a queue (defaults: a URL target, POST) with `workers` workers; returns its id. */
export async function createQueue(
  db: pg.Pool,
  name: string,
  workers: number,
  fields: Record<string, unknown> = {},
): Promise<number> {
  const columns = { url: "https://target.example/hook", ...fields };
  const keys = Object.keys(columns);
  const { rows } = await db.query(
    `insert into supaqueue.queue (name, ${keys.join(", ")}) values ($1, ${keys.map((_, i) => `$${i + 2}`).join(", ")}) returning id`,
    [name, ...Object.values(columns)],
  );
  const id = Number(rows[0].id);
  if (workers > 0) await db.query("select supaqueue.set_workers($1, $2)", [name, workers]);
  return id;
}

export async function jobStatus(db: pg.Pool, id: string) {
  const { rows } = await db.query(
    "select status, attempts, run_at, last_error, last_status_code from supaqueue.job where id = $1",
    [id],
  );
  return rows[0];
}
