import { PayloadError } from "../client/errors.ts";
import { type JsonSchema, payloadProblem } from "../client/payload.ts";
import { type CommandSpec, DB_URL_FLAG, type Parsed, requireDbUrl, UsageError } from "./args.ts";
import { operate } from "./database.ts";
import { UUID } from "./job-ops.ts";
import { parseMoment } from "./when.ts";

export const ENQUEUE: CommandSpec = {
  name: "enqueue",
  brief: "add a job to a queue",
  summary: "add a job to a queue (supaqueue.enqueue) and print its id.",
  args: "<queue> [json]",
  maxArgs: 2,
  flags: {
    "db-url": DB_URL_FLAG,
    "run-at": {
      type: "string",
      value: "WHEN",
      description: "Run it later: an ISO timestamp (2026-12-01T09:00:00Z) or a delay (30s, 5m, 1h, 1d).",
    },
    "dedup-key": {
      type: "string",
      value: "KEY",
      description:
        "While a job of the queue with this key is unfinished, return its id instead of adding another.",
    },
    key: {
      type: "string",
      value: "KEY",
      description:
        "The job's flow-control key (a tenant, a user): a queue with per_key_concurrency or ordered runs each key's jobs apart.",
    },
    header: {
      type: "string",
      value: "NAME=VALUE",
      multiple: true,
      description: "A header added to this job's call.",
    },
    after: {
      type: "string",
      value: "JOB-ID",
      multiple: true,
      description:
        "Wait for this job (repeat for several): the job starts once every one has succeeded, and is cancelled when one fails for good or is cancelled.",
    },
  },
  notes: [
    "The payload is a JSON object or array (default {}): the body of a POST/PUT/PATCH, the query string of a GET/DELETE.",
    "A queue with a `payload:` schema in supaqueue.yml checks it first, and names the field that breaks it.",
    `Example: supaqueue enqueue send-email '{"to":"ada@example.com"}' --dedup-key welcome-42`,
  ],
};

export async function runEnqueue(parsed: Parsed, env: Record<string, string | undefined>): Promise<number> {
  const [queue, json = "{}"] = parsed.positionals;
  if (!queue)
    throw new UsageError("enqueue", "missing the queue name (usage: supaqueue enqueue <queue> [json])");
  let payload: unknown;
  try {
    payload = JSON.parse(json);
  } catch (error) {
    throw new UsageError("enqueue", `the payload is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof payload !== "object" || payload === null) {
    throw new UsageError("enqueue", "the payload must be a JSON object or array, e.g. '{\"id\": 42}'");
  }
  const runAtText = parsed.values["run-at"] as string | undefined;
  const runAt = runAtText === undefined ? null : parseMoment("enqueue", "run-at", runAtText, "ahead");
  const headers = parseHeaders((parsed.values.header as string[] | undefined) ?? []);
  const after = afterIds(parsed.values.after as string[] | undefined);
  const url = requireDbUrl("enqueue", parsed.values, env);
  return operate(url, async (client) => {
    // The queue's payload schema (supaqueue.yml's `payload:`), checked here as the client checks it.
    const schema = await client.query<{ schema: JsonSchema | null }>(
      "select supaqueue.payload_schema($1) as schema",
      [queue],
    );
    const known = schema.rows[0]?.schema ?? null;
    const problem = known && payloadProblem(known, payload);
    if (problem) throw new PayloadError(queue, problem.path, problem.problem);
    const { rows } = await client.query<{ id: string }>(
      "select supaqueue.enqueue($1, $2::jsonb, $3::timestamptz, $4, $5::jsonb, $6, $7::uuid[])::text as id",
      [
        queue,
        JSON.stringify(payload),
        runAt,
        (parsed.values["dedup-key"] as string | undefined) ?? null,
        headers,
        (parsed.values.key as string | undefined) ?? null,
        after,
      ],
    );
    process.stdout.write(`${rows[0]?.id}\n`);
    return 0;
  });
}

function parseHeaders(list: string[]): string | null {
  if (list.length === 0) return null;
  const headers: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf("=");
    if (eq < 1) throw new UsageError("enqueue", `--header must be NAME=VALUE, not "${item}"`);
    headers[item.slice(0, eq).trim()] = item.slice(eq + 1);
  }
  return JSON.stringify(headers);
}

/** The ids of --after, each checked to be a job id; null without any. */
function afterIds(values: string[] | undefined): string[] | null {
  if (values === undefined || values.length === 0) return null;
  for (const id of values) {
    if (!UUID.test(id))
      throw new UsageError("enqueue", `--after "${id}" is not a job id (a UUID such as 0192f0c4-…)`);
  }
  return values;
}
