import type pg from "pg";

/**
 * What the dashboard may change, each one of Supaqueue's own SQL functions (the same ones `supaqueue pause`,
 * `resume`, `retry` and `cancel` call). An action answers what happened in a sentence for the page to show.
 */
export interface ActionResult {
  ok: boolean;
  message: string;
}

type Action = (client: pg.ClientBase, target: string) => Promise<ActionResult>;

async function one<T>(client: pg.ClientBase, sql: string, target: string): Promise<T | undefined> {
  const { rows } = await client.query<{ v: T }>(sql, [target]);
  return rows[0]?.v;
}

/** The words a paused or resumed queue of supaqueue.yml adds: a deploy sets `paused` from the file again. */
async function managedNote(client: pg.ClientBase, queue: string, paused: boolean): Promise<string> {
  const managedBy = await one<string | null>(
    client,
    "select q.managed_by as v from supaqueue.queue q where q.name = $1",
    queue,
  );
  return managedBy
    ? ` This queue is managed by ${managedBy}: the next deploy follows the file (${paused ? "set paused: true there to keep it paused" : "it pauses the queue again if the file says paused: true"}).`
    : "";
}

const NO_QUEUE = (queue: string): ActionResult => ({ ok: false, message: `Queue ${queue} does not exist.` });

export const QUEUE_ACTIONS: Record<string, Action> = {
  async pause(client, queue) {
    if (!(await one<boolean>(client, "select supaqueue.pause($1) as v", queue))) return NO_QUEUE(queue);
    return {
      ok: true,
      message: `Paused ${queue}: calls in flight finish; its jobs wait until it is resumed.${await managedNote(client, queue, true)}`,
    };
  },
  async resume(client, queue) {
    if (!(await one<boolean>(client, "select supaqueue.resume($1) as v", queue))) return NO_QUEUE(queue);
    return {
      ok: true,
      message: `Resumed ${queue}: its waiting jobs are being sent.${await managedNote(client, queue, false)}`,
    };
  },
  async "retry-failed"(client, queue) {
    const exists = await one<boolean>(
      client,
      "select exists (select from supaqueue.queue q where q.name = $1) as v",
      queue,
    );
    if (!exists) return NO_QUEUE(queue);
    const n = (await one<number>(client, "select supaqueue.retry_failed($1) as v", queue)) ?? 0;
    return { ok: true, message: `Sent ${n} failed job${n === 1 ? "" : "s"} of ${queue} round again.` };
  },
};

export const JOB_ACTIONS: Record<string, Action> = {
  async retry(client, job) {
    if (await one<boolean>(client, "select supaqueue.retry($1::uuid) as v", job)) {
      return { ok: true, message: `Job ${job} goes round again with a fresh set of attempts.` };
    }
    return {
      ok: false,
      message: `Job ${job} was not retried: only a failed or cancelled job, not in flight, can be.`,
    };
  },
  async cancel(client, job) {
    if (await one<boolean>(client, "select supaqueue.cancel($1::uuid) as v", job)) {
      return {
        ok: true,
        message: `Cancelled job ${job}. A call already in flight finishes, but no longer changes it.`,
      };
    }
    return {
      ok: false,
      message: `Job ${job} was not cancelled: it has already finished (or does not exist).`,
    };
  },
};
