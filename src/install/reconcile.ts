import type pg from "pg";
import { ConfigError, type QueueFile } from "../config/types.ts";
import { deleteHeaderSecret, URL_SECRET_HEADER, writeHeaderSecret } from "./header-secrets.ts";
import { computePlan, MANAGED_BY, type Plan, type QueueRow, readInstalledState } from "./plan.ts";
import { removeSchedules, writeSchedules } from "./schedules.ts";
import { clearSigningKey, createSigningKey } from "./signing.ts";

// Any fixed number works; it only has to be the same for every installer (the migration lock is 727274001).
const RECONCILE_LOCK = 727_274_003;

/**
 * Brings the queues, their workers, header secrets, signing keys and schedules in line with the file, in one
 * transaction under an
 * advisory lock. The plan is computed again inside the transaction, so what is applied is exactly what the
 * returned plan says (a queue that got a job since the dry plan is paused, not removed, and the plan says so).
 * Throws ConfigError, changing nothing, when a file queue has the name of a queue created by hand.
 */
export async function reconcileQueues(client: pg.ClientBase, config: QueueFile): Promise<Plan> {
  await client.query("begin");
  try {
    await client.query("select pg_advisory_xact_lock($1)", [RECONCILE_LOCK]);
    const state = await readInstalledState(client);
    const plan = computePlan(config, state);
    if (plan.conflicts.length > 0) throw new ConfigError(plan.conflicts);
    const values = new Map(
      config.queues.flatMap((q) => [
        ...q.secretHeaders.map((h): [string, string] => [`${q.name}\n${h.header}`, h.value]),
        ...(q.urlSecret ? [[`${q.name}\n${URL_SECRET_HEADER}`, q.urlSecret.value] as [string, string]] : []),
      ]),
    );

    for (const secret of plan.secrets) {
      if (secret.action === "delete") continue;
      const value = values.get(`${secret.queue}\n${secret.header}`) as string;
      await writeHeaderSecret(client, secret.name, value, state.secrets.get(secret.name));
    }
    // A dead-letter queue must exist before a queue names it: new queues are created without one first, and
    // every queue that names one gets it once all of them exist.
    for (const queue of plan.queues) {
      if (queue.action === "create")
        await insertQueue(client, queue.name, { ...queue.row, dead_letter_queue: null });
    }
    for (const queue of plan.queues) {
      if (queue.rowChanged && (queue.action === "update" || queue.row.dead_letter_queue !== null)) {
        await updateQueue(client, queue.name, queue.row);
      }
      if (queue.workers.from !== queue.workers.to) {
        // set_workers retires busy workers after their call instead of interrupting it.
        await client.query("select supaqueue.set_workers($1, $2)", [queue.name, queue.workers.to]);
      }
    }
    const removed = new Set(plan.removals.filter((r) => r.action === "remove").map((r) => r.name));
    for (const signing of plan.signing) {
      if (signing.action === "create") await createSigningKey(client, signing.queue);
      else if (!removed.has(signing.queue)) await clearSigningKey(client, signing.queue);
    }
    await removeSchedules(client, plan);
    await writeSchedules(client, plan);
    const stillThere = new Set<string>();
    for (const removal of plan.removals) {
      if (removal.action === "keep-paused") continue;
      const { rows } = await client.query<{ removed: boolean }>(
        "select supaqueue.remove_queue($1) as removed",
        [removal.name],
      );
      if (!rows[0]?.removed && removal.action === "remove") {
        removal.action = "pause";
        stillThere.add(removal.name);
      }
    }
    plan.secrets = plan.secrets.filter((s) => !(s.action === "delete" && stillThere.has(s.queue)));
    // A removed queue's keys go with it; a queue that got a job meanwhile is only paused and keeps them.
    plan.signing = plan.signing.filter((s) => !(s.action === "clear" && stillThere.has(s.queue)));
    for (const signing of plan.signing) {
      if (signing.action === "clear" && removed.has(signing.queue))
        await clearSigningKey(client, signing.queue);
    }
    for (const secret of plan.secrets) {
      if (secret.action === "delete") await deleteHeaderSecret(client, secret.name);
    }
    await client.query("commit");
    return plan;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  }
}

const COLUMNS = [
  "url",
  "url_secret",
  "function_name",
  "method",
  "headers",
  "secret_headers",
  "max_attempts",
  "timeout_ms",
  "backoff_base_ms",
  "backoff_max_ms",
  "success_codes",
  "retry_codes",
  "rate_limit_per_second",
  "dead_letter_queue",
  "paused",
] as const satisfies readonly (keyof QueueRow)[];

function rowValues(row: QueueRow): unknown[] {
  return COLUMNS.map((column) =>
    column === "headers" || column === "secret_headers" ? JSON.stringify(row[column]) : row[column],
  );
}

async function insertQueue(client: pg.ClientBase, name: string, row: QueueRow): Promise<void> {
  const placeholders = COLUMNS.map((_, i) => `$${i + 3}`).join(", ");
  await client.query(
    `insert into supaqueue.queue (name, managed_by, ${COLUMNS.join(", ")}) values ($1, $2, ${placeholders})`,
    [name, MANAGED_BY, ...rowValues(row)],
  );
}

async function updateQueue(client: pg.ClientBase, name: string, row: QueueRow): Promise<void> {
  const assignments = COLUMNS.map((column, i) => `${column} = $${i + 3}`).join(", ");
  await client.query(`update supaqueue.queue set ${assignments} where name = $1 and managed_by = $2`, [
    name,
    MANAGED_BY,
    ...rowValues(row),
  ]);
}
