import type pg from "pg";
import { readRecordedMigrations } from "../db/migrate.ts";
import { type ExistingQueue, type ExistingSchedule, type InstalledState, QUEUE_COLUMNS } from "./model.ts";
import { readHeaderSecrets } from "./vault.ts";

// Reads what the database holds now, as far as the installer cares, without changing anything.

export async function readInstalledState(client: pg.ClientBase): Promise<InstalledState> {
  const installed = await client.query<{ queue: boolean; migration: boolean }>(
    "select to_regclass('supaqueue.queue') is not null as queue, to_regclass('supaqueue.migration') is not null as migration",
  );
  const secrets = await readHeaderSecrets(client);
  const state: InstalledState = {
    schemaInstalled: installed.rows[0]?.queue ?? false,
    appliedVersions: [],
    recordedMigrations: [],
    maxCallTimeoutMs: null,
    functionsUrl: null,
    queues: new Map(),
    secrets,
    cronVersion: await readCron(client),
    schedules: new Map(),
  };
  if (installed.rows[0]?.migration) {
    state.recordedMigrations = await readRecordedMigrations(client);
    state.appliedVersions = state.recordedMigrations.map((r) => r.version);
  }
  if (!state.schemaInstalled) return state;
  const config = await client.query<{ max: number; url: string | null }>(
    "select max_call_timeout_ms as max, functions_url as url from supaqueue.config",
  );
  state.maxCallTimeoutMs = config.rows[0]?.max ?? null;
  state.functionsUrl = config.rows[0]?.url ?? null;
  const { rows } = await client.query<ExistingQueue>(`
    select q.name, ${QUEUE_COLUMNS.map((c) => `q.${c}`).join(", ")}, q.managed_by, q.signing_key_secret,
           (select count(*)::int from supaqueue.worker w where w.queue_id = q.id and not w.retiring) as workers,
           (select count(*)::int from supaqueue.job j
             where j.queue_id = q.id and j.status in ('pending', 'in_progress')) as unfinished_jobs
    from supaqueue.queue q order by q.name`);
  for (const row of rows) state.queues.set(row.name, row);
  state.schedules = await readSchedules(client, state.cronVersion !== null);
  return state;
}

/** pg_cron's version, or null when the extension is not installed. */
async function readCron(client: pg.ClientBase): Promise<string | null> {
  const { rows } = await client.query<{ version: string }>(
    "select extversion as version from pg_catalog.pg_extension where extname = 'pg_cron'",
  );
  return rows[0]?.version ?? null;
}

/** supaqueue.schedule by name, each with whether its pg_cron job exists (when cron.job is readable). */
async function readSchedules(
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
