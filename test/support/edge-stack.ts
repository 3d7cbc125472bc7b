import { type PgNetWorker, type SentRequest, startPgNetWorker } from "../../src/standins/pgnet-worker.ts";
import { installedDatabase, TEST_SECRET, type TestDatabase } from "./db.ts";
import { type ServedFunction, serveFunction } from "./deno.ts";
import { type Gateway, startGateway } from "./gateway.ts";
import { type PostgrestStandin, startPostgrest } from "./postgrest.ts";
import { startTargets, type Targets } from "./targets.ts";

/**
 * The whole path of a call, with nothing faked but what these machines cannot run: Postgres with Supaqueue and the
 * pg_net / Vault stand-ins → the pg_net stand-in worker → execute_current_job served by real Deno → local targets,
 * and the outcomes back, in batches, through the PostgREST stand-in → public.supaqueue_complete_current_jobs.
 * One stack per test file (its own database); call it from beforeAll and stop it from afterAll.
 */

export const SERVICE_ROLE_KEY = "test-service-role-key";

interface QueueOptions {
  /** The queue's name; by default `e2e-<n>`. */
  name?: string;
  url?: string;
  function_name?: string;
  method?: string;
  headers?: Record<string, string>;
  secret_headers?: Record<string, string>;
  max_attempts?: number;
  timeout_ms?: number;
  backoff_base_ms?: number;
  backoff_max_ms?: number;
  success_codes?: number[];
  retry_codes?: number[];
  rate_limit_per_second?: number;
  dead_letter_queue?: string;
  on_success_queue?: string;
  on_success_field?: string;
  fan_out?: boolean;
  /** Concurrency: calls in flight at most (default 1). */
  workers?: number;
}

interface JobRow {
  status: string;
  attempts: number;
  last_status_code: number | null;
  last_error: string | null;
}

interface AttemptRow {
  attempt: number;
  succeeded: boolean;
  status_code: number | null;
  response_body: string | null;
  error: string | null;
  duration_ms: number | null;
  started_at: Date;
}

export interface EdgeStack {
  db: TestDatabase;
  /** Every request the pg_net stand-in sent (the wakeups), in order. */
  pgnetRequests: SentRequest[];
  targets: Targets;
  postgrest: PostgrestStandin;
  fn: ServedFunction;
  gateway: Gateway;
  /**
   * Creates a queue (as the seed does: an insert) with its workers; retries back off by 50 ms unless told. A queue
   * calling an edge function of the project gets that function, played by the targets.
   */
  createQueue(options: QueueOptions): Promise<string>;
  /** Enqueues a job through supaqueue.enqueue and returns its id. */
  enqueue(queue: string, payload?: unknown, headers?: Record<string, string>): Promise<string>;
  /**
   * Waits for a job to finish. Unless told otherwise it runs tick() every 50 ms meanwhile, as pg_cron would, so
   * retries that come due are dispatched; pass `tick: false` when a ticker of the test's own is running.
   */
  finished(jobId: string, options?: { timeoutMs?: number; tick?: boolean }): Promise<JobRow>;
  /** A job's attempt history, oldest first. */
  attempts(jobId: string): Promise<AttemptRow[]>;
  /** Runs `select supaqueue.tick()` every `everyMs` until stopped, as pg_cron does every second in production. */
  startTicker(everyMs?: number): { stop(): Promise<void> };
  /** Stops pg_net's worker (requests then wait in its queue), as when it is down; resumePgNet starts it again. */
  pausePgNet(): Promise<void>;
  resumePgNet(): Promise<void>;
  stop(): Promise<void>;
}

export interface EdgeStackOptions {
  /** config.lease_grace_ms: short, so tests of lost reports see a lease expire quickly (default 1000). */
  leaseGraceMs?: number;
  /** A new-style `sb_secret_...` key of the project: PostgREST accepts it, and the function gets it (and prefers it). */
  secretKey?: string;
}

export async function startEdgeStack(options: EdgeStackOptions = {}): Promise<EdgeStack> {
  const db = await installedDatabase();
  const targets = await startTargets();
  const postgrest = await startPostgrest({
    pool: db.pool,
    serviceRoleKey: SERVICE_ROLE_KEY,
    secretKey: options.secretKey,
  });
  // One origin for the REST API and the functions, as a project's SUPABASE_URL; the function learns it first.
  const gateway = await startGateway("http://127.0.0.1:9", targets.url, { restOrigin: postgrest.url });
  const fn = await serveFunction({
    env: {
      SUPAQUEUE_SECRET: TEST_SECRET,
      SUPABASE_URL: gateway.origin,
      SUPABASE_SERVICE_ROLE_KEY: SERVICE_ROLE_KEY,
      ...(options.secretKey ? { SUPABASE_SECRET_KEYS: JSON.stringify({ default: options.secretKey }) } : {}),
    },
  });
  gateway.executeOrigin = fn.origin;
  await db.pool.query("select supaqueue.configure(functions_url => $1, lease_grace_ms => $2)", [
    gateway.functionsUrl,
    options.leaseGraceMs ?? 1000,
  ]);
  const pgnetRequests: SentRequest[] = [];
  const startPgNet = () =>
    startPgNetWorker(db.adminUrl, {
      wakePollMs: 100,
      onRequest: (request) => pgnetRequests.push(request),
    });
  let pgnet: PgNetWorker | null = await startPgNet();

  let queues = 0;
  const stack: EdgeStack = {
    db,
    targets,
    postgrest,
    fn,
    gateway,
    pgnetRequests,

    async createQueue({ name = `e2e-${++queues}`, workers = 1, ...fields }) {
      // A queue calling an edge function of the project: the targets play that function.
      if (fields.function_name) targets.functions.add(fields.function_name);
      const row = { max_attempts: 3, timeout_ms: 5000, backoff_base_ms: 50, backoff_max_ms: 100, ...fields };
      const columns = Object.keys(row);
      const values = Object.values(row).map((v) =>
        typeof v === "object" && !Array.isArray(v) ? JSON.stringify(v) : v,
      );
      const {
        rows: [queue],
      } = await db.pool.query(
        `insert into supaqueue.queue (name, ${columns.join(", ")})
         values ($1, ${columns.map((_, i) => `$${i + 2}`).join(", ")}) returning id`,
        [name, ...values],
      );
      if (workers > 0) {
        await db.pool.query(
          "insert into supaqueue.worker (queue_id) select $1 from generate_series(1, $2::int)",
          [queue.id, workers],
        );
      }
      return name;
    },

    async enqueue(queue, payload = {}, headers) {
      const { rows } = await db.pool.query(
        "select supaqueue.enqueue($1, $2::jsonb, headers => $3::jsonb) as id",
        [queue, JSON.stringify(payload), headers ? JSON.stringify(headers) : null],
      );
      return rows[0].id;
    },

    async finished(jobId, { timeoutMs = 15_000, tick = true } = {}) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const { rows } = await db.pool.query<JobRow>(
          "select status, attempts, last_status_code, last_error from supaqueue.job where id = $1",
          [jobId],
        );
        const job = rows[0];
        if (job && ["successful", "failed", "cancelled"].includes(job.status)) return job;
        if (Date.now() > deadline)
          throw new Error(`job ${jobId} still ${job?.status} after ${timeoutMs} ms\n${fn.output()}`);
        if (tick) await db.pool.query("select supaqueue.tick()");
        await new Promise((r) => setTimeout(r, 50));
      }
    },

    async attempts(jobId) {
      const { rows } = await db.pool.query<AttemptRow>(
        `select attempt, succeeded, status_code, response_body, error, duration_ms, started_at
         from supaqueue.attempt where job_id = $1 order by id`,
        [jobId],
      );
      return rows;
    },

    startTicker(everyMs = 100) {
      let stopped = false;
      const loop = (async () => {
        while (!stopped) {
          await db.pool.query("select supaqueue.tick()");
          await new Promise((r) => setTimeout(r, everyMs));
        }
      })();
      return {
        async stop() {
          stopped = true;
          await loop;
        },
      };
    },

    async pausePgNet() {
      await pgnet?.stop();
      pgnet = null;
    },

    async resumePgNet() {
      pgnet ??= await startPgNet();
    },

    async stop() {
      await pgnet?.stop();
      await fn.stop();
      await gateway.stop();
      await postgrest.stop();
      await targets.stop();
    },
  };
  return stack;
}
