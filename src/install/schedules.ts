import { isDeepStrictEqual } from "node:util";
import type pg from "pg";
import { isSecondsSchedule } from "../config/cron.ts";
import type { QueueFile } from "../config/types.ts";
import { type ExistingSchedule, type InstalledState, MANAGED_BY, type Plan } from "./plan.ts";

/** pg_cron's version, or null when the extension is not installed. */
export async function readCron(client: pg.ClientBase): Promise<string | null> {
  const { rows } = await client.query<{ version: string }>(
    "select extversion as version from pg_catalog.pg_extension where extname = 'pg_cron'",
  );
  return rows[0]?.version ?? null;
}

/** supaqueue.schedule by name, each with whether its pg_cron job exists (when cron.job is readable). */
export async function readSchedules(
  client: pg.ClientBase,
  cronInstalled: boolean,
): Promise<Map<string, ExistingSchedule>> {
  const readable =
    cronInstalled &&
    (await client.query<{ ok: boolean }>("select has_table_privilege('cron.job', 'select') as ok")).rows[0]
      ?.ok === true;
  const { rows } = await client.query<ExistingSchedule>(
    `select s.name, s.cron, s.queue_name, s.payload, s.managed_by,
            ${readable ? "exists (select from cron.job c where c.jobname = 'supaqueue:' || s.name)" : "null::boolean"} as cron_job
     from supaqueue.schedule s order by s.name`,
  );
  return new Map(rows.map((row) => [row.name, row]));
}

/**
 * Plans the schedules of the file: create, change or keep each one, and remove the ones this file made that are
 * no longer in it. Schedules not made from the file are never touched; a file schedule with the name of one is a
 * conflict, and so is a schedule whose queue will not exist, or any schedule without pg_cron.
 */
export function computeSchedules(config: QueueFile, state: InstalledState, plan: Plan): void {
  const fileQueues = new Set(config.queues.map((q) => q.name));
  for (const spec of config.schedules) {
    const field = `schedules.${spec.name}`;
    if (state.cronVersion === null) {
      plan.conflicts.push({
        position: spec.position,
        field,
        message:
          "recurring calls need the pg_cron extension, which is not installed in this database; enable it (Supabase dashboard: Database > Extensions > pg_cron, or: create extension pg_cron) and run again",
      });
      continue;
    }
    if (isSecondsSchedule(spec.cron) && olderThan(state.cronVersion, [1, 5])) {
      plan.conflicts.push({
        position: spec.cronPosition,
        field: `${field}.cron`,
        message: `"${spec.cron}" needs pg_cron 1.5 or later, and this database has ${state.cronVersion}; allowed here: five cron fields (at most once a minute)`,
      });
      continue;
    }
    const existing = state.schedules.get(spec.name);
    if (existing && existing.managed_by !== MANAGED_BY) {
      plan.conflicts.push({
        position: spec.position,
        field,
        message: `a schedule named "${spec.name}" already exists and was not created from ${MANAGED_BY}, so Supaqueue will not touch it; rename the schedule in the file, or hand it over with: update supaqueue.schedule set managed_by = '${MANAGED_BY}' where name = '${spec.name}'`,
      });
      continue;
    }
    const queue = state.queues.get(spec.queue);
    if (!fileQueues.has(spec.queue) && (!queue || queue.managed_by === MANAGED_BY)) {
      plan.conflicts.push({
        position: spec.queuePosition,
        field: `${field}.queue`,
        message: queue
          ? `"${spec.queue}" is taken out of the file by this change, but this schedule still enqueues into it; keep the queue in the file, or point the schedule at another queue`
          : `there is no queue "${spec.queue}" in the file or the database; allowed: a queue of this file or one that exists`,
      });
      continue;
    }
    const change = { name: spec.name, cron: spec.cron, queue: spec.queue, payload: spec.payload };
    if (!existing) {
      plan.schedules.push({ ...change, action: "create", changes: [] });
      continue;
    }
    const changes: string[] = [];
    if (existing.cron !== spec.cron) changes.push(`cron: ${existing.cron} → ${spec.cron}`);
    if (existing.queue_name !== spec.queue) changes.push(`queue: ${existing.queue_name} → ${spec.queue}`);
    if (!isDeepStrictEqual(existing.payload, spec.payload)) changes.push("payload changed");
    if (changes.length === 0 && existing.cron_job === false) changes.push("pg_cron job restored");
    plan.schedules.push({ ...change, action: changes.length > 0 ? "update" : "unchanged", changes });
  }
  const wanted = new Set(config.schedules.map((s) => s.name));
  for (const existing of state.schedules.values()) {
    if (existing.managed_by !== MANAGED_BY || wanted.has(existing.name)) continue;
    plan.schedules.push({
      name: existing.name,
      action: "remove",
      changes: [],
      cron: existing.cron,
      queue: existing.queue_name,
      payload: existing.payload,
    });
  }
}

function olderThan(version: string, [major, minor]: [number, number]): boolean {
  const [a = 0, b = 0] = version.split(".").map((part) => Number.parseInt(part, 10) || 0);
  return a < major || (a === major && b < minor);
}

/** Removes the schedules the plan removes (run before queues go). */
export async function removeSchedules(client: pg.ClientBase, plan: Plan): Promise<void> {
  for (const schedule of plan.schedules) {
    if (schedule.action === "remove") await client.query("select supaqueue.unschedule($1)", [schedule.name]);
  }
}

/** Creates and changes the schedules the plan asks for (run once their queues exist). */
export async function writeSchedules(client: pg.ClientBase, plan: Plan): Promise<void> {
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
