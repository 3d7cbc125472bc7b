import type { SupabaseClient } from "@supabase/supabase-js";
import { PayloadError, SupaqueueError } from "./errors.js";
import { type JsonSchema, payloadProblem } from "./payload.js";
import { type JobRow, type QueueStatsRow, toJob, toQueueStats } from "./rows.js";
import type { EnqueueOptions, Job, Payload, PayloadMap, QueueStats, WaitOptions } from "./types.js";
import { pollUntilFinished, REAL_TIMING, type Timing } from "./wait.js";

/** What the client needs of a SupabaseClient: its `rpc`, which answers `{ data, error }`. */
interface RpcAnswer {
  data: unknown;
  error: { message: string; code?: string; hint?: string | null; details?: string | null } | null;
  status?: number;
}
type Rpc = (fn: string, args: Record<string, unknown>) => PromiseLike<RpcAnswer>;

/** One job of `enqueueMany`: its payload, and the options `enqueue` takes. */
export interface JobInput<P> extends EnqueueOptions {
  payload: P;
}

export interface ClientOptions {
  /**
   * Check each payload against its queue's JSON Schema (supaqueue.yml's `payload:`) before enqueueing (default true).
   * A queue's schema is read once per client, at its first enqueue: make a new client after a deploy changes it.
   */
  validate?: boolean;
  /** The clock and sleep `wait` uses (tests). */
  timing?: Timing;
}

/** The queue names of a payload map, or any string for the untyped client. */
type QueueName<Q> = string extends keyof Q ? string : keyof Q & string;
type PayloadOf<Q, K> = K extends keyof Q ? Q[K] : Payload;

/**
 * Supaqueue from app code: every method is one RPC to a `public.supaqueue_*` function (granted to service_role only),
 * so the SupabaseClient must use the service-role key or a secret key (`sb_secret_…`). Errors from the database are
 * thrown as SupaqueueError with Postgres's message, code and hint.
 */
export interface Supaqueue<Q extends PayloadMap = PayloadMap> {
  /** Adds a job and returns its id (or, with a `dedupKey` an unfinished job holds, that job's id). */
  enqueue<K extends QueueName<Q>>(
    queue: K,
    payload: PayloadOf<Q, K>,
    options?: EnqueueOptions,
  ): Promise<string>;
  /** Adds many jobs to one queue in one round trip and one transaction; returns their ids in the order given. */
  enqueueMany<K extends QueueName<Q>>(queue: K, jobs: JobInput<PayloadOf<Q, K>>[]): Promise<string[]>;
  /** A job with every attempt, or null when there is none (or it was deleted after the retention period). */
  get<P = Payload>(jobId: string): Promise<Job<P> | null>;
  /** Polls the job (with backoff, bounded by `timeoutMs`, stopped by `signal`) until it has finished. */
  wait<P = Payload>(jobId: string, options?: WaitOptions): Promise<Job<P>>;
  /** Cancels an unfinished job; false when it had already finished or does not exist. */
  cancel(jobId: string): Promise<boolean>;
  /** Sends a failed or cancelled job round again with fresh attempts; false otherwise. */
  retry(jobId: string): Promise<boolean>;
  /** Stops sending the queue's calls (jobs still accepted); false for an unknown queue. */
  pause(queue: QueueName<Q>): Promise<boolean>;
  /** Sends a paused queue's calls again; false for an unknown queue. */
  resume(queue: QueueName<Q>): Promise<boolean>;
  /** supaqueue.queue_stats: every queue's row, or one queue's (null when unknown). */
  stats(): Promise<QueueStats[]>;
  stats(queue: QueueName<Q>): Promise<QueueStats | null>;
}

function runAtOf(options: EnqueueOptions, fn: string): { run_at?: string; delay_ms?: number } {
  if (options.runAt !== undefined && options.delay !== undefined) {
    throw new SupaqueueError("give runAt or delay, not both", { code: "22023", fn });
  }
  if (options.delay !== undefined) {
    if (!Number.isFinite(options.delay) || options.delay < 0) {
      throw new SupaqueueError(`delay must be a number of milliseconds, 0 or more, not ${options.delay}`, {
        code: "22023",
        fn,
      });
    }
    return { delay_ms: options.delay };
  }
  if (options.runAt === undefined) return {};
  const at = options.runAt instanceof Date ? options.runAt : new Date(options.runAt);
  if (Number.isNaN(at.getTime())) {
    throw new SupaqueueError(`runAt must be a Date or an ISO timestamp, not "${String(options.runAt)}"`, {
      code: "22023",
      fn,
    });
  }
  return { run_at: at.toISOString() };
}

/** A job's arguments in the database's names, the ones it does not give left out. */
function jobArguments(payload: unknown, options: EnqueueOptions, fn: string): Record<string, unknown> {
  return {
    payload,
    ...runAtOf(options, fn),
    ...(options.dedupKey !== undefined ? { dedup_key: options.dedupKey } : {}),
    ...(options.headers !== undefined ? { headers: options.headers } : {}),
    ...(options.key !== undefined ? { key: options.key } : {}),
    ...(options.after !== undefined ? { after: options.after } : {}),
  };
}

/** Creates the client from a SupabaseClient (made with the service-role key or a secret key). */
export function createSupaqueue<Q extends PayloadMap = PayloadMap>(
  // biome-ignore lint/suspicious/noExplicitAny: any project's SupabaseClient, whatever its Database type
  supabase: SupabaseClient<any, any, any>,
  options: ClientOptions = {},
): Supaqueue<Q> {
  const rpc = supabase.rpc.bind(supabase) as unknown as Rpc;
  const timing = options.timing ?? REAL_TIMING;
  const schemas = new Map<string, Promise<JsonSchema | null>>();

  async function call<T>(name: string, args: Record<string, unknown>): Promise<T> {
    const fn = `supaqueue_${name}`;
    const { data, error, status } = await rpc(fn, args);
    if (error) {
      throw new SupaqueueError(error.message.replace(/^supaqueue: /, ""), {
        code: error.code,
        hint: error.hint,
        details: error.details,
        status: status ?? null,
        fn,
      });
    }
    return data as T;
  }

  /** Throws a PayloadError naming the field when a payload breaks its queue's schema (`index`: its place in a batch). */
  async function check(queue: string, payloads: unknown[]): Promise<void> {
    if (options.validate === false) return;
    let schema = schemas.get(queue);
    if (schema === undefined) {
      schema = call<JsonSchema | null>("payload_schema", { queue_name: queue });
      schemas.set(queue, schema);
      schema.catch(() => schemas.delete(queue));
    }
    const known = await schema;
    if (known === null) return;
    for (const [index, payload] of payloads.entries()) {
      const problem = payloadProblem(known, payload);
      if (problem)
        throw new PayloadError(queue, problem.path, problem.problem, payloads.length > 1 ? index : null);
    }
  }

  async function get<P>(jobId: string): Promise<Job<P> | null> {
    const row = await call<JobRow | null>("get_job", { job_id: jobId });
    return row === null ? null : toJob<P>(row);
  }

  async function stats(queue?: string): Promise<QueueStats[] | QueueStats | null> {
    const rows = await call<QueueStatsRow[]>("queue_stats", queue === undefined ? {} : { queue_name: queue });
    const all = rows.map(toQueueStats);
    return queue === undefined ? all : (all[0] ?? null);
  }

  return {
    async enqueue(queue, payload, options = {}) {
      const args = jobArguments(payload, options, "supaqueue_enqueue");
      await check(queue, [payload]);
      return call<string>("enqueue", { queue_name: queue, ...args });
    },
    async enqueueMany(queue, jobs) {
      const args = jobs.map(({ payload, ...options }) =>
        jobArguments(payload, options, "supaqueue_enqueue_many"),
      );
      await check(
        queue,
        jobs.map((job) => job.payload),
      );
      return call<string[]>("enqueue_many", { queue_name: queue, jobs: args });
    },
    get,
    wait: <P>(jobId: string, options: WaitOptions = {}) =>
      pollUntilFinished<P>(
        jobId,
        async () => {
          const job = await get<P>(jobId);
          if (job === null) {
            throw new SupaqueueError(`job ${jobId} does not exist`, {
              code: "P0002",
              fn: "supaqueue_get_job",
            });
          }
          return job;
        },
        options,
        timing,
      ),
    cancel: (jobId) => call<boolean>("cancel", { job_id: jobId }),
    retry: (jobId) => call<boolean>("retry", { job_id: jobId }),
    pause: (queue) => call<boolean>("pause", { queue_name: queue }),
    resume: (queue) => call<boolean>("resume", { queue_name: queue }),
    stats: stats as Supaqueue<Q>["stats"],
  };
}
