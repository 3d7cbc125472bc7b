import type pg from "pg";
import { type CommandSpec, DB_URL_FLAG, type Parsed, requireDbUrl, UsageError } from "./args.ts";
import { operate } from "./database.ts";

// pause, resume and purge: one queue, one SQL function each, described once.

interface QueueOperation {
  spec: CommandSpec;
  /** Runs the operation; returns the line to print, or null when the queue does not exist. */
  apply(client: pg.ClientBase, queue: string): Promise<string | null>;
}

const queueSpec = (name: string, brief: string, summary: string, notes: string[]): CommandSpec => ({
  name,
  brief,
  summary,
  args: "<queue>",
  maxArgs: 1,
  flags: { "db-url": DB_URL_FLAG },
  notes,
});

/** supaqueue.pause and supaqueue.resume return true, or null when there is no such queue. */
async function toggle(client: pg.ClientBase, fn: "pause" | "resume", queue: string): Promise<boolean> {
  const { rows } = await client.query<{ ok: boolean | null }>(`select supaqueue.${fn}($1) as ok`, [queue]);
  return rows[0]?.ok === true;
}

export const PAUSE: QueueOperation = {
  spec: queueSpec(
    "pause",
    "stop sending a queue's calls (jobs keep arriving and wait)",
    "stop sending a queue's calls (supaqueue.pause): calls in flight finish, new and waiting jobs stay pending until resume.",
    [
      "For a queue of supaqueue.yml, set paused: true in the file to keep it paused across deploys: a deploy resumes a queue the file does not pause.",
    ],
  ),
  async apply(client, queue) {
    if (!(await toggle(client, "pause", queue))) return null;
    return `Paused queue ${queue}: calls in flight finish; its jobs wait until supaqueue resume ${queue}.`;
  },
};

export const RESUME: QueueOperation = {
  spec: queueSpec(
    "resume",
    "send a paused queue's calls again",
    "send a paused queue's calls again (supaqueue.resume): its waiting jobs are dispatched at once.",
    [],
  ),
  async apply(client, queue) {
    if (!(await toggle(client, "resume", queue))) return null;
    return `Resumed queue ${queue}: its waiting jobs are being sent.`;
  },
};

export const PURGE: QueueOperation = {
  spec: queueSpec(
    "purge",
    "cancel every pending job of a queue",
    "cancel every pending job of a queue (supaqueue.purge). Calls in flight finish; the queue keeps running.",
    ["To cancel only some jobs: supaqueue cancel --queue <queue> --filter '<json>'."],
  ),
  async apply(client, queue) {
    const { rows } = await client.query<{ n: number }>("select supaqueue.purge($1) as n", [queue]);
    const n = rows[0]?.n ?? 0;
    return `Purged queue ${queue}: cancelled ${n} pending job${n === 1 ? "" : "s"}.`;
  },
};

/** Runs pause, resume or purge on the queue named on the command line. */
export async function runQueueOperation(
  operation: QueueOperation,
  parsed: Parsed,
  env: Record<string, string | undefined>,
): Promise<number> {
  const { name } = operation.spec;
  const [queue] = parsed.positionals;
  if (!queue) throw new UsageError(name, `missing the queue name (usage: supaqueue ${name} <queue>)`);
  const url = requireDbUrl(name, parsed.values, env);
  return operate(url, async (client) => {
    const line = await operation.apply(client, queue);
    if (line === null) {
      // The same words as the SQL functions that raise for an unknown queue.
      process.stderr.write(`supaqueue: queue "${queue}" does not exist\n`);
      return 1;
    }
    process.stdout.write(`${line}\n`);
    return 0;
  });
}
