import type pg from "pg";
import { ConfigError, type QueueFile } from "../config/types.ts";
import { LOCKS, transaction } from "../db/transaction.ts";
import { JSON_COLUMNS, MANAGED_BY, type Plan, QUEUE_COLUMNS, type QueueRow } from "./model.ts";
import { computePlan } from "./plan.ts";
import { readInstalledState } from "./state.ts";
import { deleteHeaderSecret, signingSecretName, URL_SECRET_HEADER, writeHeaderSecret } from "./vault.ts";

/**
 * Brings the queues, their workers, header secrets, signing keys and schedules in line with the file, in one
 * transaction under an advisory lock. The plan is computed again inside the transaction, so what is applied is exactly what the
 * returned plan says (a queue that got a job since the dry plan is paused, not removed, and the plan says so).
 * Throws ConfigError, changing nothing, when a file queue has the name of a queue created by hand.
 */
export async function reconcileQueues(client: pg.ClientBase, config: QueueFile): Promise<Plan> {
  return transaction(client, () => reconcile(client, config), { lock: LOCKS.reconcile });
}

async function reconcile(client: pg.ClientBase, config: QueueFile): Promise<Plan> {
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
  // A dead-letter or on_success queue must exist before a queue names it: new queues are created without either
  // first, and every queue that names one gets it once all of them exist.
  for (const queue of plan.queues) {
    if (queue.action === "create")
      await insertQueue(client, queue.name, {
        ...queue.row,
        dead_letter_queue: null,
        on_success_queue: null,
      });
  }
  for (const queue of plan.queues) {
    const namesAnother = queue.row.dead_letter_queue !== null || queue.row.on_success_queue !== null;
    if (queue.rowChanged && (queue.action === "update" || namesAnother)) {
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
  return plan;
}

function rowValues(row: QueueRow): unknown[] {
  return QUEUE_COLUMNS.map((column) =>
    JSON_COLUMNS.has(column) && row[column] !== null ? JSON.stringify(row[column]) : row[column],
  );
}

async function insertQueue(client: pg.ClientBase, name: string, row: QueueRow): Promise<void> {
  const placeholders = QUEUE_COLUMNS.map((_, i) => `$${i + 3}`).join(", ");
  await client.query(
    `insert into supaqueue.queue (name, managed_by, ${QUEUE_COLUMNS.join(", ")}) values ($1, $2, ${placeholders})`,
    [name, MANAGED_BY, ...rowValues(row)],
  );
}

async function updateQueue(client: pg.ClientBase, name: string, row: QueueRow): Promise<void> {
  const assignments = QUEUE_COLUMNS.map((column, i) => `${column} = $${i + 3}`).join(", ");
  await client.query(`update supaqueue.queue set ${assignments} where name = $1 and managed_by = $2`, [
    name,
    MANAGED_BY,
    ...rowValues(row),
  ]);
}

/** Removes the schedules the plan removes (run before queues go). */
async function removeSchedules(client: pg.ClientBase, plan: Plan): Promise<void> {
  for (const schedule of plan.schedules) {
    if (schedule.action === "remove") await client.query("select supaqueue.unschedule($1)", [schedule.name]);
  }
}

/** Creates and changes the schedules the plan asks for (run once their queues exist). */
async function writeSchedules(client: pg.ClientBase, plan: Plan): Promise<void> {
  for (const s of plan.schedules) {
    if (s.action !== "create" && s.action !== "update") continue;
    await client.query("select supaqueue.schedule($1, $2, $3, $4::jsonb, $5)", [
      s.name,
      s.cron,
      s.queue,
      JSON.stringify(s.payload),
      MANAGED_BY,
    ]);
  }
}

/** Makes the queue's first key with supaqueue.rotate_signing_key; the key stays in the database, unread. */
async function createSigningKey(client: pg.ClientBase, queue: string): Promise<void> {
  await client.query("select supaqueue.rotate_signing_key($1) is not null", [queue]);
}

/**
 * Stops signing a queue's calls: clears its signing columns and deletes its current and previous keys from Vault.
 * Deleting is deliberate: a key nobody uses should not linger, and signing again later makes a fresh key.
 */
async function clearSigningKey(client: pg.ClientBase, queue: string): Promise<void> {
  await client.query(
    `update supaqueue.queue set signing_key_secret = null, previous_signing_key_secret = null,
            previous_signing_key_until = null
     where name = $1 and managed_by = $2`,
    [queue, MANAGED_BY],
  );
  await client.query("delete from vault.secrets where name in ($1, $2)", [
    signingSecretName(queue),
    signingSecretName(queue, true),
  ]);
}
