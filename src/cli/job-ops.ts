import type pg from "pg";
import { type CommandSpec, DB_URL_FLAG, type Parsed, requireDbUrl, stringFlag, UsageError } from "./args.ts";
import { operate } from "./database.ts";
import { parseMoment } from "./when.ts";

// cancel and retry: one job by id, or many jobs of a queue.

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const QUEUE_FLAG = {
  type: "string",
  value: "QUEUE",
  description: "Act on the jobs of this queue instead of one job.",
} as const;

export const CANCEL: CommandSpec = {
  name: "cancel",
  brief: "cancel one job, or the pending jobs of a queue (matching a filter)",
  summary:
    "cancel one unfinished job (supaqueue.cancel), or with --queue the pending jobs of a queue, all of them or those whose payload contains --filter (supaqueue.cancel_jobs).",
  args: "<job-id> | --queue <queue>",
  maxArgs: 1,
  flags: {
    "db-url": DB_URL_FLAG,
    queue: QUEUE_FLAG,
    filter: {
      type: "string",
      value: "JSON",
      description:
        'With --queue: only jobs whose payload contains this JSON object (jsonb @>), e.g. \'{"template": "welcome"}\'.',
    },
  },
  notes: [
    "A call already in flight finishes, but its outcome no longer changes a cancelled job.",
    'Examples: supaqueue cancel 0b6f…  |  supaqueue cancel --queue send-email --filter \'{"template": "welcome"}\'',
  ],
};

export const RETRY: CommandSpec = {
  name: "retry",
  brief: "send a failed job round again, or the failed jobs of a queue (since a time)",
  summary:
    "send a failed or cancelled job round again with a fresh set of attempts (supaqueue.retry), or with --queue the failed jobs of a queue, all of them or those that failed since --since (supaqueue.retry_failed). Attempt history is kept.",
  args: "<job-id> | --queue <queue>",
  maxArgs: 1,
  flags: {
    "db-url": DB_URL_FLAG,
    queue: QUEUE_FLAG,
    since: {
      type: "string",
      value: "WHEN",
      description:
        "With --queue: only jobs that failed at or after this time: an ISO timestamp or a span back from now (30m, 1h, 1d).",
    },
  },
  notes: ["Examples: supaqueue retry 0b6f…  |  supaqueue retry --queue send-email --since 1d"],
};

/** The job id, or the queue; exactly one of them. */
function target(spec: CommandSpec, parsed: Parsed, onlyWithQueue: string): { job?: string; queue?: string } {
  const [job] = parsed.positionals;
  const queue = stringFlag(parsed.values, "queue");
  const usage = `usage: supaqueue ${spec.name} <job-id>, or supaqueue ${spec.name} --queue <queue>`;
  if ((job === undefined) === (queue === undefined)) {
    throw new UsageError(spec.name, `give a job id or --queue, not ${job ? "both" : "neither"} (${usage})`);
  }
  if (job !== undefined && !UUID.test(job)) {
    throw new UsageError(spec.name, `"${job}" is not a job id (a UUID, as enqueue prints it)`);
  }
  if (job !== undefined && parsed.values[onlyWithQueue] !== undefined) {
    throw new UsageError(spec.name, `--${onlyWithQueue} goes with --queue, not with a job id`);
  }
  return job !== undefined ? { job } : { queue };
}

/** Why supaqueue.cancel/retry did nothing to a job: it does not exist, is in another state, or is in flight. */
async function whyNot(client: pg.ClientBase, job: string, verb: string, allowed: string[]): Promise<string> {
  const { rows } = await client.query<{ status: string; queue: string; in_flight: boolean }>(
    `select j.status::text as status, q.name as queue,
            exists (select from supaqueue.current_job c where c.job_id = j.id) as in_flight
     from supaqueue.job j join supaqueue.queue q on q.id = j.queue_id where j.id = $1`,
    [job],
  );
  const row = rows[0];
  if (!row)
    return `supaqueue: job ${job} does not exist (finished jobs are deleted after the retention period)`;
  if (!allowed.includes(row.status))
    return `supaqueue: job ${job} of queue ${row.queue} is ${row.status}; only ${allowed.join(" or ")} jobs can be ${verb}`;
  return `supaqueue: job ${job} of queue ${row.queue} still has a call in flight; try again when it has finished`;
}

export async function runCancel(parsed: Parsed, env: Record<string, string | undefined>): Promise<number> {
  const { job, queue } = target(CANCEL, parsed, "filter");
  let filter: string | null = null;
  const filterText = stringFlag(parsed.values, "filter");
  if (filterText !== undefined) {
    let value: unknown;
    try {
      value = JSON.parse(filterText);
    } catch (error) {
      throw new UsageError("cancel", `--filter is not valid JSON: ${(error as Error).message}`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new UsageError("cancel", `--filter must be a JSON object, e.g. '{"template": "welcome"}'`);
    }
    filter = JSON.stringify(value);
  }
  const url = requireDbUrl("cancel", parsed.values, env);
  return operate(url, async (client) => {
    if (job !== undefined) {
      const { rows } = await client.query<{ ok: boolean }>("select supaqueue.cancel($1::uuid) as ok", [job]);
      if (!rows[0]?.ok) {
        process.stderr.write(`${await whyNot(client, job, "cancelled", ["pending", "in_progress"])}\n`);
        return 1;
      }
      process.stdout.write(`Cancelled job ${job}.\n`);
      return 0;
    }
    const { rows } = await client.query<{ n: number }>("select supaqueue.cancel_jobs($1, $2::jsonb) as n", [
      queue,
      filter,
    ]);
    const n = rows[0]?.n ?? 0;
    process.stdout.write(
      `Cancelled ${n} pending job${n === 1 ? "" : "s"} of queue ${queue}${filter ? ` whose payload contains ${filter}` : ""}.\n`,
    );
    return 0;
  });
}

export async function runRetry(parsed: Parsed, env: Record<string, string | undefined>): Promise<number> {
  const { job, queue } = target(RETRY, parsed, "since");
  const sinceText = stringFlag(parsed.values, "since");
  const since = sinceText === undefined ? null : parseMoment("retry", "since", sinceText, "ago");
  const url = requireDbUrl("retry", parsed.values, env);
  return operate(url, async (client) => {
    if (job !== undefined) {
      const { rows } = await client.query<{ ok: boolean }>("select supaqueue.retry($1::uuid) as ok", [job]);
      if (!rows[0]?.ok) {
        process.stderr.write(`${await whyNot(client, job, "retried", ["failed", "cancelled"])}\n`);
        return 1;
      }
      process.stdout.write(`Job ${job} is pending again, with a fresh set of attempts.\n`);
      return 0;
    }
    const { rows } = await client.query<{ n: number }>(
      "select supaqueue.retry_failed($1, $2::timestamptz) as n",
      [queue, since],
    );
    const n = rows[0]?.n ?? 0;
    process.stdout.write(
      `Retrying ${n} failed job${n === 1 ? "" : "s"} of queue ${queue}${since ? ` (failed since ${since})` : ""}, each with a fresh set of attempts.\n`,
    );
    return 0;
  });
}
