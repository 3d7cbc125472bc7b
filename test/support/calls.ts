import { createHmac } from "node:crypto";
import type pg from "pg";
import { asServiceRole } from "../../src/local/service-role-database.ts";
import { TEST_SECRET } from "./db.ts";

/** A wakeup the database asked pg_net to send to execute_current_job: ids only, and its MAC header. */
export interface Wakeup {
  requestId: number;
  url: string;
  headers: Record<string, string>;
  timeoutMs: number;
  /** The raw body as pg_net sends it. */
  raw: string;
  body: { v: number; ids: number[] };
}

/** A claimed call, as execute_current_job receives it from supaqueue_claim_current_jobs. */
export interface SentCall {
  /** The pg_net request of the wakeup that named it. */
  requestId: number;
  body: {
    current_job_id: number;
    attempt: number;
    lease_until: string;
    max_response_chars: number;
    job: { id: string; payload: unknown; headers: Record<string, string> };
    queue: {
      name: string;
      url: string;
      is_function: boolean;
      method: string;
      headers: Record<string, string>;
      timeout_ms: number;
      signed: boolean;
      signing_keys: string[];
      success_codes: number[] | null;
      retry_codes: number[] | null;
    };
    problem: string | null;
  };
}

/**
 * Takes the committed pg_net requests (as pg_net's worker does, deleting them) and returns the wakeups among them,
 * in order, after checking each one's MAC against the test secret (a wakeup that fails it fails the test).
 */
export async function takeWakeups(db: pg.Pool | pg.ClientBase, limit = 10_000): Promise<Wakeup[]> {
  const { rows } = await db.query(
    `delete from net.http_request_queue where id in (
       select id from net.http_request_queue order by id limit $1 for update skip locked)
     returning id, url, headers, convert_from(body, 'UTF8') as body, timeout_milliseconds`,
    [limit],
  );
  return rows
    .map((r) => {
      const wakeup: Wakeup = {
        requestId: Number(r.id),
        url: r.url,
        headers: r.headers,
        timeoutMs: r.timeout_milliseconds,
        raw: r.body,
        body: JSON.parse(r.body),
      };
      assertAuthentic(wakeup);
      return wakeup;
    })
    .sort((a, b) => a.requestId - b.requestId);
}

/** Checks a wakeup's MAC as execute_current_job does (wakeup.ts), with the test secret. */
function assertAuthentic(wakeup: Wakeup): void {
  const header = wakeup.headers["Supaqueue-Wakeup"] ?? "";
  const fields = Object.fromEntries(header.split(",").map((p) => p.split("=") as [string, string]));
  const mac = createHmac("sha256", TEST_SECRET)
    .update(`v2.${fields.t}.${fields.w}.${wakeup.raw}`)
    .digest("hex");
  if (fields.v !== "2" || mac !== fields.mac)
    throw new Error(`wakeup ${wakeup.requestId} has a bad MAC: ${header}`);
}

/** Claims calls as execute_current_job does (public.supaqueue_claim_current_jobs, as service_role). */
export async function claim(db: pg.Pool, ids: number[], requestId = 0): Promise<SentCall[]> {
  const { rows } = await asServiceRole(
    db,
    "select public.supaqueue_claim_current_jobs($1::bigint[]) as calls",
    [ids],
  );
  return (rows[0].calls as SentCall["body"][]).map((body) => ({ requestId, body }));
}

/**
 * Plays pg_net and the start of execute_current_job: takes the committed wakeups and claims the calls they name.
 * Tests that do not need HTTP then report outcomes with `complete()` / `completeMany()`.
 */
export async function takeCalls(db: pg.Pool, limit = 10_000): Promise<SentCall[]> {
  const calls: SentCall[] = [];
  for (const wakeup of await takeWakeups(db, limit)) {
    calls.push(...(await claim(db, wakeup.body.ids, wakeup.requestId)));
  }
  return calls;
}

export interface Outcome {
  succeeded: boolean;
  statusCode?: number;
  responseBody?: string;
  error?: string;
  durationMs?: number;
  retryable?: boolean;
  retryAfterMs?: number;
  /** The body for the queue's on_success step, as the function sends it for such queues (outcome.chain_body). */
  chainBody?: string;
}

function outcomeJson(call: SentCall | number, outcome: Outcome = { succeeded: true, statusCode: 200 }) {
  return {
    current_job_id: typeof call === "number" ? call : call.body.current_job_id,
    succeeded: outcome.succeeded,
    status_code: outcome.statusCode ?? null,
    response_body: outcome.responseBody ?? null,
    error: outcome.error ?? null,
    duration_ms: outcome.durationMs ?? null,
    retryable: outcome.retryable ?? true,
    retry_after_ms: outcome.retryAfterMs ?? null,
    chain_body: outcome.chainBody ?? null,
  };
}

/** Reports one outcome as the edge function does; true when the call was still in flight and is now finished. */
export async function complete(
  db: pg.Pool,
  call: SentCall | number,
  outcome: Outcome = { succeeded: true, statusCode: 200 },
): Promise<boolean> {
  return (await completeMany(db, [{ call, outcome }])).length === 1;
}

/**
 * Reports many outcomes in one call (public.supaqueue_complete_current_jobs, as service_role). Returns the ids of
 * the current jobs that were still in flight and are now finished. The calls started for the freed workers get a
 * wakeup at commit, which the next takeCalls() takes.
 */
export async function completeMany(
  db: pg.Pool,
  reports: { call: SentCall | number; outcome?: Outcome }[],
): Promise<number[]> {
  const outcomes = reports.map(({ call, outcome }) => outcomeJson(call, outcome));
  const { rows } = await asServiceRole(
    db,
    "select public.supaqueue_complete_current_jobs($1::jsonb) as finished",
    [JSON.stringify(outcomes)],
  );
  return (rows[0].finished as string[]).map(Number);
}

/**
 * Reports outcomes and takes the next calls in the same transaction, as execute_current_job does while its instance
 * may go on (public.supaqueue_complete_and_claim). Returns what finished and the calls handed back.
 */
export async function completeAndClaim(
  db: pg.Pool,
  reports: { call: SentCall | number; outcome?: Outcome }[],
  claimWithinMs = 100_000,
): Promise<{ finished: number[]; calls: SentCall[] }> {
  const outcomes = reports.map(({ call, outcome }) => outcomeJson(call, outcome));
  const { rows } = await asServiceRole(
    db,
    "select public.supaqueue_complete_and_claim($1::jsonb, $2) as answer",
    [JSON.stringify(outcomes), claimWithinMs],
  );
  const answer = rows[0].answer as { finished: number[]; calls: SentCall["body"][] };
  return {
    finished: answer.finished.map(Number),
    calls: answer.calls.map((body) => ({ requestId: 0, body })),
  };
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

/** Enqueues a job through supaqueue.enqueue and returns its id. */
export async function enqueueJob(db: pg.Pool, queue: string, payload: unknown = {}): Promise<string> {
  const { rows } = await db.query("select supaqueue.enqueue($1, $2::jsonb) as id", [
    queue,
    JSON.stringify(payload),
  ]);
  return rows[0].id;
}

/** Takes the calls waiting to be sent (see takeCalls) and keeps those of one queue. */
export async function callsOf(db: pg.Pool, queue: string): Promise<SentCall[]> {
  return (await takeCalls(db)).filter((c) => c.body.queue.name === queue);
}
