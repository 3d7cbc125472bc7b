import type pg from "pg";
import { transaction } from "../db/transaction.ts";

/**
 * Who runs supaqueue.tick() every second: pg_cron (the default: the installer enables it when it is missing, as
 * Supabase lets `postgres` do), or the user's own scheduler ("external", chosen explicitly). Without tick, delays and
 * backoffs never come due on an idle queue and a call that never comes back keeps its worker for ever: a queue stops.
 */
export type TickMode = "pg_cron" | "external";

export const TICK_MODES: readonly TickMode[] = ["pg_cron", "external"];

/** How tick runs after an install, for the log and the summary. */
export interface TickState {
  mode: TickMode;
  /** pg_cron's schedule of tick ('1 seconds', or '* * * * *' before pg_cron 1.5); null for external. */
  schedule: string | null;
  /** Whether this run created the pg_cron extension. */
  enabledPgCron: boolean;
}

/** Tick cannot be set up as asked: the message says why and what to do. Nothing was changed. */
export class TickError extends Error {
  constructor(message: string) {
    super(`supaqueue: ${message}`);
    this.name = "TickError";
  }
}

const EXTERNAL_HINT =
  "or choose tick: external (the action's input tick, or supaqueue deploy --tick external) and call select supaqueue.tick() every second from a scheduler of your own";

interface CronFacts {
  installed: string | null;
  available: boolean;
  /**
   * cron.database_name: defined only where the pg_cron library is loaded (shared_preload_libraries), and readable only
   * by a superuser or pg_read_all_settings. "unreadable" (a permission error) therefore still says that pg_cron is
   * loaded; which database it serves is then learnt from `create extension`, which refuses any other.
   */
  cronDatabase: string | null | "unreadable";
  database: string;
}

async function cronFacts(client: pg.ClientBase): Promise<CronFacts> {
  const { rows } = await client.query<Omit<CronFacts, "cronDatabase">>(`
    select (select e.extversion from pg_catalog.pg_extension e where e.extname = 'pg_cron') as installed,
           exists (select from pg_catalog.pg_available_extensions a where a.name = 'pg_cron') as available,
           current_database() as database`);
  const facts = rows[0] as Omit<CronFacts, "cronDatabase">;
  let cronDatabase: CronFacts["cronDatabase"];
  try {
    const setting = await client.query<{ name: string | null }>(
      "select current_setting('cron.database_name', true) as name",
    );
    cronDatabase = setting.rows[0]?.name ?? null;
  } catch (error) {
    if ((error as { code?: string }).code !== "42501") throw error;
    cronDatabase = "unreadable";
  }
  return { ...facts, cronDatabase };
}

/**
 * Checks, changing nothing, that tick can run as asked: pg_cron available and loaded on the server, and running its
 * jobs in this database. Called before any step of a run changes anything.
 */
export async function checkTick(client: pg.ClientBase, mode: TickMode): Promise<void> {
  if (mode === "external") return;
  const facts = await cronFacts(client);
  if (!facts.installed && !facts.available) {
    throw new TickError(
      `supaqueue.tick() must run every second, and this Postgres server has no pg_cron to run it (Supabase projects have it: Database → Extensions). Install pg_cron on the server, ${EXTERNAL_HINT}.`,
    );
  }
  const loaded = facts.cronDatabase === "unreadable" || Boolean(facts.cronDatabase);
  if (!loaded) {
    throw new TickError(
      `pg_cron is not loaded on this server (it must be in shared_preload_libraries, with cron.database_name set), so it cannot run supaqueue.tick() every second. Load it and restart the server, ${EXTERNAL_HINT}.`,
    );
  }
  if (facts.cronDatabase !== "unreadable" && facts.cronDatabase !== facts.database) {
    throw new TickError(
      `pg_cron runs its jobs only in the database "${facts.cronDatabase}" (cron.database_name), and Supaqueue is being installed into "${facts.database}". Install Supaqueue into "${facts.cronDatabase}" (on Supabase: postgres), ${EXTERNAL_HINT}.`,
    );
  }
}

/**
 * Enables pg_cron when it is missing, in a transaction of its own before anything else is changed: `create extension
 * pg_cron with schema pg_catalog` (which Supabase lets `postgres` run), then usage on its schema for the installing
 * role (harmless where it has it). Returns whether it created the extension. A failure changes nothing and says what
 * to do.
 */
export async function enablePgCron(client: pg.ClientBase, mode: TickMode): Promise<boolean> {
  if (mode === "external") return false;
  const facts = await cronFacts(client);
  if (facts.installed) return false;
  try {
    await transaction(client, async () => {
      await client.query("create extension if not exists pg_cron with schema pg_catalog");
      await client.query("savepoint usage");
      try {
        await client.query("grant usage on schema cron to current_user");
      } catch {
        // Not the extension's owner: the role has the usage it is given, and scheduling says so if it has none.
        await client.query("rollback to savepoint usage");
      }
    });
    return true;
  } catch (error) {
    throw new TickError(
      `could not enable pg_cron (create extension pg_cron with schema pg_catalog): ${(error as Error).message}. On Supabase, enable it under Database → Extensions, ${EXTERNAL_HINT}.`,
    );
  }
}

/** Schedules tick with pg_cron (inside the caller's transaction), or leaves it to the user. */
export async function scheduleTick(
  client: pg.ClientBase,
  mode: TickMode,
  enabledPgCron: boolean,
): Promise<TickState> {
  if (mode === "external") return { mode, schedule: null, enabledPgCron: false };
  const { rows } = await client.query<{ schedule: string | null }>(
    "select supaqueue.schedule_tick() as schedule",
  );
  const schedule = rows[0]?.schedule ?? null;
  if (schedule === null) {
    throw new TickError(`pg_cron is not installed, so tick could not be scheduled; ${EXTERNAL_HINT}.`);
  }
  return { mode, schedule, enabledPgCron };
}

/** Whether pg_cron already runs jobs in this database, so a stack may leave tick to it (local mode). */
export async function pgCronReady(client: pg.ClientBase): Promise<boolean> {
  const facts = await cronFacts(client);
  return (
    facts.installed !== null && (facts.cronDatabase === facts.database || facts.cronDatabase === "unreadable")
  );
}

/** The tick's state in words, for the log and the summary. */
export function describeTick(tick: TickState): string {
  if (tick.mode === "external") {
    return "tick: external: nothing here schedules supaqueue.tick(); call select supaqueue.tick() every second from your own scheduler, or delays, retries and lost calls wait";
  }
  const every = tick.schedule === "1 seconds" ? "every second" : `on the schedule '${tick.schedule}'`;
  return `tick: pg_cron runs supaqueue.tick() ${every}${tick.enabledPgCron ? " (pg_cron enabled by this run)" : ""}`;
}
